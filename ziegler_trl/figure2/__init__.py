"""Figure 2 of the paper in miniature (mock sentiment, §3.1.1): PPO with direct access to the labeler's score r_s
against PPO on reward models trained from N simulated best-of-4 labels, each over several seeds with the same episode
budget and KL target; r_s on held-out queries against episodes (mean and min-max over seeds), and a table of final
r_s, KL and the labeler's preference over ρ.

    python eval/figure2.py --scale smoke                 # a tiny random model: a plumbing check, seconds
    python eval/figure2.py --scale cpu                   # the embedded model on 1-2 CPU cores, about 2 hours
    python eval/figure2.py --scale gpu                   # the paper's PPO batch, more labels and seeds
    python eval/figure2.py --scale cpu --output_dir runs/figure2-check --label_counts 64 --seeds 0 \\
        --total_episodes 64 --eval_every 32              # one reduced setting, to time a machine

Rerunning a command resumes it: every stage of the study (queries, label pools, ρ's held-out samples) and of each run
(reward model, PPO) is skipped once finished. `--label_counts` and `--seeds` may grow on a rerun; the other settings
of a folder are fixed. Writes `figure2.md`, `figure2.png` and `results.json` to the output folder.

Everything but the grid's size is the quickstart's (`ziegler_trl.quickstart`): ρ continues story openings into queries,
VADER picks the most positive of K = 4 samples of ρ, the reward model trains the top 2 blocks of ρ, PPO the top 2 of
π with the adaptive KL controller (target 6 nats). Module layout: `config` (settings and presets), `runs` (the
stages), `report` (results, plot, report).

Cost: `--scale cpu` (N = 200 and 800, 3 seeds, 9 PPO runs of 256 episodes, r_s measured every 64) took the time in
docs/figure2.md on one CPU core, beside another job; the smoke preset takes seconds.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

from ..provenance import record_invocation
from ..quickstart.stages import make_queries, smoke_model
from ..stages import Stages, keep_folder_settings
from .config import SCALES, Figure2Config, preset
from .report import write_report
from .runs import (
    CURVE,
    DIRECT_REWARD,
    PPO_LOG,
    QUERIES,
    REWARD_MODEL,
    RHO_SAMPLES,
    collect_pool,
    fit_direct_reward,
    run_dir,
    sample_rho,
    study_runs,
    train_policy,
    train_reward_model,
)

__all__ = ["Figure2Config", "main", "preset", "run_study"]


def run_study(cfg: Figure2Config, command: list[str] | None = None) -> Path:
    """Run (or resume) every stage of the study and write its report; returns the path of `figure2.md`."""
    start = time.perf_counter()
    root = Path(cfg.output_dir)
    root.mkdir(parents=True, exist_ok=True)
    keep_folder_settings(root, cfg.fixed_settings())
    invocations = record_invocation(root, command or ["python", "eval/figure2.py", *sys.argv[1:]])
    model = smoke_model(root) if cfg.quickstart.smoke else cfg.quickstart.model_name_or_path
    shared = Stages(root)
    shared.run("queries", make_queries, cfg.quickstart, model, root, outputs=[root / QUERIES])
    shared.run("rho_samples", sample_rho, cfg, model, root, outputs=[root / RHO_SAMPLES])
    for labels in cfg.label_counts:
        shared.run(f"labels-{labels}", collect_pool, cfg.quickstart, model, root, labels)  # the store resumes itself
    shared.run("direct_reward", fit_direct_reward, cfg, root, outputs=[root / DIRECT_REWARD])
    for run in study_runs(cfg):
        folder = run_dir(root, run)
        folder.mkdir(parents=True, exist_ok=True)
        stages = Stages(folder)
        if run.reward == "rm":
            stages.run("reward", train_reward_model, cfg, model, root, run, outputs=[folder / REWARD_MODEL])
        stages.run("policy", train_policy, cfg, model, root, run, outputs=[folder / PPO_LOG, folder / CURVE])
    return write_report(cfg, root, invocations, time.perf_counter() - start)


def parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", choices=SCALES, required=True, help="The preset (see above).")
    parser.add_argument("--output_dir", "--output-dir", help="Where the study goes (default: runs/figure2-<scale>).")
    parser.add_argument("--label_counts", "--label-counts", nargs="+", type=int,
                        help="N of each reward model (the preset's: smoke 8 16, cpu 200 800, gpu 1250 2500 5000).")
    parser.add_argument("--seeds", nargs="+", type=int, help="Seeds of every setting (the preset's: smoke 0 1, cpu "
                        "0 1 2, gpu 0-4).")
    parser.add_argument("--total_episodes", "--total-episodes", type=int,
                        help="PPO episodes per run (the preset's: smoke 8, cpu 256, gpu 65536).")
    parser.add_argument("--eval_every", "--eval-every", type=int,
                        help="Episodes between r_s measurements (the preset's: smoke 8, cpu 64, gpu 4096).")
    return parser


def main(argv: list[str] | None = None, prog: str = "eval/figure2.py") -> int:
    """The command line: run the preset with its overrides, print the report; a user's mistake is one line and
    status 2."""
    from ..cli import run_reporting_errors

    argv = list(sys.argv[1:] if argv is None else argv)

    def run() -> None:
        args = parser(prog).parse_args(argv)
        overrides = {k: getattr(args, k) for k in ("label_counts", "seeds", "total_episodes", "eval_every")
                     if getattr(args, k) is not None}
        cfg = dataclasses.replace(preset(args.scale, args.output_dir), **overrides)
        print(run_study(cfg, ["python", prog, *argv]).read_text())

    return run_reporting_errors(prog, run)
