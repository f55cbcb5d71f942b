"""Labeled records read from a JSONL file or from a label store's export (any iterable of dicts, e.g. the
`datasets.Dataset` of `LabelStore.to_dataset()`), with every required field checked."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from ..jsonl import read_jsonl


def _check(record: object, fields: Mapping[str, type | tuple[type, ...]], where: str) -> dict:
    if not isinstance(record, Mapping):
        raise ValueError(f"{where}: expected an object with fields {list(fields)}, got {type(record).__name__}")
    for name, kind in fields.items():
        if name not in record:
            raise ValueError(f"{where}: missing field {name!r} (need {list(fields)})")
        value = record[name]
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
            expected = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            raise ValueError(f"{where}: field {name!r} must be {expected}, got {value!r}")
    return dict(record)


def read_records(source: str | Path | Iterable[Mapping], fields: Mapping[str, type | tuple[type, ...]]) -> list[dict]:
    """All records of `source` (a JSONL path or an iterable of mappings), each checked to have `fields`.

    Errors name the file (or "record"), the 1-based row and the field. An empty source is an error.
    """
    records = []
    if isinstance(source, (str, Path)):
        path = Path(source)
        for line_no, record in read_jsonl(path):
            records.append(_check(record, fields, f"{path}:{line_no}"))
        if not records:
            raise ValueError(f"{path}: no records")
        return records
    for row, record in enumerate(source, start=1):
        records.append(_check(record, fields, f"record {row}"))
    if not records:
        raise ValueError("no records")
    return records
