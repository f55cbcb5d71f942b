"""Rebuild Table 9: agreement between labelers on repeated items, against chance (1/K), with standard errors.

    python eval/agreement_table.py --labels labels.jsonl --reference alice bob --out table9.md

Each --labels JSONL row is one judgment: item_id, labeler, best, k; --store reads the labeling app's store.
--reference names the designated reference labeler(s) (the paper's researchers); each other labeler is also compared with them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ziegler_trl.evaluation import write_markdown, Agreement, agreement_table, markdown_table
from ziegler_trl.evaluation.label_store import load_store_judgments
from ziegler_trl.evaluation.tables import fmt


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--labels", type=Path, help="JSONL with item_id, labeler, best, k")
    source.add_argument("--store", type=Path, help="label store (SQLite) or its export_jsonl file")
    parser.add_argument("--reference", nargs="*", default=[], help="reference labeler name(s)")
    parser.add_argument("--out", type=Path, required=True, help="markdown file to write")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        rows = args.labels if args.labels else load_store_judgments(args.store)
        table = agreement_table(rows, args.reference)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    body = []
    for name, value in table.items():
        if isinstance(value, Agreement):
            body.append(
                [
                    name,
                    f"{fmt(value.rate, 1, 100.0)} ± {fmt(value.stderr, 1, 100.0)}",
                    str(value.n_items),
                    str(value.n_pairs),
                ]
            )
        else:
            body.append([name, fmt(value, 1, 100.0), "", ""])
    text = (
        f"Agreement on repeated items of {args.labels or args.store} (% of label pairs picking the same completion, "
        "± standard error over items).\n\n" + markdown_table(["comparison", "agreement %", "items", "pairs"], body)
    )
    write_markdown(args.out, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
