"""JSON Lines input with errors that say where: every reader of label, text and record files goes through here."""

from __future__ import annotations

import json
from pathlib import Path


def parse_line(source: str | Path, line_no: int, line: str) -> object:
    """One JSON value; a parse error names `source:line_no`."""
    try:
        return json.loads(line)
    except json.JSONDecodeError as err:
        raise ValueError(f"{source}:{line_no}: not valid JSON ({err.msg})") from err


def read_jsonl(path: str | Path) -> list[tuple[int, object]]:
    """(1-based line number, value) for every non-blank line of a UTF-8 JSONL file."""
    with Path(path).open(encoding="utf-8") as handle:
        return [(line_no, parse_line(path, line_no, line)) for line_no, line in enumerate(handle, 1) if line.strip()]
