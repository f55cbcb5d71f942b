"""What the label store holds, checked before SQLite sees it: the `Comparison` and `Answer` records, the validation
of every field (a `FieldError` names the field), and `parse_label_record` for one line of a label file."""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import LabelFileError, shorten
from ..jsonl import has_lone_surrogate


class LabelConflictError(ValueError):
    """A labeler sent a second, different answer for a comparison they already answered."""


@dataclass(frozen=True)
class Comparison:
    """One query with its K completions, as stored."""

    id: int
    uid: str
    prompt: str
    completions: list[str]
    task: str | None = None
    round: int | None = None
    policy: str | None = None
    created: float = 0.0

    @property
    def k(self) -> int:
        return len(self.completions)


@dataclass(frozen=True)
class Answer:
    """One labeler's judgement of one comparison; indices refer to the stored order of the completions."""

    comparison_id: int
    labeler: str
    best: int | None = None
    ranking: list[int] | None = None
    shown_order: list[int] | None = None
    skipped: bool = False
    shown_at: float | None = None
    answered_at: float = field(default=0.0, compare=False)
    id: int | None = field(default=None, compare=False)
    retracted: bool = field(default=False, compare=False)  # taken back by its labeler; only with include_retracted

    def same_judgement(self, other: Answer) -> bool:
        return (self.best, self.ranking, self.skipped, self.shown_order) == (
            other.best,
            other.ranking,
            other.skipped,
            other.shown_order,
        )


SQLITE_INTEGER_MAX = 2**63 - 1  # SQLite stores 64-bit signed integers; a larger Python int cannot be bound
_NO_VALUE = object()


class FieldError(ValueError):
    """A value the store cannot hold; `field` says where it is (e.g. "completions[1]", "answers[0].best")."""

    def __init__(self, field: str, message: str, value: object = _NO_VALUE):
        self.field, self.message, self.value = field, message, value
        super().__init__(f"field {field!r} {message}" + ("" if value is _NO_VALUE else f" (got {shorten(value)})"))

    def within(self, prefix: str) -> FieldError:
        """The same error with the field path under `prefix` (a record's "answers[2]", ...)."""
        return FieldError(f"{prefix}.{self.field}", self.message, self.value)


def _check_text(value: object, name: str, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str):
        raise FieldError(name, "must be a string" + (" or null" if optional else ""), value)
    if has_lone_surrogate(value):
        raise FieldError(name, "holds a lone surrogate, which UTF-8 (and so SQLite) cannot store", value)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate_timestamp(value: object, name: str) -> float | None:
    """Seconds since the epoch as a finite float (None stays None); anything else is a FieldError."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FieldError(name, "must be a number of seconds", value)
    try:
        seconds = float(value)
    except OverflowError:  # an int beyond float range
        seconds = math.inf
    if not math.isfinite(seconds):
        raise FieldError(name, "must be a finite number of seconds", value)
    return seconds


def validate_answer(k: int, best: int | None, ranking: Sequence[int] | None, shown_order: Sequence[int] | None,
                    skipped: bool, *, shown_at: object = None, answered_at: object = None) -> None:
    """Raise a FieldError (a ValueError) naming the field when an answer cannot describe a K-way comparison."""
    if not isinstance(skipped, bool):
        raise FieldError("skipped", "must be true or false", skipped)
    for name, perm in (("ranking", ranking), ("shown_order", shown_order)):
        if perm is not None and (
            not isinstance(perm, (list, tuple)) or not all(_is_int(i) for i in perm) or sorted(perm) != list(range(k))
        ):
            raise FieldError(name, f"must be a permutation of 0..{k - 1}", perm)
    if skipped:
        if best is not None or ranking is not None:
            raise FieldError("skipped", "is true, so 'best' and 'ranking' must be null")
    elif best is None:
        raise FieldError("best", "is required unless the answer is skipped")
    if best is not None and (not _is_int(best) or not 0 <= best < k):
        raise FieldError("best", f"must be an integer in [0, {k})", best)
    if ranking is not None and best is not None and ranking[0] != best:
        raise FieldError("ranking", f"starts with {ranking[0]} but 'best' is {best}")
    validate_timestamp(shown_at, "shown_at")
    validate_timestamp(answered_at, "answered_at")


def validate_comparison(prompt: object, completions: object, *, task: object = None, round: object = None,
                        policy: object = None, uid: object = None, created: object = None) -> None:
    """Raise a FieldError (a ValueError) naming the field when a comparison cannot be stored as given."""
    _check_text(prompt, "prompt")
    if not isinstance(completions, (list, tuple)) or len(completions) < 2:
        raise FieldError("completions", "must be a list of at least 2 strings", completions)
    for index, completion in enumerate(completions):
        _check_text(completion, f"completions[{index}]")
    for name, value in (("task", task), ("policy", policy), ("uid", uid)):
        _check_text(value, name, optional=True)
    if round is not None and (not _is_int(round) or not 0 <= round <= SQLITE_INTEGER_MAX):
        raise FieldError("round", "must be an integer in [0, 2**63) or null", round)
    validate_timestamp(created, "created")


def _content_uid(prompt: str, completions: Sequence[str], task: str | None, round_: int | None) -> str:
    """The uid of a comparison imported without one: a hash of its content, so importing it twice matches."""
    payload = json.dumps([prompt, list(completions), task, round_], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:32]


COMPARISON_FIELDS = ("uid", "prompt", "completions", "task", "round", "policy", "created")
RECORD_FIELDS = (*COMPARISON_FIELDS, "answers", "best", "ranking", "labeler")
ANSWER_FIELDS = ("labeler", "best", "ranking", "shown_order", "skipped", "shown_at", "answered_at")


def parse_label_record(raw: object, source: str | Path, labeler: str = "import", *, line: int | None = None,
                       record: int | None = None) -> tuple[dict, list[tuple[str | None, dict]]]:
    """Check one `import_jsonl` record (at `line` of `source`, or index `record`); returns (comparison,
    [(field path of the answer, answer fields)]).

    Every value is checked before SQLite sees it (types, integer ranges, finite timestamps, storable text); a fault
    is a `LabelFileError` naming `source`, the line (or record) and the field.
    """

    def fail(message: str, field: str | None = None, value: object = _NO_VALUE) -> LabelFileError:
        shown = {} if value is _NO_VALUE else {"value": value}
        return LabelFileError(source, message, line=line, record=record, field=field, **shown)

    if not isinstance(raw, dict):
        raise fail(f"expected a JSON object, got {type(raw).__name__}")
    unknown = [name for name in raw if name not in RECORD_FIELDS]
    if unknown:
        raise fail(f"is not a field of a label record (known: {', '.join(RECORD_FIELDS)})", str(unknown[0]))
    for name in ("prompt", "completions"):
        if name not in raw:
            raise fail("missing (a record needs 'prompt' and 'completions')", name)
    comparison = {name: raw.get(name) for name in COMPARISON_FIELDS}
    try:
        validate_comparison(**comparison)
    except FieldError as err:
        raise fail(err.message, err.field, err.value) from None
    comparison["completions"] = list(comparison["completions"])
    comparison["uid"] = comparison["uid"] or _content_uid(
        comparison["prompt"], comparison["completions"], comparison["task"], comparison["round"]
    )
    comparison["created"] = validate_timestamp(comparison["created"], "created") or time.time()

    if "answers" in raw:
        if any(name in raw for name in ("best", "ranking", "labeler")):
            raise fail("a record with 'answers' gives 'best', 'ranking' and 'labeler' inside each answer", "answers")
        if not isinstance(raw["answers"], list):
            raise fail("must be a list of answers", "answers", raw["answers"])
        given = [(f"answers[{i}]", item) for i, item in enumerate(raw["answers"])]
    elif "best" in raw or "ranking" in raw:
        row = {name: raw[name] for name in ("best", "ranking", "labeler") if name in raw}
        if "best" not in row and isinstance(row["ranking"], list) and row["ranking"]:
            row["best"] = row["ranking"][0]  # a ranking alone: its first entry is the best
        given = [(None, row)]
    elif "labeler" in raw:
        raise fail("names a labeler but gives no 'best' or 'ranking'", "labeler", raw["labeler"])
    else:
        given = []  # an unanswered comparison, for people to label
    answers = []
    for prefix, item in given:
        if not isinstance(item, dict):
            raise fail(f"expected an object, got {type(item).__name__}", prefix)
        unknown = [name for name in item if name not in ANSWER_FIELDS]
        if unknown:
            raise fail(f"is not a field of an answer (known: {', '.join(ANSWER_FIELDS)})",
                       f"{prefix}.{unknown[0]}" if prefix else str(unknown[0]))
        answer = {"labeler": item.get("labeler", labeler), "best": item.get("best"), "ranking": item.get("ranking"),
                  "shown_order": item.get("shown_order"), "skipped": item.get("skipped", False),
                  "shown_at": item.get("shown_at"), "answered_at": item.get("answered_at")}
        try:
            _check_text(answer["labeler"], "labeler")
            if not answer["labeler"]:
                raise FieldError("labeler", "must be a non-empty string", answer["labeler"])
            validate_answer(len(comparison["completions"]), answer["best"], answer["ranking"], answer["shown_order"],
                            answer["skipped"], shown_at=answer["shown_at"], answered_at=answer["answered_at"])
        except FieldError as err:
            err = err.within(prefix) if prefix else err
            raise fail(err.message, err.field, err.value) from None
        answer["shown_at"] = validate_timestamp(answer["shown_at"], "shown_at")
        answer["answered_at"] = validate_timestamp(answer["answered_at"], "answered_at") or 0.0  # 0: time of import
        answers.append((prefix, answer))
    return comparison, answers
