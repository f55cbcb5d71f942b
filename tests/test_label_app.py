"""The labeling web app over a real uvicorn server (HTTP via urllib), and the `label` CLI commands."""

from __future__ import annotations

import argparse
import json
import re
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter

import pytest

from ziegler_trl.labeling import LabelStore
from ziegler_trl.labeling.app import BackgroundServer, shown_order
from ziegler_trl.labeling.commands import add_labeler, assign, export, import_labels, register, status


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


OPENER = urllib.request.build_opener(NoRedirect)


def get(url: str) -> tuple[int, str]:
    try:
        with OPENER.open(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def post(url: str, **form) -> tuple[int, str]:
    data = urllib.parse.urlencode(form).encode()
    try:
        with OPENER.open(urllib.request.Request(url, data=data, method="POST"), timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


@pytest.fixture
def served(tmp_path):
    store = LabelStore(tmp_path / "app.db")
    prompts = [f"Query number {i}." for i in range(6)]
    store.add_comparisons(prompts, [[f"q{i} option {j}" for j in range(4)] for i in range(6)], task="sentiment")
    store.add_labeler("ann")
    store.add_labeler("bob")
    store.assign(labelers=["ann", "bob"])  # no overlap: 3 each
    with BackgroundServer(store) as url:
        yield store, url


def test_shown_order_is_uniform_and_fixed_per_labeler():
    orders = [tuple(shown_order("secret", "ann", cid, 3)) for cid in range(1200)]
    counts = Counter(orders)
    assert len(counts) == 6 and all(150 < n < 250 for n in counts.values())  # ~200 each of the 3! orders
    assert shown_order("secret", "ann", 7, 3) == list(orders[7])
    assert sum(shown_order("secret", "bob", cid, 3) != list(orders[cid]) for cid in range(100)) > 60


def test_wrong_tokens_are_refused(served):
    store, url = served
    for path in ("/label/nope", "/admin/nope", "/admin/nope/export.jsonl", f"/admin/{store.labeler_token('ann')}"):
        code, body = get(url + path)
        assert code == 403 and "token is unknown" in body, path
    code, body = post(url + "/label/nope", comparison_id=1, choice=1)
    assert code == 403
    assert get(url + "/")[0] == 200


def test_labeler_answers_own_assignments_in_recorded_order(served):
    store, url = served
    link = f"{url}/label/{store.labeler_token('ann')}"
    mine = [cid for cid, name in store.assignments() if name == "ann"]
    theirs = [cid for cid, name in store.assignments() if name == "bob"]
    code, page = get(link)
    assert code == 200 and "0 of 3 done" in page and "most positive" in page
    cid = int(re.search(r'name="comparison_id" value="(\d+)"', page).group(1))
    assert cid == mine[0]
    order = shown_order(store.order_secret, "ann", cid, 4)
    shown_texts = r'<span class="key">(\d)</span><span class="rank"></span>(q\d option \d)'
    shown = re.findall(shown_texts, page)
    assert shown == [(str(p + 1), f"q{cid - 1} option {i}") for p, i in enumerate(order)]
    assert re.findall(shown_texts, get(link)[1]) == shown  # the same order on reload
    code, _ = post(link, comparison_id=cid, choice=3, shown_at="123.5")
    assert code == 303
    (answer,) = store.answers(labeler="ann")
    assert (answer.best, answer.shown_order, answer.shown_at) == (order[2], order, 123.5)
    assert post(link, comparison_id=cid, choice=3)[0] == 303  # double submit: idempotent
    code, body = post(link, comparison_id=cid, choice=1)
    assert code == 409 and "already gave a different answer" in body
    code, body = post(link, comparison_id=theirs[0], choice=1)  # bob's comparison
    assert code == 403 and "not assigned to you" in body
    assert post(link, comparison_id=mine[1], skip=1)[0] == 303
    code, page = get(link)
    assert "2 of 3 done" in page and f'value="{mine[2]}"' in page
    for theirs_id in theirs:
        assert f'name="comparison_id" value="{theirs_id}"' not in page
    assert post(link, comparison_id=mine[2], choice=9)[0] == 400
    assert post(link, comparison_id=mine[2])[0] == 400
    assert post(link, comparison_id="x", choice=1)[0] == 400
    assert post(link, comparison_id=mine[2], choice=4)[0] == 303
    assert "Nothing left to label" in get(link)[1]
    assert [(a.labeler, a.skipped) for a in store.answers()] == [("ann", False), ("ann", True), ("ann", False)]


def test_full_ranking_answers(tmp_path):
    store = LabelStore(tmp_path / "rank.db")
    ids = store.add_comparisons(["a", "b"], [["w", "x", "y", "z"]] * 2)
    store.add_labeler("ann")
    store.assign()
    with BackgroundServer(store, ranking=True) as url:
        link = f"{url}/label/{store.labeler_token('ann')}"
        page = get(link)[1]
        assert 'name="ranking"' in page and "from best to worst" in page and 'type="button"' in page
        assert post(link, comparison_id=ids[0], ranking="3,1,2")[0] == 400  # not every position
        assert post(link, comparison_id=ids[0], ranking="3,1,1,2")[0] == 400
        assert post(link, comparison_id=ids[0], ranking="3,1,4,2")[0] == 303
        assert post(link, comparison_id=ids[1], choice=2)[0] == 303  # best only is still accepted
    order = shown_order(store.order_secret, "ann", ids[0], 4)
    first, second = store.answers()
    assert first.ranking == [order[2], order[0], order[3], order[1]] and first.best == order[2]
    assert second.ranking is None and second.best == shown_order(store.order_secret, "ann", ids[1], 4)[1]


def test_concurrent_submissions_lose_and_duplicate_nothing(tmp_path):
    store = LabelStore(tmp_path / "busy.db")
    store.add_comparisons([f"q{i}" for i in range(10)], [["a", "b", "c"]] * 10)
    people = [f"p{i}" for i in range(4)]
    for name in people:
        store.add_labeler(name)
    store.assign(overlap=1.0, repeats=4)  # everyone labels everything: 40 answers
    errors = []
    with BackgroundServer(store) as url:
        def work(name: str) -> None:
            link = f"{url}/label/{store.labeler_token(name)}"
            for cid in store.comparison_ids():
                for _ in range(2):  # every answer sent twice, as an impatient double click would
                    code, body = post(link, comparison_id=cid, choice=1 + cid % 3)
                    if code != 303:
                        errors.append((name, cid, code, body[:200]))

        threads = [threading.Thread(target=work, args=(name,)) for name in people * 2]  # 2 threads per person
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []
    answers = store.answers()
    assert len(answers) == 40 and Counter(a.labeler for a in answers) == {name: 10 for name in people}
    for a in answers:
        assert a.best == shown_order(store.order_secret, a.labeler, a.comparison_id, 3)[a.comparison_id % 3]


def test_admin_progress_agreement_and_export(served):
    store, url = served
    ids = store.add_comparisons(["shared"], [["x", "y"]])
    store.assign(ids, overlap=1.0, repeats=2)
    store.add_answer(ids[0], "ann", 0, require_assignment=True)
    store.add_answer(ids[0], "bob", 0, require_assignment=True)
    store.add_answer(ids[0], "sim", 1)  # a simulated labeler: not part of the people's agreement
    admin = f"{url}/admin/{store.admin_token}"
    code, page = get(admin)
    assert code == 200 and "7 comparisons" in page and "1 answered" in page
    assert "agree on 100.0% of 1 pairs" in page and "chance is 50.0%" in page
    assert f"/label/{store.labeler_token('bob')}" in page
    code, text = get(admin + "/export.jsonl")
    records = [json.loads(line) for line in text.splitlines()]
    assert code == 200 and len(records) == 7 and records[-1]["prompt"] == "shared"
    assert [(a["labeler"], a["best"]) for a in records[-1]["answers"]] == [("ann", 0), ("bob", 0), ("sim", 1)]


def test_commands(tmp_path, capsys):
    db = tmp_path / "cli.db"
    store = LabelStore(db)
    store.add_comparisons([f"q{i}" for i in range(20)], [["a", "b"]] * 20, round=3)
    link = add_labeler(db, "ann", "http://example.org:9000/")
    assert link == f"http://example.org:9000/label/{store.labeler_token('ann')}"
    add_labeler(db, "bob")
    assert assign(db, overlap=0.1, repeats=2, round=3) == 22
    assert assign(db, round=3) == 0
    for cid, name in store.assignments():
        store.add_answer(cid, name, 0 if name == "ann" or cid % 2 else 1, require_assignment=True)
    text = status(db)
    assert "20 comparisons, 20 answered, 22 answers" in text
    assert re.search(r"ann\s+11\s+11\s+0\s+0", text) and "labeler agreement" in text and "over 2 pairs" in text
    assert export(db, tmp_path / "all.jsonl") == 20
    assert export(db, tmp_path / "rows.jsonl", dataset=True, aggregate="all") == 22
    row = json.loads((tmp_path / "rows.jsonl").read_text().splitlines()[0])
    assert set(row) == {"prompt", "completions", "best"}
    assert import_labels(tmp_path / "copy.db", tmp_path / "all.jsonl") == 22

    parser = argparse.ArgumentParser(prog="ziegler-trl")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["label", "add-labeler", "--store", str(db), "cy", "--base-url", "http://h:1"])
    assert args.func(args) == 0
    assert capsys.readouterr().out.strip() == f"http://h:1/label/{store.labeler_token('cy')}"
    args = parser.parse_args(["label", "assign", "--store", str(db), "--overlap", "0.5", "--labelers", "cy"])
    assert args.func(args) == 0 and capsys.readouterr().out.strip() == "0 assignments added"
    with pytest.raises(SystemExit):
        parser.parse_args(["label", "assign", "--store", str(db), "--overlap", "2"])
    assert "must be a fraction in [0, 1], got 2" in capsys.readouterr().err
    args = parser.parse_args(["label", "serve", "--store", str(db), "--port", "8123"])
    assert (args.host, args.port) == ("127.0.0.1", 8123)
