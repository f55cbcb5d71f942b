"""Label data for the reward model: the row schema, its validation, and the importers that produce it.

A best-of-K row is `{"prompt": str, "completions": list[str] (K), "best": int}`, optionally with
`"ranking": list[int]` (a permutation of 0..K-1, best first). Prompts and completions may instead be
conversational (lists of `{"role", "content"}` messages; other keys of a message are dropped), as in TRL's other
trainers.

`load_label_dataset` turns any of these sources into such rows (one format per source, recognised by its fields):
- best-of-K rows as above (`ziegler-trl label export --dataset` writes them);
- a label-store export (`ziegler-trl label export`, the admin page's download): records with "answers", aggregated
  exactly as `LabelStore.to_dataset` does, since they go through the store's own import;
- TRL preference rows, as K = 2 with the chosen completion first (best 0): explicit prompt
  {"prompt", "chosen", "rejected"} or implicit prompt {"chosen", "rejected"}, text or conversational;
- an lm-human-preferences label file (`load_openai_labels`).
Every malformed input is a `LabelFileError` naming the source, the line (JSONL) or record index (JSON array,
dataset; 0-based, as `dataset[i]`) and the field.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from datasets import Dataset
from transformers import PreTrainedTokenizerBase

from ..errors import LabelFileError, shorten
from ..jsonl import JSON_WHITESPACE, check_json_value, decode_text, parse_json, parse_jsonl_text, read_bytes

logger = logging.getLogger(__name__)

OPENAI_PAD_ID = 50259  # lm-human-preferences right-pads GPT-2 token ids with this id
OPENAI_SAMPLE_FIELDS = ("sample0", "sample1", "sample2", "sample3")
IN_MEMORY = "in-memory dataset"
_UNSET = object()


def _where(lines: Sequence[int] | None, index: int) -> dict[str, int]:
    return {"line": lines[index]} if lines is not None else {"record": index}


def _fail(source: str, where: Mapping[str, int], message: str, field: str | None = None,
          value: object = _UNSET) -> LabelFileError:
    shown = {} if value is _UNSET else {"value": value}
    return LabelFileError(source, message, field=field, **where, **shown)


def _kind(value: Any) -> str | None:
    """What a prompt or completion is: "text", "messages" (a non-empty list of {"role": str, "content": str}), or
    None for anything else."""
    if isinstance(value, str):
        return "text"
    if isinstance(value, list) and value and all(
        isinstance(m, Mapping) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
        for m in value
    ):
        return "messages"
    return None


def _plain(value: Any) -> Any:
    """Text as is; messages reduced to their "role" and "content", so that rows whose messages carry other keys
    of other types (a "name" here, a "weight" there) still form one Arrow table."""
    return value if isinstance(value, str) else [{"role": m["role"], "content": m["content"]} for m in value]


def _is_index(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_row(row: Any, source: str, where: Mapping[str, int], k_seen: int | None, kind_seen: str | None
               ) -> dict[str, Any]:
    if not isinstance(row, Mapping):
        raise _fail(source, where, f"expected an object, got {type(row).__name__}")
    if "completions" not in row and "chosen" in row:
        raise _fail(source, where, "is a TRL preference row (chosen/rejected): convert the dataset with "
                    "ziegler_trl.load_label_dataset first", "completions")
    for name in ("prompt", "completions"):
        if name not in row:
            raise _fail(source, where, "missing (a best-of-K row needs 'prompt', 'completions' and 'best')", name)
    check_json_value({"prompt": row["prompt"], "completions": row["completions"]}, source, LabelFileError, **where)
    prompt, completions = row["prompt"], row["completions"]
    kind = _kind(prompt)
    if kind is None:
        raise _fail(source, where, "must be a string or a non-empty list of {'role', 'content'} messages", "prompt",
                    prompt)
    if kind_seen is not None and kind != kind_seen:
        raise _fail(source, where, f"is {kind} but earlier rows' prompts are {kind_seen}", "prompt")
    if not isinstance(completions, list) or len(completions) < 2:
        raise _fail(source, where, "must be a list of at least 2 completions", "completions", completions)
    for index, completion in enumerate(completions):
        if _kind(completion) != kind:
            wanted = "a string" if kind == "text" else "a non-empty list of {'role', 'content'} messages"
            raise _fail(source, where, f"must be {wanted}, like the prompt", f"completions[{index}]", completion)
    if kind == "text" and not prompt and any(not c for c in completions):
        raise _fail(source, where, "an empty completion after an empty prompt: nothing to score", "completions")
    k = len(completions)
    if k_seen is not None and k != k_seen:
        raise _fail(source, where, f"has {k} completions but earlier rows have {k_seen}", "completions")
    out: dict[str, Any] = {"prompt": _plain(prompt), "completions": [_plain(c) for c in completions]}
    ranking = row.get("ranking")
    if ranking is not None:
        if not isinstance(ranking, list) or not all(_is_index(i) for i in ranking) or sorted(ranking) != list(range(k)):
            raise _fail(source, where, f"must be a permutation of 0..{k - 1}", "ranking", ranking)
        out["ranking"] = ranking
    best = row.get("best")
    if best is None:
        if ranking is None:
            raise _fail(source, where, "missing (give 'best', or a 'ranking' whose first entry is the best)", "best")
        best = ranking[0]
    if not _is_index(best) or not 0 <= best < k:
        raise _fail(source, where, f"must be an integer in 0..{k - 1}", "best", best)
    if ranking is not None and ranking[0] != best:
        raise _fail(source, where, f"is {best} but 'ranking' starts with {ranking[0]}", "best")
    out["best"] = best
    return out


def validate_label_rows(rows: Iterable[Mapping[str, Any]], source: str, *, lines: Sequence[int] | None = None
                        ) -> list[dict[str, Any]]:
    """Check every row against the best-of-K schema and return the rows' schema fields.

    A fault is a `LabelFileError` naming `source`, the row (its line in `source` when `lines` is given, else its
    0-based index) and the field. All rows must have the same K and the same kind of prompt (text or messages),
    and either all or none a 'ranking'.
    """
    checked: list[dict[str, Any]] = []
    for index, row in enumerate(rows):
        k_seen = len(checked[0]["completions"]) if checked else None
        kind_seen = _kind(checked[0]["prompt"]) if checked else None
        checked.append(_check_row(row, source, _where(lines, index), k_seen, kind_seen))
    if not checked:
        raise LabelFileError(source, "no label rows")
    with_ranking = ["ranking" in r for r in checked]
    if any(with_ranking) and not all(with_ranking):
        index = with_ranking.index(not with_ranking[0])
        raise _fail(source, _where(lines, index), "some rows have 'ranking' and others do not; give it for all rows "
                    "or none", "ranking")
    return checked


def _split_shared_prompt(chosen: Any, rejected: Any) -> tuple[Any, Any, Any]:
    """(prompt, chosen rest, rejected rest): the prompt is the longest common prefix, in characters for text and in
    whole messages for conversations, as TRL's `extract_prompt` finds it. Each completion keeps at least one
    character or message, and a space just before the split starts the completions rather than ending the
    prompt (TRL does the same when the two differ inside the prefix, and here also when one is a prefix of the
    other)."""
    limit = min(len(chosen), len(rejected)) - 1
    n = 0
    while n < limit and chosen[n] == rejected[n]:
        n += 1
    if isinstance(chosen, str) and n > 0 and chosen[n - 1] == " ":
        n -= 1
    return chosen[:n], chosen[n:], rejected[n:]


def _preference_row(row: Mapping[str, Any], source: str, where: Mapping[str, int]) -> dict[str, Any]:
    """A TRL preference row as a best-of-2 row with the chosen completion first.

    As TRL's `maybe_extract_prompt`: a 'prompt' of the same kind as 'chosen' (both text or both conversational) is
    the prompt; otherwise the prompt is extracted from 'chosen' and 'rejected' (some datasets carry a text 'prompt'
    beside full conversations)."""
    for name in ("chosen", "rejected"):
        if row.get(name) is None:
            raise _fail(source, where, "missing (a TRL preference row needs 'chosen' and 'rejected')", name)
    chosen, rejected, prompt = row["chosen"], row["rejected"], row.get("prompt")
    kind = _kind(chosen)
    if kind is None:
        raise _fail(source, where, "must be a string or a non-empty list of {'role', 'content'} messages", "chosen",
                    chosen)
    if _kind(rejected) != kind:
        raise _fail(source, where, f"must be {'a string' if kind == 'text' else 'messages'}, like 'chosen'",
                    "rejected", rejected)
    if prompt is not None and _kind(prompt) is None:
        raise _fail(source, where, "must be a string or a non-empty list of {'role', 'content'} messages", "prompt",
                    prompt)
    if prompt is None or _kind(prompt) != kind:
        prompt, chosen, rejected = _split_shared_prompt(chosen, rejected)
        if kind == "messages" and not prompt:
            raise _fail(source, where, "'chosen' and 'rejected' share no first message to serve as the prompt; "
                        "give a 'prompt' field", "prompt")
    return {"prompt": prompt, "completions": [chosen, rejected], "best": 0}


def _record_format(record: Any, source: str, where: Mapping[str, int]) -> str:
    if not isinstance(record, Mapping):
        raise _fail(source, where, f"expected an object, got {type(record).__name__}")
    keys = set(record)
    found = [name for name, marks in (
        ("a label-store export record", {"answers"}),
        ("an lm-human-preferences record", set(OPENAI_SAMPLE_FIELDS)),
        ("a TRL preference row", {"chosen", "rejected"}),
        ("a best-of-K row", {"completions"}),
    ) if keys & marks]
    if not found:
        raise _fail(source, where, "is not a label record: expected 'completions' (best-of-K rows), 'chosen' and "
                    "'rejected' (TRL preference rows), 'answers' (a label-store export) or 'sample0'..'sample3' "
                    f"(lm-human-preferences); found fields {sorted(map(str, keys))[:8]}")
    if found[0] == "a label-store export record":
        return found[0]  # an export record also has 'completions'
    if len(found) > 1:
        raise _fail(source, where, f"has the fields of both {found[0]} and {found[1]}; which is it?")
    return found[0]


def _read_records(source: str) -> tuple[list[Any], list[int] | None]:
    """The records of a JSON array file (lines None) or of a JSONL file (with their line numbers)."""
    if source.startswith(("http://", "https://")):
        import fsspec

        with fsspec.open(source, "rb") as handle:
            data = handle.read()
    else:
        data = read_bytes(source, LabelFileError)
    text = decode_text(data, source, LabelFileError)
    if not text.strip(JSON_WHITESPACE):
        raise LabelFileError(source, "empty file")
    if text.lstrip(JSON_WHITESPACE).startswith("["):
        value = parse_json(text, source, LabelFileError, check=False)
        if not isinstance(value, list):
            raise LabelFileError(source, "expected a JSON array of records or one JSON object per line")
        for index, record in enumerate(value):
            check_json_value(record, source, LabelFileError, record=index)
        return value, None
    parsed = parse_jsonl_text(text, source, LabelFileError)
    return [value for _, value in parsed], [line for line, _ in parsed]


def _token_ids(record: Mapping[str, Any], field: str, source: str, where: Mapping[str, int]) -> list[int]:
    if field not in record:
        raise _fail(source, where, "missing", field)
    ids = record[field]
    if not isinstance(ids, list) or not all(_is_index(t) for t in ids):
        raise _fail(source, where, "expected a list of integer token ids", field, ids)
    return [t for t in ids if t != OPENAI_PAD_ID]


def _openai_dataset(records: list[Any], source: str, lines: list[int] | None,
                    tokenizer: PreTrainedTokenizerBase | None) -> Dataset:
    if not records:
        raise LabelFileError(source, "expected a non-empty JSON array of label records")
    parsed = []
    for index, record in enumerate(records):
        where = _where(lines, index)
        if not isinstance(record, Mapping):
            raise _fail(source, where, f"expected an object, got {type(record).__name__}")
        samples = sorted(str(k) for k in record if str(k).startswith("sample"))
        if samples != list(OPENAI_SAMPLE_FIELDS):
            raise _fail(source, where, f"expected fields {list(OPENAI_SAMPLE_FIELDS)} (K=4), found {samples}")
        query = _token_ids(record, "query", source, where)
        completions = [_token_ids(record, name, source, where) for name in OPENAI_SAMPLE_FIELDS]
        if "best" not in record:
            raise _fail(source, where, "missing", "best")
        best = record["best"]
        if not _is_index(best) or not 0 <= best < 4:
            raise _fail(source, where, "expected an integer in 0..3", "best", best)
        parsed.append((where, query, completions, best))
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
    for where, query, completions, _ in parsed:
        for name, ids in zip(("query",) + OPENAI_SAMPLE_FIELDS, [query] + completions):
            bad = [t for t in ids if not 0 <= t < vocab_size]
            if bad:
                raise _fail(source, where, f"token id {shorten(bad[0], 24)} is outside the tokenizer's vocabulary "
                            f"({vocab_size}); is this tokenizer GPT-2's?", name)
    return Dataset.from_dict(
        {
            "prompt": [tokenizer.decode(q) for _, q, _, _ in parsed],
            "completions": [[tokenizer.decode(c) for c in cs] for _, _, cs, _ in parsed],
            "best": [b for _, _, _, b in parsed],
        }
    )


def load_openai_labels(path_or_url: str, tokenizer: PreTrainedTokenizerBase | None = None) -> Dataset:
    """Read a released lm-human-preferences label file into best-of-K rows.

    Each record holds `query` and `sample0..sample3` as GPT-2 token ids right-padded with id 50259, and `best` in
    0..3. Pad ids are stripped and the ids decoded with `tokenizer` (default: GPT-2's, which needs the Hub or a
    local cache). The whole file is checked before anything is returned; a fault is a `LabelFileError` naming the
    file, the record index (JSON array) or line (JSONL) and the field.
    """
    records, lines = _read_records(str(path_or_url))
    return _openai_dataset(records, str(path_or_url), lines, tokenizer)


def _store_export_dataset(records: list[Any], source: str, lines: list[int] | None, aggregate: str) -> Dataset:
    """Best-of-K rows of a label-store export, through an in-memory store: the same checks, uid matching and
    aggregation as importing the file into a store and calling `to_dataset(aggregate)`."""
    from ..labeling.store import LabelStore

    store = LabelStore(":memory:")
    try:
        store.import_records(records, source, lines=lines)
        counts = store.counts()
        left_out = counts["comparisons"] - counts["answered_comparisons"]
        if not counts["answered_comparisons"]:
            raise LabelFileError(source, f"none of its {counts['comparisons']} comparisons has an answer other than "
                                 "a skip: nothing to train on")
        if left_out or counts["skipped"]:
            logger.warning(f"{source}: left out {left_out} of {counts['comparisons']} comparisons with no answer "
                           f"other than a skip, and {counts['skipped']} skipped answers")
        return store.to_dataset(aggregate)
    finally:
        store.close()


def load_label_dataset(
    source: str | Path | Dataset | Iterable[Mapping[str, Any]],
    tokenizer: PreTrainedTokenizerBase | None = None,
    split: str = "train",
    aggregate: str = "majority",
) -> Dataset:
    """Best-of-K rows from any label source: a local JSON/JSONL file, a URL, a Hub dataset id (its `split`), a
    `datasets.Dataset` or a list of rows, holding any format listed in this module's docstring.

    `aggregate` says how several answers to one comparison of a label-store export become rows ("majority",
    "first" or "all", as `LabelStore.to_dataset`); `tokenizer` decodes an lm-human-preferences file.
    """
    lines: list[int] | None = None
    if isinstance(source, (str, Path)):
        name = str(source)
        if Path(name).is_file() or name.startswith(("http://", "https://")):
            records, lines = _read_records(name)
        elif name.endswith((".json", ".jsonl")):
            raise LabelFileError(name, "no such file")
        else:
            from datasets import load_dataset

            records = list(load_dataset(name, split=split))
    else:
        name, records = IN_MEMORY, list(source)
    if not records:
        raise LabelFileError(name, "no label records")
    formats = [_record_format(record, name, _where(lines, i)) for i, record in enumerate(records)]
    for index, found in enumerate(formats):
        if found != formats[0]:
            raise _fail(name, _where(lines, index), f"is {found} but the first record is {formats[0]}; a source "
                        "holds one format")
    if formats[0] == "an lm-human-preferences record":
        return _openai_dataset(records, name, lines, tokenizer)
    if formats[0] == "a label-store export record":
        return _store_export_dataset(records, name, lines, aggregate)
    if formats[0] == "a TRL preference row":
        records = [_preference_row(r, name, _where(lines, i)) for i, r in enumerate(records)]
    return Dataset.from_list(validate_label_rows(records, name, lines=lines))
