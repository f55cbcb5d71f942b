"""Summarization in miniature (§3.2, Tables 4 and 7): ROUGE-labeled best-of-4 comparisons, a reward model, PPO with
the paper's fixed β, then Table 4's rows and the copying table for ρ and π on held-out posts.

Runs (or resumes) the study and writes `summarization.md`, `table4.md`, `copying.md`, `novelty.png` and
`results.json`; its code is `ziegler_trl/summarization_study/` (options: `--help`).

    python eval/summarization_study.py --scale smoke                                 # seconds: a tiny random model
    python eval/summarization_study.py --scale cpu --dataset_name webis/tldr-17      # the embedded model, 2 CPU cores
    python eval/summarization_study.py --scale gpu                                   # the paper's 500-token queries
"""

import sys

from ziegler_trl import summarization_study


def main(argv: list[str] | None = None) -> int:
    return summarization_study.main(argv, prog="eval/summarization_study.py")


if __name__ == "__main__":
    sys.exit(main())
