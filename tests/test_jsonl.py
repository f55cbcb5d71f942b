"""JSON Lines: what is written reads back one record per line whatever it holds; what is read is checked."""

import json
import re
from pathlib import Path

import pytest

from ziegler_trl.errors import DataFileError, LabelFileError
from ziegler_trl.jsonl import jsonl_line, parse_jsonl_text, read_jsonl

ROOT = Path(__file__).resolve().parents[1]
# Every character str.splitlines() splits on, found by asking it rather than by listing them.
SPLITTERS = "".join(c for c in map(chr, range(0x110000)) if len(f"a{c}b".splitlines()) > 1)


def test_the_splitters_are_the_ones_the_module_escapes():
    assert SPLITTERS == "\n\x0b\x0c\r\x1c\x1d\x1e\x85\u2028\u2029"


def test_jsonl_line_escapes_every_splitter_and_round_trips():
    value = {f"key{SPLITTERS}": [f"x{c}y" for c in SPLITTERS], "plain": "café ✓ \U0001f600"}
    line = jsonl_line(value)
    assert line.endswith("\n") and line.splitlines() == [line[:-1]] and line.count("\n") == 1
    assert not set(SPLITTERS) & set(line[:-1])
    assert "café ✓ \U0001f600" in line  # non-ASCII stays readable
    assert json.loads(line) == value


def test_reader_splits_on_newline_only(tmp_path):
    # a file written by another tool with raw U+2028/U+0085 inside strings (valid JSON) reads as written
    text = '{"a": "one\u2028two\x85three"}\r\n\n   \n{"a": "x"}\n'
    path = tmp_path / "raw.jsonl"
    path.write_text(text, encoding="utf-8")
    assert read_jsonl(path) == [(1, {"a": "one\u2028two\x85three"}), (4, {"a": "x"})]
    # a line holding only a separator is not blank: JSON whitespace is space, tab, CR and LF
    with pytest.raises(LabelFileError, match=r"src, line 2: not valid JSON"):
        parse_jsonl_text('{"a": 1}\n\x1c\n', "src", LabelFileError)


def test_reader_errors_name_the_file_and_line(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_bytes(b'{"a": 1}\n{"a": "\xc0"}\n')
    with pytest.raises(DataFileError, match=r"x\.jsonl, line 2: not valid UTF-8 \(bytes b'\\xc0': invalid start byte\)"):
        read_jsonl(path)
    path.write_text('{"a": 1}\n{"a": {"b": ["\\udbff"]}}\n')
    with pytest.raises(DataFileError, match=r"x\.jsonl, line 2, field 'a\.b\[0\]': holds a lone surrogate"):
        read_jsonl(path)
    path.write_text('{"\\ud800": 1}\n')
    with pytest.raises(DataFileError, match=r"line 1: a field name holds a lone surrogate"):
        read_jsonl(path)
    path.write_text("[" * 70 + "]" * 70 + "\n")
    with pytest.raises(DataFileError, match=r"line 1, field '\[0\]\[0\]\[0\]': nested more than 64 levels deep"):
        read_jsonl(path)


def test_every_jsonl_writer_goes_through_jsonl_line():
    """A JSON value followed by a newline, written anywhere but ziegler_trl/jsonl.py, bypasses the escaping (the
    fuzzer writes malformed JSONL on purpose)."""
    pattern = re.compile(r"json\.dumps\([^\n]*\)\s*\+\s*[\"']\\n[\"']")
    offenders = [
        f"{path.relative_to(ROOT)}:{n}"
        for folder in ("ziegler_trl", "eval", "benchmarks", "recipes")
        for path in sorted((ROOT / folder).rglob("*.py"))
        if path not in (ROOT / "ziegler_trl" / "jsonl.py", ROOT / "benchmarks" / "fuzz_importers.py")
        for n, line in enumerate(path.read_text(encoding="utf-8").split("\n"), start=1)
        if pattern.search(line)
    ]
    assert offenders == []
