"""Seconds per PPO update with the non-finite guard on and off (ZieglerPPOTrainer on the embedded model).

The guard adds two checks per optimizer step (`ziegler_trl/non_finite.py`): the gradients' total norm, which the
Trainer computes anyway to clip and log, checked before the step, and the max-abs of every trainable weight after
it. "off" runs the Trainer's own gradient norm and no weight check. Each run is a fresh process; runs alternate
on/off (the machine may be shared, so medians over runs are reported), and the guarded runs also time the guard's
own code. One update = one rollout + num_ppo_epochs (4) optimizer steps; the first update (warm-up) is left out.

    python benchmarks/non_finite_guard.py --model embedded --repeats 3
    python benchmarks/non_finite_guard.py --trainable-top-layers 2     # the quickstart's policy: its top 2 blocks
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

# benchmarks/ is on sys.path when a script here runs
from worker_process import run_worker

STEPS_PER_UPDATE = 4


def worker(cli) -> None:
    import torch
    from datasets import Dataset
    from transformers import Trainer, TrainerCallback

    from ziegler_trl.blocks import freeze_bottom_layers
    from ziegler_trl.models import load_policy, load_tokenizer
    from ziegler_trl.ppo import ZieglerPPOConfig, ZieglerPPOTrainer
    from ziegler_trl.reward.model import load_reward_model

    guard_seconds = {"gradients": 0.0, "weights": 0.0}

    class Guarded(ZieglerPPOTrainer):
        def _checked_grad_norm(self, model, max_norm):
            start = time.perf_counter()
            try:
                return super()._checked_grad_norm(model, max_norm)
            finally:
                guard_seconds["gradients"] += time.perf_counter() - start

        def _check_weights(self):
            start = time.perf_counter()
            super()._check_weights()
            guard_seconds["weights"] += time.perf_counter() - start

    class Unguarded(ZieglerPPOTrainer):
        def _clip_grad_norm(self, model):
            return Trainer._clip_grad_norm(self, model)

        def _get_grad_norm(self, model, grad_norm=None):
            return Trainer._get_grad_norm(self, model, grad_norm)

        def _check_weights(self):
            pass

    class UpdateClock(TrainerCallback):
        def __init__(self):
            self.ends = [time.perf_counter()]

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step % STEPS_PER_UPDATE == 0:
                self.ends.append(time.perf_counter())

    torch.set_num_threads(cli.threads)
    tokenizer = load_tokenizer(cli.model)
    policy = load_policy(cli.model, tokenizer)
    if cli.trainable_top_layers is not None:
        freeze_bottom_layers(policy, cli.trainable_top_layers)
    texts = [f"The day {i} was long and the road was dusty. We walked on and on" for i in range(cli.batch_size)]
    args = ZieglerPPOConfig(
        output_dir=cli.output_dir, per_device_train_batch_size=cli.batch_size, num_ppo_epochs=STEPS_PER_UPDATE,
        response_length=cli.response_length, temperature=0.7, total_episodes=cli.batch_size * cli.updates,
        rollout_forward_batch_size=cli.batch_size, save_strategy="no", report_to=[], log_completions=False,
        bf16=False, seed=0, disable_tqdm=True,
    )
    clock = UpdateClock()
    trainer = (Guarded if cli.worker == "on" else Unguarded)(
        policy, args, train_dataset=Dataset.from_dict({"prompt": texts}), processing_class=tokenizer,
        reward_model=load_reward_model(cli.model, tokenizer), callbacks=[clock],
    )
    clock.ends = [time.perf_counter()]
    trainer.train()
    seconds = [b - a for a, b in zip(clock.ends, clock.ends[1:])]
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    print("RESULT " + json.dumps({
        "guard": cli.worker, "update_seconds": seconds, "trainable_parameters": trainable,
        "guard_seconds_per_update": {k: v / cli.updates for k, v in guard_seconds.items()},
    }), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--batch-size", type=int, default=8, help="episodes per PPO update (one minibatch)")
    parser.add_argument("--updates", type=int, default=3, help="per run; the first is left out as warm-up")
    parser.add_argument("--response-length", type=int, default=24)
    parser.add_argument("--trainable-top-layers", type=int, default=None, help="None: every weight trains")
    parser.add_argument("--repeats", type=int, default=3, help="runs per setting, alternating on/off")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output-dir", default="/tmp/non_finite_guard")
    parser.add_argument("--worker", choices=["on", "off"], help=argparse.SUPPRESS)
    cli = parser.parse_args()
    if cli.worker:
        return worker(cli)

    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    runs: dict[str, list[dict]] = {"on": [], "off": []}
    for repeat in range(cli.repeats):
        for guard in ("on", "off") if repeat % 2 == 0 else ("off", "on"):
            cmd = [sys.executable, __file__, "--worker", guard] + [
                arg for name in ("model", "batch_size", "updates", "response_length", "threads", "output_dir",
                                 "trainable_top_layers") if getattr(cli, name) is not None
                for arg in (f"--{name.replace('_', '-')}", str(getattr(cli, name)))]
            result = run_worker(cmd, env, f"guard {guard}")
            runs[guard].append(result)
            print(f"run {repeat + 1}, guard {guard}: " + ", ".join(f"{s:.2f}" for s in result["update_seconds"])
                  + " s per update", flush=True)

    def median_update(guard: str) -> float:
        return statistics.median(s for run in runs[guard] for s in run["update_seconds"][1:])

    on, off = median_update("on"), median_update("off")
    inside = {part: statistics.median(run["guard_seconds_per_update"][part] for run in runs["on"])
              for part in ("gradients", "weights")}
    print(f"\nmodel={cli.model} trainable parameters={runs['on'][0]['trainable_parameters']:,} batch={cli.batch_size} "
          f"response_length={cli.response_length} ppo_epochs={STEPS_PER_UPDATE} threads={cli.threads} "
          f"runs={cli.repeats} per setting, updates 2..{cli.updates} of each")
    print(f"{'median s / update, guard on':40s}{on:10.3f}")
    print(f"{'median s / update, guard off':40s}{off:10.3f}")
    print(f"{'difference (on - off)':40s}{on - off:+10.3f}  ({(on - off) / off:+.1%})")
    print(f"{'inside the guard, s / update: weights':40s}{inside['weights']:10.4f}")
    print(f"{'  gradient norm + check (the norm is':40s}{inside['gradients']:10.4f}")
    print("   the Trainer's own, computed either way)")
    print("RESULTS " + json.dumps({"on": on, "off": off, "inside": inside, "runs": runs}))


if __name__ == "__main__":
    main()
