import importlib.util
import json
from pathlib import Path

import pytest

from ziegler_trl.evaluation import agreement_table, preference_items, win_rate_from_records
from ziegler_trl.evaluation.label_store import add_preference_items, judgments_from_store
from ziegler_trl.labeling import LabelStore

EVAL = Path(__file__).parents[1] / "eval"


def script(name):
    spec = importlib.util.spec_from_file_location(name, EVAL / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


QUERIES = ["q0", "q1", "q2", "q3"]
LONG = [[f"a long answer {i}"] for i in range(4)]
SHORT = [[f"no {i}"] for i in range(4)]


def test_human_labels_in_the_store_give_win_rate_and_agreement(tmp_path):
    store = LabelStore(tmp_path / "labels.sqlite")
    items = preference_items(LONG, SHORT, QUERIES, "2way", names=("long", "short"), seed=1)
    ids = add_preference_items(store, items, task="tldr")
    for cid, models in zip(ids, items.models):
        for labeler in ("ann", "bob", "cid"):
            # ann and bob pick "long" on every item; cid picks "short" except on the first item
            wanted = "long" if labeler != "cid" or cid == ids[0] else "short"
            store.add_answer(cid, labeler, models.index(wanted))
    store.add_comparisons(["other"], [["x", "y"]], policy="base")  # one policy's samples: not a preference item
    store.add_answer(ids[-1] + 1, "ann", 0)
    store.add_answer(ids[-1] + 1, "bob", skipped=True)

    rows = judgments_from_store(store)
    assert len(rows) == 13  # 4 items x 3 labels + 1 answered, 1 skipped
    result = win_rate_from_records(rows, "long", "short")
    assert (result.win_rate, result.n, result.protocol) == (1.0, 4, "2way")
    table = agreement_table(rows, reference="ann")
    assert table["chance"] == 0.5
    assert table["cid vs reference"].rate == pytest.approx(0.25)
    assert table["bob vs reference"].rate == 1.0

    export = tmp_path / "export.jsonl"
    store.export_jsonl(export)
    assert judgments_from_store(export) == rows

    out = tmp_path / "table.md"
    assert script("preference_table")(["--store", str(store.path), "--pairs", "long:short", "--out", str(out)]) == 0
    assert "| long vs short | 2way | 4 | 100.0 |" in out.read_text()
    assert script("agreement_table")(["--store", str(export), "--reference", "ann", "--out", str(out)]) == 0
    assert "| cid vs reference | 25.0 ± 25.0 | 4 | 4 |" in out.read_text()
    assert script("agreement_table")(["--store", str(tmp_path / "missing.sqlite"), "--out", str(out)]) == 2


def test_bad_policy_field(tmp_path):
    store = LabelStore(tmp_path / "labels.sqlite")
    cid = store.add_comparisons(["p"], [["x", "y"]], policy=json.dumps(["a"]))[0]
    store.add_answer(cid, "ann", 0)
    with pytest.raises(ValueError, match=r"comparison 1: policy '\[\"a\"\]' must name the model of each of the 2"):
        judgments_from_store(store)
    with pytest.raises(ValueError, match="holds no comparisons"):
        judgments_from_store(LabelStore(tmp_path / "empty.sqlite"))
