"""A small real PPO run on CPU: the embedded SmolLM2-135M on the sentiment task, adaptive KL.

Prompts: passages (`--dataset_name`: default `builtin`, the package's sample, or a JSONL file) formatted by the
sentiment TaskSpec (64-token queries of whole sentences, 24-token responses at T = 0.7, cut after the first "." at
index >= 16, −1 when there is none). Reward: the VADER compound sentiment score (`vaderSentiment`, in [−1, 1]) of
the truncated continuation — a documented stand-in for a trained reward model. Prints score / KL / β per PPO update,
writes `log.json` and `ppo_real_run.png` to --output-dir.

    OMP_NUM_THREADS=1 python eval/ppo_real_run.py --updates 16 --batch-size 8
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from transformers import TrainerCallback

from ziegler_trl.config_files import rename_options
from ziegler_trl.labeling import sentiment_reward
from ziegler_trl.ppo import ZieglerPPOConfig, ZieglerPPOTrainer
from ziegler_trl.tasks import load_task_texts

class PrintUpdates(TrainerCallback):
    """One line per PPO update (the rollout metrics are logged once per update)."""

    def __init__(self):
        self.rows: list[dict] = []
        self.start = time.perf_counter()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or "objective/kl" not in logs:
            return
        row = {
            "update": len(self.rows) + 1,
            "step": state.global_step,
            "score": logs["objective/scores"],
            "kl": logs["objective/kl"],
            "beta": logs["objective/kl_coef"],
            "valid": logs["objective/valid_fraction"],
            "score_total": logs["objective/score_total"],
            "value_loss": logs.get("ppo/loss/value"),
            "elapsed_s": time.perf_counter() - self.start,
        }
        self.rows.append(row)
        print(
            f"\nupdate {row['update']:3d} | score {row['score']:+.3f} | KL {row['kl']:6.3f} nats | β {row['beta']:.4f} "
            f"| valid {row['valid']:.2f} | {row['elapsed_s']:.0f}s",
            flush=True,
        )


def plot(rows: list[dict], kl_target: float, path: Path) -> None:
    updates = [r["update"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    axes[0].plot(updates, [r["score"] for r in rows], marker="o")
    axes[0].set(title="reward-model score (VADER compound)", xlabel="PPO update")
    axes[1].plot(updates, [r["kl"] for r in rows], marker="o", label="KL(π‖ρ)")
    axes[1].axhline(kl_target, color="gray", linestyle="--", label="target")
    axes[1].set(title="KL per response (nats)", xlabel="PPO update")
    axes[1].legend()
    axes[2].plot(updates, [r["beta"] for r in rows], marker="o")
    axes[2].set(title="β (adaptive)", xlabel="PPO update")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset_name", "--dataset-name", dest="dataset_name", default="builtin",
                        help="raw texts for the sentiment task: 'builtin' or a JSONL file")
    parser.add_argument("--output-dir", default="runs/ppo_real_run")
    parser.add_argument("--updates", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=8, help="episodes per PPO update")
    parser.add_argument("--micro-batch", type=int, default=8)
    parser.add_argument("--learning-rate", type=float, default=3e-5)
    parser.add_argument("--init-kl-coef", type=float, default=0.1)
    parser.add_argument("--kl-target", type=float, default=3.0)
    parser.add_argument("--kl-horizon", type=int, default=32, help="episodes; short so β can move in a few updates")
    parser.add_argument("--seed", type=int, default=0)
    cli = parser.parse_args(rename_options(sys.argv[1:], {"data": "dataset_name"}))

    out = Path(cli.output_dir)
    texts = load_task_texts("sentiment", cli.dataset_name)
    args = ZieglerPPOConfig(
        output_dir=str(out),
        task="sentiment",
        per_device_train_batch_size=cli.micro_batch,
        gradient_accumulation_steps=1,
        num_mini_batches=cli.batch_size // cli.micro_batch,
        total_episodes=cli.updates * cli.batch_size,
        learning_rate=cli.learning_rate,
        init_kl_coef=cli.init_kl_coef,
        kl_target=cli.kl_target,
        kl_horizon=cli.kl_horizon,
        rollout_forward_batch_size=cli.batch_size,
        logging_steps=4 * (cli.batch_size // cli.micro_batch),
        save_strategy="no",
        report_to=[],
        seed=cli.seed,
        num_completions_to_print=2,
    )
    printer = PrintUpdates()
    trainer = ZieglerPPOTrainer("embedded", args, train_dataset=texts, reward_fn=sentiment_reward, callbacks=[printer])
    print(
        f"{len(trainer.train_dataset)} queries; {cli.updates} updates × {args.rollout_batch_size} episodes", flush=True
    )
    trainer.train()
    out.mkdir(parents=True, exist_ok=True)
    (out / "log.json").write_text(json.dumps({"settings": vars(cli), "updates": printer.rows}, indent=1))
    plot(printer.rows, cli.kl_target, out / "ppo_real_run.png")
    first, last = printer.rows[0], printer.rows[-1]
    print(
        f"score {first['score']:+.3f} → {last['score']:+.3f}; KL {first['kl']:.3f} → {last['kl']:.3f} "
        f"(target {cli.kl_target}); β {first['beta']:.4f} → {last['beta']:.4f}; plot: {out / 'ppo_real_run.png'}"
    )


if __name__ == "__main__":
    main()
