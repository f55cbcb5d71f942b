"""Errors caused by what a user gave (a file, a record, an option), as opposed to bugs.

`ziegler-trl` prints a `UserInputError` as one line on stderr and exits with status 2; anything else is a bug and
keeps its traceback. Every message names what was wrong and where: the file, the line or record, the field, and the
offending value shortened to a readable length.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

_UNSET = object()
MAX_VALUE_CHARS = 60


def shorten(value: object, limit: int = MAX_VALUE_CHARS) -> str:
    """`repr(value)` cut to `limit` characters (a 100 MB string or a 5,000-digit integer stays one short line)."""
    try:
        text = repr(value)
    except ValueError:  # an int over Python's str-conversion digit limit
        text = f"<int of about {value.bit_length() * 3 // 10} digits>" if isinstance(value, int) else "<unprintable>"
    return text if len(text) <= limit else text[: limit - 1] + "…"


class UserInputError(ValueError):
    """Something a user gave is wrong; the message says what and where."""


class InputFileError(UserInputError):
    """A file's content is malformed. `str(error)` reads `path, line N, field 'x': message (got value)`."""

    def __init__(
        self,
        path: str | Path,
        message: str,
        *,
        line: int | None = None,
        record: int | None = None,
        field: str | None = None,
        value: object = _UNSET,
    ):
        self.path, self.line, self.record, self.field = str(path), line, record, field
        where = [self.path]
        if line is not None:
            where.append(f"line {line}")
        if record is not None:
            where.append(f"record {record}")
        if field is not None:
            where.append(f"field {field!r}")
        got = "" if value is _UNSET else f" (got {shorten(value)})"
        super().__init__(f"{', '.join(where)}: {message}{got}")


class LabelFileError(InputFileError):
    """A label file (ours, OpenAI's, a TRL preference dataset) or a label-store import is malformed."""


class ConfigFileError(InputFileError):
    """A YAML/JSON config file given with `--config` is malformed or names an unknown option."""


class DataFileError(InputFileError):
    """A file of task texts or prompts is malformed."""


FILE_SUFFIXES = (".json", ".jsonl", ".sqlite", ".db", ".txt", ".yaml", ".yml")


def check_input_file(source: str, option: str) -> None:
    """Refuse a `source` that names a local file (by its suffix) that does not exist, before anything else treats it
    as a Hub id or a URL; `option` is what the user set (e.g. "--dataset_name")."""
    if source.startswith(("http://", "https://")) or not source.endswith(FILE_SUFFIXES):
        return
    path = Path(source)
    if not path.exists():
        raise UserInputError(f"{option} {source!r}: no such file (looked in {path.resolve().parent})")
    if path.is_dir():
        raise UserInputError(f"{option} {source!r} is a folder, not a file")


def run_reporting_errors(prog: str, command: Callable[[], int | None]) -> int:
    """Run `command`; a `UserInputError` becomes one line `prog: error: message` on stderr and status 2."""
    try:
        return command() or 0
    except UserInputError as error:
        message = " ".join(str(error).split())  # one line, even for a message quoting a multi-line value
        print(f"{prog}: error: {message}", file=sys.stderr)
        return 2
