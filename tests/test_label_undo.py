"""Undo (retractions), training uses, revocations in the store, and migration of a version-1 store file."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from ziegler_trl.labeling import Answer, LabelConflictError, LabelStore, SentimentLabeler, agreement_summary
from ziegler_trl.labeling.store import UndoRefusedError

V1_STORE = Path(__file__).parent / "data" / "label_store_v1.sqlite"  # written by the schema-1 LabelStore


@pytest.fixture
def store(tmp_path) -> LabelStore:
    store = LabelStore(tmp_path / "undo.db")
    store.add_comparisons([f"q{i}" for i in range(3)], [[f"q{i} a", f"q{i} b", f"q{i} c"] for i in range(3)],
                          task="sentiment", round=0)
    store.add_labeler("ann")
    store.add_labeler("bob")
    store.assign(labelers=["ann", "bob"], overlap=1.0, repeats=2)  # both label everything
    return store


def test_undo_takes_back_the_latest_answer_everywhere_and_requeues_it(store):
    a, b, c = store.comparison_ids()
    store.add_answer(a, "bob", 2, require_assignment=True)
    store.add_answer(a, "ann", 2, require_assignment=True)
    last = store.add_answer(b, "ann", 1, require_assignment=True)
    assert store.next_assignment("ann").id == c
    assert store.undoable_answer("ann").id == last
    assert store.retract_answer(last, "ann") is True
    assert store.retract_answer(last, "ann") is False  # a double click: no-op

    assert [(x.comparison_id, x.labeler) for x in store.answers()] == [(a, "bob"), (a, "ann")]
    assert store.best_answers([a, b]) == [2, None]
    assert store.next_assignment("ann").id == b  # back in ann's queue, before c
    assert store.progress()["ann"] == {"assigned": 3, "answered": 1, "skipped": 0, "pending": 2}
    assert store.counts() == {"comparisons": 3, "answered_comparisons": 1, "answers": 2, "skipped": 0, "labelers": 2}
    assert store.to_dataset("all")["best"] == [2, 2]
    exported = [json.loads(line) for line in store.export_jsonl().splitlines()]
    assert [len(r["answers"]) for r in exported] == [2, 0, 0]
    trail = store.answers(include_retracted=True)
    assert [(x.id, x.retracted) for x in trail][-1] == (last, True)

    # The re-answer is stored as the next attempt of the same (comparison, labeler); it may differ.
    again = store.add_answer(b, "ann", 0, require_assignment=True)
    assert again != last and store.best_answers([b]) == [0]
    assert store._read("SELECT attempt FROM answers WHERE id IN (?, ?) ORDER BY id", (last, again)) == [(0,), (1,)]
    with pytest.raises(LabelConflictError, match="only an undo of the labeler's latest answer"):
        store.add_answer(b, "ann", 2)
    assert agreement_summary(store.judgements(["ann", "bob"])).pairs == 1


def test_undo_is_one_step_and_only_ones_own(store):
    a, b, _ = store.comparison_ids()
    first = store.add_answer(a, "ann", skipped=True, require_assignment=True)  # a skip is an answer too
    second = store.add_answer(b, "ann", 0, require_assignment=True)
    with pytest.raises(UndoRefusedError, match="only your latest answer can be undone"):
        store.retract_answer(first, "ann")
    with pytest.raises(KeyError, match="labeler 'bob' has no answer"):
        store.retract_answer(second, "bob")
    store.retract_answer(second, "ann")
    assert store.undoable_answer("ann") is None  # the previous answer does not become undoable
    with pytest.raises(UndoRefusedError, match="only your latest answer"):
        store.retract_answer(first, "ann")
    assert store.undoable_answer("bob") is None  # nothing answered


def test_training_use_freezes_the_round_it_exported(store, tmp_path):
    a, b, c = store.comparison_ids()
    (other,) = store.add_comparisons(["later round"], [["x", "y"]], round=1)
    store.assign([other], ["ann"])
    used = store.add_answer(a, "ann", 1, require_assignment=True)
    with pytest.raises(ValueError, match="no answered comparisons"):
        store.training_dataset("reward_round1", round=1)
    assert store.training_uses() == []  # a failed export records no use

    rows = store.training_dataset("reward_round0", round=0)
    assert rows["best"] == [1] and [u["purpose"] for u in store.training_uses()] == ["reward_round0"]
    assert store.undoable_answer("ann") is None
    with pytest.raises(UndoRefusedError, match="its round has been used for training"):
        store.retract_answer(used, "ann")
    assert store.answers(labeler="ann")[0].id == used

    # Answers given after the export, or in a round it did not cover, can still be undone.
    later = store.add_answer(b, "ann", 0, require_assignment=True)
    assert store.retract_answer(later, "ann")
    other_round = store.add_answer(other, "ann", 0, require_assignment=True)
    assert store.undoable_answer("ann").id == other_round
    store.mark_used_for_training("all rounds")  # round=None covers every round
    with pytest.raises(UndoRefusedError, match="used for training"):
        store.retract_answer(other_round, "ann")
    assert store.to_dataset()["best"] == [1, 0]  # plain to_dataset records nothing
    assert len(store.training_uses()) == 2
    for sql in ("DELETE FROM retractions", "UPDATE training_uses SET round = 5", "DELETE FROM training_uses"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            store._connection().execute(sql)


def test_a_retracted_simulated_answer_is_asked_again_alone(store):
    ids = store.comparison_ids()
    calls = []
    labeler = SentimentLabeler(name="sim", batch_size=2)
    labeler.score_fn = lambda prompts, completions: calls.append(len(prompts) // 3) or [0.0, 1.0, 0.5] * (
        len(prompts) // 3)
    assert labeler.label_comparisons(store, ids) == [1, 1, 1] and calls == [2, 1]  # batches of 2
    store.retract_answer(store.undoable_answer("sim").id, "sim")
    assert labeler.label_comparisons(store, ids) == [1, 1, 1] and calls == [2, 1, 1]
    assert len(store.answers(labeler="sim")) == 3 and len(store.answers(include_retracted=True)) == 4


def test_revoked_links_open_nothing_and_a_new_link_can_be_issued(store):
    a = store.comparison_ids()[0]
    only_ann = store.add_comparisons(["e", "f"], [["x", "y"]] * 2, round=0)
    store.assign(only_ann, ["ann"])
    old = store.labeler_token("ann")
    store.add_answer(a, "ann", 0, require_assignment=True)
    store.add_answer(only_ann[0], "ann", 1, require_assignment=True)
    assert store.revoke_labeler("ann") == 1 and store.revoke_labeler("ann") == 0
    assert store.labeler_for_token(old) is None
    with pytest.raises(KeyError, match="the link of labeler 'ann' was revoked"):
        store.labeler_token("ann")
    with pytest.raises(KeyError, match="no labeler named 'zed'"):
        store.revoke_labeler("zed")
    assert store.active_labelers() == ["bob"] and store.labelers() == ["ann", "bob"]
    with pytest.raises(ValueError, match=r"the links of labelers \['ann'\] were revoked"):
        store.assign(labelers=["ann"])

    # What ann left unanswered goes to someone with a live link; what she answered stays hers.
    (d,) = store.add_comparisons(["new"], [["x", "y"]], round=0)
    assert store.assign() == 2
    assert store.assignments([only_ann[1], d]) == [(only_ann[1], "ann"), (only_ann[1], "bob"), (d, "bob")]
    assert store.assignments([only_ann[0]]) == [(only_ann[0], "ann")]
    assert [x.labeler for x in store.answers([a])] == ["ann"]

    new = store.add_labeler("ann")
    assert new != old and store.labeler_token("ann") == new and store.add_labeler("ann") == new
    assert store.labeler_for_token(new) == "ann" and store.labeler_for_token(old) is None
    assert store.active_labelers() == ["ann", "bob"]
    for sql in ("DELETE FROM revocations", "UPDATE reissued_links SET token = 'x'"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            store._connection().execute(sql)


def test_token_lookup_never_puts_the_secret_in_sql(store):
    token = store.labeler_token("ann")
    statements = []
    store._connection().set_trace_callback(statements.append)  # statements with their parameters expanded
    assert store.labeler_for_token(token) == "ann"
    wrong = token[:-1] + ("y" if token[-1] == "x" else "x")  # the token is random: 1 in 64 ends in "x" already
    assert store.labeler_for_token(wrong) is None
    store._connection().set_trace_callback(None)
    assert statements and not any(token[:-1] in sql for sql in statements)


def test_a_version_1_store_file_is_migrated_with_every_row(tmp_path):
    path = tmp_path / "old.sqlite"
    shutil.copy(V1_STORE, path)
    raw = sqlite3.connect(path)
    before = {table: raw.execute(f"SELECT * FROM {table} ORDER BY rowid").fetchall()
              for table in ("comparisons", "labelers", "assignments", "answers", "meta")}
    raw.close()
    assert dict(before["meta"])["schema_version"] == "1" and len(before["answers"]) == 4

    store = LabelStore(path)
    assert store._meta("schema_version") == "2"
    for table in ("comparisons", "labelers", "assignments"):
        assert store._read(f"SELECT * FROM {table} ORDER BY rowid") == before[table]
    columns = "id, comparison_id, labeler, best, ranking, shown_order, skipped, shown_at, answered_at"
    assert store._read(f"SELECT {columns} FROM answers ORDER BY id") == before["answers"]
    assert store._read("SELECT DISTINCT attempt FROM answers") == [(0,)]
    assert {k: v for k, v in store._read("SELECT * FROM meta")} == {**dict(before["meta"]), "schema_version": "2"}
    assert store._read("PRAGMA integrity_check") == [("ok",)] and store._read("PRAGMA foreign_key_check") == []
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):  # the rebuilt table keeps its triggers
        store._connection().execute("DELETE FROM answers")

    # The migrated store works as a new one: a labeler from the old file answers, undoes, answers again.
    tokens = {name: token for name, token, _ in before["labelers"]}
    assert store.labeler_for_token(tokens["ann"]) == "ann" and store.labeler_token("bob") == tokens["bob"]
    pending = store.next_assignment("ann")
    answer = store.add_answer(pending.id, "ann", 0, require_assignment=True)
    store.retract_answer(answer, "ann")
    store.add_answer(pending.id, "ann", 2, require_assignment=True)
    assert store.to_dataset("all")["best"][-1] == 2
    store.close()
    assert LabelStore(path).counts()["answers"] == 4  # reopening a migrated file changes nothing


def test_a_store_from_a_newer_version_is_refused(tmp_path):
    path = tmp_path / "future.sqlite"
    LabelStore(path).close()
    raw = sqlite3.connect(path)
    raw.execute("UPDATE meta SET value = '9' WHERE key = 'schema_version'")
    raw.commit()
    raw.close()
    with pytest.raises(ValueError, match="schema version 9; this ziegler-trl reads versions 1 and 2"):
        LabelStore(path)


def test_answers_batch_across_retractions_is_atomic(store):
    a, b, _ = store.comparison_ids()
    last = store.add_answer(a, "ann", 0)
    store.retract_answer(last, "ann")
    with pytest.raises(ValueError):
        store.add_answers([Answer(a, "ann", 1), Answer(b, "ann", 7)])
    assert store.answers(labeler="ann") == []
