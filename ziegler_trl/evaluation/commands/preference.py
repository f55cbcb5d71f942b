"""Rebuild Tables 1 and 5: how often one policy's samples beat another's (row = model pair, value = % won).

From labeled records (e.g. the --save_records file of an earlier run), one JSONL line per judgment with prompt,
completions, best, labeler, model_of_each_completion:

    ziegler-trl eval preference --records labels.jsonl --pairs ppo:zero-shot --out table1.md

or straight from the labeling app's store (--store labels.sqlite; items queued with `add_preference_items`).
Or by sampling policies and asking a labeler class (any `module:Class` with `.label(prompts, completions)`):

    ziegler-trl eval preference --task sentiment --dataset_name builtin \
        --policies zero-shot=embedded ppo=runs/ppo/policy --labeler ziegler_trl.labeling:SentimentLabeler \
        --labeler_kwargs '{"temperature": 1.0}' --protocol 4way --out table1.md

Without --pairs, every policy is compared with the first one (records: every pair found in the records).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ...jsonl import jsonl_line
from . import add_option, check_input_files, reading_inputs, table_main

RENAMED = {"data": "dataset_name", "split": "dataset_test_split"}
# The evaluation protocols of `preference_win_rate` (kept here so that --help needs no import of torch).
PROTOCOL_NAMES = ["2way", "4way"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--records", type=Path, default=None, help="JSONL of labeled judgments")
    parser.add_argument("--store", type=Path, default=None, help="label store (SQLite) or its export_jsonl file")
    parser.add_argument("--pairs", nargs="+", default=None, help="A:B pairs; the value is %% of items A won")
    parser.add_argument("--task", choices=["cnndm", "descriptiveness", "sentiment", "tldr"], default=None)
    add_option(parser, "dataset_name", default=None,
               help="queries: 'builtin' (the package's sample), a JSONL file or a Hub dataset the task knows")
    add_option(parser, "dataset_test_split", default="test", help="split of a Hub dataset")
    parser.add_argument("--limit", type=int, default=50, help="queries to evaluate")
    parser.add_argument("--policies", nargs="+", default=None, help="NAME=MODEL_FOLDER (or NAME=embedded)")
    parser.add_argument("--labeler", default=None, help="module:Class of the labeler")
    add_option(parser, "labeler_kwargs", default="{}", help="JSON object of keyword arguments for the labeler")
    parser.add_argument("--protocol", choices=PROTOCOL_NAMES, default="2way")
    add_option(parser, "n_labelers", type=int, default=3)
    add_option(parser, "batch_size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    add_option(parser, "save_records", type=Path, default=None, help="write the judgments to this JSONL")
    parser.add_argument("--out", type=Path, required=True, help="markdown file to write")


def parse_pairs(pairs: list[str]) -> list[tuple[str, str]]:
    from ...errors import UserInputError

    parsed = []
    for pair in pairs:
        a, sep, b = pair.partition(":")
        if not sep or not a or not b:
            raise UserInputError(f"--pairs entry {pair!r} is not A:B")
        parsed.append((a, b))
    return parsed


def load_labeler(spec: str, kwargs: str):
    import importlib
    import json

    from ...errors import UserInputError

    module_name, sep, class_name = spec.partition(":")
    if not sep:
        raise UserInputError(f"--labeler {spec!r} is not module:Class")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise UserInputError(f"--labeler {spec!r}: cannot import {module_name!r} ({err})") from err
    labeler_class = getattr(module, class_name, None)
    if labeler_class is None:
        raise UserInputError(f"--labeler: module {module_name!r} has no {class_name!r}")
    try:
        options = json.loads(kwargs)
    except json.JSONDecodeError as err:
        raise UserInputError(f"--labeler_kwargs {kwargs!r} is not JSON ({err.msg})") from err
    if not isinstance(options, dict):
        raise UserInputError(f"--labeler_kwargs {kwargs!r} must be a JSON object")
    return labeler_class(**options)


def results_from_records(args: argparse.Namespace) -> list:
    from .. import read_records, win_rate_from_records
    from ..label_store import load_store_judgments
    from ..preference import RECORD_FIELDS

    rows = read_records(args.records, RECORD_FIELDS) if args.records else load_store_judgments(args.store)
    if args.pairs:
        pairs = parse_pairs(args.pairs)
    else:
        found = {tuple(sorted(set(r["model_of_each_completion"]))) for r in rows}
        pairs = sorted(p for p in found if len(p) == 2)
    return [win_rate_from_records(rows, a, b) for a, b in pairs]


def results_from_policies(args: argparse.Namespace) -> list:
    from tqdm.auto import tqdm

    from ...errors import UserInputError
    from ...models import inference_device, load_policy, load_tokenizer
    from ...sampling import sample_completions
    from ...tasks import build_queries, load_task_texts
    from .. import preference_win_rate
    from ..preference import PROTOCOLS

    for name in ("task", "dataset_name", "labeler"):
        if getattr(args, name) is None:
            raise UserInputError(f"--policies needs --{name}")
    specs = dict(spec.split("=", 1) for spec in args.policies if "=" in spec)
    if len(specs) != len(args.policies) or len(specs) < 2:
        raise UserInputError("--policies needs two or more distinct NAME=MODEL_FOLDER entries")
    pairs = parse_pairs(args.pairs) if args.pairs else [(name, next(iter(specs))) for name in list(specs)[1:]]
    labeler = load_labeler(args.labeler, args.labeler_kwargs)
    tokenizer = load_tokenizer(next(iter(specs.values())))
    with reading_inputs():
        texts = list(load_task_texts(args.task, args.dataset_name, split=args.dataset_test_split,
                                     limit=args.limit)["text"])
    queries = build_queries(texts, args.task, tokenizer)
    if not queries:
        raise UserInputError(f"{args.dataset_name}: no text makes a valid {args.task} query")
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


def run(args: argparse.Namespace) -> int:
    import torch

    from ...errors import UserInputError
    from .. import markdown_table, write_markdown
    from ..tables import fmt

    if sum(x is not None for x in (args.records, args.store, args.policies)) != 1:
        raise UserInputError("give exactly one of --records, --store or --policies")
    check_input_files(args, "records", "store", "dataset_name")
    torch.manual_seed(args.seed)
    if args.policies:
        results = results_from_policies(args)
    else:
        with reading_inputs():
            results = results_from_records(args)
    if not results:
        raise UserInputError(f"{args.records or args.store}: no item compares exactly two models")
    if args.save_records:
        with args.save_records.open("w", encoding="utf-8") as handle:
            for result in results:
                for record in result.records:
                    handle.write(jsonl_line(record))
    body = [
        [f"{r.model_a} vs {r.model_b}", r.protocol, str(r.n), fmt(r.win_rate, 1, 100.0),
         f"{fmt(r.ci_low, 1, 100.0)}–{fmt(r.ci_high, 1, 100.0)}"]
        for r in results
    ]
    text = (
        "% of items where the first model won the majority of labelers (ties count half); Wilson 95% interval.\n\n"
        + markdown_table(["pair", "protocol", "items", "% won", "95% CI"], body)
    )
    write_markdown(args.out, text)
    return 0


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    return table_main(sys.modules[__name__], argv, prog)
