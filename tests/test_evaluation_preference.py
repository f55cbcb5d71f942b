import json

import pytest
import torch
from transformers import LlamaForCausalLM

from tests.conftest import tiny_config
from ziegler_trl.evaluation import preference_win_rate, wilson_interval, win_rate_from_records


class PickLongest:
    """Picks the longest completion (the shortest with `shortest=True`)."""

    def __init__(self, shortest: bool = False):
        self.shortest = shortest

    def label(self, prompts, completions):
        pick = min if self.shortest else max
        return [pick(range(len(c)), key=lambda i: len(c[i])) for c in completions]


QUERIES = [f"query {i}" for i in range(10)]
LONG = [[f"a long answer number {i}", f"another long answer {i}"] for i in range(10)]
SHORT = [[f"no {i}", f"meh {i}"] for i in range(10)]



def test_wilson_interval_known_values():
    low, high = wilson_interval(0.5, 100)
    assert (low, high) == pytest.approx((0.4038, 0.5962), abs=1e-4)
    assert wilson_interval(1.0, 10) == pytest.approx((0.7225, 1.0), abs=1e-4)


@pytest.mark.parametrize("protocol", ["2way", "4way"])
def test_consistent_labeler_gives_full_win(protocol):
    result = preference_win_rate(LONG, SHORT, QUERIES, PickLongest(), protocol, names=("long", "short"))
    assert (result.win_rate, result.n, result.protocol) == (1.0, 10, protocol)
    assert len(result.records) == 30  # 10 items x 3 labelers
    assert len(result.records[0]["completions"]) == {"2way": 2, "4way": 4}[protocol]
    reverse = preference_win_rate(SHORT, LONG, QUERIES, PickLongest(), protocol, names=("short", "long"))
    assert reverse.win_rate == 0.0


def test_order_is_randomised():
    result = preference_win_rate(LONG, SHORT, QUERIES, PickLongest(), "2way", names=("long", "short"), seed=3)
    first = {r["model_of_each_completion"][0] for r in result.records}
    assert first == {"long", "short"}


def test_precomputed_completions_must_cover_every_query():
    with pytest.raises(ValueError, match="policy 'short' has completions for 9 queries; query 9 needs one"):
        preference_win_rate(LONG, SHORT[:9], QUERIES, PickLongest(), names=("long", "short"))
    with pytest.raises(ValueError, match="policy 'long': query 0 has 1 completions; the protocol needs 2"):
        preference_win_rate([c[:1] for c in LONG], SHORT, QUERIES, PickLongest(), "4way", names=("long", "short"))


def test_majority_over_labelers_and_ties():
    two_to_one = [PickLongest(), PickLongest(), PickLongest(shortest=True)]
    assert preference_win_rate(LONG, SHORT, QUERIES, two_to_one, names=("l", "s")).win_rate == 1.0
    one_to_two = [PickLongest(), PickLongest(shortest=True), PickLongest(shortest=True)]
    assert preference_win_rate(LONG, SHORT, QUERIES, one_to_two, names=("l", "s")).win_rate == 0.0
    tie = [PickLongest(), PickLongest(shortest=True)]
    assert preference_win_rate(LONG, SHORT, QUERIES, tie, names=("l", "s")).win_rate == 0.5


def test_records_from_a_store_export(tmp_path):
    def item(prompt, winner_first, labeler):
        return {
            "prompt": prompt,
            "completions": ["x", "y"],
            "best": 0 if winner_first else 1,
            "labeler": labeler,
            "model_of_each_completion": ["ppo", "base"],
        }

    records = [
        item("p1", True, "ann"),
        item("p1", True, "bob"),
        item("p1", False, "cid"),  # ppo 2-1
        item("p2", False, "ann"),
        item("p2", False, "bob"),  # base 0-2
        item("p3", True, "ann"),
        item("p4", True, "ann"),
        {**item("p5", True, "ann"), "model_of_each_completion": ["ppo", "sft"]},
    ]  # other pair: ignored
    path = tmp_path / "labels.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    result = win_rate_from_records(path, "ppo", "base")
    assert (result.win_rate, result.n, result.protocol) == (0.75, 4, "2way")
    assert win_rate_from_records(records, "base", "ppo").win_rate == 0.25
    assert len(result.records) == 7


def test_record_errors(tmp_path):
    good = {"prompt": "p", "completions": ["x", "y"], "best": 0, "labeler": "a", "model_of_each_completion": ["m", "n"]}
    path = tmp_path / "labels.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps({k: v for k, v in good.items() if k != "labeler"}) + "\n")
    with pytest.raises(ValueError, match=r"labels.jsonl:2: missing field 'labeler'"):
        win_rate_from_records(path, "m", "n")
    with pytest.raises(ValueError, match="record 1: best=5"):
        win_rate_from_records([{**good, "best": 5}], "m", "n")
    with pytest.raises(ValueError, match="no labeled item compares exactly 'm' with 'z'"):
        win_rate_from_records([good], "m", "z")
    path.write_text("")
    with pytest.raises(ValueError, match="no records"):
        win_rate_from_records(path, "m", "n")


def test_sampling_from_models_with_the_task_format():
    from ziegler_trl.models import load_tokenizer

    tokenizer = load_tokenizer("embedded")
    torch.manual_seed(0)
    config = tiny_config(
        tokenizer, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=2, tie_word_embeddings=False
    )
    model_a, model_b = LlamaForCausalLM(config).eval(), LlamaForCausalLM(config).eval()
    texts = ["Intro. She walked home in the rain. It was cold.", "Start. He ate the cake. Then slept."]
    result = preference_win_rate(
        model_a, model_b, texts, PickLongest(), "4way", tokenizer=tokenizer, task="sentiment", names=("a", "b")
    )
    assert result.n == 2
    assert result.records[0]["prompt"] == " She walked home in the rain. It was cold."
    assert sorted(result.records[0]["model_of_each_completion"]) == ["a", "a", "b", "b"]
    with pytest.raises(ValueError, match="needs tokenizer= and task="):
        preference_win_rate(model_a, model_b, texts, PickLongest())
