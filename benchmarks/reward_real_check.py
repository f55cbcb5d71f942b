"""Real check of the reward model on the embedded model (issue: foundation, "what it must show").

Queries: prose passages (the package's own, `builtin`, or `--books` a JSONL file of book passages), formatted by the
sentiment task (64 tokens, whole sentences). For each query, ρ = the embedded SmolLM2 samples 4 continuations (24 tokens,
T = 0.7, truncated after the first "." at index >= 16). The rule: VADER sentiment (SentimentLabeler, T = 0) picks
the most positive continuation. Queries are split 85/15 into train/held-out *by query*, each query gets
`--repeats` independent comparisons, and BestOfKRewardTrainer trains one epoch on the train comparisons.
Prints held-out accuracy (argmax of the reward model == the rule's choice) against the 25% chance level.

    python benchmarks/reward_real_check.py --out runs/reward_real_check
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import torch
from datasets import Dataset

from ziegler_trl import (
    BestOfKRewardConfig,
    BestOfKRewardTrainer,
    freeze_bottom_layers,
    load_policy,
    load_reward_model,
    load_task_texts,
    load_tokenizer,
)
from ziegler_trl.collection import label_comparisons, sample_comparisons
from ziegler_trl.jsonl import read_jsonl, write_jsonl
from ziegler_trl.labeling import SentimentLabeler
from ziegler_trl.tasks import build_queries


def make_labels(args) -> tuple[list[dict], list[dict]]:
    tokenizer = load_tokenizer(args.model)
    policy = load_policy(args.model, tokenizer)
    queries = build_queries(load_task_texts("sentiment", str(args.books))["text"], "sentiment", tokenizer)
    random.Random(args.seed).shuffle(queries)
    n_eval = max(1, int(len(queries) * 0.15))
    splits = {"eval": queries[:n_eval], "train": queries[n_eval:]}
    labeler = SentimentLabeler(temperature=0.0)
    out = {}
    torch.manual_seed(args.seed)
    for name, split_queries in splits.items():
        rows = []
        for _ in range(args.repeats):
            rows += sample_comparisons(policy, tokenizer, split_queries, "sentiment", k=4, batch_size=8)
        out[name] = label_comparisons(rows, labeler)
        write_jsonl(out[name], Path(args.out) / f"labels_{name}.jsonl")
    return out["train"], out["eval"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--books", default="builtin",
                        help="sentiment texts: 'builtin' (the package's passages) or a JSONL file with a 'text' field")
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--repeats", type=int, default=3, help="comparisons sampled per query")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--trainable-top-layers", type=int, default=None,
                        help="train only the top N blocks + head (CPU knob; default: all weights, as the paper)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/reward_real_check")
    args = parser.parse_args()

    out = Path(args.out)
    start = time.perf_counter()
    if (out / "labels_train.jsonl").is_file() and (out / "labels_eval.jsonl").is_file():
        read = lambda p: [row for _, row in read_jsonl(p)]  # noqa: E731
        train, held_out = read(out / "labels_train.jsonl"), read(out / "labels_eval.jsonl")
    else:
        train, held_out = make_labels(args)
    sampled = time.perf_counter()
    keep = ("prompt", "completions", "best")
    to_ds = lambda rows: Dataset.from_list([{k: r[k] for k in keep} for r in rows])  # noqa: E731
    config = BestOfKRewardConfig(
        output_dir=str(out / "reward_model"), per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=16, learning_rate=args.lr, num_train_epochs=args.epochs, logging_steps=5,
        report_to="none",
        save_strategy="no", seed=args.seed, dataloader_pin_memory=False,
    )
    tokenizer = load_tokenizer(args.model, padding_side="right")
    model = load_reward_model(args.model, tokenizer)
    if args.trainable_top_layers is not None:
        freeze_bottom_layers(model, args.trainable_top_layers)
    trainer = BestOfKRewardTrainer(model, args=config, train_dataset=to_ds(train), eval_dataset=to_ds(held_out),
                                   processing_class=tokenizer)
    before = trainer.evaluate()
    trainer.train()
    after = trainer.evaluate()
    result = {
        "settings": {"lr": args.lr, "epochs": args.epochs, "trainable_top_layers": args.trainable_top_layers,
                     "batch_size": args.batch_size},
        "train_comparisons": len(train),
        "held_out_comparisons": len(held_out),
        "held_out_accuracy_before": before["eval_accuracy"],
        "held_out_accuracy_after": after["eval_accuracy"],
        "held_out_loss_before": before["eval_loss"],
        "held_out_loss_after": after["eval_loss"],
        "chance": 0.25,
        "sampling_seconds": round(sampled - start, 1),
        "training_seconds": round(time.perf_counter() - sampled, 1),
    }
    name = f"result_lr{args.lr}_ep{args.epochs}_top{args.trainable_top_layers}.json"
    (out / name).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
