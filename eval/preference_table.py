"""Rebuild Tables 1 and 5 (preference win rates between policies).

The same as `ziegler-trl eval preference` (options: `--help`), whose code is
`ziegler_trl/evaluation/commands/preference.py`.

    python eval/preference_table.py --task sentiment --dataset_name builtin --limit 8 \
        --policies zero-shot=embedded ppo=runs/ppo_cpu_small --labeler ziegler_trl.labeling:SentimentLabeler \
        --out table1.md
"""

import sys

from ziegler_trl.evaluation.commands import preference


def main(argv: list[str] | None = None) -> int:
    return preference.main(argv, prog="eval/preference_table.py")


if __name__ == "__main__":
    sys.exit(main())
