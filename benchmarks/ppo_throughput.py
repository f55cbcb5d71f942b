"""Episodes/s and peak RSS: ZieglerPPOTrainer vs TRL 1.12's experimental PPOTrainer, same model, batch and lengths.

TRL removed its PPOTrainer in 1.13, so the baseline runs from TRL 1.12.0 installed side by side (pip --no-deps
--target, default /tmp/trl112) and imported first through PYTHONPATH in its own subprocess; the main environment is
untouched. Each trainer runs in a fresh process that reports its training wall time and its peak resident memory
(`resource.getrusage`, which includes loading the models). Both get: the same sentiment-task queries (the package's passages, or `--data` a JSONL
of book passages), fixed-length responses (EOS does not stop sampling), the same
reward model (the policy checkpoint with a fresh scalar head), one minibatch per update, 4 PPO epochs, fp32.
TRL 1.12 uses its own design: a separate value model (a second trunk); ours puts the value head on the policy trunk.

    python benchmarks/ppo_throughput.py --model embedded --batch-size 8 --updates 3
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

# benchmarks/ is on sys.path when a script here runs
from worker_process import run_worker

TRL_BASELINE = "trl==1.12.0"


def queries(model: str, data: str, n: int):
    """Token ids of n sentiment-task queries built from `data` (a JSONL file or 'builtin') and the tokenizer."""
    from ziegler_trl.models import load_tokenizer
    from ziegler_trl.tasks import build_queries, load_task_texts

    tokenizer = load_tokenizer(model)
    built = build_queries(list(load_task_texts("sentiment", data)["text"]), "sentiment", tokenizer)
    if len(built) < n:
        raise ValueError(f"Only {len(built)} usable queries in {data}; need {n}")
    return [q.ids for q in built[:n]], tokenizer


def run_ours(cli) -> float:
    from datasets import Dataset

    from ziegler_trl.models import load_policy
    from ziegler_trl.ppo import ZieglerPPOConfig, ZieglerPPOTrainer
    from ziegler_trl.reward.model import load_reward_model

    ids, tokenizer = queries(cli.model, cli.data, cli.batch_size * cli.updates)
    prompts = Dataset.from_dict({"prompt": tokenizer.batch_decode(ids)})
    args = ZieglerPPOConfig(
        output_dir=cli.output_dir + "/ours", per_device_train_batch_size=cli.batch_size, gradient_accumulation_steps=1,
        num_mini_batches=1, num_ppo_epochs=4, response_length=cli.response_length, temperature=0.7,
        total_episodes=cli.batch_size * cli.updates, rollout_forward_batch_size=cli.batch_size, save_strategy="no",
        report_to=[], log_completions=False, bf16=False, seed=0, disable_tqdm=True,
    )
    trainer = ZieglerPPOTrainer(
        load_policy(cli.model, tokenizer), args, train_dataset=prompts, processing_class=tokenizer,
        reward_model=load_reward_model(cli.model, tokenizer),
    )
    start = time.perf_counter()
    trainer.train()
    return time.perf_counter() - start


def run_trl112(cli) -> float:
    import trl
    from datasets import Dataset
    from trl.experimental.ppo import PPOConfig, PPOTrainer

    from ziegler_trl.models import load_policy
    from ziegler_trl.reward.model import load_reward_model

    if trl.__version__ != "1.12.0":
        raise RuntimeError(f"Baseline worker imported trl {trl.__version__} from {trl.__file__}, expected 1.12.0")
    ids, tokenizer = queries(cli.model, cli.data, cli.batch_size * cli.updates)
    policy, ref = load_policy(cli.model, tokenizer), load_policy(cli.model, tokenizer)
    policy.generation_config.eos_token_id = None  # fixed-length sampling, as ours
    args = PPOConfig(
        output_dir=cli.output_dir + "/trl112", per_device_train_batch_size=cli.batch_size,
        gradient_accumulation_steps=1, num_mini_batches=1, num_ppo_epochs=4, response_length=cli.response_length,
        temperature=0.7, total_episodes=cli.batch_size * cli.updates, local_rollout_forward_batch_size=cli.batch_size,
        stop_token=None, num_sample_generations=0, save_strategy="no", report_to=[], bf16=False,
        gradient_checkpointing=False, seed=0, disable_tqdm=True,
    )
    trainer = PPOTrainer(
        args=args, processing_class=tokenizer, model=policy, ref_model=ref,
        reward_model=load_reward_model(cli.model, tokenizer), value_model=load_reward_model(cli.model, tokenizer),
        train_dataset=Dataset.from_dict({"input_ids": ids}),
    )
    start = time.perf_counter()
    trainer.train()
    return time.perf_counter() - start


def worker(cli) -> None:
    seconds = run_ours(cli) if cli.worker == "ours" else run_trl112(cli)
    peak_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    episodes = cli.batch_size * cli.updates
    print("RESULT " + json.dumps({
        "trainer": cli.worker, "episodes": episodes, "train_seconds": seconds,
        "episodes_per_second": episodes / seconds, "peak_rss_mib": peak_rss_mib,
    }), flush=True)


def ensure_baseline(target: str) -> None:
    if (Path(target) / "trl" / "experimental" / "ppo").is_dir():
        return
    print(f"Installing {TRL_BASELINE} into {target} (no dependencies; the main environment is untouched)", flush=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", target, TRL_BASELINE],
                   check=True)


def spawn(name: str, cli, extra_path: str | None) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    if extra_path:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (extra_path, env.get("PYTHONPATH")) if p)
    cmd = [sys.executable, __file__, "--worker", name, "--model", cli.model, "--batch-size", str(cli.batch_size),
           "--updates", str(cli.updates), "--response-length", str(cli.response_length),
           "--output-dir", cli.output_dir] + (["--data", cli.data] if cli.data else [])
    return run_worker(cmd, env, name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--data", default="builtin",
                        help="sentiment texts: 'builtin' (the package's passages) or a JSONL file with a 'text' field")
    parser.add_argument("--batch-size", type=int, default=8, help="episodes per PPO update (one minibatch)")
    parser.add_argument("--updates", type=int, default=3)
    parser.add_argument("--response-length", type=int, default=24)
    parser.add_argument("--output-dir", default="/tmp/ppo_throughput")
    parser.add_argument("--baseline-dir", default="/tmp/trl112", help="where TRL 1.12.0 is installed side by side")
    parser.add_argument("--worker", choices=["ours", "trl112"], help=argparse.SUPPRESS)
    cli = parser.parse_args()
    if cli.worker:
        return worker(cli)

    ensure_baseline(cli.baseline_dir)
    results = {"ours": spawn("ours", cli, None), "trl112": spawn("trl112", cli, cli.baseline_dir)}
    ours, base = results["ours"], results["trl112"]
    print(f"\nmodel={cli.model} batch={cli.batch_size} updates={cli.updates} response_length={cli.response_length} "
          f"ppo_epochs=4 fp32")
    print(f"{'':28s}{'ZieglerPPOTrainer':>20s}{'TRL 1.12 PPOTrainer':>22s}{'ratio':>10s}")
    print(f"{'episodes/s':28s}{ours['episodes_per_second']:20.3f}{base['episodes_per_second']:22.3f}"
          f"{ours['episodes_per_second'] / base['episodes_per_second']:9.2f}x")
    print(f"{'peak RSS (MiB)':28s}{ours['peak_rss_mib']:20.0f}{base['peak_rss_mib']:22.0f}"
          f"{ours['peak_rss_mib'] / base['peak_rss_mib']:9.2f}x")
    print(f"{'train wall time (s)':28s}{ours['train_seconds']:20.1f}{base['train_seconds']:22.1f}")
    print("RESULTS " + json.dumps(results))


if __name__ == "__main__":
    main()
