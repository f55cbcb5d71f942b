"""The reward stage's held-out labels, kept in the reward model's folder: comparisons the model never trained on,
which `ZieglerPPOTrainer` checks the reward against before training (see its `reward_check`)."""

from __future__ import annotations

from pathlib import Path

from datasets import Dataset

from ..jsonl import read_jsonl, write_jsonl
from .labels import validate_label_rows

HELD_OUT_LABELS_FILE = "held_out_labels.jsonl"
_COLUMNS = ("prompt", "completions", "best", "ranking")


def save_held_out_labels(labels: Dataset | None, folder: str | Path) -> Path | None:
    """Write the label rows (prompt, completions, best, and ranking where given) to `folder`; with no held-out labels,
    remove a file an earlier run left there, which would describe another model's split."""
    path = Path(folder) / HELD_OUT_LABELS_FILE
    if labels is None or len(labels) == 0:
        path.unlink(missing_ok=True)
        return None
    rows = [{key: row[key] for key in _COLUMNS if row.get(key) is not None} for row in labels]
    return write_jsonl(rows, path)


def load_held_out_labels(folder: str | Path) -> tuple[Dataset, Path] | None:
    """(the labels, their file) saved in a reward model folder, or None where there are none."""
    path = Path(folder) / HELD_OUT_LABELS_FILE
    if not path.is_file():
        return None
    rows = validate_label_rows([value for _line, value in read_jsonl(path)], str(path))
    return Dataset.from_list(rows), path
