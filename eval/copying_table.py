"""Rebuild the copying analysis: n-gram and sentence novelty (Figure 5), first-3-words copying and preamble
skipping (Table 7), and repetition, for reference summaries, lead-3 and model rows.

    python eval/copying_table.py --task tldr --data ../shared/data/tldr_sample.jsonl \
        --rows reference lead-3 zero-shot --model-limit 50 --out copying_tldr.md --plot novelty_tldr.png

Rows are as in summarization_table.py, plus `reference`. Percentages are means over each row's summaries;
novelty is measured against the whole source document.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm.auto import tqdm

from ziegler_trl.evaluation import write_markdown, copy_table, markdown_table, plot_novelty, table_rows
from ziegler_trl.evaluation.tables import fmt

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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", choices=["cnndm", "tldr"], required=True)
    parser.add_argument("--data", required=True, help="JSONL file, or a Hub dataset name the task knows")
    parser.add_argument("--split", default="test", help="split of a Hub dataset")
    parser.add_argument(
        "--rows",
        nargs="+",
        default=["reference", "lead-3", "zero-shot"],
        help="reference, lead-3, zero-shot, NAME=PATH",
    )
    parser.add_argument("--zero-shot-model", default="embedded", help="model of the zero-shot row")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N documents (all rows)")
    parser.add_argument("--model-limit", type=int, default=50, help="documents sampled for model rows")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save-samples", type=Path, default=None, help="write every row's summaries to this JSONL")
    parser.add_argument("--out", type=Path, required=True, help="markdown file to write")
    parser.add_argument("--plot", type=Path, default=None, help="PNG of the novelty bars (Figure 5)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        texts, references, rows = table_rows(args)
    except (ValueError, KeyError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    tables = {}
    for row in tqdm(rows, desc="copying"):
        tables[row.name] = copy_table([texts[i] for i in row.indices], row.summaries, args.task)
    body = [[name, str(t["n"])] + [fmt(t[key], 1, 100.0) for _, key in COLUMNS] for name, t in tables.items()]
    preamble = next(iter(tables.values()))["preamble_rate"]
    header = (
        f"Copying analysis, task {args.task}, data {args.data} ({len(texts)} documents, "
        f"{100 * preamble:.1f}% of the first row's sources open with a preamble), seed {args.seed}.\n\n"
    )
    text = header + markdown_table(["row", "n"] + [label for label, _ in COLUMNS], body)
    write_markdown(args.out, text)
    if args.plot:
        plot_novelty(tables, args.plot, title=f"Novelty vs the source ({args.task})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
