"""Label data for the reward model: the row schema, its validation, and importers.

A best-of-K row is `{"prompt": str, "completions": list[str] (K), "best": int}`, optionally with
`"ranking": list[int]` (a permutation of 0..K-1, best first). Prompts and completions may instead be
conversational (lists of `{"role", "content"}` messages), as in TRL's other trainers.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from datasets import Dataset
from transformers import PreTrainedTokenizerBase

from ..jsonl import parse_line

OPENAI_PAD_ID = 50259  # lm-human-preferences right-pads GPT-2 token ids with this id
OPENAI_SAMPLE_FIELDS = ("sample0", "sample1", "sample2", "sample3")


def _is_text_or_messages(value: Any) -> bool:
    if isinstance(value, str):
        return True
    return isinstance(value, list) and all(isinstance(m, Mapping) and "content" in m for m in value)


def validate_label_rows(rows: Iterable[Mapping[str, Any]], source: str) -> list[dict[str, Any]]:
    """Check every row against the schema; the error names the source, the row index and the field."""
    checked, k_seen = [], None
    for index, row in enumerate(rows):
        where = f"{source}, row {index}"
        if not isinstance(row, Mapping):
            raise ValueError(f"{where}: expected an object, got {type(row).__name__}")
        for name in ("prompt", "completions"):
            if name not in row:
                raise ValueError(f"{where}: missing field {name!r}")
        if not _is_text_or_messages(row["prompt"]):
            raise ValueError(f"{where}, field 'prompt': expected a string or a list of messages")
        completions = row["completions"]
        if not isinstance(completions, list) or len(completions) < 2:
            raise ValueError(f"{where}, field 'completions': expected a list of at least 2 completions")
        if not all(_is_text_or_messages(c) for c in completions):
            raise ValueError(f"{where}, field 'completions': every completion must be a string or messages")
        k = len(completions)
        if k_seen is not None and k != k_seen:
            raise ValueError(f"{where}, field 'completions': has {k} completions but earlier rows have {k_seen}")
        k_seen = k
        if "best" not in row and "ranking" not in row:
            raise ValueError(f"{where}: missing field 'best' (or 'ranking')")
        out = {"prompt": row["prompt"], "completions": completions}
        if "ranking" in row and row["ranking"] is not None:
            ranking = row["ranking"]
            if not isinstance(ranking, list) or sorted(ranking) != list(range(k)):
                raise ValueError(f"{where}, field 'ranking': expected a permutation of 0..{k - 1}, got {ranking!r}")
            out["ranking"] = ranking
        best = row.get("best", out.get("ranking", [None])[0])
        if isinstance(best, bool) or not isinstance(best, int) or not 0 <= best < k:
            raise ValueError(f"{where}, field 'best': expected an integer in 0..{k - 1}, got {best!r}")
        if "ranking" in out and out["ranking"][0] != best:
            raise ValueError(f"{where}: 'best' is {best} but 'ranking' starts with {out['ranking'][0]}")
        out["best"] = best
        checked.append(out)
    if not checked:
        raise ValueError(f"{source}: no label rows")
    if any("ranking" in r for r in checked) and not all("ranking" in r for r in checked):
        raise ValueError(f"{source}: some rows have 'ranking' and others do not; give it for all rows or none")
    return checked


def _read_json_or_jsonl(path_or_url: str) -> list[Any]:
    import fsspec

    with fsspec.open(path_or_url, "r", encoding="utf-8") as handle:
        text = handle.read()
    if not text.strip():
        raise ValueError(f"{path_or_url}: empty file")
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            return json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path_or_url}: not valid JSON (line {err.lineno}: {err.msg})") from err
    return [parse_line(path_or_url, n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]


def _token_ids(record: Mapping[str, Any], field: str, where: str) -> list[int]:
    if field not in record:
        raise ValueError(f"{where}: missing field {field!r}")
    ids = record[field]
    if not isinstance(ids, list) or not all(isinstance(t, int) and not isinstance(t, bool) for t in ids):
        raise ValueError(f"{where}, field {field!r}: expected a list of integer token ids")
    return [t for t in ids if t != OPENAI_PAD_ID]


def load_openai_labels(path_or_url: str, tokenizer: PreTrainedTokenizerBase | None = None) -> Dataset:
    """Read a released lm-human-preferences label file into best-of-K rows.

    Each record holds `query` and `sample0..sample3` as GPT-2 token ids right-padded with id 50259, and `best` in
    0..3. Pad ids are stripped and the ids decoded with `tokenizer` (default: GPT-2's, which needs the Hub or a
    local cache). The whole file is checked before anything is returned; an error names the file, the record
    index and the field.
    """
    records = _read_json_or_jsonl(path_or_url)
    if not isinstance(records, list) or not records:
        raise ValueError(f"{path_or_url}: expected a non-empty JSON array of label records")
    parsed = []
    for index, record in enumerate(records):
        where = f"{path_or_url}, record {index}"
        if not isinstance(record, Mapping):
            raise ValueError(f"{where}: expected an object, got {type(record).__name__}")
        samples = [k for k in record if k.startswith("sample")]
        if sorted(samples) != list(OPENAI_SAMPLE_FIELDS):
            raise ValueError(f"{where}: expected fields {list(OPENAI_SAMPLE_FIELDS)} (K=4), found {sorted(samples)}")
        query = _token_ids(record, "query", where)
        completions = [_token_ids(record, name, where) for name in OPENAI_SAMPLE_FIELDS]
        best = record.get("best")
        if "best" not in record:
            raise ValueError(f"{where}: missing field 'best'")
        if isinstance(best, bool) or not isinstance(best, int) or not 0 <= best < 4:
            raise ValueError(f"{where}, field 'best': expected an integer in 0..3, got {best!r}")
        parsed.append((query, completions, best))
    if tokenizer is None:
        from transformers import AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained("gpt2")
        except OSError as err:
            raise OSError(
                "load_openai_labels decodes GPT-2 token ids and needs GPT-2's tokenizer; it could not be loaded "
                "(no Hub access?). Pass tokenizer=<a GPT-2 tokenizer loaded from a local folder>."
            ) from err
    vocab_size = len(tokenizer)
    for index, (query, completions, _) in enumerate(parsed):
        for name, ids in zip(("query",) + OPENAI_SAMPLE_FIELDS, [query] + completions):
            bad = [t for t in ids if not 0 <= t < vocab_size]
            if bad:
                raise ValueError(
                    f"{path_or_url}, record {index}, field {name!r}: token id {bad[0]} is outside the tokenizer's "
                    f"vocabulary ({vocab_size}); is this tokenizer GPT-2's?"
                )
    return Dataset.from_dict(
        {
            "prompt": [tokenizer.decode(q) for q, _, _ in parsed],
            "completions": [[tokenizer.decode(c) for c in cs] for _, cs, _ in parsed],
            "best": [b for _, _, b in parsed],
        }
    )


def load_label_dataset(source: str, tokenizer: PreTrainedTokenizerBase | None = None, split: str = "train") -> Dataset:
    """Best-of-K rows from a local JSON/JSONL file (our schema or an OpenAI label file), a URL, or a Hub dataset."""
    is_file = Path(source).is_file() or source.startswith(("http://", "https://"))
    if not is_file:
        from datasets import load_dataset

        rows = list(load_dataset(source, split=split))
    else:
        rows = _read_json_or_jsonl(source)
        if rows and isinstance(rows[0], Mapping) and "sample0" in rows[0]:
            return load_openai_labels(source, tokenizer)
    return Dataset.from_list(validate_label_rows(rows, source))
