import pytest
import torch

from tests.conftest import tiny_llama
from ziegler_trl.collection import collect_round, label_comparisons, sample_comparisons
from ziegler_trl.labeling import LabelStore, ScorerLabeler
from ziegler_trl.tasks import Query


def _queries(tokenizer, n):
    return [Query(ids=tokenizer.encode(f"The cat sat {i}.", add_special_tokens=False),
                  reward_ids=tokenizer.encode(f"The cat sat {i}.", add_special_tokens=False)) for i in range(n)]


class CountingLabeler(ScorerLabeler):
    """Prefers the longest completion and counts how many comparisons it was asked about."""

    def __init__(self):
        super().__init__(lambda prompts, completions: [float(len(c)) for c in completions], name="counter")
        self.asked = 0

    def scores(self, prompts, completions):  # every answer of a ScorerLabeler goes through its scores
        self.asked += len(prompts)
        return super().scores(prompts, completions)


def test_sample_comparisons_layout_and_labels(tiny_tokenizer):
    torch.manual_seed(0)
    rows = sample_comparisons(tiny_llama(tiny_tokenizer), tiny_tokenizer, _queries(tiny_tokenizer, 3), "sentiment",
                              k=4, progress=False)
    assert len(rows) == 3 and all(len(r["completions"]) == 4 and len(r["valid"]) == 4 for r in rows)
    assert rows[1]["prompt"] == "The cat sat 1."
    label_comparisons(rows, CountingLabeler())
    assert all(r["best"] == max(range(4), key=lambda j: (len(r["completions"][j]), -j)) for r in rows)


def test_collect_round_resumes_without_resampling_or_relabeling(tmp_path, tiny_tokenizer, monkeypatch):
    store = LabelStore(tmp_path / "labels.sqlite")
    policy, queries = tiny_llama(tiny_tokenizer), _queries(tiny_tokenizer, 6)
    labeler = CountingLabeler()

    # A run killed after the first batch of 2 queries was stored (and before any label).
    import ziegler_trl.collection as collection

    real = collection.sample_comparisons
    calls = []

    def dying(*args, **kwargs):
        calls.append(len(args[2]))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(collection, "sample_comparisons", dying)
    with pytest.raises(KeyboardInterrupt):
        collect_round(store, policy, tiny_tokenizer, queries, "sentiment", labeler, batch_size=2)
    assert len(store.comparison_ids()) == 2 and labeler.asked == 0

    monkeypatch.setattr(collection, "sample_comparisons", real)
    ids = collect_round(store, policy, tiny_tokenizer, queries, "sentiment", labeler, batch_size=2)
    assert len(ids) == 6 and labeler.asked == 6
    assert [c.prompt for c in store.get_comparisons(ids)] == [f"The cat sat {i}." for i in range(6)]

    again = collect_round(store, policy, tiny_tokenizer, queries, "sentiment", labeler, batch_size=2)
    assert again == ids and labeler.asked == 6  # nothing re-sampled, nothing re-labeled
    assert len(store.to_dataset()) == 6
