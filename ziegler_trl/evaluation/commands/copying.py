"""Rebuild the copying analysis: n-gram and sentence novelty (Figure 5), first-3-words copying and preamble
skipping (Table 7), and repetition, for reference summaries, lead-3 and model rows.

    ziegler-trl eval copying --task tldr --dataset_name builtin \
        --rows reference lead-3 zero-shot --model_limit 50 --out copying_tldr.md --plot novelty_tldr.png

Rows are as in the summarization table, plus `reference`. Percentages are means over each row's summaries;
novelty is measured against the whole source document.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import check_input_files, reading_inputs, table_main
from .summarization import RENAMED, add_source_arguments

__all__ = ["RENAMED", "add_arguments", "main", "run"]

COLUMNS = [
    ("novel 1-gram %", "novel_1gram"),
    ("novel 2-gram %", "novel_2gram"),
    ("novel 3-gram %", "novel_3gram"),
    ("novel 4-gram %", "novel_4gram"),
    ("novel sentences %", "novel_sentences"),
    ("all sentences copied %", "copied_whole"),
    ("first 3 words copied %", "first3_copied"),
    ("… with preamble %", "first3_copied_preamble"),
    ("… without preamble %", "first3_copied_no_preamble"),
    ("repeated 3-grams %", "repeated_3gram"),
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_source_arguments(parser, rows=["reference", "lead-3", "zero-shot"])
    parser.add_argument("--plot", type=Path, default=None, help="PNG of the novelty bars (Figure 5)")


def run(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from .. import copy_table, markdown_table, plot_novelty, table_rows, write_markdown
    from ..tables import fmt

    check_input_files(args, "dataset_name")
    with reading_inputs():
        texts, references, rows = table_rows(args)

    tables = {}
    for row in tqdm(rows, desc="copying"):
        tables[row.name] = copy_table([texts[i] for i in row.indices], row.summaries, args.task)
    body = [[name, str(t["n"])] + [fmt(t[key], 1, 100.0) for _, key in COLUMNS] for name, t in tables.items()]
    preamble = next(iter(tables.values()))["preamble_rate"]
    header = (
        f"Copying analysis, task {args.task}, data {args.dataset_name} ({len(texts)} documents, "
        f"{100 * preamble:.1f}% of the first row's sources open with a preamble), seed {args.seed}.\n\n"
    )
    write_markdown(args.out, header + markdown_table(["row", "n"] + [label for label, _ in COLUMNS], body))
    if args.plot:
        plot_novelty(tables, args.plot, title=f"Novelty vs the source ({args.task})")
    return 0


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    return table_main(sys.modules[__name__], argv, prog)
