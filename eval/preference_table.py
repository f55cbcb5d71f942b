"""Rebuild Tables 1 and 5: how often one policy's samples beat another's (row = model pair, value = % won).

From labeled records (e.g. the --save-records file of an earlier run), one JSONL line per judgment prompt,
completions, best, labeler, model_of_each_completion:

    python eval/preference_table.py --records labels.jsonl --pairs ppo:zero-shot --out table1.md

or straight from the labeling app's store (--store labels.sqlite; items queued with `add_preference_items`).
Or by sampling policies and asking a labeler class (any `module:Class` with `.label(prompts, completions)`):

    python eval/preference_table.py --task sentiment --data ../shared/data/books_sample.jsonl \
        --policies zero-shot=embedded ppo=runs/ppo/policy --labeler ziegler_trl.labeling:SentimentLabeler \
        --labeler-kwargs '{"temperature": 1.0}' --protocol 4way --out table1.md

Without --pairs, every policy is compared with the first one (records: every pair found in the records).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ziegler_trl.evaluation import write_markdown, markdown_table, preference_win_rate, read_records, win_rate_from_records
from ziegler_trl.evaluation.label_store import load_store_judgments
from ziegler_trl.evaluation.preference import PROTOCOLS, RECORD_FIELDS
from ziegler_trl.evaluation.tables import fmt
from ziegler_trl.jsonl import jsonl_line
from ziegler_trl.models import inference_device, load_policy, load_tokenizer
from ziegler_trl.sampling import sample_completions
from ziegler_trl.tasks import TASKS, build_queries, load_task_texts


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=Path, default=None, help="JSONL of labeled judgments")
    parser.add_argument("--store", type=Path, default=None, help="label store (SQLite) or its export_jsonl file")
    parser.add_argument("--pairs", nargs="+", default=None, help="A:B pairs; the value is %% of items A won")
    parser.add_argument("--task", choices=sorted(TASKS), default=None)
    parser.add_argument("--data", default=None, help="JSONL file or Hub dataset name with the queries")
    parser.add_argument("--split", default="test", help="split of a Hub dataset")
    parser.add_argument("--limit", type=int, default=50, help="queries to evaluate")
    parser.add_argument("--policies", nargs="+", default=None, help="NAME=MODEL_FOLDER (or NAME=embedded)")
    parser.add_argument("--labeler", default=None, help="module:Class of the labeler")
    parser.add_argument("--labeler-kwargs", default="{}", help="JSON object of keyword arguments for the labeler")
    parser.add_argument("--protocol", choices=sorted(PROTOCOLS), default="2way")
    parser.add_argument("--n-labelers", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save-records", type=Path, default=None, help="write the judgments to this JSONL")
    parser.add_argument("--out", type=Path, required=True, help="markdown file to write")
    return parser.parse_args(argv)


def parse_pairs(pairs: list[str]) -> list[tuple[str, str]]:
    parsed = []
    for pair in pairs:
        a, sep, b = pair.partition(":")
        if not sep or not a or not b:
            raise ValueError(f"--pairs entry {pair!r} is not A:B")
        parsed.append((a, b))
    return parsed


def load_labeler(spec: str, kwargs: str):
    module_name, sep, class_name = spec.partition(":")
    if not sep:
        raise ValueError(f"--labeler {spec!r} is not module:Class")
    labeler_class = getattr(importlib.import_module(module_name), class_name, None)
    if labeler_class is None:
        raise ValueError(f"--labeler: module {module_name!r} has no {class_name!r}")
    return labeler_class(**json.loads(kwargs))


def results_from_records(args: argparse.Namespace) -> list:
    rows = read_records(args.records, RECORD_FIELDS) if args.records else load_store_judgments(args.store)
    if args.pairs:
        pairs = parse_pairs(args.pairs)
    else:
        found = {tuple(sorted(set(r["model_of_each_completion"]))) for r in rows}
        pairs = sorted(p for p in found if len(p) == 2)
    return [win_rate_from_records(rows, a, b) for a, b in pairs]


def results_from_policies(args: argparse.Namespace) -> list:
    for name in ("task", "data", "labeler"):
        if getattr(args, name) is None:
            raise ValueError(f"--policies needs --{name}")
    specs = dict(spec.split("=", 1) for spec in args.policies if "=" in spec)
    if len(specs) != len(args.policies) or len(specs) < 2:
        raise ValueError("--policies needs two or more distinct NAME=MODEL_FOLDER entries")
    pairs = parse_pairs(args.pairs) if args.pairs else [(name, next(iter(specs))) for name in list(specs)[1:]]
    labeler = load_labeler(args.labeler, args.labeler_kwargs)
    tokenizer = load_tokenizer(next(iter(specs.values())))
    texts = list(load_task_texts(args.task, args.data, split=args.split, limit=args.limit)["text"])
    queries = build_queries(texts, args.task, tokenizer)
    if not queries:
        raise ValueError(f"{args.data}: no text makes a valid {args.task} query")
    prompts = [tokenizer.decode(q.reward_ids) for q in queries]
    per_query = PROTOCOLS[args.protocol]
    samples = {}
    for name, path in specs.items():
        model = load_policy(path).to(inference_device())
        model.eval()
        samples[name] = sample_completions(model, tokenizer, queries, args.task, per_query, args.batch_size).texts(
            tokenizer
        )
    return [
        preference_win_rate(
            samples[a], samples[b], prompts, labeler, args.protocol, args.n_labelers, names=(a, b), seed=args.seed + i
        )
        for i, (a, b) in enumerate(tqdm(pairs, desc="labeling"))
    ]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if sum(x is not None for x in (args.records, args.store, args.policies)) != 1:
        print("error: give exactly one of --records, --store or --policies", file=sys.stderr)
        return 2
    torch.manual_seed(args.seed)
    try:
        results = results_from_policies(args) if args.policies else results_from_records(args)
    except (ValueError, KeyError, FileNotFoundError, ImportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not results:
        print(f"error: {args.records or args.store}: no item compares exactly two models", file=sys.stderr)
        return 2
    if args.save_records:
        with args.save_records.open("w", encoding="utf-8") as handle:
            for result in results:
                for record in result.records:
                    handle.write(jsonl_line(record))
    body = [
        [
            f"{r.model_a} vs {r.model_b}",
            r.protocol,
            str(r.n),
            fmt(r.win_rate, 1, 100.0),
            f"{fmt(r.ci_low, 1, 100.0)}–{fmt(r.ci_high, 1, 100.0)}",
        ]
        for r in results
    ]
    text = (
        "% of items where the first model won the majority of labelers (ties count half); Wilson 95% interval.\n\n"
        + markdown_table(["pair", "protocol", "items", "% won", "95% CI"], body)
    )
    write_markdown(args.out, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
