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

Labels go in and out through `import_export.py` (datasets, JSONL), who answers what is `assignment.py`, what a
comparison and an answer may hold is `records.py`, the tables themselves `schema.py`; `LabelStore` brings them
together as one object.
"""

from __future__ import annotations

import hmac
import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from .assignment import AssignmentQueue
from .import_export import ImportExport
from .records import Answer, Comparison, FieldError, LabelConflictError, validate_answer, validate_comparison
from .schema import create_or_migrate


class UndoRefusedError(ValueError):
    """An answer cannot be retracted: it is not its labeler's latest, or it was already used for training."""


def _loads(text: str | None) -> list[int] | None:
    return None if text is None else json.loads(text)


def _dumps(value: Sequence[int] | None) -> str | None:
    return None if value is None else json.dumps([int(i) for i in value])


class LabelStore(AssignmentQueue, ImportExport):
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
            create_or_migrate(db, self.path)

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

    def training_uses(self) -> list[dict]:
        """Every recorded training use, oldest first: {"purpose", "round", "task", "last_answer_id", "created"}."""
        rows = self._read("SELECT purpose, round, task, last_answer_id, created FROM training_uses ORDER BY id")
        return [dict(zip(("purpose", "round", "task", "last_answer_id", "created"), row)) for row in rows]

    # -- labelers and links -----------------------------------------------------------------------------------
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

    # -- totals and judgements --------------------------------------------------------------------------------
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
