"""Reward-model training time with and without `cache_frozen_trunk`, as the quickstart trains it.

The quickstart's reward model trains only its final norm and score head (`freeze_bottom_layers(model, 0)`) for 4
epochs on its best-of-4 labels. With the cache the frozen trunk runs once per completion (in the first epoch) instead
of once per epoch. Both runs start from the same model and data order; the script prints seconds per epoch, the total,
and how far apart the trained weights end (they should agree to float rounding).

    python benchmarks/reward_trunk_cache.py --run-dir runs/quickstart --train 200
    python benchmarks/reward_trunk_cache.py --run-dir runs/quickstart --train 200 --top-layers 2 --learning-rate 2e-3

`--top-layers N` trains the top N blocks too: the cache then holds every token's state entering them.
"""

from __future__ import annotations

import argparse
import time

import torch
from transformers import TrainerCallback

from ziegler_trl import (
    BestOfKRewardConfig,
    BestOfKRewardTrainer,
    load_reward_model,
    load_tokenizer,
)
from ziegler_trl.blocks import freeze_bottom_layers
from ziegler_trl.labeling import LabelStore


class EpochTimer(TrainerCallback):
    def __init__(self):
        self.seconds: list[float] = []

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.start = time.perf_counter()

    def on_epoch_end(self, args, state, control, **kwargs):
        self.seconds.append(time.perf_counter() - self.start)


def train(model_name: str, train_rows, cache: bool, args: argparse.Namespace) -> tuple[list[float], float, dict]:
    tokenizer = load_tokenizer(model_name, padding_side="right")
    torch.manual_seed(args.seed)
    model = load_reward_model(model_name, tokenizer)
    freeze_bottom_layers(model, args.top_layers)
    config = BestOfKRewardConfig(
        output_dir="/tmp/bench_rm_trunk_cache", per_device_train_batch_size=args.batch_size,
        learning_rate=args.learning_rate, num_train_epochs=args.epochs, bf16=False, logging_steps=10,
        save_strategy="no", report_to="none", seed=args.seed, dataloader_pin_memory=False,
        cache_frozen_trunk=cache,
    )
    timer = EpochTimer()
    trainer = BestOfKRewardTrainer(model, args=config, train_dataset=train_rows, processing_class=tokenizer,
                                   callbacks=[timer])
    if cache and trainer.trunk_cache is None:
        raise SystemExit("the trunk cache is not active for this model")
    start = time.perf_counter()
    trainer.train()
    total = time.perf_counter() - start
    trained = {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}
    return timer.seconds, total, trained


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", default="runs/quickstart", help="a quickstart run (its labels.sqlite)")
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--train", type=int, default=200, help="comparisons to train on")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--learning-rate", type=float, default=1e-2)
    parser.add_argument("--epochs", type=float, default=4.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--top-layers", type=int, default=0, help="blocks trained besides norm and head")
    args = parser.parse_args()

    store = LabelStore(f"{args.run_dir}/labels.sqlite")
    rows = store.to_dataset(round=0).shuffle(seed=args.seed)
    store.close()
    rows = rows.select(range(min(args.train, len(rows))))
    k = len(rows[0]["completions"])

    results = {cache: train(args.model, rows, cache, args) for cache in (False, True)}
    print(f"{len(rows)} comparisons of K={k}, batch {args.batch_size}, {args.epochs:g} epochs, model {args.model}, "
          f"trained: {args.top_layers} top blocks + norm + head, "
          f"threads {torch.get_num_threads()}")
    print(f"{'run':<14}{'s/epoch':>30}{'total s':>10}")
    for cache, (epochs, total, _) in results.items():
        per_epoch = " ".join(f"{s:.1f}" for s in epochs)
        print(f"{'trunk cache' if cache else 'full forward':<14}{per_epoch:>30}{total:>10.1f}")
    full, cached = results[False], results[True]
    print(f"speed-up: {full[1] / cached[1]:.2f}x")
    diff = max((cached[2][name] - weight).abs().max().item() for name, weight in full[2].items())
    print(f"max |Δ| of the trained weights (cache vs full): {diff:.3g}")


if __name__ == "__main__":
    main()
