"""Who labels what: the assignment of comparisons to labelers, each labeler's queue, and progress per labeler.

`AssignmentQueue` is mixed into `LabelStore`: its methods are the store's (`store.assign(...)`) and use the store's
transactions and row readers.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Sequence

from .records import Comparison


class AssignmentQueue:
    """Assignment scheduling of a `LabelStore`: `assign`, `assignments`, `next_assignment`, `progress` (using the
    store's `labelers`, `_write`, `_read`, `_active` and `_comparison`)."""

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
