"""LabelStore: validation, append-only answers, idempotence, assignment, agreement, export/import, crash safety."""

from __future__ import annotations

import codecs
import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from collections import Counter
from pathlib import Path

import pytest

from ziegler_trl.errors import LabelFileError
from ziegler_trl.labeling import Answer, LabelConflictError, LabelStore, agreement_summary
from ziegler_trl.labeling import store as store_module


def fill(store: LabelStore, n: int = 3, k: int = 4, **kwargs) -> list[int]:
    prompts = [f"query {i}" for i in range(n)]
    completions = [[f"q{i} completion {j}" for j in range(k)] for i in range(n)]
    return store.add_comparisons(prompts, completions, **kwargs)


@pytest.fixture
def store(tmp_path) -> LabelStore:
    return LabelStore(tmp_path / "labels.db")


def test_roundtrip_wal_and_metadata(store):
    ids = fill(store, 2, 3, task="sentiment", round=1, policy="rho")
    (first, second) = store.get_comparisons(ids[::-1])
    assert first.id == ids[1] and first.prompt == "query 1"
    assert first.completions == [f"q1 completion {j}" for j in range(3)]
    assert (second.task, second.round, second.policy, second.k) == ("sentiment", 1, "rho", 3)
    assert store.comparison_ids(round=1) == ids and store.comparison_ids(round=2) == []
    assert store._read("PRAGMA journal_mode")[0][0] == "wal"
    with pytest.raises(KeyError, match="no comparison with id \\[999\\]"):
        store.get_comparisons([999])


def test_add_comparisons_validates_and_is_atomic(store):
    with pytest.raises(ValueError, match="comparison 1: field 'completions' must be a list of at least 2 strings"):
        store.add_comparisons(["a", "b"], [["x", "y"], ["only one"]])
    with pytest.raises(ValueError, match="comparison 0: field 'prompt' must be a string"):
        store.add_comparisons([3], [["x", "y"]])
    with pytest.raises(ValueError, match="2 prompts but 1 completion lists"):
        store.add_comparisons(["a", "b"], [["x", "y"]])
    assert store.counts()["comparisons"] == 0


def test_answers_idempotent_conflicts_and_append_only(store):
    ids = fill(store, 2, 4)
    first = store.add_answer(ids[0], "ann", 2, ranking=[2, 0, 3, 1])
    assert store.add_answer(ids[0], "ann", 2, ranking=[2, 0, 3, 1]) == first  # same answer again: no-op
    with pytest.raises(LabelConflictError, match="'ann' already answered comparison .* with best=2"):
        store.add_answer(ids[0], "ann", 1)
    assert len(store.answers()) == 1
    with pytest.raises(ValueError, match=r"field 'best' must be an integer in \[0, 4\) \(got 4\)"):
        store.add_answer(ids[1], "ann", 4)
    with pytest.raises(ValueError, match="field 'ranking' must be a permutation of 0..3"):
        store.add_answer(ids[1], "ann", 0, ranking=[0, 1, 1, 2])
    with pytest.raises(ValueError, match="field 'ranking' starts with 1 but 'best' is 0"):
        store.add_answer(ids[1], "ann", 0, ranking=[1, 0, 2, 3])
    with pytest.raises(ValueError, match="field 'skipped' is true, so 'best' and 'ranking' must be null"):
        store.add_answer(ids[1], "ann", 0, skipped=True)
    with pytest.raises(PermissionError, match="not assigned to labeler 'ann'"):
        store.add_answer(ids[1], "ann", 0, require_assignment=True)
    for sql in ("UPDATE answers SET best = 0", "DELETE FROM comparisons", "DELETE FROM answers"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            store._connection().execute(sql)
    # a batch with one bad answer stores none of it
    with pytest.raises(ValueError):
        store.add_answers([Answer(ids[1], "bob", 1), Answer(ids[1], "cy", 9)])
    assert [(a.labeler, a.best, a.ranking) for a in store.answers()] == [("ann", 2, [2, 0, 3, 1])]


def test_to_dataset_aggregation_rankings_and_skips(store):
    a, b, c = fill(store, 3, 3, round=0)
    store.add_answers([
        Answer(a, "ann", 1), Answer(a, "bob", 2), Answer(a, "cy", 2),       # majority 2, first 1
        Answer(b, "ann", 0, ranking=[0, 2, 1]), Answer(b, "bob", 1),          # tie: earliest (0) wins
        Answer(c, "ann", skipped=True),                                       # skipped: no row
    ])
    majority = store.to_dataset()
    assert majority["best"] == [2, 0] and majority["prompt"] == ["query 0", "query 1"]
    assert majority["completions"][1] == ["q1 completion 0", "q1 completion 1", "q1 completion 2"]
    assert "ranking" not in majority.column_names  # not every row has one
    assert store.to_dataset("first")["best"] == [1, 0]
    assert store.to_dataset("all")["best"] == [1, 2, 2, 0, 1]
    with pytest.raises(ValueError, match="rankings=True but comparisons \\[1\\] have no full ranking"):
        store.to_dataset(rankings=True)
    with pytest.raises(ValueError, match="aggregate must be one of"):
        store.to_dataset("mean")
    with pytest.raises(ValueError, match="no answered comparisons"):
        store.to_dataset(round=5)
    only_b = store.to_dataset("first", round=0)
    assert only_b.num_rows == 2
    d = fill(store, 1, 3, round=1)[0]
    store.add_answer(d, "ann", 2, ranking=[2, 1, 0])
    ranked = store.to_dataset(round=1)
    assert ranked[:] == {"prompt": ["query 0"], "completions": [[f"q0 completion {j}" for j in range(3)]],
                         "best": [2], "ranking": [[2, 1, 0]]}


def test_assign_overlap_balance_and_no_repeats(store):
    ids = fill(store, 100, 2)
    people = [f"p{i}" for i in range(6)]
    for name in people:
        store.add_labeler(name)
    assert store.add_labeler("p0") == store.labeler_token("p0")  # re-adding returns the same token
    added = store.assign(overlap=0.05, repeats=5, seed=1)
    pairs = store.assignments()
    per_comparison = Counter(cid for cid, _ in pairs)
    assert added == len(pairs) == 95 + 5 * 5
    assert sorted(Counter(per_comparison.values()).items()) == [(1, 95), (5, 5)]
    assert len(set(pairs)) == len(pairs)  # nobody has a comparison twice
    load = Counter(name for _, name in pairs)
    assert max(load.values()) - min(load.values()) <= 1
    assert store.assign(overlap=0.05, repeats=5, seed=1) == 0  # idempotent
    # a comparison skipped by its only assignee goes to someone else, never back to them
    cid, name = next((c, n) for c, n in pairs if per_comparison[c] == 1)
    store.add_answer(cid, name, skipped=True, require_assignment=True)
    assert store.assign() == 1
    new = [n for c, n in store.assignments([cid])]
    assert len(new) == 2 and new[0] == name and new[1] != name
    with pytest.raises(KeyError, match=r"labelers \['zed'\] are not registered"):
        store.assign(labelers=["zed"])
    with pytest.raises(ValueError, match="overlap must be a fraction"):
        store.assign(overlap=1.5)
    assert store.next_assignment("p0").id == min(c for c, n in pairs if n == "p0")
    assert ids


def test_assign_needs_labelers(store):
    fill(store, 1)
    with pytest.raises(ValueError, match="no labelers registered"):
        store.assign()


def test_agreement_against_chance(store):
    a, b, c = fill(store, 3, 4)
    store.add_answers([
        Answer(a, "ann", 1), Answer(a, "bob", 1), Answer(a, "cy", 0),  # pairs: ann-bob agree, others not
        Answer(b, "ann", 3), Answer(b, "bob", 3),                      # agree
        Answer(c, "ann", 2), Answer(c, "bob", skipped=True),           # one answer only: ignored
        Answer(c, "sim", 2),
    ])
    agreement = agreement_summary(store.judgements(["ann", "bob", "cy"]))
    assert (agreement.pairs, agreement.comparisons) == (4, 2)
    # Each comparison weighs the same: a agrees on 1 of its 3 pairs, b on its 1 pair (not 2 of the 4 pairs).
    assert agreement.rate == pytest.approx((1 / 3 + 1) / 2) and agreement.chance == pytest.approx(0.25)
    assert agreement.stderr == pytest.approx(1 / 3)  # sd of (1/3, 1) over sqrt(2 comparisons)
    assert agreement.by_pair == {("ann", "bob"): (2, 2), ("ann", "cy"): (0, 1), ("bob", "cy"): (0, 1)}
    assert agreement_summary(store.judgements()).pairs == 5  # the simulated labeler counts when not filtered out
    assert math.isnan(agreement_summary(LabelStore(store.path.with_name("empty.db")).judgements()).rate)
    rows = store.judgements(["ann", "cy"])
    uid = {c.id: c.uid for c in store.comparisons()}
    assert rows == [{"item_id": uid[a], "labeler": "ann", "best": 1, "k": 4}, {"item_id": uid[a], "labeler": "cy",
                    "best": 0, "k": 4}, {"item_id": uid[b], "labeler": "ann", "best": 3, "k": 4},
                    {"item_id": uid[c], "labeler": "ann", "best": 2, "k": 4}]


def test_export_import_roundtrip_and_idempotent(store, tmp_path):
    a, b = fill(store, 2, 3, task="tldr", round=2, policy="pi_1")
    store.add_answers([Answer(a, "ann", 2, shown_order=[1, 2, 0]), Answer(b, "ann", skipped=True),
                       Answer(b, "bob", 0, ranking=[0, 2, 1])])
    path = tmp_path / "labels.jsonl"
    assert store.export_jsonl(path).count("\n") == 2
    other = LabelStore(tmp_path / "copy.db")
    assert other.import_jsonl(path) == 3
    assert other.import_jsonl(path) == 0  # same file again changes nothing
    assert other.to_dataset("all")[:] == store.to_dataset("all")[:]
    assert [c.uid for c in other.comparisons()] == [c.uid for c in store.comparisons()]
    assert other.answers(labeler="ann")[0].shown_order == [1, 2, 0]
    assert other.export_jsonl() == store.export_jsonl()
    # dataset-style rows (no uid, no answers list) are answered by the given labeler
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"prompt": "p", "completions": ["x", "y"], "best": 1}\n\n'
                    '{"prompt": "p2", "completions": ["x", "y", "z"], "best": 0, "ranking": [0, 2, 1],'
                    ' "labeler": "z"}\n')
    assert other.import_jsonl(rows, labeler="openai") == 2
    assert other.import_jsonl(rows, labeler="openai") == 0
    assert [(x.labeler, x.best) for x in other.answers()[-2:]] == [("openai", 1), ("z", 0)]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", r"bad\.jsonl, line 2: not valid JSON \(Expecting property name .*, column 2\)"),
        ("[1, 2]", r"bad\.jsonl, line 2: expected a JSON object, got list"),
        ('{"completions": ["a", "b"], "best": 0}', r"bad\.jsonl, line 2, field 'prompt': missing"),
        ('{"prompt": "p", "completions": ["a"], "best": 0}',
         r"bad\.jsonl, line 2, field 'completions': must be a list of at least 2 strings \(got \['a'\]\)"),
        ('{"prompt": "p", "completions": ["a", "b"], "best": 2}',
         r"bad\.jsonl, line 2, field 'best': must be an integer in \[0, 2\) \(got 2\)"),
        ('{"prompt": "p", "completions": ["a", "b"], "bset": 0}',
         r"bad\.jsonl, line 2, field 'bset': is not a field of a label record \(known: uid, prompt"),
        ('{"prompt": "p", "completions": ["a", "b"], "round": "x", "best": 0}',
         r"bad\.jsonl, line 2, field 'round': must be an integer in \[0, 2\*\*63\) or null \(got 'x'\)"),
        ('{"prompt": "p", "completions": ["a", "b"], "answers": [{"best": 0, "skipped": "no"}]}',
         r"bad\.jsonl, line 2, field 'answers\[0\]\.skipped': must be true or false \(got 'no'\)"),
        ('{"prompt": "q", "completions": ["a", "b"], "best": 1}',
         r"bad\.jsonl, line 2: labeler 'import' already answered"),
        # integers SQLite cannot hold, and integer literals Python refuses to parse
        ('{"prompt": "p", "completions": ["a", "b"], "round": 9223372036854775808, "best": 0}',
         r"line 2, field 'round': must be an integer in \[0, 2\*\*63\) or null \(got 9223372036854775808\)"),
        ('{"prompt": "p", "completions": ["a", "b"], "best": 99999999999999999999999}',
         r"line 2, field 'best': must be an integer in \[0, 2\)"),
        ('{"prompt": "p", "completions": ["a", "b"], "best": ' + "7" * 5000 + "}",
         r"line 2: not readable JSON \(Exceeds the limit \(4300 digits\)"),
        ('{"prompt": "p", "completions": ["a", "b"], "answers": [{"best": 0, "ranking": [0, 18446744073709551616]}]}',
         r"line 2, field 'answers\[0\]\.ranking': must be a permutation of 0\.\.1"),
        # timestamps are finite numbers, nothing else
        ('{"prompt": "p", "completions": ["a", "b"], "created": "yesterday"}',
         r"line 2, field 'created': must be a number of seconds \(got 'yesterday'\)"),
        ('{"prompt": "p", "completions": ["a", "b"], "created": NaN}',
         r"line 2, field 'created': must be a finite number of seconds \(got nan\)"),
        ('{"prompt": "p", "completions": ["a", "b"], "created": 1e999}',
         r"line 2, field 'created': must be a finite number of seconds \(got inf\)"),
        ('{"prompt": "p", "completions": ["a", "b"], "created": ' + "9" * 400 + "}",
         r"line 2, field 'created': must be a finite number of seconds \(got 9999"),
        ('{"prompt": "p", "completions": ["a", "b"], "answers": [{"best": 0, "answered_at": [1]}]}',
         r"line 2, field 'answers\[0\]\.answered_at': must be a number of seconds \(got \[1\]\)"),
        ('{"prompt": "p", "completions": ["a", "b"], "answers": [{"best": 0, "answered_at": {"t": 1}}]}',
         r"line 2, field 'answers\[0\]\.answered_at': must be a number of seconds"),
        ('{"prompt": "p", "completions": ["a", "b"], "answers": [{"best": 0, "shown_at": NaN}]}',
         r"line 2, field 'answers\[0\]\.shown_at': must be a finite number of seconds \(got nan\)"),
        ('{"prompt": "p", "completions": ["a", "b"], "answers": [{"best": 0, "shown_at": -Infinity}]}',
         r"line 2, field 'answers\[0\]\.shown_at': must be a finite number of seconds \(got -inf\)"),
        ('{"prompt": "p", "completions": ["a", "b"], "answers": [{"best": 0, "shown_at": true}]}',
         r"line 2, field 'answers\[0\]\.shown_at': must be a number of seconds \(got True\)"),
        # text SQLite/UTF-8 cannot store, and structure nobody writes
        ('{"prompt": "p", "completions": ["a", "b\\udc80"], "best": 0}',
         r"line 2, field 'completions\[1\]': holds a lone surrogate"),
        ('{"prompt": "p", "completions": ["a", "b"], "answers": [{"best": 0, "labeler": "\\ud800x"}]}',
         r"line 2, field 'answers\[0\]\.labeler': holds a lone surrogate"),
        ('{"prompt": "p", "completions": ["a", "b"], "best": 0, "labeler": ' + "[" * 100 + "]" * 100 + "}",
         r"line 2, field 'labeler\[0\]\[0\]': nested more than 64 levels deep"),
        ('{"prompt": "p", "completions": ["a", "b"], "best": 0, "labeler": ' + "[" * 100000 + "]" * 100000 + "}",
         r"line 2: not readable JSON \(nested too deep\)"),
        ('{"prompt": ["p"], "completions": ["a", "b"], "best": 0}',
         r"line 2, field 'prompt': must be a string \(got \['p'\]\)"),
        ('{"prompt": "p", "completions": ["a", 3], "best": 0}', r"line 2, field 'completions\[1\]': must be a string"),
        ('{"prompt": "p", "completions": ["a", "b"], "best": true}', r"line 2, field 'best': must be an integer"),
        ('{"prompt": "p", "completions": ["a", "b"], "answers": {"best": 0}}',
         r"line 2, field 'answers': must be a list of answers"),
        ('{"prompt": "p", "completions": ["a", "b"], "answers": [0]}',
         r"line 2, field 'answers\[0\]': expected an object, got int"),
        ('{"prompt": "p", "completions": ["a", "b"], "task": 5, "best": 0}',
         r"line 2, field 'task': must be a string or null \(got 5\)"),
        ('{"prompt": "p", "completions": ["a", "b"], "best": 0, "labeler": ""}',
         r"line 2, field 'labeler': must be a non-empty string"),
        ('{"prompt": "p", "completions": ["a", "b"], "labeler": "z"}',
         r"line 2, field 'labeler': names a labeler but gives no 'best' or 'ranking' \(got 'z'\)"),
        ('{"prompt": "p", "completions": ["a", "b"], "best": 0, "answers": []}',
         r"line 2, field 'answers': a record with 'answers' gives 'best', 'ranking' and 'labeler' inside each"),
        ('{"prompt": "p", "completions": ["a", "b"], "answers": [{"best": 0, "Best": 1}]}',
         r"line 2, field 'answers\[0\]\.Best': is not a field of an answer"),
    ],
)
def test_import_errors_name_file_line_field_and_leave_the_store_byte_identical(store, tmp_path, line, message):
    good = '{"prompt": "q", "completions": ["a", "b"], "best": 0}\n'
    store.import_jsonl(_write(tmp_path / "good.jsonl", good))
    before = _store_bytes(store)
    bad = _write(tmp_path / "bad.jsonl", '{"prompt": "new", "completions": ["c", "d"]}\n' + line + "\n")
    with pytest.raises(LabelFileError, match=message):
        store.import_jsonl(bad)
    assert _store_bytes(store) == before
    assert store.counts()["comparisons"] == 1 and len(store.answers()) == 1


def _write(path, text: str, encoding: str = "utf-8"):
    path.write_bytes(text.encode(encoding, errors="surrogatepass"))
    return path


def _store_bytes(store: LabelStore) -> dict[str, bytes]:
    files = [store.path, store.path.with_name(store.path.name + "-wal")]
    return {f.name: f.read_bytes() for f in files if f.exists()}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'{"prompt": "p", "completions": ["a", "b\xff"], "best": 0}\n',
         r"bad\.jsonl, line 2: not valid UTF-8 \(bytes b'\\xff': invalid start byte\)"),
        (b'{"prompt": "p\xc3", "completions": ["a", "b"], "best": 0}\n', r"bad\.jsonl, line 2: not valid UTF-8"),
        ('{"prompt": "p", "completions": ["a", "b"], "best": 0}\n'.encode("utf-16-le"),
         r"bad\.jsonl, line 1: holds NUL bytes: is it UTF-16 or UTF-32 without a byte-order mark\? Save it as UTF-8"),
        (b"\xff\xfe" + '{"prompt": "p", "completions": ["a"'.encode("utf-16-le") + b"\x00\xd8",
         r"bad\.jsonl, line 1: not valid UTF-16-LE"),
    ],
)
def test_import_refuses_undecodable_bytes_by_name(store, tmp_path, data, message):
    good = b'{"prompt": "q", "completions": ["a", "b"], "best": 0}\n'
    path = tmp_path / "bad.jsonl"
    path.write_bytes((good if not data.startswith((b"\xff\xfe", b"{\x00")) else b"") + data)
    before = _store_bytes(store)
    with pytest.raises(LabelFileError, match=message):
        store.import_jsonl(path)
    assert _store_bytes(store) == before


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-16-be", "utf-32"])
def test_import_reads_byte_order_marked_files(store, tmp_path, encoding):
    text = '{"prompt": "p é", "completions": ["a ✓", "b"], "best": 1}\r\n'
    data = text.encode(encoding)
    if encoding == "utf-16-be":
        data = codecs.BOM_UTF16_BE + data
    (tmp_path / "x.jsonl").write_bytes(data)
    assert store.import_jsonl(tmp_path / "x.jsonl") == 1
    assert (store.comparisons()[0].prompt, store.comparisons()[0].completions) == ("p é", ["a ✓", "b"])


def test_import_missing_or_empty_file(store, tmp_path):
    with pytest.raises(LabelFileError, match=r"nothing\.jsonl: no such file"):
        store.import_jsonl(tmp_path / "nothing.jsonl")
    with pytest.raises(LabelFileError, match=r"empty\.jsonl: no records"):
        store.import_jsonl(_write(tmp_path / "empty.jsonl", "\n  \n"))
    with pytest.raises(LabelFileError, match=r"is a folder"):
        store.import_jsonl(tmp_path)


def test_import_refuses_uid_with_other_content(store, tmp_path):
    fill(store, 1, 2)
    record = json.loads(store.export_jsonl())
    record["prompt"] = "changed"
    path = tmp_path / "x.jsonl"
    path.write_text(json.dumps(record) + "\n")
    with pytest.raises(LabelFileError, match=r"x\.jsonl, line 1, field 'uid': is already stored with a different comparison"):
        store.import_jsonl(path)


def test_enqueue_unanswered_comparisons_then_assign_answer_export(store, tmp_path):
    rows = [{"prompt": "Tell me a story.", "completions": ["Once upon a time.", "No."], "task": "sentiment",
             "round": 3, "policy": "mine"},
            {"prompt": "Summarise.", "completions": ["Short.", "Long and winding.", "Medium."]}]
    path = _write(tmp_path / "queue.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    assert store.import_jsonl(path) == 0  # no answers yet
    assert store.import_jsonl(path) == 0 and store.counts()["comparisons"] == 2  # content uids: idempotent
    first, second = store.comparisons()
    assert (first.task, first.round, first.policy, second.k) == ("sentiment", 3, "mine", 3)
    store.add_labeler("ann")
    assert store.assign() == 2
    shown = store.next_assignment("ann")
    assert shown.id == first.id
    store.add_answer(first.id, "ann", 0, require_assignment=True)
    store.add_answer(second.id, "ann", skipped=True, require_assignment=True)
    exported = [json.loads(line) for line in store.export_jsonl().split("\n") if line]
    assert [len(r["answers"]) for r in exported] == [1, 1]
    assert store.to_dataset()[:] == {"prompt": ["Tell me a story."], "completions": [["Once upon a time.", "No."]],
                                      "best": [0]}
    # a file of answered rows with a typo in 'best' is refused, never stored as an unanswered comparison
    typo = _write(tmp_path / "typo.jsonl", '{"prompt": "p", "completions": ["a", "b"], "Best": 1}\n')
    with pytest.raises(LabelFileError, match=r"field 'Best': is not a field"):
        store.import_jsonl(typo)


LINE_BREAKERS = "\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029\r"


def test_export_import_roundtrips_every_line_breaking_character(store, tmp_path):
    text = "".join(f"<{c}>" for c in LINE_BREAKERS)
    (cid,) = store.add_comparisons([f"prompt {text}"], [[f"a{text}", "b\u2028\u2029"]], task=text)
    store.add_answer(cid, f"ann{text}", 1)
    exported = store.export_jsonl(tmp_path / "out.jsonl")
    assert len(exported.splitlines()) == 1 and exported.count("\n") == 1  # any splitter sees one record
    assert not set(LINE_BREAKERS) & set(exported)
    other = LabelStore(tmp_path / "other.db")
    assert other.import_jsonl(tmp_path / "out.jsonl") == 1
    assert other.export_jsonl() == exported
    assert other.comparisons()[0].completions == [f"a{text}", "b\u2028\u2029"]
    assert other.answers()[0].labeler == f"ann{text}"


def test_concurrent_writers_lose_nothing(store):
    ids = fill(store, 40, 2)
    names = [f"t{i}" for i in range(6)]
    errors = []

    def work(name: str) -> None:
        try:
            for cid in ids:
                store.add_answer(cid, name, cid % 2)
                store.add_answer(cid, name, cid % 2)  # a retried request
        except Exception as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert Counter(a.labeler for a in store.answers()) == {n: 40 for n in names}


# The writer loads store.py without the package's __init__ (the store needs only the standard library and its
# stdlib-only siblings errors.py and jsonl.py) so the child starts in a blink.
WRITER = textwrap.dedent(
    """
    import sys, types
    root = sys.argv[2]
    for name, folder in (("ziegler_trl", root), ("ziegler_trl.labeling", root + "/labeling")):
        package = sys.modules[name] = types.ModuleType(name)
        package.__path__ = [folder]
    from ziegler_trl.labeling.store import Answer, LabelStore
    store = LabelStore(sys.argv[1])
    batch = 0
    while True:
        prompts = [f"batch {batch} query {i}" for i in range(20)]
        completions = [[f"completion {j} " + "x" * 2000 for j in range(4)] for _ in prompts]
        ids = store.add_comparisons(prompts, completions, round=batch)
        print("C", batch, *ids, flush=True)
        store.add_answers([Answer(cid, "sim", cid % 4) for cid in ids])
        print("A", batch, *ids, flush=True)
        batch += 1
    """
)


def test_kill_during_writes_keeps_every_committed_label(tmp_path):
    path = tmp_path / "crash.db"
    LabelStore(path)  # schema first, so each writer is killed mid-batch rather than mid-setup
    committed: dict[str, list[int]] = {"C": [], "A": []}
    for stop_after in (40, 120, 200):  # three kills at different points, each on the file the last one left
        package = str(Path(store_module.__file__).parents[1])
        child = subprocess.Popen([sys.executable, "-c", WRITER, str(path), package],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 env={**os.environ, "PYTHONUNBUFFERED": "1"})
        seen = 0
        for line in child.stdout:
            kind, _, *ids = line.split()
            committed[kind].extend(int(i) for i in ids)
            seen += len(ids) if kind == "A" else 0
            if seen >= stop_after:
                break
        assert seen >= stop_after, f"the writer died on its own: {child.stderr.read()[-2000:]}"
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        child.stdout.close()
        child.stderr.close()
        store = LabelStore(path)
        assert store._read("PRAGMA integrity_check")[0][0] == "ok"
        comparisons = store.comparisons()
        assert {c.id for c in comparisons} >= set(committed["C"])  # nothing committed is lost
        assert {a.comparison_id for a in store.answers()} >= set(committed["A"])
        assert len(comparisons) % 20 == 0  # whole batches only: no half-written batch of comparisons
        for c in comparisons:
            assert [len(text) for text in c.completions] == [2000 + len(f"completion {j} ") for j in range(4)]
        answered = Counter(a.comparison_id for a in store.answers())
        assert set(answered.values()) == {1} and len(answered) % 20 == 0
        assert all(a.best == a.comparison_id % 4 for a in store.answers())
        store.close()
