import json
import math

import pytest

from ziegler_trl.evaluation import agreement_table

# item: {labeler: best}, all with k = 4
LABELS = {
    1: {"A": 0, "B": 0, "R": 0},
    2: {"A": 1, "B": 2, "R": 1},
    3: {"A": 3, "B": 3, "R": 0},
    4: {"A": 2, "R": 2},
    5: {"A": 1},  # labeled once: not an agreement item
}
ROWS = [{"item_id": i, "labeler": name, "best": best, "k": 4} for i, by in LABELS.items() for name, best in by.items()]


def test_constructed_label_set(tmp_path):
    path = tmp_path / "labels.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    table = agreement_table(path, reference="R")
    assert table["chance"] == 0.25
    ll = table["labeler-labeler"]  # A-B on items 1, 2, 3: agree, disagree, agree
    assert (ll.rate, ll.n_items, ll.n_pairs) == (pytest.approx(2 / 3), 3, 3)
    assert ll.stderr == pytest.approx(math.sqrt(1 / 3) / math.sqrt(3))
    lr = table["labeler-reference"]  # per item: 1, 1/2, 0, 1
    assert (lr.rate, lr.n_items, lr.n_pairs) == (pytest.approx(0.625), 4, 7)
    a = table["A vs reference"]  # 1, 1, 0, 1
    assert (a.rate, a.stderr, a.n_items) == (pytest.approx(0.75), pytest.approx(0.25), 4)
    assert table["B vs reference"].rate == pytest.approx(1 / 3)
    assert table["reference-reference"].n_items == 0 and math.isnan(table["reference-reference"].rate)


def test_without_reference_every_pair_is_labeler_labeler():
    table = agreement_table(ROWS)
    # items 1..4 pairs among A, B, R: item1 3/3, item2 1/3, item3 1/3, item4 1/1
    assert table["labeler-labeler"].rate == pytest.approx((1 + 1 / 3 + 1 / 3 + 1) / 4)
    assert set(table) == {"chance", "labeler-labeler"}


def test_errors():
    with pytest.raises(ValueError, match="labeler 'A' labeled item 1 twice"):
        agreement_table(ROWS + [{"item_id": 1, "labeler": "A", "best": 1, "k": 4}])
    with pytest.raises(ValueError, match=r"best=4 is not in 0..3"):
        agreement_table([{"item_id": 1, "labeler": "A", "best": 4, "k": 4}])
    with pytest.raises(ValueError, match="item 1 has k=2 here but k=4 before"):
        agreement_table(ROWS[:1] + [{"item_id": 1, "labeler": "Z", "best": 0, "k": 2}])
    with pytest.raises(ValueError, match="no item was labeled by two or more"):
        agreement_table(ROWS[-1:])
    with pytest.raises(ValueError, match=r"reference labeler\(s\) \['Q'\]"):
        agreement_table(ROWS, reference="Q")
    with pytest.raises(ValueError, match="record 1: missing field 'k'"):
        agreement_table([{"item_id": 1, "labeler": "A", "best": 0}])
