"""Labels in and out of the store: datasets for the reward trainer, and the JSONL file of every comparison with its
answers (`label export` / `label import`).

`ImportExport` is mixed into `LabelStore`: its methods are the store's (`store.to_dataset()`, ...) and use the
store's transactions and answer writer, so an import is one transaction like any other write.

Several labelers may answer one comparison (the paper labeled 5% of queries 5 times to measure agreement).
`to_dataset(aggregate=...)` says what becomes of that: "majority" (default) gives one row per answered comparison
with the most chosen best (ties go to the earliest answer), "first" the earliest answer, "all" one row per answer.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import LabelFileError
from ..jsonl import jsonl_line, read_jsonl
from .records import Answer, FieldError, LabelConflictError, parse_label_record

if TYPE_CHECKING:
    from datasets import Dataset

AGGREGATES = ("majority", "first", "all")


class ImportExport:
    """Import and export of a `LabelStore`: `to_dataset`, `training_dataset`, `export_jsonl`, `import_jsonl`,
    `import_records` (using the store's `comparisons`, `answers`, `_write`, `_insert_answer` and `_mark_used`)."""

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
