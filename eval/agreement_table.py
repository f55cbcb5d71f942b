"""Rebuild Table 9 (agreement between labelers).

The same as `ziegler-trl eval agreement` (options: `--help`), whose code is
`ziegler_trl/evaluation/commands/agreement.py`.

    python eval/agreement_table.py --store labels.sqlite --out table9.md
"""

import sys

from ziegler_trl.evaluation.commands import agreement


def main(argv: list[str] | None = None) -> int:
    return agreement.main(argv, prog="eval/agreement_table.py")


if __name__ == "__main__":
    sys.exit(main())
