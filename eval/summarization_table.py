"""Rebuild Table 4 (ROUGE of lead-3, zero-shot and trained policies).

The same as `ziegler-trl eval summarization` (options: `--help`), whose code is
`ziegler_trl/evaluation/commands/summarization.py`.

    python eval/summarization_table.py --task cnndm --dataset_name builtin --rows lead-3 zero-shot \
        --model_limit 8 --out table4_cnndm.md
"""

import sys

from ziegler_trl.evaluation.commands import summarization


def main(argv: list[str] | None = None) -> int:
    return summarization.main(argv, prog="eval/summarization_table.py")


if __name__ == "__main__":
    sys.exit(main())
