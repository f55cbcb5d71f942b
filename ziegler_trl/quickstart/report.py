"""The quickstart's evaluation and report: held-out samples of ρ and π scored by the labeler (`results.json`), the
targets it checks, plots and `report.md`."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import torch

from ..evaluation import preference_win_rate
from ..labeling import SentimentLabeler, sentiment_score
from ..models import inference_device, load_tokenizer, sampling_dtype
from ..sampling import sample_completions
from ..stages import load_sampler
from .config import QuickstartConfig
from .stages import as_queries, task


def _mean_ci(values: list[float]) -> tuple[float, float]:
    t = torch.tensor(values, dtype=torch.float64)
    return t.mean().item(), 1.96 * t.std().item() / math.sqrt(len(values))


# One update's KL is an estimate from a single rollout batch and noisy: the final KL is the mean of the updates over
# the last FINAL_KL_EPISODES.
FINAL_KL_EPISODES = 64


def final_kl_window(updates: list[dict], episodes_per_update: int) -> list[dict]:
    """The logged updates covering the run's last FINAL_KL_EPISODES (all of them in a shorter run)."""
    return updates[-math.ceil(FINAL_KL_EPISODES / episodes_per_update) :]


def final_kl(updates: list[dict], episodes_per_update: int) -> float:
    """Mean `objective/kl` (KL(π‖ρ) per response, nats) over `final_kl_window`; NaN when nothing was logged."""
    window = final_kl_window(updates, episodes_per_update)
    return sum(u["objective/kl"] for u in window) / len(window) if window else float("nan")


def evaluate(cfg: QuickstartConfig, model: str, root: Path) -> dict:
    """Sample ρ and π on the held-out queries, score them with the labeler, and write `results.json`."""
    tokenizer = load_tokenizer(model)
    held_out = json.loads((root / "queries.json").read_text())["held_out"]
    queries = as_queries(held_out, tokenizer)
    samples = {}
    for name, path in (("rho", model), ("pi", str(root / "policy"))):
        policy = load_sampler(path, tokenizer, cfg.sampling_dtype)
        torch.manual_seed(cfg.seed + 1)
        samples[name] = sample_completions(policy, tokenizer, queries, task(cfg), k=cfg.eval_samples_per_query,
                                           batch_size=16).texts(tokenizer)
    flat = {name: [t for texts in s for t in texts] for name, s in samples.items()}
    scores = {name: sentiment_score(texts) for name, texts in flat.items()}
    diffs = [a - b for a, b in zip(scores["pi"], scores["rho"])]
    # 2-way protocol, one item per (query, sample index): π's j-th sample against ρ's j-th sample.
    prompts = [q for q in held_out for _ in range(cfg.eval_samples_per_query)]
    preference = preference_win_rate([[t] for t in flat["pi"]], [[t] for t in flat["rho"]], prompts,
                                     SentimentLabeler(name="vader-eval"), protocol="2way", n_labelers=1,
                                     names=("pi", "rho"), seed=cfg.seed)
    log = json.loads((root / "ppo_log.json").read_text())
    updates = [e for e in log if "objective/kl" in e]
    reward_metrics = json.loads((root / "reward_model" / "reward_metrics.json").read_text())
    examples = [
        {"query": q, "rho": samples["rho"][i][0], "pi": samples["pi"][i][0]} for i, q in enumerate(held_out[:5])
    ]
    results = {
        "held_out_queries": len(held_out),
        "samples_per_policy": len(flat["pi"]),
        "score_rho": _mean_ci(scores["rho"]),
        "score_pi": _mean_ci(scores["pi"]),
        "score_gain": _mean_ci(diffs),
        "win_rate_pi_over_rho": [preference.win_rate, preference.ci_low, preference.ci_high, preference.n],
        # equal VADER scores (mostly both neutral, 0.0): the argmax labeler then picks by the shuffled order
        "tie_fraction": sum(a == b for a, b in zip(scores["pi"], scores["rho"])) / len(diffs),
        "final_kl": final_kl(updates, cfg.policy_batch_size),
        "final_kl_updates": len(final_kl_window(updates, cfg.policy_batch_size)),
        "last_update_kl": updates[-1]["objective/kl"] if updates else float("nan"),
        "kl_target": cfg.kl_target,
        "final_kl_coef": updates[-1].get("objective/kl_coef") if updates else float("nan"),
        "sampling_dtype": str(sampling_dtype(inference_device(), cfg.sampling_dtype)).removeprefix("torch."),
        "rm_accuracy_before": reward_metrics.get("eval_accuracy_before"),
        "rm_accuracy": reward_metrics.get("eval_accuracy"),
        "rm_num_train": reward_metrics.get("num_train"),
        "rm_num_eval": reward_metrics.get("num_eval"),
        "examples": examples,
    }
    (root / "results.json").write_text(json.dumps(results, indent=2, ensure_ascii=False))
    return results


def plot(root: Path) -> None:
    """`ppo.png` (score, KL and β per update) and `reward_accuracy.png` from a finished run's logs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    log = json.loads((root / "ppo_log.json").read_text())
    updates = [e for e in log if "objective/kl" in e]
    episodes = [e.get("episodes", i + 1) for i, e in enumerate(updates)]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for ax, key, title in zip(axes, ("objective/scores", "objective/kl", "objective/kl_coef"),
                              ("reward-model score", "KL(π‖ρ) per response (nats)", "β")):
        ax.plot(episodes, [e.get(key, float("nan")) for e in updates], marker="o")
        ax.set_title(title)
        ax.set_xlabel("episodes")
    results = json.loads((root / "results.json").read_text())
    axes[1].axhline(results["kl_target"], color="gray", linestyle="--", label="target")
    axes[1].legend()
    fig.tight_layout()
    fig.savefig(root / "ppo.png", dpi=110)
    plt.close(fig)

    rm_log = json.loads((root / "reward_model" / "trainer_log.json").read_text())
    steps = [e["step"] for e in rm_log if "accuracy" in e and "loss" in e]
    fig, ax = plt.subplots(figsize=(5, 3.6))
    ax.plot(steps, [e["accuracy"] for e in rm_log if "accuracy" in e and "loss" in e], marker="o", label="train")
    ax.axhline(results["rm_accuracy"], color="C1", label="held-out (final)")
    ax.axhline(0.25, color="gray", linestyle="--", label="chance (1/4)")
    ax.set_title("reward model accuracy (best of 4)")
    ax.set_xlabel("step")
    ax.legend()
    fig.tight_layout()
    fig.savefig(root / "reward_accuracy.png", dpi=110)
    plt.close(fig)


# The bar for the full run (not the smoke run): time on 2 CPU cores, effect size, KL on target.
MAX_SECONDS = 15 * 60
MIN_WIN_RATE = 0.65
KL_TOLERANCE = 0.3


def target_checks(results: dict, seconds: float) -> list[tuple[str, str, bool]]:
    """(target, measured, met) for each of the quickstart's targets, from `evaluate`'s results."""
    gain, half = results["score_gain"]
    win = results["win_rate_pi_over_rho"][0]
    kl, target = results["final_kl"], results["kl_target"]
    return [
        (f"total time ≤ {MAX_SECONDS // 60} min (2 CPU cores)", f"{seconds / 60:.1f} min", seconds <= MAX_SECONDS),
        ("labeler score gain π − ρ > 0 (95% CI above 0)", f"{gain:+.3f} ± {half:.3f}", gain - half > 0),
        (f"π preferred over ρ in ≥ {MIN_WIN_RATE:.0%} of 2-way comparisons", f"{win:.1%}", win >= MIN_WIN_RATE),
        (f"final KL within ±{KL_TOLERANCE:.0%} of target", f"{kl:.2f} vs {target:.2f} nats",
         abs(kl - target) <= KL_TOLERANCE * target),
    ]


def write_report(cfg: QuickstartConfig, root: Path, results: dict, timings: dict) -> Path:
    """`report.md`: what ran, `results`, the targets and sample continuations."""
    def ci(pair):
        return f"{pair[0]:+.3f} ± {pair[1]:.3f}"

    win, low, high, n = results["win_rate_pi_over_rho"]
    kl, target = results["final_kl"], results["kl_target"]
    lines = [
        "# ziegler-trl quickstart" + (" (smoke)" if cfg.smoke else ""),
        "",
        "The paper's mock-sentiment experiment in miniature: ρ = "
        f"`{cfg.model_name_or_path}`, a simulated labeler (VADER) picks the most positive of {cfg.k} continuations, "
        "a reward model learns its choices, PPO with an adaptive KL penalty optimises the policy against it.",
        "",
        "## What ran",
        "",
        "| stage | seconds |",
        "|---|---|",
        *[f"| {name} | {seconds:.0f} |" for name, seconds in timings.items()],
        f"| **total** | **{sum(timings.values()):.0f}** |",
        "",
        f"Settings: {json.dumps(dataclasses.asdict(cfg))}; sampling (ρ's queries and comparisons, PPO's rollouts, "
        f"the evaluation's samples) ran in {results['sampling_dtype']}.",
        "",
        "## Results on held-out queries",
        "",
        f"- Labeler score (VADER compound, mean ± 95% CI over {results['samples_per_policy']} samples from "
        f"{results['held_out_queries']} held-out queries): ρ {ci(results['score_rho'])}, π {ci(results['score_pi'])}; "
        f"gain π − ρ {ci(results['score_gain'])}.",
        f"- 2-way preference of the simulated labeler for π over ρ: {win:.1%} (95% Wilson CI {low:.1%}–{high:.1%}, "
        f"n = {n}); {results['tie_fraction']:.0%} of the pairs score the same (mostly both neutral), which the "
        "labeler decides by their shuffled order.",
        f"- Final KL(π‖ρ) {kl:.2f} nats vs target {target:.2f} ({(kl - target) / target:+.0%}): the mean of the last "
        f"{results['final_kl_updates']} updates ({FINAL_KL_EPISODES} episodes); the last update alone "
        f"{results['last_update_kl']:.2f}. Final β {results['final_kl_coef']:.4f}.",
        f"- Reward model: held-out accuracy {results['rm_accuracy']:.1%} on {results['rm_num_eval']} comparisons "
        f"(chance 25%), trained on {results['rm_num_train']}.",
        "",
        "## Targets",
        "",
        *(["A smoke run checks the plumbing on a random model: these targets apply to the full run.", ""]
          if cfg.smoke else []),
        "| target | measured | met |",
        "|---|---|---|",
        *[f"| {name} | {measured} | {'yes' if met else '**no**'} |"
          for name, measured, met in target_checks(results, sum(timings.values()))],
        "",
        "![PPO](ppo.png)",
        "",
        "![Reward model accuracy](reward_accuracy.png)",
        "",
        "## Sample continuations (held-out queries)",
        "",
    ]
    for example in results["examples"]:
        lines += [f"**Query:** {example['query']!r}", "", f"- ρ: {example['rho']!r}", f"- π: {example['pi']!r}", ""]
    path = root / "report.md"
    path.write_text("\n".join(lines))
    return path
