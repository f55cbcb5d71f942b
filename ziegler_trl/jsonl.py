"""JSON Lines in and out: every JSONL file the package writes or reads goes through here.

Writing: `jsonl_line` escapes, inside strings, every character that `str.splitlines()` splits on (U+0085, U+2028,
U+2029 and the C0 separators that `json.dumps` already escapes), so a file reads back one record per line whatever
Unicode it holds and whichever reader splits it.

Reading: a file is split on "\\n" only (never `str.splitlines()`). It must be UTF-8 (a UTF-8 byte-order mark is
dropped) or UTF-16/UTF-32 with a byte-order mark saying so; NUL bytes outside such a mark mean UTF-16/32 without one
and are refused by name. Every record is checked for what a parser lets through but nothing downstream can hold:
lone surrogates (SQLite and UTF-8 cannot store them) and nesting deeper than `MAX_DEPTH`. Every failure is an
`InputFileError` subclass chosen by the caller, naming the file, the line and, where it applies, the field.

`write_jsonl` writes a whole file atomically (a temporary sibling, fsynced, renamed over it).
"""

from __future__ import annotations

import codecs
import json
import os
import re
from collections.abc import Iterable
from pathlib import Path

from .errors import DataFileError, InputFileError

MAX_DEPTH = 64  # our records nest 4 levels (record > answers > answer > ranking); nothing real needs 64
_LINE_BREAKS_JSON_KEEPS = {"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"}
_LINE_BREAKS_PATTERN = re.compile("[\x85\u2028\u2029]")
_SURROGATE = re.compile("[\ud800-\udfff]")
# Longest marks first: UTF-32-LE's mark starts with UTF-16-LE's.
_BYTE_ORDER_MARKS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
JSON_WHITESPACE = " \t\r\n"


def jsonl_line(value: object) -> str:
    """`value` as one JSON line ending in "\\n", non-ASCII kept readable, no character a line splitter splits on."""
    text = json.dumps(value, ensure_ascii=False)  # escapes every C0 control character, \x0b..\x1e included
    return _LINE_BREAKS_PATTERN.sub(lambda m: _LINE_BREAKS_JSON_KEEPS[m.group()], text) + "\n"


def read_bytes(path: str | Path, error: type[InputFileError] = DataFileError) -> bytes:
    """The file's bytes; a missing or unreadable file is `error` naming it."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise error(path, "no such file") from None
    except IsADirectoryError:
        raise error(path, "is a folder, not a file") from None
    except OSError as err:
        raise error(path, f"cannot be read ({err.strerror or err})") from None


def decode_text(data: bytes, source: str | Path, error: type[InputFileError] = DataFileError) -> str:
    """Text of a JSON/JSONL file: UTF-8 (BOM dropped), or UTF-16/32 when a byte-order mark says so."""
    encoding = "utf-8"
    for mark, name in _BYTE_ORDER_MARKS:
        if data.startswith(mark):
            encoding, data = name, data[len(mark) :]
            break
    if encoding == "utf-8" and b"\x00" in data:
        line = data[: data.index(b"\x00")].count(b"\n") + 1
        raise error(source, "holds NUL bytes: is it UTF-16 or UTF-32 without a byte-order mark? Save it as UTF-8",
                    line=line)
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as err:
        line = data[: err.start].decode(encoding, errors="replace").count("\n") + 1
        raise error(source, f"not valid {encoding.upper()} (bytes {data[err.start:err.end]!r}: {err.reason})",
                    line=line) from None


def has_lone_surrogate(text: str) -> bool:
    """Whether `text` holds a surrogate code point outside a pair (JSON's "\\ud800" escape allows one)."""
    return not text.isascii() and _SURROGATE.search(text) is not None


def _where(path: list[str | int]) -> str | None:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out or None


def check_json_value(value: object, source: str | Path, error: type[InputFileError] = DataFileError, *,
                     line: int | None = None, record: int | None = None) -> None:
    """Refuse lone surrogates (in keys or strings) and nesting deeper than `MAX_DEPTH`, naming the field path."""
    stack: list[tuple[object, list[str | int]]] = [(value, [])]
    while stack:
        node, path = stack.pop()
        if len(path) > MAX_DEPTH:
            raise error(source, f"nested more than {MAX_DEPTH} levels deep", line=line, record=record,
                        field=_where(path[:3]))
        if isinstance(node, str):
            if has_lone_surrogate(node):
                raise error(source, "holds a lone surrogate, which UTF-8 cannot store", line=line, record=record,
                            field=_where(path), value=node)
        elif isinstance(node, dict):
            for key, item in node.items():
                if isinstance(key, str) and has_lone_surrogate(key):
                    raise error(source, "a field name holds a lone surrogate, which UTF-8 cannot store", line=line,
                                record=record, field=_where(path), value=key)
                stack.append((item, [*path, key]))
        elif isinstance(node, (list, tuple)):
            stack.extend((item, [*path, i]) for i, item in enumerate(node))


def parse_json(text: str, source: str | Path, error: type[InputFileError] = DataFileError, *,
               line: int | None = None, check: bool = True) -> object:
    """One JSON value, checked by `check_json_value` unless `check` is False (a caller that checks each record of
    an array itself, to name the record). A syntax error, nesting too deep for the parser or an integer literal
    over Python's digit limit is `error` naming the file and the line."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        at = line if line is not None else err.lineno
        raise error(source, f"not valid JSON ({err.msg}, column {err.colno})", line=at) from None
    except RecursionError:
        raise error(source, "not readable JSON (nested too deep)", line=line) from None
    except ValueError as err:  # an integer literal longer than sys.get_int_max_str_digits()
        raise error(source, f"not readable JSON ({str(err).split(':')[0]})", line=line) from None
    if check:
        check_json_value(value, source, error, line=line)
    return value


def split_lines(text: str) -> list[tuple[int, str]]:
    """(1-based line number, line) for every line holding more than JSON whitespace; splits on "\\n" only."""
    return [(n, line) for n, line in enumerate(text.split("\n"), start=1) if line.strip(JSON_WHITESPACE)]


def parse_jsonl_text(text: str, source: str | Path, error: type[InputFileError] = DataFileError
                     ) -> list[tuple[int, object]]:
    """(line number, value) for every non-blank line of JSONL text."""
    return [(n, parse_json(line, source, error, line=n)) for n, line in split_lines(text)]


def read_jsonl(path: str | Path, error: type[InputFileError] = DataFileError) -> list[tuple[int, object]]:
    """(1-based line number, value) for every non-blank line of a JSONL file; any fault is `error`."""
    return parse_jsonl_text(decode_text(read_bytes(path, error), path, error), path, error)


def write_jsonl(rows: Iterable[object], path: str | Path) -> Path:
    """One `jsonl_line` per row, written atomically (a temporary sibling, fsynced, renamed over `path`), so a killed
    run never leaves a truncated file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(jsonl_line(row))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    return path
