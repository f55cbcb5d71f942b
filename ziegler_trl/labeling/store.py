"""The label store: a durable, append-only SQLite record of every comparison and every answer to it.

One file, WAL mode, `synchronous=FULL`: a label is on disk once its transaction commits, and a process killed at
any moment leaves only whole transactions behind (a batch of comparisons, or of answers, commits or vanishes as a
unit). Rows are never updated or deleted (SQL triggers refuse it), so the file is the audit trail of a run.

Tables:
- `comparisons`: one query with K completions, the task, the round / policy that sampled them, a stable `uid`.
- `labelers`: people who label in the web app, each with the secret token of their first link;
  `reissued_links` holds the links issued to them after a revocation, and `revocations` the tokens revoked (a
  revoked link opens nothing; `add_labeler` then issues a new one).
- `assignments`: which labeler is asked to answer which comparison; (comparison, labeler) is unique, so nobody
  is ever shown the same comparison twice.
- `answers`: one labeler's judgement of one comparison: `best` (an index into the stored completions), an
  optional full `ranking` (indices, best first), the order the completions were shown in, or `skipped`, with
  the time shown and answered. A labeler has at most one live answer per comparison: re-sending the same answer
  is a no-op, a different one is a `LabelConflictError`.
- `retractions`: answers their labeler took back (the web app's undo). A retracted answer stays in the file but
  every reader (`answers`, `to_dataset`, `progress`, `counts`, `judgements`, export) ignores it, and the
  comparison is back in that labeler's queue; the next answer is stored as the next `attempt` of the same
  (comparison, labeler), which is the unique key.
- `training_uses`: each time answers were exported for training (`training_dataset`), with the round/task
  exported and the newest answer id at that moment. An answer a training use covers can no longer be retracted.

Several labelers may answer one comparison (the paper labeled 5% of queries 5 times to measure agreement).
`to_dataset(aggregate=...)` says what becomes of that: "majority" (default) gives one row per answered
comparison with the most chosen best (ties go to the earliest answer), "first" the earliest answer, "all" one row
per answer.

Schema version 2 added attempts, retractions, training uses and revocations; a version-1 file is migrated in
place, in one transaction, when it is opened (every row and id kept).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import random
import secrets
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import LabelFileError, shorten
from ..jsonl import has_lone_surrogate, jsonl_line, read_jsonl

if TYPE_CHECKING:
    from datasets import Dataset

SCHEMA_VERSION = "2"
_ANSWERS_TABLE = """CREATE TABLE IF NOT EXISTS {name} (
    id INTEGER PRIMARY KEY,
    comparison_id INTEGER NOT NULL REFERENCES comparisons(id),
    labeler TEXT NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 0 CHECK (attempt >= 0),
    best INTEGER,
    ranking TEXT,
    shown_order TEXT,
    skipped INTEGER NOT NULL CHECK (skipped IN (0, 1)),
    shown_at REAL,
    answered_at REAL NOT NULL,
    UNIQUE (comparison_id, labeler, attempt),
    CHECK ((skipped = 1 AND best IS NULL AND ranking IS NULL) OR (skipped = 0 AND best IS NOT NULL))
);
"""
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS comparisons (
    id INTEGER PRIMARY KEY,
    uid TEXT NOT NULL UNIQUE,
    prompt TEXT NOT NULL,
    completions TEXT NOT NULL,
    k INTEGER NOT NULL CHECK (k >= 2),
    task TEXT,
    round INTEGER,
    policy TEXT,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS labelers (
    name TEXT PRIMARY KEY,
    token TEXT NOT NULL UNIQUE,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS reissued_links (
    token TEXT PRIMARY KEY,
    labeler TEXT NOT NULL REFERENCES labelers(name),
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS revocations (
    token TEXT PRIMARY KEY,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS assignments (
    id INTEGER PRIMARY KEY,
    comparison_id INTEGER NOT NULL REFERENCES comparisons(id),
    labeler TEXT NOT NULL REFERENCES labelers(name),
    created REAL NOT NULL,
    UNIQUE (comparison_id, labeler)
);
""" + _ANSWERS_TABLE.format(name="answers") + """CREATE TABLE IF NOT EXISTS retractions (
    answer_id INTEGER PRIMARY KEY REFERENCES answers(id),
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS training_uses (
    id INTEGER PRIMARY KEY,
    purpose TEXT NOT NULL,
    round INTEGER,
    task TEXT,
    last_answer_id INTEGER NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS comparisons_round ON comparisons(round);
CREATE INDEX IF NOT EXISTS assignments_labeler ON assignments(labeler);
CREATE INDEX IF NOT EXISTS answers_labeler ON answers(labeler);
CREATE VIEW IF NOT EXISTS live_answers AS SELECT * FROM answers WHERE id NOT IN (SELECT answer_id FROM retractions);
CREATE VIEW IF NOT EXISTS links AS
    SELECT name AS labeler, token, created FROM labelers UNION ALL SELECT labeler, token, created FROM reissued_links;
"""
_APPEND_ONLY = "".join(
    f"CREATE TRIGGER IF NOT EXISTS {table}_no_{op.lower()} BEFORE {op} ON {table} "
    f"BEGIN SELECT RAISE(ABORT, 'the label store is append-only: {op} on {table} refused'); END;\n"
    for table in ("comparisons", "labelers", "reissued_links", "revocations", "assignments", "answers",
                  "retractions", "training_uses")
    for op in ("UPDATE", "DELETE")
)
_ANSWER_COPY_COLUMNS = "id, comparison_id, labeler, best, ranking, shown_order, skipped, shown_at, answered_at"
AGGREGATES = ("majority", "first", "all")


class LabelConflictError(ValueError):
    """A labeler sent a second, different answer for a comparison they already answered."""


class UndoRefusedError(ValueError):
    """An answer cannot be retracted: it is not its labeler's latest, or it was already used for training."""


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
    payload = json.dumps([prompt, list(completions), task, round_], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:32]


def _loads(text: str | None) -> list[int] | None:
    return None if text is None else json.loads(text)


def _dumps(value: Sequence[int] | None) -> str | None:
    return None if value is None else json.dumps([int(i) for i in value])


class LabelStore:
    """SQLite store of comparisons, labelers, assignments and answers; safe to share between threads.

    Each thread gets its own connection; every write is one `BEGIN IMMEDIATE` transaction, so concurrent writers
    (web requests, a collection loop, an admin command) queue instead of interleaving.
    """

    def __init__(self, path: str | Path, timeout: float = 30.0):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.timeout = timeout
        self._local = threading.local()
        self._connection().execute("PRAGMA journal_mode=WAL")  # readers never block the writer
        with self._write() as db:
            # Checked inside the write transaction, so two processes opening an old file migrate it once.
            has_meta = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone()
            version = has_meta and db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if version and version[0] == "1":
                self._migrate_from_v1(db)
                db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (SCHEMA_VERSION,))
            elif version and version[0] != SCHEMA_VERSION:
                raise ValueError(f"{self.path} has label-store schema version {version[0]}; this ziegler-trl reads "
                                 f"versions 1 and {SCHEMA_VERSION} (a newer ziegler-trl wrote it?)")
            for statement in (_SCHEMA + _APPEND_ONLY).split(";\n"):
                if statement.strip():
                    db.execute(statement)
            # INSERT OR IGNORE writes nothing to an open store: opening it leaves the file byte-identical.
            db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (SCHEMA_VERSION,))
            db.execute("INSERT OR IGNORE INTO meta VALUES ('admin_token', ?)", (secrets.token_urlsafe(18),))
            db.execute("INSERT OR IGNORE INTO meta VALUES ('order_secret', ?)", (secrets.token_hex(16),))

    @staticmethod
    def _migrate_from_v1(db: sqlite3.Connection) -> None:
        """Version 1 made (comparison, labeler) unique in `answers`; version 2 makes it (comparison, labeler,
        attempt). SQLite cannot change a table's constraints, so the table is rebuilt: every row is copied with its
        id as attempt 0, the old table dropped (DROP fires no DELETE trigger) and the copy renamed. The caller's
        transaction makes it all or nothing; nothing references `answers` in version 1."""
        db.execute(_ANSWERS_TABLE.format(name="answers_v2").rstrip().rstrip(";"))
        db.execute(f"INSERT INTO answers_v2 ({_ANSWER_COPY_COLUMNS}, attempt) "
                   f"SELECT {_ANSWER_COPY_COLUMNS}, 0 FROM answers")
        (before,), = db.execute("SELECT COUNT(*) FROM answers")
        (after,), = db.execute("SELECT COUNT(*) FROM answers_v2")
        if before != after:  # cannot happen with a sound file; refuse rather than drop a row
            raise RuntimeError(f"label-store migration copied {after} of {before} answers; the file is unchanged")
        db.execute("DROP TABLE answers")
        db.execute("ALTER TABLE answers_v2 RENAME TO answers")

    def __repr__(self) -> str:
        return f"LabelStore({str(self.path)!r})"

    # -- connections and transactions -------------------------------------------------------------------------
    def _connection(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
            connection.execute("PRAGMA foreign_keys=ON")
            connection.execute("PRAGMA synchronous=FULL")  # a committed label survives a crash or power loss
            self._local.connection = connection
        return connection

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        db = self._connection()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def _read(self, sql: str, params: Sequence = ()) -> list[tuple]:
        return self._connection().execute(sql, tuple(params)).fetchall()

    def close(self) -> None:
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None

    def _meta(self, key: str) -> str:
        return self._read("SELECT value FROM meta WHERE key = ?", (key,))[0][0]

    @property
    def admin_token(self) -> str:
        """Secret that opens the admin pages (progress, agreement, export)."""
        return self._meta("admin_token")

    @property
    def order_secret(self) -> str:
        return self._meta("order_secret")

    # -- comparisons ------------------------------------------------------------------------------------------
    def add_comparisons(
        self,
        prompts: Sequence[str],
        completions: Sequence[Sequence[str]],
        *,
        task: str | None = None,
        round: int | None = None,
        policy: str | None = None,
    ) -> list[int]:
        """Store one comparison per prompt (all or none) and return their ids, in order."""
        if len(prompts) != len(completions):
            raise ValueError(f"{len(prompts)} prompts but {len(completions)} completion lists")
        for row, (prompt, group) in enumerate(zip(prompts, completions)):
            try:
                validate_comparison(prompt, group, task=task, round=round, policy=policy)
            except FieldError as err:
                raise ValueError(f"comparison {row}: {err}") from None
        now = time.time()
        with self._write() as db:
            return [
                db.execute(
                    "INSERT INTO comparisons (uid, prompt, completions, k, task, round, policy, created)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (secrets.token_hex(16), prompt, json.dumps(list(group), ensure_ascii=False), len(group), task,
                     round, policy, now),
                ).lastrowid
                for prompt, group in zip(prompts, completions)
            ]

    def _comparison(self, row: tuple) -> Comparison:
        id_, uid, prompt, completions, task, round_, policy, created = row
        return Comparison(id_, uid, prompt, json.loads(completions), task, round_, policy, created)

    _COMPARISON_COLUMNS = "id, uid, prompt, completions, task, round, policy, created"

    def get_comparisons(self, ids: Sequence[int]) -> list[Comparison]:
        """The comparisons with these ids, in the order given; an unknown id is a KeyError."""
        found = {}
        for start in range(0, len(ids), 500):
            chunk = [int(i) for i in ids[start : start + 500]]
            marks = ",".join("?" * len(chunk))
            for row in self._read(f"SELECT {self._COMPARISON_COLUMNS} FROM comparisons WHERE id IN ({marks})", chunk):
                found[row[0]] = self._comparison(row)
        missing = [i for i in ids if int(i) not in found]
        if missing:
            raise KeyError(f"no comparison with id {missing[:5]} in {self.path}")
        return [found[int(i)] for i in ids]

    def comparisons(self, *, round: int | None = None, task: str | None = None) -> list[Comparison]:
        """All comparisons, oldest first, optionally of one round and/or task."""
        where, params = self._filters(round, task)
        rows = self._read(f"SELECT {self._COMPARISON_COLUMNS} FROM comparisons c {where} ORDER BY id", params)
        return [self._comparison(row) for row in rows]

    def comparison_ids(self, *, round: int | None = None, task: str | None = None) -> list[int]:
        where, params = self._filters(round, task)
        return [row[0] for row in self._read(f"SELECT id FROM comparisons c {where} ORDER BY id", params)]

    @staticmethod
    def _filters(round_: int | None, task: str | None) -> tuple[str, list]:
        clauses, params = [], []
        if round_ is not None:
            clauses.append("c.round = ?")
            params.append(round_)
        if task is not None:
            clauses.append("c.task = ?")
            params.append(task)
        return ("WHERE " + " AND ".join(clauses)) if clauses else "", params

    # -- answers ----------------------------------------------------------------------------------------------
    def add_answer(
        self,
        comparison_id: int,
        labeler: str,
        best: int | None = None,
        *,
        ranking: Sequence[int] | None = None,
        shown_order: Sequence[int] | None = None,
        skipped: bool = False,
        shown_at: float | None = None,
        require_assignment: bool = False,
    ) -> int:
        """Record one answer and return its id; the same answer again returns the first one's id.

        `require_assignment=True` (the web app) refuses answers to comparisons not assigned to this labeler.
        """
        answer = Answer(int(comparison_id), labeler, best, None if ranking is None else list(ranking),
                        None if shown_order is None else list(shown_order), bool(skipped), shown_at)
        return self.add_answers([answer], require_assignment=require_assignment)[0]

    def add_answers(self, answers: Sequence[Answer], require_assignment: bool = False) -> list[int]:
        """Record several answers in one transaction (all or none); returns their ids in order."""
        with self._write() as db:
            return [self._insert_answer(db, answer, require_assignment) for answer in answers]

    def _insert_answer(self, db: sqlite3.Connection, answer: Answer, require_assignment: bool) -> int:
        row = db.execute("SELECT k FROM comparisons WHERE id = ?", (answer.comparison_id,)).fetchone()
        if row is None:
            raise KeyError(f"no comparison with id {answer.comparison_id} in {self.path}")
        if not isinstance(answer.labeler, str) or not answer.labeler:
            raise ValueError("field 'labeler' must be a non-empty string")
        validate_answer(row[0], answer.best, answer.ranking, answer.shown_order, answer.skipped)
        if require_assignment and not db.execute(
            "SELECT 1 FROM assignments WHERE comparison_id = ? AND labeler = ?", (answer.comparison_id, answer.labeler)
        ).fetchone():
            raise PermissionError(f"comparison {answer.comparison_id} is not assigned to labeler {answer.labeler!r}")
        previous = db.execute(
            f"SELECT {self._ANSWER_COLUMNS} FROM live_answers WHERE comparison_id = ? AND labeler = ?",
            (answer.comparison_id, answer.labeler),
        ).fetchone()
        if previous is not None:
            previous = self._answer(previous)
            if not previous.same_judgement(answer):
                raise LabelConflictError(
                    f"labeler {answer.labeler!r} already answered comparison {answer.comparison_id} with "
                    f"best={previous.best} ranking={previous.ranking} skipped={previous.skipped} "
                    f"shown_order={previous.shown_order}; the store is append-only, so the new answer "
                    f"best={answer.best} ranking={answer.ranking} skipped={answer.skipped} was refused "
                    "(only an undo of the labeler's latest answer lets them answer again)"
                )
            return previous.id
        # Every earlier answer of this (comparison, labeler) was retracted: this one is the next attempt.
        (attempt,), = db.execute("SELECT COUNT(*) FROM answers WHERE comparison_id = ? AND labeler = ?",
                                 (answer.comparison_id, answer.labeler))
        return db.execute(
            "INSERT INTO answers (comparison_id, labeler, attempt, best, ranking, shown_order, skipped, shown_at,"
            " answered_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (answer.comparison_id, answer.labeler, attempt, answer.best, _dumps(answer.ranking),
             _dumps(answer.shown_order), int(answer.skipped), answer.shown_at, answer.answered_at or time.time()),
        ).lastrowid

    _ANSWER_COLUMNS = (
        "id, comparison_id, labeler, best, ranking, shown_order, skipped, shown_at, answered_at,"
        " id IN (SELECT answer_id FROM retractions)"
    )

    @staticmethod
    def _answer(row: tuple) -> Answer:
        id_, cid, labeler, best, ranking, shown, skipped, shown_at, answered_at, retracted = row
        return Answer(cid, labeler, best, _loads(ranking), _loads(shown), bool(skipped), shown_at, answered_at, id_,
                      bool(retracted))

    def answers(
        self, ids: Sequence[int] | None = None, *, labeler: str | None = None, include_retracted: bool = False
    ) -> list[Answer]:
        """Live answers (oldest first), optionally only for these comparison ids and/or one labeler;
        `include_retracted=True` adds the retracted ones (their `retracted` is True): the whole audit trail."""
        clauses, params = [], []
        if labeler is not None:
            clauses.append("labeler = ?")
            params.append(labeler)
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        table = "answers" if include_retracted else "live_answers"
        rows = self._read(f"SELECT {self._ANSWER_COLUMNS} FROM {table} {where} ORDER BY id", params)
        answers = [self._answer(row) for row in rows]
        if ids is not None:
            wanted = {int(i) for i in ids}
            answers = [a for a in answers if a.comparison_id in wanted]
        return answers

    def best_answers(self, ids: Sequence[int]) -> list[int | None]:
        """For each comparison: the earliest non-skipped live answer's best, or None while there is none."""
        best: dict[int, int] = {}
        for answer in self.answers(ids):
            if not answer.skipped and answer.comparison_id not in best:
                best[answer.comparison_id] = answer.best
        return [best.get(int(i)) for i in ids]

    # -- undo and training uses -------------------------------------------------------------------------------
    @staticmethod
    def _undo_refusal(db: sqlite3.Connection, labeler: str, answer_id: int) -> str | None:
        """Why the labeler's answer `answer_id` cannot be retracted now, or None if it can."""
        (latest,), = db.execute("SELECT MAX(id) FROM answers WHERE labeler = ?", (labeler,))
        if answer_id != latest:
            return "only your latest answer can be undone"
        if db.execute("SELECT 1 FROM retractions WHERE answer_id = ?", (answer_id,)).fetchone():
            return "this answer was already undone"
        if db.execute(
            "SELECT 1 FROM training_uses u JOIN answers s ON s.id = ? JOIN comparisons c ON c.id = s.comparison_id"
            " WHERE s.id <= u.last_answer_id AND (u.round IS NULL OR u.round = c.round)"
            " AND (u.task IS NULL OR u.task = c.task)",
            (answer_id,),
        ).fetchone():
            return "its round has been used for training"
        return None

    def undoable_answer(self, labeler: str) -> Answer | None:
        """The answer `retract_answer` would take back for this labeler now: their latest, unless it was already
        retracted or used for training."""
        db = self._connection()
        rows = db.execute(f"SELECT {self._ANSWER_COLUMNS} FROM answers WHERE labeler = ? ORDER BY id DESC LIMIT 1",
                          (labeler,)).fetchall()
        if not rows or self._undo_refusal(db, labeler, rows[0][0]) is not None:
            return None
        return self._answer(rows[0])

    def retract_answer(self, answer_id: int, labeler: str) -> bool:
        """Take back `labeler`'s latest answer (append-only: a retraction row; the answer stays in the file).

        The comparison returns to the labeler's queue and every reader ignores the answer from now on. Returns
        False when it was already retracted (a repeated undo is a no-op). Raises KeyError for an answer that is not
        this labeler's and `UndoRefusedError` when it is not their latest or its round was used for training.
        """
        with self._write() as db:
            row = db.execute("SELECT labeler FROM answers WHERE id = ?", (int(answer_id),)).fetchone()
            if row is None or row[0] != labeler:
                raise KeyError(f"labeler {labeler!r} has no answer {answer_id} in {self.path}")
            if db.execute("SELECT 1 FROM retractions WHERE answer_id = ?", (int(answer_id),)).fetchone():
                return False
            refusal = self._undo_refusal(db, labeler, int(answer_id))
            if refusal is not None:
                raise UndoRefusedError(f"answer {answer_id} of labeler {labeler!r} cannot be undone: {refusal}")
            db.execute("INSERT INTO retractions VALUES (?, ?)", (int(answer_id), time.time()))
            return True

    def _mark_used(self, db: sqlite3.Connection, purpose: str, round_: int | None, task: str | None) -> int:
        if not isinstance(purpose, str) or not purpose:
            raise ValueError("purpose must name the training run, e.g. 'reward_round0'")
        (last,), = db.execute("SELECT COALESCE(MAX(id), 0) FROM answers")
        return db.execute(
            "INSERT INTO training_uses (purpose, round, task, last_answer_id, created) VALUES (?, ?, ?, ?, ?)",
            (purpose, round_, task, last, time.time()),
        ).lastrowid

    def mark_used_for_training(self, purpose: str, *, round: int | None = None, task: str | None = None) -> int:
        """Record that every answer stored so far for comparisons of this round/task (None: all) goes into
        training: from now on none of them can be undone. Returns the training use's id."""
        with self._write() as db:
            return self._mark_used(db, purpose, round, task)

    def training_dataset(
        self,
        purpose: str,
        aggregate: str = "majority",
        *,
        round: int | None = None,
        task: str | None = None,
        rankings: bool | None = None,
    ) -> Dataset:
        """`to_dataset(...)` and `mark_used_for_training(...)` in one write transaction: the rows are exactly the
        answers frozen (no undo or new answer can land between the two). What the training stages call."""
        with self._write() as db:
            self._mark_used(db, purpose, round, task)
            return self.to_dataset(aggregate, round=round, task=task, rankings=rankings)

    def training_uses(self) -> list[dict]:
        """Every recorded training use, oldest first: {"purpose", "round", "task", "last_answer_id", "created"}."""
        rows = self._read("SELECT purpose, round, task, last_answer_id, created FROM training_uses ORDER BY id")
        return [dict(zip(("purpose", "round", "task", "last_answer_id", "created"), row)) for row in rows]

    # -- labelers, links and assignments ----------------------------------------------------------------------
    def add_labeler(self, name: str) -> str:
        """Register a person and return the secret token of their link: their live one if they have it, else (new
        person, or every link revoked) a new one."""
        if not isinstance(name, str) or not name.strip() or name != name.strip():
            raise ValueError(f"labeler name must be a non-empty string without surrounding spaces, got {name!r}")
        with self._write() as db:
            live = self._live_token(db, name)
            if live is not None:
                return live
            token = secrets.token_urlsafe(18)
            if db.execute("SELECT 1 FROM labelers WHERE name = ?", (name,)).fetchone():
                db.execute("INSERT INTO reissued_links VALUES (?, ?, ?)", (token, name, time.time()))
            else:
                db.execute("INSERT INTO labelers VALUES (?, ?, ?)", (name, token, time.time()))
            return token

    @staticmethod
    def _live_token(db: sqlite3.Connection, name: str) -> str | None:
        row = db.execute(
            "SELECT token FROM links WHERE labeler = ? AND token NOT IN (SELECT token FROM revocations)"
            " ORDER BY created DESC LIMIT 1",
            (name,),
        ).fetchone()
        return row[0] if row else None

    def revoke_labeler(self, name: str) -> int:
        """Revoke the labeler's link (append-only: a revocation row): it opens nothing from now on. Their answers
        stay; their unanswered assignments go to others at the next `assign`. Returns the links revoked (0 when
        none was live); `add_labeler(name)` issues a new link."""
        with self._write() as db:
            if not db.execute("SELECT 1 FROM labelers WHERE name = ?", (name,)).fetchone():
                raise KeyError(f"no labeler named {name!r} in {self.path}")
            live = [row[0] for row in db.execute(
                "SELECT token FROM links WHERE labeler = ? AND token NOT IN (SELECT token FROM revocations)", (name,))]
            now = time.time()
            db.executemany("INSERT INTO revocations VALUES (?, ?)", [(token, now) for token in live])
            return len(live)

    def labelers(self) -> list[str]:
        """Every registered person, revoked or not (their answers count in agreement and progress)."""
        return [row[0] for row in self._read("SELECT name FROM labelers ORDER BY created, name")]

    def active_labelers(self) -> list[str]:
        """The people with a live (unrevoked) link: who new work goes to."""
        return self._active(self._connection())

    @staticmethod
    def _active(db: sqlite3.Connection) -> list[str]:
        return [row[0] for row in db.execute(
            "SELECT name FROM labelers WHERE name IN (SELECT labeler FROM links"
            " WHERE token NOT IN (SELECT token FROM revocations)) ORDER BY created, name")]

    def labeler_token(self, name: str) -> str:
        """The token of the labeler's live link; KeyError when they are unknown or their link was revoked."""
        if not self._read("SELECT 1 FROM labelers WHERE name = ?", (name,)):
            raise KeyError(f"no labeler named {name!r} in {self.path}; add one with `ziegler-trl label add-labeler`")
        token = self._live_token(self._connection(), name)
        if token is None:
            raise KeyError(f"the link of labeler {name!r} was revoked; `ziegler-trl label add-labeler` issues a new "
                           "one")
        return token

    def labeler_for_token(self, token: str) -> str | None:
        """Whose live link `token` is, or None. Compared in constant time against every stored token (no SQL
        lookup by the secret, no early exit), so response times say nothing about how much of a guess was right."""
        given = token.encode("utf-8", "replace")
        found = None
        for name, stored, revoked in self._read(
            "SELECT labeler, token, token IN (SELECT token FROM revocations) FROM links"
        ):
            if hmac.compare_digest(stored.encode(), given) and not revoked:
                found = name
        return found

    def assign(
        self,
        comparison_ids: Sequence[int] | None = None,
        labelers: Sequence[str] | None = None,
        *,
        overlap: float = 0.0,
        repeats: int = 5,
        seed: int = 0,
    ) -> int:
        """Give comparisons to labelers; returns how many (comparison, labeler) assignments were added.

        Comparisons nobody has yet go to the least-loaded labeler; a fraction `overlap` of them (chosen with
        `seed`) go to `repeats` labelers at once, for agreement statistics (the paper: 5% of queries, 5 times).
        A comparison that no assignee answered (every one skipped it, or has had their link revoked without
        answering) goes to one more labeler who has not seen it. `labelers=None` means everyone with a live link.
        Safe to call again: nothing is assigned twice and nobody gets the same comparison twice (a unique
        constraint).
        """
        if not 0.0 <= overlap <= 1.0:
            raise ValueError(f"overlap must be a fraction in [0, 1], got {overlap}")
        if repeats < 1:
            raise ValueError(f"repeats must be >= 1, got {repeats}")
        with self._write() as db:
            active = self._active(db)
            people = list(labelers) if labelers is not None else active
            known = {row[0] for row in db.execute("SELECT name FROM labelers")}
            unknown = [name for name in people if name not in known]
            if unknown:
                raise KeyError(f"labelers {unknown} are not registered in {self.path}")
            revoked = [name for name in people if name not in active]
            if revoked:
                raise ValueError(f"the links of labelers {revoked} were revoked; `ziegler-trl label add-labeler` "
                                 "issues new ones")
            if not people:
                state = "every labeler's link was revoked" if known else "no labelers registered"
                raise ValueError(f"{state} in {self.path}; add one with `ziegler-trl label add-labeler`")
            ids = [row[0] for row in db.execute("SELECT id FROM comparisons ORDER BY id")]
            if comparison_ids is not None:
                wanted = {int(i) for i in comparison_ids}
                ids = [i for i in ids if i in wanted]
            assigned: dict[int, set[str]] = {}
            load = Counter({name: 0 for name in people})
            answered_by_someone, still_expected = set(), set()
            for cid, name, answer_id, skipped in db.execute(
                "SELECT a.comparison_id, a.labeler, s.id, s.skipped FROM assignments a LEFT JOIN live_answers s"
                " ON s.comparison_id = a.comparison_id AND s.labeler = a.labeler"
            ):
                assigned.setdefault(cid, set()).add(name)
                if answer_id is None and name in active:
                    still_expected.add(cid)
                    if name in load:
                        load[name] += 1
                elif answer_id is not None and not skipped:
                    answered_by_someone.add(cid)
            needs_another = set(assigned) - answered_by_someone - still_expected
            fresh = [i for i in ids if i not in assigned]
            rng = random.Random(seed)
            overlapping = set(rng.sample(fresh, round(overlap * len(fresh)))) if fresh and overlap else set()
            plan: list[tuple[int, str]] = []
            for cid in ids:
                if cid in assigned and cid not in needs_another:
                    continue
                wanted_count = min(repeats, len(people)) if cid in overlapping else 1
                candidates = [name for name in people if name not in assigned.get(cid, set())]
                rng.shuffle(candidates)  # random tie-break between equally loaded labelers
                for name in sorted(candidates, key=lambda n: load[n])[:wanted_count]:
                    plan.append((cid, name))
                    load[name] += 1
            now = time.time()
            db.executemany(
                "INSERT OR IGNORE INTO assignments (comparison_id, labeler, created) VALUES (?, ?, ?)",
                [(cid, name, now) for cid, name in plan],
            )
            return len(plan)

    def assignments(self, ids: Sequence[int] | None = None, *, labeler: str | None = None) -> list[tuple[int, str]]:
        """(comparison id, labeler) pairs, oldest first, optionally for these comparisons and/or one labeler."""
        rows = self._read("SELECT comparison_id, labeler FROM assignments ORDER BY id")
        wanted = None if ids is None else {int(i) for i in ids}
        return [(cid, name) for cid, name in rows
                if (wanted is None or cid in wanted) and (labeler is None or name == labeler)]

    def next_assignment(self, labeler: str) -> Comparison | None:
        """The labeler's oldest assigned comparison without a live answer (or skip) of theirs."""
        rows = self._read(
            f"SELECT {', '.join('c.' + c for c in self._COMPARISON_COLUMNS.split(', '))} FROM assignments a"
            " JOIN comparisons c ON c.id = a.comparison_id LEFT JOIN live_answers s"
            " ON s.comparison_id = a.comparison_id AND s.labeler = a.labeler"
            " WHERE a.labeler = ? AND s.id IS NULL ORDER BY a.id LIMIT 1",
            (labeler,),
        )
        return self._comparison(rows[0]) if rows else None

    def progress(self) -> dict[str, dict[str, int]]:
        """Per labeler (people and simulated): assigned, answered (not skipped), skipped, pending."""
        stats: dict[str, dict[str, int]] = {
            name: {"assigned": 0, "answered": 0, "skipped": 0, "pending": 0} for name in self.labelers()
        }
        for name, assigned, pending in self._read(
            "SELECT a.labeler, COUNT(*), SUM(s.id IS NULL) FROM assignments a LEFT JOIN live_answers s"
            " ON s.comparison_id = a.comparison_id AND s.labeler = a.labeler GROUP BY a.labeler"
        ):
            stats.setdefault(name, {"assigned": 0, "answered": 0, "skipped": 0, "pending": 0})
            stats[name].update(assigned=assigned, pending=pending)
        for name, answered, skipped in self._read(
            "SELECT labeler, SUM(skipped = 0), SUM(skipped = 1) FROM live_answers GROUP BY labeler"
        ):
            stats.setdefault(name, {"assigned": 0, "answered": 0, "skipped": 0, "pending": 0})
            stats[name].update(answered=answered, skipped=skipped)
        return stats

    def counts(self) -> dict[str, int]:
        """Totals over live answers: comparisons, answered comparisons, answers, skips, labelers."""
        (comparisons,), = self._read("SELECT COUNT(*) FROM comparisons")
        (answered,), = self._read("SELECT COUNT(DISTINCT comparison_id) FROM live_answers WHERE skipped = 0")
        (answers, skipped), = self._read("SELECT COUNT(*), COALESCE(SUM(skipped), 0) FROM live_answers")
        (labelers,), = self._read("SELECT COUNT(*) FROM labelers")
        return {"comparisons": comparisons, "answered_comparisons": answered, "answers": answers - skipped,
                "skipped": skipped, "labelers": labelers}

    def judgements(self, labelers: Sequence[str] | None = None) -> list[dict]:
        """One row per non-skipped live answer, {"item_id", "labeler", "best", "k"} (item_id is the comparison's
        uid), optionally of these labelers only: what `agreement_summary` and `agreement_table` read."""
        comparisons = {c.id: c for c in self.comparisons()}
        keep = None if labelers is None else set(labelers)
        return [
            {"item_id": comparisons[a.comparison_id].uid, "labeler": a.labeler, "best": a.best,
             "k": comparisons[a.comparison_id].k}
            for a in self.answers()
            if not a.skipped and (keep is None or a.labeler in keep)
        ]

    # -- export -----------------------------------------------------------------------------------------------
    def to_dataset(
        self,
        aggregate: str = "majority",
        *,
        round: int | None = None,
        task: str | None = None,
        rankings: bool | None = None,
    ) -> Dataset:
        """Rows {"prompt", "completions", "best"} (+ "ranking") for the best-of-K reward trainer.

        Skipped answers are left out. With several answers per comparison, `aggregate` picks: "majority" (one row
        per comparison, the most chosen best, ties to the earliest answer; its ranking is the earliest ranking
        that agrees with that best), "first" (the earliest answer), "all" (one row per answer). `rankings=None`
        adds the "ranking" column when every row has one, True requires it, False leaves it out.
        """
        from datasets import Dataset  # here, so the store itself needs only the standard library

        if aggregate not in AGGREGATES:
            raise ValueError(f"aggregate must be one of {AGGREGATES}, got {aggregate!r}")
        comparisons = {c.id: c for c in self.comparisons(round=round, task=task)}
        grouped: dict[int, list[Answer]] = {}
        for answer in self.answers():
            if not answer.skipped and answer.comparison_id in comparisons:
                grouped.setdefault(answer.comparison_id, []).append(answer)
        chosen: list[Answer] = []
        for answers in grouped.values():
            if aggregate == "all":
                chosen.extend(answers)
            elif aggregate == "first":
                chosen.append(answers[0])
            else:
                votes = Counter(a.best for a in answers)
                top = max(votes.values())
                winner = next(a for a in answers if votes[a.best] == top)  # earliest among the tied bests
                ranked = next((a for a in answers if a.best == winner.best and a.ranking is not None), winner)
                chosen.append(ranked)
        if not chosen:
            raise ValueError(f"no answered comparisons in {self.path} (round={round}, task={task})")
        chosen.sort(key=lambda a: (a.comparison_id, a.id))
        have_ranking = [a.ranking is not None for a in chosen]
        if rankings and not all(have_ranking):
            missing = [a.comparison_id for a in chosen if a.ranking is None][:5]
            raise ValueError(f"rankings=True but comparisons {missing} have no full ranking")
        rows = {
            "prompt": [comparisons[a.comparison_id].prompt for a in chosen],
            "completions": [comparisons[a.comparison_id].completions for a in chosen],
            "best": [a.best for a in chosen],
        }
        if rankings is not False and all(have_ranking):
            rows["ranking"] = [a.ranking for a in chosen]
        return Dataset.from_dict(rows)

    def export_jsonl(self, path: str | Path | None = None) -> str:
        """Every comparison with all its answers, one JSON object per line; written to `path` when given.

        `import_jsonl` and `load_label_dataset` read it back; strings are escaped so that no line splitter breaks a
        record (see `ziegler_trl.jsonl`).
        """
        by_comparison: dict[int, list[dict]] = {}
        for a in self.answers():
            by_comparison.setdefault(a.comparison_id, []).append(
                {"labeler": a.labeler, "best": a.best, "ranking": a.ranking, "shown_order": a.shown_order,
                 "skipped": a.skipped, "shown_at": a.shown_at, "answered_at": a.answered_at}
            )
        text = "".join(
            jsonl_line({"uid": c.uid, "prompt": c.prompt, "completions": c.completions, "task": c.task,
                        "round": c.round, "policy": c.policy, "created": c.created,
                        "answers": by_comparison.get(c.id, [])})
            for c in self.comparisons()
        )
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text

    def import_jsonl(self, path: str | Path, labeler: str = "import") -> int:
        """Add comparisons and answers from a JSONL file (all or nothing); returns how many answers are new.

        A line is an `export_jsonl` record; a dataset row {"prompt", "completions", "best"[, "ranking"]} answered by
        `labeler` (or the row's own "labeler"); or an unanswered comparison {"prompt", "completions"}, which
        `label assign` then hands to people to label in the web app. Each may carry "task", "round", "policy" and
        "uid"; any other field is refused. Comparisons are matched by "uid" (rows without one get a uid from their
        content), so importing a file twice changes nothing. A malformed file raises a `LabelFileError` naming the
        line and the field, and leaves the store as it was.
        """
        records = read_jsonl(path, LabelFileError)
        return self.import_records([r for _, r in records], path, labeler=labeler, lines=[n for n, _ in records])

    def import_records(self, records: Sequence[object], source: str | Path, *, labeler: str = "import",
                       lines: Sequence[int] | None = None) -> int:
        """`import_jsonl` of records already parsed (`lines[i]` is record i's line in `source`, if it has lines)."""
        if not records:
            raise LabelFileError(source, "no records")
        parsed = []
        for index, record in enumerate(records):
            where = {"line": lines[index]} if lines is not None else {"record": index}
            parsed.append((where, parse_label_record(record, source, labeler, **where)))
        with self._write() as db:
            (before,), = db.execute("SELECT COUNT(*) FROM answers").fetchall()
            for where, (comparison, answers) in parsed:
                field_of_answer = None
                try:
                    cid = self._upsert_comparison(db, comparison)
                    for field_of_answer, answer in answers:
                        self._insert_answer(db, Answer(cid, **answer), require_assignment=False)
                except FieldError as err:
                    raise LabelFileError(source, err.message, field=err.field, value=err.value, **where) from None
                except LabelConflictError as err:
                    raise LabelFileError(source, str(err), field=field_of_answer, **where) from None
            (after,), = db.execute("SELECT COUNT(*) FROM answers").fetchall()
        return after - before

    @staticmethod
    def _upsert_comparison(db: sqlite3.Connection, c: dict) -> int:
        row = db.execute(
            "SELECT id, prompt, completions, task, round, policy FROM comparisons WHERE uid = ?", (c["uid"],)
        ).fetchone()
        if row is not None:
            if (row[1], json.loads(row[2]), row[3], row[4], row[5]) != (
                c["prompt"], c["completions"], c["task"], c["round"], c["policy"]
            ):
                raise FieldError("uid", "is already stored with a different comparison", c["uid"])
            return row[0]
        return db.execute(
            "INSERT INTO comparisons (uid, prompt, completions, k, task, round, policy, created)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (c["uid"], c["prompt"], json.dumps(c["completions"], ensure_ascii=False), len(c["completions"]),
             c["task"], c["round"], c["policy"], c["created"]),
        ).lastrowid


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
