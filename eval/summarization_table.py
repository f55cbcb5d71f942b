"""Rebuild Table 4 (ROUGE of summarization rows) for CNN/DM or TL;DR.

    python eval/summarization_table.py --task cnndm --data ../shared/data/cnndm_sample.jsonl \
        --rows lead-3 zero-shot my-policy=runs/ppo/policy --model-limit 50 --out table4_cnndm.md

Rows: `lead-3`, `zero-shot` (the pretrained model, default the embedded one, prompted with the task's
"TL;DR:" format), `NAME=MODEL_FOLDER` (a trained policy) or `NAME=SAMPLES.jsonl` (summaries saved earlier with
--save-samples). Model rows sample one 75-token response per document at the task temperature, on the first
--model-limit documents; lead-3 uses every document. R-L is summary-level ROUGE-L (rougeLsum), as ROUGE-1.5.5.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm.auto import tqdm

from ziegler_trl.evaluation import write_markdown, markdown_table, rouge, table_rows
from ziegler_trl.evaluation.tables import fmt


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", choices=["cnndm", "tldr"], required=True)
    parser.add_argument("--data", required=True, help="JSONL file, or a Hub dataset name the task knows")
    parser.add_argument("--split", default="test", help="split of a Hub dataset")
    parser.add_argument("--rows", nargs="+", default=["lead-3", "zero-shot"], help="lead-3, zero-shot, NAME=PATH")
    parser.add_argument("--zero-shot-model", default="embedded", help="model of the zero-shot row")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N documents (all rows)")
    parser.add_argument("--model-limit", type=int, default=50, help="documents sampled for model rows")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--bootstrap", type=int, default=0, help="bootstrap resamples for 95%% intervals (0: none)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save-samples", type=Path, default=None, help="write every row's summaries to this JSONL")
    parser.add_argument("--out", type=Path, required=True, help="markdown file to write")
    return parser.parse_args(argv)


def cell(scores: dict[str, float], key: str) -> str:
    if f"{key}_low" in scores:
        return f"{fmt(scores[key])} ({fmt(scores[key + '_low'])}–{fmt(scores[key + '_high'])})"
    return fmt(scores[key])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if "reference" in args.rows:
        print("error: a 'reference' row scores the references against themselves (100 by definition)", file=sys.stderr)
        return 2
    try:
        texts, references, rows = table_rows(args)
    except (ValueError, KeyError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    table = []
    for row in tqdm(rows, desc="ROUGE"):
        scores = rouge(row.summaries, [references[i] for i in row.indices], args.bootstrap, seed=args.seed)
        average = (scores["rouge1"] + scores["rouge2"] + scores["rougeLsum"]) / 3
        valid = 100.0 * sum(row.valid) / len(row.valid)
        table.append(
            [
                row.name,
                str(len(row.indices)),
                cell(scores, "rouge1"),
                cell(scores, "rouge2"),
                cell(scores, "rougeLsum"),
                fmt(average),
                fmt(valid, 0),
            ]
        )
    header = (
        f"ROUGE F1 x100 (Porter stemming), task {args.task}, data {args.data} ({len(texts)} documents), "
        f"seed {args.seed}.\n\n"
    )
    text = header + markdown_table(["row", "n", "R-1", "R-2", "R-L", "R-AVG", "valid %"], table)
    write_markdown(args.out, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
