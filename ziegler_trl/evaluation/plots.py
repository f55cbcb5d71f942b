"""PNG figures: the reward-KL frontier with trained policies (Figure 3) and n-gram novelty per row (Figure 5).

Figures are drawn on a bare `Figure` (Agg canvas), so plotting never switches the caller's pyplot backend.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from matplotlib.figure import Figure

from .frontier import FrontierPoint


def plot_frontier(
    frontier: Sequence[FrontierPoint],
    path: str | Path,
    policies: Sequence[tuple[str, float, float]] = (),
    title: str = "Reward vs KL",
) -> Path:
    """The optimal policy's (KL, reward) curve, plus (name, KL, reward) points of trained policies."""
    fig = Figure(figsize=(6, 4.5))
    ax = fig.subplots()
    points = sorted(frontier, key=lambda p: p.kl)
    ax.plot([p.kl for p in points], [p.reward for p in points], "-o", ms=3, label="optimal π* ∝ ρ·exp(r/β)")
    for name, kl, reward in policies:
        ax.scatter([kl], [reward], zorder=3)
        ax.annotate(name, (kl, reward), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel("KL(π ‖ ρ) (nats)")
    ax.set_ylabel("reward")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return Path(path)


def plot_novelty(tables: Mapping[str, Mapping[str, float]], path: str | Path, title: str = "Novelty") -> Path:
    """Grouped bars: % novel 1- to 4-grams and % novel sentences for each row (a `copy_table` result)."""
    keys = ["novel_1gram", "novel_2gram", "novel_3gram", "novel_4gram", "novel_sentences"]
    labels = ["1-grams", "2-grams", "3-grams", "4-grams", "sentences"]
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    width = 0.8 / max(1, len(tables))
    for j, (name, table) in enumerate(tables.items()):
        xs = [i + (j - (len(tables) - 1) / 2) * width for i in range(len(keys))]
        ax.bar(xs, [100 * table[k] for k in keys], width, label=name)
    ax.set_xticks(range(len(keys)), labels)
    ax.set_ylabel("% novel (not in the source)")
    ax.set_ylim(0, 100)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return Path(path)
