"""Labeler agreement on repeated items (the paper's Table 9).

Input rows, one per judgment (from a label store export or a JSONL file):

    {"item_id": str | int, "labeler": str, "best": int, "k": int}   # k = number of completions shown

Two labels of an item agree when they pick the same completion; chance agreement is 1/k. The table compares groups
of labelers (labeler-labeler, labeler-reference, reference-reference, or one labeler against the reference group)
with `ziegler_trl.labeling.agreement.labeler_agreement`, the same function the labeling app's admin page shows: per
item the fraction of agreeing cross-labeler pairs, averaged over the items that have such a pair, with the standard
error over items.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from ..labeling.agreement import Agreement, chance_agreement, labeler_agreement, labels_by_item
from .records import read_records

AGREEMENT_FIELDS = {"item_id": (str, int), "labeler": str, "best": int, "k": int}


def agreement_table(
    rows: str | Path | Iterable[Mapping], reference: str | Iterable[str] | None = None
) -> dict[str, Agreement | float]:
    """Table 9's quantities from labels of repeated items.

    Keys: `chance` (mean 1/k over items labeled at least twice), `labeler-labeler`; with `reference` (one
    labeler name or several, e.g. the researchers) also `labeler-reference`, `reference-reference`, and
    `<name> vs reference` for each other labeler.
    """
    labels, sizes = labels_by_item(read_records(rows, AGREEMENT_FIELDS))
    repeated = {item: by for item, by in labels.items() if len(by) > 1}
    if not repeated:
        raise ValueError("no item was labeled by two or more labelers; agreement needs repeated items")
    refs = {reference} if isinstance(reference, str) else set(reference or ())
    everyone = {name for by in repeated.values() for name in by}
    if refs - everyone:
        raise ValueError(f"reference labeler(s) {sorted(refs - everyone)} label no repeated item")
    table: dict[str, Agreement | float] = {"chance": chance_agreement(sizes, repeated)}

    def is_ref(name: str) -> bool:
        return name in refs

    def not_ref(name: str) -> bool:
        return name not in refs

    table["labeler-labeler"] = labeler_agreement(repeated, not_ref, not_ref)
    if refs:
        table["labeler-reference"] = labeler_agreement(repeated, not_ref, is_ref)
        table["reference-reference"] = labeler_agreement(repeated, is_ref, is_ref)
        for name in sorted(everyone - refs):
            table[f"{name} vs reference"] = labeler_agreement(repeated, name.__eq__, is_ref)
    return table
