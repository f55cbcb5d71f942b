"""The study's results from its finished runs: per run and per setting (mean and min-max over seeds) in
`results.json`, the r_s-vs-episodes plot `figure2.png` (the paper's Figure 2) and the report `figure2.md`."""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from pathlib import Path

import torch
from matplotlib.figure import Figure

from ..evaluation import markdown_table, preference_win_rate
from ..labeling import SentimentLabeler
from ..models import inference_device
from ..provenance import provenance_lines
from ..quickstart.report import FINAL_KL_EPISODES, final_kl
from .config import Figure2Config
from .runs import CURVE, PPO_LOG, REWARD_MODEL, RHO_SAMPLES, Run, run_dir, study_runs

METRICS = ("final_r_s", "final_kl", "win_rate", "rm_accuracy", "rm_num_train")


def run_result(cfg: Figure2Config, root: Path, run: Run, rho: dict) -> dict:
    """A finished run's curve, final r_s and KL, 2-way preference of the labeler for π's last samples over ρ's, and
    (with a reward model) its held-out accuracy."""
    folder = run_dir(root, run)
    curve = json.loads((folder / CURVE).read_text())
    updates = [e for e in json.loads((folder / PPO_LOG).read_text()) if "objective/kl" in e]
    pi = [text for texts in curve["samples"] for text in texts]
    baseline = [text for texts in rho["samples"] for text in texts]
    # One 2-way item per (query, sample index): π's j-th sample against ρ's j-th, as the quickstart's report.
    prompts = [q for q in rho["queries"] for _ in range(cfg.eval_samples_per_query)]
    preference = preference_win_rate([[t] for t in pi], [[t] for t in baseline], prompts,
                                     SentimentLabeler(name="vader-eval"), protocol="2way", n_labelers=1,
                                     names=("pi", "rho"), seed=run.seed)
    result = {
        "setting": run.setting, "seed": run.seed, "labels": run.labels,
        "episodes": [0] + [p["episodes"] for p in curve["points"]],
        "r_s": [rho["r_s"]] + [p["r_s"] for p in curve["points"]],
        "final_r_s": curve["points"][-1]["r_s"],
        "final_kl": final_kl(updates, cfg.quickstart.policy_batch_size),
        "win_rate": preference.win_rate, "preference_n": preference.n,
        "rm_accuracy": None, "rm_num_train": None,
        "seconds": json.loads((folder / "stages.json").read_text()),
    }
    if run.reward == "rm":
        metrics = json.loads((folder / REWARD_MODEL / "reward_metrics.json").read_text())
        result.update(rm_accuracy=metrics["eval_accuracy"], rm_num_train=metrics["num_train"])
    return result


def spread(values: Sequence[float]) -> dict:
    return {"mean": statistics.fmean(values), "min": min(values), "max": max(values)}


def summarize(results: Sequence[dict]) -> dict:
    """Per setting (in run order): its seeds, each metric's mean/min/max over them, and the curve's mean/min/max at
    each measured episode count."""
    settings: dict[str, dict] = {}
    for setting in dict.fromkeys(r["setting"] for r in results):
        runs = [r for r in results if r["setting"] == setting]
        summary = {"labels": runs[0]["labels"], "seeds": [r["seed"] for r in runs]}
        for metric in METRICS:
            values = [r[metric] for r in runs if r[metric] is not None]
            summary[metric] = spread(values) if values else None
        columns = list(zip(*(r["r_s"] for r in runs)))
        summary["curve"] = {"episodes": runs[0]["episodes"], **{k: [spread(c)[k] for c in columns]
                                                                 for k in ("mean", "min", "max")}}
        summary["ppo_seconds"] = spread([r["seconds"]["policy"] for r in runs])
        settings[setting] = summary
    return settings


def label(setting: str, summary: dict) -> str:
    return "r_s directly" if summary["labels"] is None else f"reward model, N = {summary['labels']:,}"


def plot_figure2(settings: dict, rho_r_s: float, path: Path, title: str) -> Path:
    """r_s against episodes: each setting's mean over seeds, its min-max range shaded (the paper's Figure 2)."""
    fig = Figure(figsize=(6.4, 4.4))
    ax = fig.subplots()
    for setting, summary in settings.items():
        curve = summary["curve"]
        line, = ax.plot(curve["episodes"], curve["mean"], marker="o", ms=3,
                        label=f"{label(setting, summary)} (seeds: {len(summary['seeds'])})")
        ax.fill_between(curve["episodes"], curve["min"], curve["max"], color=line.get_color(), alpha=0.2)
    ax.axhline(rho_r_s, color="gray", linestyle="--", linewidth=1, label="ρ")
    ax.set_xlabel("episodes")
    ax.set_ylabel("r_s: mean labeler score (VADER) on held-out queries")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def cell(summary: dict | None, digits: int = 3, percent: bool = False) -> str:
    if summary is None:
        return "–"
    fmt = (lambda v: f"{v:.1%}") if percent else (lambda v: f"{v:.{digits}f}")
    return f"{fmt(summary['mean'])} [{fmt(summary['min'])}, {fmt(summary['max'])}]"


def write_report(cfg: Figure2Config, root: Path, invocations: Sequence[dict], seconds: float) -> Path:
    """`results.json`, `figure2.png` and `figure2.md` from the finished runs of `cfg`'s grid; `invocations` are the
    commits and commands that built the folder (`provenance.record_invocation`)."""
    rho = json.loads((root / RHO_SAMPLES).read_text())
    results = [run_result(cfg, root, run, rho) for run in study_runs(cfg)]
    settings = summarize(results)
    shared = json.loads((root / "stages.json").read_text())
    compute = sum(shared.values()) + sum(sum(r["seconds"].values()) for r in results)
    device = inference_device()
    machine = f"{device.type}, {torch.get_num_threads()} torch threads" if device.type == "cpu" else str(device)
    (root / "results.json").write_text(json.dumps(
        {"invocations": list(invocations), "machine": machine, "rho_r_s": rho["r_s"], "settings": settings,
         "runs": results, "stage_seconds": shared, "compute_seconds": compute, "invocation_seconds": seconds},
        indent=2))
    q = cfg.quickstart
    plot_figure2(settings, rho["r_s"], root / "figure2.png",
                 f"Figure 2 in miniature ({cfg.scale}): KL target {q.kl_target:g} nats")
    rows = [[label(s, v), str(len(v["seeds"])), cell(v["rm_num_train"], 0), cell(v["rm_accuracy"], percent=True),
             cell(v["final_r_s"]), cell(v["final_kl"], 2), cell(v["win_rate"], percent=True),
             f"{v['ppo_seconds']['mean'] / 60:.1f}"] for s, v in settings.items()]
    table = markdown_table(["reward", "seeds", "labels trained", "RM held-out accuracy", "final r_s", "final KL (nats)",
                            "π preferred over ρ", "PPO minutes per run"], rows)
    n_held_out = len(rho["queries"])
    model = "a tiny random Llama with the embedded tokenizer (smoke)" if q.smoke else q.model_name_or_path
    text = f"""# Figure 2 in miniature: reward learning vs direct access to the labeler's score ({cfg.scale})

The paper's mock-sentiment experiment (§3.1.1, Figure 2): PPO with direct access to the labeler's score r_s, against
PPO on reward models trained from N simulated best-of-{q.k} labels, each over the same seeds, episode budget
({cfg.total_episodes:,} episodes) and KL target ({q.kl_target:g} nats). ρ = `{model}`; the quickstart's queries,
labeler, reward model and PPO (`ziegler_trl.quickstart`), at this study's sizes.

{provenance_lines(invocations)}
- Wall time: {compute / 3600:.2f} h of stages in all ({compute:.0f} s, every invocation that built this folder);
  this invocation {seconds:.0f} s; on {machine}.

## Results

{table}
Cells: mean [min, max] over seeds. r_s: mean VADER compound score (the labeler's, in [-1, 1]) of π's samples on
{n_held_out} held-out queries ({cfg.eval_samples_per_query} per query); ρ's: {rho["r_s"]:.3f}. Final r_s: after the
last update. Final KL: KL(π‖ρ) per response, mean of the updates over the last {FINAL_KL_EPISODES} episodes. π
preferred over ρ: the labeler's 2-way choice between π's and ρ's j-th sample of each held-out query (ties decided by
the shuffled order). Labels trained: comparisons the reward model trained on, of N labeled (the labeler skips
comparisons with a tied top score; 12.5% are held out for the accuracy, chance 1/{q.k}).

![r_s against episodes](figure2.png)

## Design

- Runs: (reward, N, seed), each in `runs/<setting>-seed<seed>/` with its stages and timings in `stages.json`; a
  rerun of the command skips every finished stage and run.
- Labels: one pool of N comparisons of ρ per N (`labels/N<N>/`), sampled under its own seed and shared by every seed's
  reward model; each seed trains its own reward model on it (fresh head, data order and normalisation samples).
- Direct reward: r_s standardised on ρ's samples of the largest pool (mean 0, std 1 like a normalised reward model),
  so β and the KL target mean the same for both rewards.
- r_s is measured every {cfg.eval_every:,} episodes on the held-out queries under one fixed sampling seed (the same at
  every point and in every run); episode 0 is ρ.
- Settings: {json.dumps({**cfg.fixed_settings(), "label_counts": cfg.label_counts, "seeds": cfg.seeds})}
"""
    path = root / "figure2.md"
    path.write_text(text)
    return path
