"""Evaluation rows from the human labeling app's `LabelStore`, and preference items sent to it.

A preference item is stored as a comparison whose `policy` field is a JSON list naming the model of each
completion (e.g. '["ppo", "base"]'); a comparison sampled from one policy keeps that policy's plain name, so all
its completions count as that model's (and as "unknown" with no policy recorded). Every non-skipped answer becomes one judgment row:

    {"item_id": uid, "prompt", "completions", "best", "labeler", "k", "model_of_each_completion"}

which `agreement_table` (item_id, labeler, best, k) and `win_rate_from_records` (prompt, completions, best,
labeler, model_of_each_completion) read directly.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..jsonl import parse_jsonl_text
from ..labeling.store import LabelStore
from .preference import PreferenceItems
from .records import read_records


def _models(policy: str | None, k: int, where: str) -> list[str]:
    if policy is None:
        return ["unknown"] * k
    if policy.startswith("["):
        try:
            models = json.loads(policy)
        except json.JSONDecodeError as err:
            raise ValueError(f"{where}: policy {policy!r} is not a JSON list of model names ({err.msg})") from err
        if len(models) != k or not all(isinstance(m, str) for m in models):
            raise ValueError(f"{where}: policy {policy!r} must name the model of each of the {k} completions")
        return models
    return [policy] * k


def judgments_from_store(store: LabelStore | str | Path) -> list[dict]:
    """One judgment row per answered (not skipped) label, from a `LabelStore` or its `export_jsonl` file."""
    if isinstance(store, LabelStore):
        records = [record for _, record in parse_jsonl_text(store.export_jsonl(), store.path)]
        if not records:
            raise ValueError(f"label store {store.path} holds no comparisons")
        source = str(store.path)
    else:
        fields = {"uid": str, "prompt": str, "completions": list, "answers": list}
        records = read_records(store, fields)
        source = str(store)
    rows = []
    for n, record in enumerate(records, start=1):
        k = len(record["completions"])
        models = _models(record.get("policy"), k, f"{source}: comparison {n}")
        for answer in record["answers"]:
            if answer.get("skipped") or answer.get("best") is None:
                continue
            rows.append(
                {
                    "item_id": record["uid"],
                    "prompt": record["prompt"],
                    "completions": record["completions"],
                    "best": answer["best"],
                    "labeler": answer["labeler"],
                    "k": k,
                    "model_of_each_completion": models,
                }
            )
    if not rows:
        raise ValueError(f"{source}: no answered comparison")
    return rows


def load_store_judgments(path: str | Path) -> list[dict]:
    """`judgments_from_store` of a store file (SQLite) or of its `export_jsonl` file (.jsonl)."""
    path = Path(path)
    if path.suffix == ".jsonl":
        return judgments_from_store(path)
    if not path.is_file():
        raise FileNotFoundError(f"no label store at {path}")
    return judgments_from_store(LabelStore(path))


def add_preference_items(
    store: LabelStore, items: PreferenceItems, task: str | None = None, round: int | None = None
) -> list[int]:
    """Queue preference items for human labelers; returns the comparison ids (one per item)."""
    return [
        store.add_comparisons([prompt], [completions], task=task, round=round, policy=json.dumps(models))[0]
        for prompt, completions, models in zip(items.prompts, items.completions, items.models)
    ]
