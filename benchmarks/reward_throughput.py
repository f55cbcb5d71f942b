"""BestOfKRewardTrainer vs TRL's stock RewardTrainer on the same best-of-4 labels, same model, same run.

TRL's trainer learns from (chosen, rejected) pairs, so each best-of-4 label becomes 3 pairs (best vs each other):
6 sequences per label against our 4. Both trainers see the same number of sequences per optimizer step
(ours: 8 comparisons x 4; TRL: 16 pairs x 2), start from the same reward-model initialisation, train one epoch,
and are scored on the same held-out comparisons by argmax of the reward over the 4 completions.

Labels: the JSONL files written by benchmarks/reward_real_check.py (`--labels-dir`), made there by VADER over
books prompts. Prints labels/s, held-out accuracy and the ratios.

    python benchmarks/reward_throughput.py --labels-dir runs/reward_real_check --train 160
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from datasets import Dataset
from trl import RewardConfig, RewardTrainer

from ziegler_trl import (
    BestOfKRewardConfig,
    BestOfKRewardTrainer,
    load_reward_model,
    load_tokenizer,
)
from ziegler_trl.jsonl import read_jsonl
from ziegler_trl.reward.scoring import score_texts


def read(path: Path, limit: int | None) -> list[dict]:
    rows = [row for _, row in read_jsonl(path)]
    return rows[:limit] if limit else rows


def held_out_accuracy(model, tokenizer, rows: list[dict], suffix: str = "") -> float:
    model.eval()
    prompts = [r["prompt"] for r in rows for _ in r["completions"]]
    completions = [c + suffix for r in rows for c in r["completions"]]
    scores = score_texts(model, tokenizer, prompts, completions, batch_size=32).view(len(rows), -1)
    best = torch.tensor([r["best"] for r in rows])
    return (scores.argmax(1) == best).float().mean().item()


def common_args(output_dir: str, batch: int, seed: int) -> dict:
    return dict(
        output_dir=output_dir, per_device_train_batch_size=batch, learning_rate=5e-5, num_train_epochs=1,
        lr_scheduler_type="linear", adam_epsilon=1e-5, logging_steps=10, report_to="none", save_strategy="no",
        seed=seed, bf16=False, dataloader_pin_memory=False, disable_dropout=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--labels-dir", default="runs/reward_real_check")
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--train", type=int, default=160, help="best-of-4 labels to train on")
    parser.add_argument("--held-out", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    labels_dir = Path(args.labels_dir)
    train = read(labels_dir / "labels_train.jsonl", args.train)
    held_out = read(labels_dir / "labels_eval.jsonl", args.held_out)
    tokenizer = load_tokenizer(args.model, padding_side="right")
    results = {}

    # Ours: one row per label, K = 4 completions scored in one forward.
    ours_rows = Dataset.from_list([{k: r[k] for k in ("prompt", "completions", "best")} for r in train])
    torch.manual_seed(args.seed)
    model = load_reward_model(args.model, tokenizer)
    trainer = BestOfKRewardTrainer(
        model, args=BestOfKRewardConfig(**common_args("/tmp/bench_rm_ours", 8, args.seed)),
        train_dataset=ours_rows, processing_class=tokenizer,
    )
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    results["best_of_k"] = {"labels_per_s": len(train) / seconds, "seconds": seconds,
                            "held_out_accuracy": held_out_accuracy(trainer.model, tokenizer, held_out)}

    # TRL: the same labels expanded to (best, other) pairs.
    pairs = [
        {"prompt": r["prompt"], "chosen": r["completions"][r["best"]], "rejected": c}
        for r in train for j, c in enumerate(r["completions"]) if j != r["best"]
    ]
    torch.manual_seed(args.seed)
    model = load_reward_model(args.model, tokenizer)
    trainer = RewardTrainer(
        model, args=RewardConfig(**common_args("/tmp/bench_rm_trl", 16, args.seed)),
        train_dataset=Dataset.from_list(pairs), processing_class=tokenizer,
    )
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    # TRL appends EOS to every text it trains on; score held-out texts the same way.
    results["trl_pairs"] = {"labels_per_s": len(train) / seconds, "seconds": seconds,
                            "held_out_accuracy": held_out_accuracy(trainer.model, tokenizer, held_out,
                                                                   tokenizer.eos_token)}

    ours, theirs = results["best_of_k"], results["trl_pairs"]
    print(f"labels: train {len(train)} best-of-4, held-out {len(held_out)}; model {args.model}; "
          f"threads {torch.get_num_threads()}")
    print(f"{'trainer':<22}{'labels/s':>10}{'seconds':>10}{'held-out acc':>14}")
    for name, r in results.items():
        print(f"{name:<22}{r['labels_per_s']:>10.3f}{r['seconds']:>10.1f}{r['held_out_accuracy']:>14.3f}")
    print(f"speed ratio (ours / TRL pairs): {ours['labels_per_s'] / theirs['labels_per_s']:.2f}x (target >= 1.4x)")
    print(f"accuracy difference (ours - TRL): {ours['held_out_accuracy'] - theirs['held_out_accuracy']:+.3f} "
          "(chance 0.25)")


if __name__ == "__main__":
    main()
