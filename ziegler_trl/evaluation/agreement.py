"""Labeler agreement on repeated items (the paper's Table 9).

Input rows, one per judgment (from a label store export or a JSONL file):

    {"item_id": str | int, "labeler": str, "best": int, "k": int}   # k = number of completions shown

Two labels of an item agree when they pick the same completion; chance agreement is 1/k. Agreement between two
groups of labelers (labeler-labeler, labeler-reference, reference-reference, or one labeler against the
reference group) is estimated per item, as the fraction of agreeing cross-labeler pairs in it, then averaged over
the items that have such a pair; its standard error is the sample standard deviation of those per-item fractions
over sqrt(items), which treats items, not pairs, as the independent units.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import numpy as np

from .records import read_records

AGREEMENT_FIELDS = {"item_id": (str, int), "labeler": str, "best": int, "k": int}


@dataclass(frozen=True)
class Agreement:
    """An agreement rate with its standard error over `n_items` items (`n_pairs` label pairs in all)."""

    rate: float
    stderr: float
    n_items: int
    n_pairs: int


def _labels_by_item(rows: list[dict]) -> tuple[dict, dict]:
    labels: dict = {}
    sizes: dict = {}
    for row_no, row in enumerate(rows, start=1):
        item, labeler, best, k = row["item_id"], row["labeler"], row["best"], row["k"]
        if k < 2:
            raise ValueError(f"record {row_no}: k={k}; an item needs at least 2 completions")
        if not 0 <= best < k:
            raise ValueError(f"record {row_no}: best={best} is not in 0..{k - 1}")
        if sizes.setdefault(item, k) != k:
            raise ValueError(f"record {row_no}: item {item!r} has k={k} here but k={sizes[item]} before")
        if labeler in labels.setdefault(item, {}):
            raise ValueError(f"record {row_no}: labeler {labeler!r} labeled item {item!r} twice")
        labels[item][labeler] = best
    return labels, sizes


def _group_agreement(labels: dict, first, second) -> Agreement:
    """Agreement of pairs (x, y), x ≠ y, x passing `first` and y passing `second`, per item then averaged."""
    per_item, n_pairs = [], 0
    for by_labeler in labels.values():
        pairs = [
            (a, b)
            for a, b in combinations(sorted(by_labeler), 2)
            if (first(a) and second(b)) or (first(b) and second(a))
        ]
        if pairs:
            per_item.append(np.mean([by_labeler[a] == by_labeler[b] for a, b in pairs]))
            n_pairs += len(pairs)
    if not per_item:
        return Agreement(float("nan"), float("nan"), 0, 0)
    stderr = float(np.std(per_item, ddof=1) / math.sqrt(len(per_item))) if len(per_item) > 1 else float("nan")
    return Agreement(float(np.mean(per_item)), stderr, len(per_item), n_pairs)


def agreement_table(
    rows: str | Path | Iterable[Mapping], reference: str | Iterable[str] | None = None
) -> dict[str, Agreement | float]:
    """Table 9's quantities from labels of repeated items.

    Keys: `chance` (mean 1/k over items labeled at least twice), `labeler-labeler`; with `reference` (one
    labeler name or several, e.g. the researchers) also `labeler-reference`, `reference-reference`, and
    `<name> vs reference` for each other labeler.
    """
    labels, sizes = _labels_by_item(read_records(rows, AGREEMENT_FIELDS))
    repeated = {item: by for item, by in labels.items() if len(by) > 1}
    if not repeated:
        raise ValueError("no item was labeled by two or more labelers; agreement needs repeated items")
    refs = {reference} if isinstance(reference, str) else set(reference or ())
    everyone = {name for by in repeated.values() for name in by}
    if refs - everyone:
        raise ValueError(f"reference labeler(s) {sorted(refs - everyone)} label no repeated item")
    table: dict[str, Agreement | float] = {"chance": float(np.mean([1.0 / sizes[item] for item in repeated]))}

    def is_ref(name: str) -> bool:
        return name in refs

    def not_ref(name: str) -> bool:
        return name not in refs

    table["labeler-labeler"] = _group_agreement(repeated, not_ref, not_ref)
    if refs:
        table["labeler-reference"] = _group_agreement(repeated, not_ref, is_ref)
        table["reference-reference"] = _group_agreement(repeated, is_ref, is_ref)
        for name in sorted(everyone - refs):
            table[f"{name} vs reference"] = _group_agreement(repeated, name.__eq__, is_ref)
    return table
