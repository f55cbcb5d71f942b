"""Markdown tables for the eval scripts' reports."""

from __future__ import annotations

from pathlib import Path

import math
from collections.abc import Sequence


def fmt(value: float | None, digits: int = 2, scale: float = 1.0) -> str:
    """A number for a table cell; NaN and None read as "–" (nothing to measure, e.g. no 4-grams)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, int):
        return str(value)
    return f"{scale * value:.{digits}f}"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_markdown(path: Path, text: str) -> None:
    """Write a script's markdown report (creating its folder) and echo it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    print(text)
