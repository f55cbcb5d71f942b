"""One agreement for one store: the admin page, `label status` and Table 9 (`agreement_table`) report the same figure.

The labels give the comparisons different numbers of labelers, where weighting pairs and weighting items differ
(40.0% of the pairs agree; the per-comparison mean is 44.4%), so a second definition anywhere would show.
"""

from __future__ import annotations

import importlib.util
import re
import urllib.request
from pathlib import Path

import pytest

from ziegler_trl.evaluation import agreement_table
from ziegler_trl.evaluation.label_store import judgments_from_store
from ziegler_trl.labeling import LabelStore, agreement_summary
from ziegler_trl.labeling.app import BackgroundServer
from ziegler_trl.labeling.commands import status

AGREEMENT_TABLE = Path(__file__).parents[1] / "eval" / "agreement_table.py"


def agreement_table_script():
    spec = importlib.util.spec_from_file_location("agreement_table", AGREEMENT_TABLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


@pytest.fixture
def store(tmp_path) -> LabelStore:
    store = LabelStore(tmp_path / "labels.sqlite")
    ids = store.add_comparisons([f"query {i}" for i in range(4)], [[f"q{i} option {j}" for j in range(4)]
                                                                   for i in range(4)])
    for name in ("ann", "bob", "cy"):
        store.add_labeler(name)
    store.assign(ids, overlap=1.0, repeats=3)
    for cid, answers in zip(ids, [{"ann": 0, "bob": 0, "cy": 1},  # 1 of 3 pairs agree
                                  {"ann": 2, "bob": 2, "cy": None},  # cy skips: 1 of 1
                                  {"ann": 3, "cy": 1},  # bob has not answered yet: 0 of 1
                                  {"bob": 1}]):  # one answer: no pair
        for name, best in answers.items():
            store.add_answer(cid, name, best, skipped=best is None, require_assignment=True)
    return store


def test_admin_page_status_and_agreement_table_agree(store, tmp_path):
    summary = agreement_summary(store.judgements(store.labelers()))
    table = agreement_table(judgments_from_store(store))["labeler-labeler"]
    assert (summary.rate, summary.stderr, summary.comparisons, summary.pairs) == (
        table.rate, table.stderr, table.n_items, table.n_pairs)
    assert summary.rate == pytest.approx((1 / 3 + 1 + 0) / 3) and summary.pairs == 5

    with BackgroundServer(store) as url:
        with urllib.request.urlopen(f"{url}/admin/{store.admin_token}", timeout=10) as response:
            page = re.sub(r"\s+", " ", response.read().decode())
    shown = re.search(r"agree on ([\d.]+)% of (\d+) pairs, each of the (\d+) comparisons .*?\(± ([\d.]+)%", page)
    out = tmp_path / "table9.md"
    assert agreement_table_script()(["--store", str(store.path), "--out", str(out)]) == 0
    row = re.search(r"\| labeler-labeler \| ([\d.]+) ± ([\d.]+) \| (\d+) \| (\d+) \|", out.read_text())
    rate, stderr, comparisons, pairs = shown.group(1), shown.group(4), shown.group(3), shown.group(2)
    assert (rate, stderr, comparisons, pairs) == (row.group(1), row.group(2), row.group(3), row.group(4))
    assert (rate, stderr) == ("44.4", "29.4")
    assert f"labeler agreement {rate}% ± {stderr}% over {pairs} pairs" in status(store.path)
