"""Rebuild Figure 2 (reward learning vs direct access to the labeler's score, mock sentiment) in miniature.

Runs (or resumes) the study and writes `figure2.md`, `figure2.png` and `results.json`; its code is
`ziegler_trl/figure2/` (options: `--help`).

    python eval/figure2.py --scale smoke       # seconds: a tiny random model
    python eval/figure2.py --scale cpu         # the embedded model, N = 200 and 800, 3 seeds: about 2 h on a CPU
    python eval/figure2.py --scale gpu         # the paper's PPO batch, N = 1,250 / 2,500 / 5,000, 5 seeds
"""

import sys

from ziegler_trl import figure2


def main(argv: list[str] | None = None) -> int:
    return figure2.main(argv, prog="eval/figure2.py")


if __name__ == "__main__":
    sys.exit(main())
