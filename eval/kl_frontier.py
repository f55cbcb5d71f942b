"""Rebuild Figure 3 (reward against KL for the optimal policy).

The same as `ziegler-trl eval kl-frontier` (options: `--help`), whose code is
`ziegler_trl/evaluation/commands/kl_frontier.py`.

    python eval/kl_frontier.py --task sentiment --dataset_name builtin --reward_model runs/reward_sentiment \
        --limit 16 --out frontier.md --plot frontier.png
"""

import sys

from ziegler_trl.evaluation.commands import kl_frontier


def main(argv: list[str] | None = None) -> int:
    return kl_frontier.main(argv, prog="eval/kl_frontier.py")


if __name__ == "__main__":
    sys.exit(main())
