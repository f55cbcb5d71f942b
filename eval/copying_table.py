"""Rebuild the copying analysis (Figure 5, Table 7).

The same as `ziegler-trl eval copying` (options: `--help`), whose code is
`ziegler_trl/evaluation/commands/copying.py`.

    python eval/copying_table.py --task tldr --dataset_name builtin --rows reference lead-3 --out \
        copying_tldr.md --plot novelty_tldr.png
"""

import sys

from ziegler_trl.evaluation.commands import copying


def main(argv: list[str] | None = None) -> int:
    return copying.main(argv, prog="eval/copying_table.py")


if __name__ == "__main__":
    sys.exit(main())
