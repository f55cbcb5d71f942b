"""The paper's four tasks: query formatting, response truncation, and the data sources they read.

Values follow Ziegler et al. (2019) and its released code (lm-human-preferences `launch.py`):

| task            | query | response | T   | prefix        | suffix       | truncate token | after |
|-----------------|-------|----------|-----|---------------|--------------|----------------|-------|
| sentiment       | 64    | 24       | 0.7 |               |              | "."            | 16    |
| descriptiveness | 64    | 24       | 0.7 |               |              | "."            | 16    |
| tldr            | 500   | 75       | 0.7 |               | "\\n\\nTL;DR:" | "\\n"           | 55    |
| cnndm           | 500   | 75       | 0.5 | "Article:\\n\\n" | "\\n\\nTL;DR:" | "\\n"           | 55    |

`query_length` is the content's budget: the policy reads prefix ‖ content ‖ suffix, up to query_length + |prefix| +
|suffix| tokens, and the reward model the content alone (the paper's code pads the content to query_length and adds
the prefix and suffix around it). Book queries start after the first "." of a passage and end at the last "." that
fits (start/end text "."), so they are whole sentences; a passage whose only "." is its last token is kept whole, as
the paper's code keeps it. CNN/DM articles are cut to the budget at the last newline; TL;DR posts are cut at the
budget. A response is cut after the first truncate token at index >= truncate_after; a response without one is
invalid and scores the penalty −1 instead of the reward model's score. With `stop_at_eos` (not the paper's: GPT-2
had no end of turn) a response also ends before the tokenizer's first EOS, which makes it valid: an instruct model's
`<|im_end|>` ends its answer, and what it samples after it (a new chat turn) is no part of the response.
"""

from __future__ import annotations

import logging
import re
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from datasets import Dataset
from transformers import PreTrainedTokenizerBase

from .errors import DataFileError, UserInputError
from .jsonl import parse_json, read_jsonl

logger = logging.getLogger(__name__)

_CARPERAI_POST = re.compile(r"^SUBREDDIT: .*?\nTITLE: .*?\nPOST: (?P<post>.*?)\s*TL;DR:\s*$", re.DOTALL)


def post_from_carperai_prompt(prompt: str) -> str:
    """The post body of a `CarperAI/openai_summarize_tldr` prompt: "SUBREDDIT: r/…\\nTITLE: …\\nPOST: …\\nTL;DR:".

    The paper's TL;DR queries are the post alone, with the task's own "\\n\\nTL;DR:" suffix after it; reading the
    prompt whole would put the subreddit and title in the query and end it in "TL;DR:\\n\\nTL;DR:".
    Raises ValueError for a prompt not in that form.
    """
    match = _CARPERAI_POST.match(prompt)
    if match is None:
        raise ValueError('not a prompt of the form "SUBREDDIT: …\\nTITLE: …\\nPOST: … TL;DR:"')
    return match["post"].strip()


@dataclass(frozen=True)
class HubSource:
    """A Hub dataset holding a task's texts: the fields with the text and its reference, and how to read them.

    `archive`: a zip of JSON lines to read directly, for a repository whose rows only its loading script could build
    (current `datasets` runs none); an `hf://` URL is read by range requests, so a limit reads only the first rows.
    `read_text`: pulls the task's text out of a field that holds more; raises ValueError on a malformed one.
    """

    path: str
    text_field: str
    reference_field: str | None = None
    config: str | None = None
    archive: str | None = None
    read_text: Callable[[str], str] | None = None


@dataclass(frozen=True)
class TaskSpec:
    """One task of the paper: how queries are built from raw text and how responses are cut and judged."""

    name: str
    query_length: int  # content tokens; the task's prefix and suffix come on top
    response_length: int
    temperature: float
    truncate_token: str
    truncate_after: int
    penalty_reward: float = -1.0
    query_prefix: str = ""
    query_suffix: str = ""
    start_text: str | None = None
    end_text: str | None = None
    # Books drop passages without a sentence end (the paper's code); CNN/DM keeps a hard cut when the article
    # has no newline (the HF release joins paragraphs with spaces).
    drop_without_end_text: bool = True
    stop_at_eos: bool = False
    text_field: str = "text"
    reference_field: str | None = None
    hf_sources: dict[str, HubSource] = field(default_factory=dict)


_BOOKS = {"bookcorpus": HubSource("bookcorpus", "text")}
# The Webis-TLDR-17 corpus as its repository hosts it (pinned): the loading scripts beside it no longer run
WEBIS_TLDR17_ARCHIVE = (
    "hf://datasets/webis/tldr-17@346e63701301066e19f26e64ee717ad44b95d466/data/corpus-webis-tldr-17.zip"
)
_TLDR = {
    "webis/tldr-17": HubSource("webis/tldr-17", "content", "summary", archive=WEBIS_TLDR17_ARCHIVE),
    "CarperAI/openai_summarize_tldr": HubSource(
        "CarperAI/openai_summarize_tldr", "prompt", "label", read_text=post_from_carperai_prompt
    ),
}
_CNNDM = {"cnn_dailymail": HubSource("cnn_dailymail", "article", "highlights", config="3.0.0")}

TASKS: dict[str, TaskSpec] = {
    "sentiment": TaskSpec(
        "sentiment", 64, 24, 0.7, ".", 16, start_text=".", end_text=".", text_field="text", hf_sources=_BOOKS
    ),
    "descriptiveness": TaskSpec(
        "descriptiveness", 64, 24, 0.7, ".", 16, start_text=".", end_text=".", text_field="text", hf_sources=_BOOKS
    ),
    "tldr": TaskSpec(
        "tldr", 500, 75, 0.7, "\n", 55, query_suffix="\n\nTL;DR:", text_field="post", reference_field="summary", hf_sources=_TLDR,
    ),
    "cnndm": TaskSpec(
        "cnndm", 500, 75, 0.5, "\n", 55, query_prefix="Article:\n\n", query_suffix="\n\nTL;DR:", end_text="\n",
        drop_without_end_text=False, text_field="article", reference_field="highlights", hf_sources=_CNNDM,
    ),
}


def get_task(task: str | TaskSpec) -> TaskSpec:
    if isinstance(task, TaskSpec):
        return task
    if task not in TASKS:
        raise UserInputError(f"Unknown task {task!r}; choose one of {sorted(TASKS)}")
    return TASKS[task]


def single_token_id(tokenizer: PreTrainedTokenizerBase, text: str) -> int:
    """The id of `text` when the tokenizer encodes it as exactly one token (the paper's truncate/start tokens)."""
    ids = tokenizer.encode(text, add_special_tokens=False)
    if len(ids) != 1:
        raise ValueError(f"{text!r} is {len(ids)} tokens for tokenizer {tokenizer.name_or_path!r}; need exactly 1")
    return ids[0]


@dataclass
class Query:
    """A formatted query: `ids` go to the policy (with prefix/suffix), `reward_ids` to the reward model (without)."""

    ids: list[int]
    reward_ids: list[int]


def query_from_content(content: list[int], task: str | TaskSpec, tokenizer: PreTrainedTokenizerBase) -> Query:
    """The query whose content tokens are `content`: the policy reads prefix ‖ content ‖ suffix, the reward model
    the content alone (the paper's `query_formatter`, which joins token lists, never re-encoded text)."""
    task = get_task(task)
    prefix = tokenizer.encode(task.query_prefix, add_special_tokens=False) if task.query_prefix else []
    suffix = tokenizer.encode(task.query_suffix, add_special_tokens=False) if task.query_suffix else []
    return Query(ids=prefix + list(content) + suffix, reward_ids=list(content))


def format_query(text: str, task: str | TaskSpec, tokenizer: PreTrainedTokenizerBase) -> Query | None:
    """Turn a raw text into the task's query, or None when the paper's rules reject it (lm-human-preferences
    `Dataset.tf_dataset`):

    1. with a start token: none in the text → None; else the tokens after the first one, unless it is the text's
       last token, which keeps the text whole;
    2. the first `query_length` tokens (the content budget; prefix and suffix are added around it);
    3. with an end token: cut after the last one in the budget; none there → None (or, for CNN/DM, whose HF release
       joins paragraphs with spaces, the hard cut is kept: `drop_without_end_text=False`).

    A text that leaves no tokens (an empty string) gives None too: there is nothing to condition on.
    """
    task = get_task(task)
    tokens = tokenizer.encode(text, add_special_tokens=False)
    if task.start_text is not None:
        start = single_token_id(tokenizer, task.start_text)
        if start not in tokens:
            return None
        first = tokens.index(start) + 1
        if first < len(tokens):
            tokens = tokens[first:]
    tokens = tokens[: task.query_length]
    if task.end_text is not None:
        end = single_token_id(tokenizer, task.end_text)
        if end in tokens:
            tokens = tokens[: len(tokens) - tokens[::-1].index(end)]
        elif task.drop_without_end_text:
            return None
    if not tokens:
        return None
    return query_from_content(tokens, task, tokenizer)


def truncate_responses(
    responses: torch.Tensor, task: str | TaskSpec, tokenizer: PreTrainedTokenizerBase
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut each response after its first truncate token at index >= truncate_after; pad the rest.

    Returns (truncated ids [B, T], valid [B]); a response with no truncate token in the window is invalid and
    earns `task.penalty_reward` instead of the reward model's score. A task without a truncate token keeps whole
    responses, all valid. With `task.stop_at_eos` a response also ends before its first EOS (dropped), and one
    that ends so is valid.
    """
    task = get_task(task)
    positions = torch.arange(responses.shape[1], device=responses.device)
    if task.truncate_token:
        hits = (responses == single_token_id(tokenizer, task.truncate_token)) & (positions >= task.truncate_after)
        valid = hits.any(dim=1)
        first_hit = torch.where(valid, hits.float().argmax(dim=1), responses.shape[1] - 1)
        keep = positions.unsqueeze(0) <= first_hit.unsqueeze(1)
    else:
        valid = torch.ones(responses.shape[0], dtype=torch.bool, device=responses.device)
        keep = torch.ones_like(responses, dtype=torch.bool)
    if task.stop_at_eos:
        if tokenizer.eos_token_id is None:
            raise ValueError(f"task {task.name!r} stops at EOS, but the tokenizer has no eos_token_id")
        eos = responses == tokenizer.eos_token_id
        has_eos = eos.any(dim=1)
        first_eos = torch.where(has_eos, eos.float().argmax(dim=1), responses.shape[1])
        keep &= positions.unsqueeze(0) < first_eos.unsqueeze(1)
        valid |= has_eos
    return torch.where(keep, responses, tokenizer.pad_token_id), valid


_CNN_HEADER = re.compile(r"^\s*(?:[A-Z][A-Z .'-]+(?:,[A-Za-z .'-]{1,40})?\s*)?\(CNN\)\s*(?:--\s*)?")
_DM_HEADER = re.compile(r"^\s*(?:By \. .*?\. )?(?:PUBLISHED: \. .*?\. \| \. )?UPDATED: \. .*?\d{4} \. ", re.DOTALL)
_DM_BYLINE = re.compile(r"^\s*By \. [^.]{1,80} \. ")


def clean_cnndm(article: str) -> str:
    """Drop the headers the paper removed: "(CNN)" / "LONDON, England (CNN) --", and Daily Mail's
    "By . Name . PUBLISHED: ... | . UPDATED: ... ." lines."""
    article = _DM_HEADER.sub("", article, count=1)
    article = _DM_BYLINE.sub("", article, count=1)
    return _CNN_HEADER.sub("", article, count=1).strip()


def _clean(task: TaskSpec, text: str) -> str:
    return clean_cnndm(text) if task.name == "cnndm" else text


def load_jsonl_texts(path: str | Path, task: str | TaskSpec, limit: int | None = None) -> Dataset:
    """Read a JSONL file into a Dataset with `text` (and `reference` for summarization tasks).

    Any fault is a `DataFileError` naming the file, the 1-based line and the field: bytes that are not UTF-8 (or
    UTF-16/32 with a byte-order mark), bad JSON, a record that is not an object, a missing field, a value that is
    not a non-empty string, a lone surrogate.
    """
    task = get_task(task)
    return _task_rows(read_jsonl(path, DataFileError), task, path, task.text_field, task.reference_field, limit)


def _task_rows(records: Iterable[tuple[int, object]], task: TaskSpec, source: str | Path, text_field: str,
               reference_field: str | None, limit: int | None, leave_out_empty: bool = False) -> Dataset:
    """`text` (and `reference`) from (line, record) pairs, checked as `load_jsonl_texts` says; the first `limit`.

    `leave_out_empty`: a record whose fields are missing or blank is left out and counted (a warning says how many)
    instead of stopping the read: for a Hub corpus, which its user cannot fix.
    """
    fields = [text_field] + ([reference_field] if reference_field else [])
    rows: dict[str, list[str]] = {"text": [], "reference": []}
    left_out = 0
    for line_no, record in records:
        if not isinstance(record, dict):
            raise DataFileError(source, f"expected a JSON object, got {type(record).__name__}", line=line_no)
        empty = [name for name in fields if not isinstance(record.get(name), str) or not record[name].strip()]
        if empty and leave_out_empty:
            left_out += 1
            continue
        if empty and empty[0] not in record:
            raise DataFileError(source, f"missing (task {task.name!r} reads {fields})", line=line_no, field=empty[0])
        if empty:
            raise DataFileError(source, "must be a non-empty string", line=line_no, field=empty[0],
                                value=record[empty[0]])
        rows["text"].append(_clean(task, record[text_field]))
        rows["reference"].append(record[reference_field] if reference_field else "")
        if limit is not None and len(rows["text"]) >= limit:
            break  # before the next record is read: a stream stops here
    if left_out:
        logger.warning(f"{source}: left out {left_out} records with an empty or missing {' or '.join(fields)}")
    if not rows["text"]:
        raise DataFileError(source, "no records" + (f" with a non-empty {' and '.join(fields)}" if left_out else ""))
    if not reference_field:
        del rows["reference"]
    return Dataset.from_dict(rows)


def _archive_records(url: str) -> Iterable[tuple[int, object]]:
    """(1-based line, record) of the one JSON-lines file in the zip at `url` (a path, or an fsspec URL such as
    `hf://datasets/...`), read as a stream: stopping early reads only the start of the archive."""
    import fsspec

    with fsspec.open(url, "rb") as raw, zipfile.ZipFile(raw) as archive:
        members = [name for name in archive.namelist()
                   if name.endswith((".json", ".jsonl")) and not name.startswith("__MACOSX/")]
        if len(members) != 1:
            raise DataFileError(url, f"expected one JSON-lines file in the archive, found {members}")
        where = f"{url}!{members[0]}"
        with archive.open(members[0]) as member:
            for line_no, line in enumerate(member, start=1):
                if line.strip():
                    try:
                        text = line.decode("utf-8")
                    except UnicodeDecodeError as error:
                        raise DataFileError(where, f"not valid UTF-8 ({error.reason})", line=line_no) from None
                    yield line_no, parse_json(text, where, line=line_no)


# `load_task_texts(task, "builtin")`: the small offline sample shipped in the package for each task, so that recipes and
# examples run without downloads (ziegler_trl/data/README.md says what the files hold and under which licence).
BUILTIN = "builtin"
BUILTIN_FILES = {
    "sentiment": "passages.jsonl",
    "descriptiveness": "passages.jsonl",
    "tldr": "tldr.jsonl",
    "cnndm": "cnndm.jsonl",
}


def builtin_texts_path(task: str | TaskSpec) -> Path:
    """The packaged JSONL file behind `load_task_texts(task, "builtin")`."""
    task = get_task(task)
    if task.name not in BUILTIN_FILES:
        raise UserInputError(f"task {task.name!r} has no builtin texts; builtin covers {sorted(BUILTIN_FILES)}")
    return Path(__file__).with_name("data") / BUILTIN_FILES[task.name]


def load_task_texts(
    task: str | TaskSpec, source: str, split: str = "train", limit: int | None = None
) -> Dataset:
    """Raw texts for a task from a JSONL file, the package's own sample (`"builtin"`), or one of the task's Hub
    datasets (needs the Hub; with a `limit`, only the first rows are read, not the whole corpus).

    `"builtin"` reads the small sample shipped in `ziegler_trl/data/` like any JSONL file (one set: `split` does
    not apply, as for files); a file of that name is reached as `./builtin`.
    """
    task = get_task(task)
    if source == BUILTIN:
        return load_jsonl_texts(builtin_texts_path(task), task, limit)
    if source.endswith((".jsonl", ".json")) or Path(source).is_file():
        return load_jsonl_texts(source, task, limit)
    if source not in task.hf_sources:
        raise DataFileError(
            source, f"not a file, {BUILTIN!r}, nor one of the Hub sources of task {task.name!r}: "
            f"{sorted(task.hf_sources)}"
        )
    hub = task.hf_sources[source]
    if hub.archive is not None:
        if split != "train":
            raise UserInputError(f"{source} has one split, 'train'; got split {split!r}")
        return _task_rows(_archive_records(hub.archive), task, hub.archive, hub.text_field, hub.reference_field, limit,
                          leave_out_empty=True)
    from datasets import load_dataset

    where = f"{source} (split {split!r})"
    if limit is None:
        rows = load_dataset(hub.path, hub.config, split=split)
    else:  # the first rows, streamed: not a whole corpus downloaded for a few hundred
        rows = Dataset.from_list(list(load_dataset(hub.path, hub.config, split=split, streaming=True).take(limit)))
    for needed in filter(None, (hub.text_field, hub.reference_field)):
        if needed not in rows.column_names:
            raise DataFileError(where, f"has no column {needed!r} (columns: {rows.column_names})", field=needed)
    texts = list(rows[hub.text_field])
    if hub.read_text is not None:
        for index, raw in enumerate(texts):
            try:
                texts[index] = hub.read_text(raw)
            except ValueError as error:
                raise DataFileError(where, str(error), record=index, field=hub.text_field, value=raw) from None
    columns = {"text": [_clean(task, t) for t in texts]}
    if hub.reference_field:
        columns["reference"] = list(rows[hub.reference_field])
    return Dataset.from_dict(columns)


def build_queries(
    texts: list[str], task: str | TaskSpec, tokenizer: PreTrainedTokenizerBase
) -> list[Query]:
    """Format many texts, keeping those the task's rules accept."""
    return [q for q in (format_query(t, task, tokenizer) for t in texts) if q is not None]
