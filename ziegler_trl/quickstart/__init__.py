"""The quickstart: the paper's mock-sentiment experiment (§3.1.1) in miniature, offline, on the embedded model — a
preset of the loop's stages (`ziegler_trl.stages`, shared with `ziegler-trl collect`).

    ziegler-trl quickstart                 # ρ = SmolLM2-135M-Instruct
    ziegler-trl quickstart --smoke         # the smoke preset: a tiny random model and tiny sizes, a plumbing check

Stages (each saved under the output folder; rerunning the same command resumes after the last finished stage):
1. queries   ρ continues project-written story openings; the continuations, cut by the sentiment task's rules
             (start after the first ".", end at the last "." within the query budget), are the queries.
2. labels    K = 4 continuations per query from ρ; the simulated labeler (VADER sentiment, the paper's mock
             human) picks the most positive; comparisons and answers live in a SQLite LabelStore.
3. reward    BestOfKRewardTrainer from ρ, normalised to mean 0 / std 1 on raw samples of ρ before and after.
4. policy    ZieglerPPOTrainer with the adaptive KL controller against the trained reward model.
5. report    held-out queries: labeler score of π vs ρ (with 95% CIs), 2-way preference of π over ρ, final KL vs
             target; results.json, report.md and PNG plots.

Miniature vs the paper: shorter queries, fewer labels and episodes, the top blocks of each model trained, a KL
horizon cut to the run's length, and a few PPO settings chosen for a short run (`QuickstartConfig`'s help gives
each field's paper value; docs/quickstart.md the measurements behind each choice). One rule is added because ρ is
an instruct model: a response ends at its end-of-turn token, `<|im_end|>` (`stop_at_eos`).

Module layout: `config` (the options and the smoke preset), `stages` (the quickstart's stages), `report`
(evaluation, `results.json`, targets, plots, `report.md`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

from ..config_files import parse_args_and_config, with_current_names
from ..errors import UserInputError
from ..stages import Stages
from .config import RENAMED, QuickstartConfig, SmokeQuickstartConfig
from .report import evaluate, plot, write_report
from .stages import collect_labels, make_queries, smoke_model, train_policy, train_reward

__all__ = ["QuickstartConfig", "SmokeQuickstartConfig", "main", "run_quickstart"]

# Settings a rerun may change and still resume: a moved folder, another logger.
RESUMABLE_CHANGES = ("output_dir", "report_to")


def run_quickstart(cfg: QuickstartConfig) -> Path:
    """Run (or resume) every stage and write the report; returns the path of `report.md`."""
    root = Path(cfg.output_dir)
    root.mkdir(parents=True, exist_ok=True)
    settings = dataclasses.asdict(cfg)
    saved = root / "config.json"
    if saved.is_file() and (root / "stages.json").is_file():  # resuming: finished stages must match these settings
        before = with_current_names(json.loads(saved.read_text()), RENAMED)  # saved before a rename
        changed = [f"{k}: {before.get(k)!r} → {v!r}" for k, v in settings.items()
                   if before.get(k) != v and k not in RESUMABLE_CHANGES]
        if changed:
            raise UserInputError(
                f"{root} holds a run made with other settings ({'; '.join(changed)}): rerun with the same settings "
                "to resume it, or choose another --output_dir"
            )
    saved.write_text(json.dumps(settings, indent=2))
    model = smoke_model(root) if cfg.smoke else cfg.model_name_or_path
    stages = Stages(root)
    stages.run("queries", make_queries, cfg, model, root, outputs=[root / "queries.json"])
    stages.run("labels", collect_labels, cfg, model, root)  # the label store resumes by itself
    stages.run("reward", train_reward, cfg, model, root, outputs=[root / "reward_model"])
    stages.run("policy", train_policy, cfg, model, root, outputs=[root / "policy", root / "ppo_log.json"])
    start = time.perf_counter()
    results = evaluate(cfg, model, root)
    plot(root)
    timings = {**stages.done, "evaluate": time.perf_counter() - start}
    path = write_report(cfg, root, results, timings)
    print(path.read_text())
    return path


def _smoke_preset(argv: list[str]) -> tuple[bool, list[str]]:
    """Whether `argv` chooses the smoke preset (`--smoke`, `--smoke true|false`, `--smoke=...`), and argv without
    it: the preset is chosen before parsing, so that its sizes are defaults the other options override."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--smoke", nargs="?", const="true", default="false")
    known, rest = parser.parse_known_args(argv)
    value = known.smoke.lower()
    if value not in ("true", "false", "yes", "no", "1", "0"):
        raise UserInputError(f"--smoke takes true or false, got {known.smoke!r}")
    return value in ("true", "yes", "1"), rest


def main(argv: list[str] | None = None, prog: str | None = None) -> Path:
    argv = list(sys.argv[1:] if argv is None else argv)
    smoke, argv = _smoke_preset(argv) if "-h" not in argv and "--help" not in argv else (False, argv)
    (config,) = parse_args_and_config((SmokeQuickstartConfig if smoke else QuickstartConfig,), argv, RENAMED, prog)
    return run_quickstart(config)
