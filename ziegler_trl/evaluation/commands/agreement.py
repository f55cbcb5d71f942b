"""Rebuild Table 9: agreement between labelers on repeated items, against chance (1/K), with standard errors.

    ziegler-trl eval agreement --store labels.sqlite --reference alice bob --out table9.md

Each --labels JSONL row is one judgment: item_id, labeler, best, k; --store reads the labeling app's store (or its
`label export` file). --reference names the designated reference labeler(s) (the paper's researchers); each other
labeler is also compared with them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import check_input_files, reading_inputs, table_main

RENAMED: dict[str, str] = {}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--labels", type=Path, help="JSONL with item_id, labeler, best, k")
    source.add_argument("--store", type=Path, help="label store (SQLite) or its export_jsonl file")
    parser.add_argument("--reference", nargs="*", default=[], help="reference labeler name(s)")
    parser.add_argument("--out", type=Path, required=True, help="markdown file to write")


def run(args: argparse.Namespace) -> int:
    from .. import Agreement, agreement_table, markdown_table, write_markdown
    from ..label_store import load_store_judgments
    from ..tables import fmt

    check_input_files(args, "labels", "store")
    with reading_inputs():
        rows = args.labels if args.labels else load_store_judgments(args.store)
        table = agreement_table(rows, args.reference)
    body = []
    for name, value in table.items():
        if isinstance(value, Agreement):
            body.append([name, f"{fmt(value.rate, 1, 100.0)} ± {fmt(value.stderr, 1, 100.0)}", str(value.n_items),
                         str(value.n_pairs)])
        else:
            body.append([name, fmt(value, 1, 100.0), "", ""])
    text = (
        f"Agreement on repeated items of {args.labels or args.store} (% of label pairs picking the same completion, "
        "± standard error over items).\n\n" + markdown_table(["comparison", "agreement %", "items", "pairs"], body)
    )
    write_markdown(args.out, text)
    return 0


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    return table_main(sys.modules[__name__], argv, prog)
