"""Summarization in miniature (§3.2, Tables 4 and 7): does PPO against a reward model of simulated labels turn a
zero-shot summariser into a copier, as the paper found with its human labelers?

    python eval/summarization_study.py --scale smoke        # a tiny random model on invented posts: seconds
    python eval/summarization_study.py --scale cpu --dataset_name webis/tldr-17     # the embedded model (Hub data)
    python eval/summarization_study.py --scale cpu --dataset_name tldr.jsonl        # ... on a JSONL file of posts
    python eval/summarization_study.py --scale gpu          # the paper's 500-token queries, more labels and PPO

Stages, each skipped once finished (a rerun resumes; a rerun with other settings is refused):
posts (read, cut to the query budget, split) → labels (best-of-4 of ρ picked by ROUGE against the author's TL;DR)
→ reward model → PPO against it (fixed β, the paper's TL;DR settings at this scale) → samples (one summary per
held-out post from ρ and π) → PPO against the labeler's own score, standardised on ρ's samples (the Figure 2 arm:
what the labeler's preference does to a policy when no reward model stands between) → its samples → the report:
`summarization.md`, `table4.md`, `copying.md`, `novelty.png`, `results.json`.

Module layout: `config` (settings and presets), `labeler` (the simulated labeler), `stages`, `report`.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

from ..errors import run_reporting_errors
from ..provenance import record_invocation
from ..quickstart.stages import smoke_model
from ..stages import Stages, keep_folder_settings
from .config import SCALES, SummarizationStudyConfig, preset
from .labeler import ReferenceRougeLabeler, rouge_avg
from .report import write_report
from .stages import (
    DIRECT_REWARD,
    HELD_OUT,
    POLICY,
    POSTS,
    PPO_LOG,
    REWARD_MODEL,
    SAMPLES,
    collect_labels,
    make_posts,
    sample_policies,
    train_policy,
    train_reward,
)

__all__ = ["ReferenceRougeLabeler", "SummarizationStudyConfig", "main", "preset", "rouge_avg", "run_study"]

OVERRIDES = ("model_name_or_path", "dataset_name", "dataset_split", "posts", "held_out_posts", "query_length",
             "num_comparisons", "total_episodes", "seed")


def run_study(cfg: SummarizationStudyConfig, command: list[str] | None = None) -> Path:
    """Run (or resume) every stage and write the report; returns the path of `summarization.md`."""
    start = time.perf_counter()
    root = Path(cfg.output_dir)
    root.mkdir(parents=True, exist_ok=True)
    keep_folder_settings(root, {k: v for k, v in dataclasses.asdict(cfg).items() if k != "output_dir"})
    invocations = record_invocation(root, command or ["python", "eval/summarization_study.py", *sys.argv[1:]])
    model = smoke_model(root) if cfg.model_name_or_path == "smoke" else cfg.model_name_or_path
    stages = Stages(root)
    stages.run("posts", make_posts, cfg, model, root, outputs=[root / POSTS, root / HELD_OUT])
    stages.run("labels", collect_labels, cfg, model, root)  # the label store resumes itself
    stages.run("reward", train_reward, cfg, model, root, outputs=[root / REWARD_MODEL])
    stages.run("policy", train_policy, cfg, model, root, "rm", outputs=[root / POLICY["rm"], root / PPO_LOG["rm"]])
    stages.run("samples", sample_policies, cfg, model, root, "rm", outputs=[root / SAMPLES["rm"]])
    stages.run("policy_direct", train_policy, cfg, model, root, "direct",
               outputs=[root / POLICY["direct"], root / PPO_LOG["direct"], root / DIRECT_REWARD])
    stages.run("samples_direct", sample_policies, cfg, model, root, "direct", outputs=[root / SAMPLES["direct"]])
    return write_report(cfg, root, invocations, time.perf_counter() - start)


def parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", choices=SCALES, required=True, help="The preset (see above).")
    parser.add_argument("--output_dir", "--output-dir", help="Where the study goes (default: runs/summarization-"
                        "<scale>).")
    fields = {f.name: f for f in dataclasses.fields(SummarizationStudyConfig)}
    for name in OVERRIDES:  # the overridable fields are ints and strings (annotations are strings here)
        parser.add_argument(f"--{name}", f"--{name.replace('_', '-')}", type=int if fields[name].type == "int" else str,
                            help=f"{fields[name].metadata['help']} (default: the preset's)")
    return parser


def main(argv: list[str] | None = None, prog: str = "eval/summarization_study.py") -> int:
    """The command line: the preset with its overrides; a user's mistake is one line and status 2."""
    argv = list(sys.argv[1:] if argv is None else argv)

    def run() -> None:
        args = parser(prog).parse_args(argv)
        overrides = {k: getattr(args, k) for k in OVERRIDES if getattr(args, k) is not None}
        cfg = dataclasses.replace(preset(args.scale, args.output_dir), **overrides)
        print(run_study(cfg, ["python", prog, *argv]).read_text())

    return run_reporting_errors(prog, run)
