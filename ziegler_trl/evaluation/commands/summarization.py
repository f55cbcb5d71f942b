"""Rebuild Table 4 (ROUGE of summarization rows) for CNN/DM or TL;DR.

    ziegler-trl eval summarization --task cnndm --dataset_name builtin \
        --rows lead-3 zero-shot my-policy=runs/ppo/policy --model_limit 50 --out table4_cnndm.md

Rows: `lead-3`, `zero-shot` (the pretrained model --model_name_or_path, default the embedded one, prompted with the
task's "TL;DR:" format), `NAME=MODEL_FOLDER` (a trained policy) or `NAME=SAMPLES.jsonl` (summaries saved earlier
with --save_samples). Model rows sample one 75-token response per document at the task temperature, on the first
--model_limit documents; lead-3 uses every document. R-L is summary-level ROUGE-L (rougeLsum), as ROUGE-1.5.5.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import add_option, check_input_files, reading_inputs, table_main

RENAMED = {"data": "dataset_name", "split": "dataset_test_split", "zero_shot_model": "model_name_or_path"}


def add_source_arguments(parser: argparse.ArgumentParser, rows: list[str]) -> None:
    """Options shared with the copying table: the documents and the rows to summarise them with."""
    parser.add_argument("--task", choices=["cnndm", "tldr"], required=True)
    add_option(parser, "dataset_name", required=True,
               help="'builtin' (the package's sample), a JSONL file, or a Hub dataset the task knows")
    add_option(parser, "dataset_test_split", default="test", help="split of a Hub dataset")
    parser.add_argument("--rows", nargs="+", default=rows, help="lead-3, reference, zero-shot, NAME=PATH")
    add_option(parser, "model_name_or_path", default="embedded", help="pretrained model of the zero-shot row")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N documents (all rows)")
    add_option(parser, "model_limit", type=int, default=50, help="documents sampled for model rows")
    add_option(parser, "batch_size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    add_option(parser, "save_samples", type=Path, default=None, help="write every row's summaries to this JSONL")
    parser.add_argument("--out", type=Path, required=True, help="markdown file to write")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_source_arguments(parser, rows=["lead-3", "zero-shot"])
    parser.add_argument("--bootstrap", type=int, default=0, help="bootstrap resamples for 95%% intervals (0: none)")


def _cell(scores: dict[str, float], key: str) -> str:
    from ..tables import fmt

    if f"{key}_low" in scores:
        return f"{fmt(scores[key])} ({fmt(scores[key + '_low'])}–{fmt(scores[key + '_high'])})"
    return fmt(scores[key])


def run(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from ...errors import UserInputError
    from .. import markdown_table, rouge, table_rows, write_markdown
    from ..tables import fmt

    if "reference" in args.rows:
        raise UserInputError("a 'reference' row scores the references against themselves (100 by definition)")
    check_input_files(args, "dataset_name")
    with reading_inputs():
        texts, references, rows = table_rows(args)

    table = []
    for row in tqdm(rows, desc="ROUGE"):
        scores = rouge(row.summaries, [references[i] for i in row.indices], args.bootstrap, seed=args.seed)
        average = (scores["rouge1"] + scores["rouge2"] + scores["rougeLsum"]) / 3
        valid = 100.0 * sum(row.valid) / len(row.valid)
        table.append([row.name, str(len(row.indices)), _cell(scores, "rouge1"), _cell(scores, "rouge2"),
                      _cell(scores, "rougeLsum"), fmt(average), fmt(valid, 0)])
    header = (
        f"ROUGE F1 x100 (Porter stemming), task {args.task}, data {args.dataset_name} ({len(texts)} documents), "
        f"seed {args.seed}.\n\n"
    )
    write_markdown(args.out, header + markdown_table(["row", "n", "R-1", "R-2", "R-L", "R-AVG", "valid %"], table))
    return 0


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    return table_main(sys.modules[__name__], argv, prog)
