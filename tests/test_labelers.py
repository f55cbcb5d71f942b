"""Labelers: VADER sentiment scores, Boltzmann choice statistics, scorer wrapping, store recording, humans."""

from __future__ import annotations

import threading
import time
from collections import Counter

import numpy as np
import pytest
import torch
from transformers import LlamaConfig, LlamaForSequenceClassification

from ziegler_trl.labeling import (
    HumanLabeler,
    LabelStore,
    ScorerLabeler,
    SentimentLabeler,
    boltzmann_choice,
    plackett_luce_ranking,
    sentiment_reward,
    sentiment_score,
)
from ziegler_trl.reward.scoring import score_texts

GROUP = ["It was a terrible, awful day.", "The box sat on the table.", "What a wonderful, happy surprise!"]


def test_sentiment_score_and_reward():
    scores = sentiment_score(GROUP + [""])
    assert scores[0] < -0.5 and scores[1] == 0.0 and scores[2] > 0.7 and scores[3] == 0.0
    assert sentiment_reward(["a", "b"], GROUP[:2]) == scores[:2]  # the completion alone is scored
    with pytest.raises(ValueError, match="2 prompts but 1 completions"):
        sentiment_reward(["a", "b"], ["x"])


def test_sentiment_labeler_picks_most_positive():
    labeler = SentimentLabeler()
    groups = [GROUP, GROUP[::-1], [GROUP[1], GROUP[0]]]
    assert labeler.label(["p"] * 3, groups) == [2, 0, 0]
    assert labeler.rank(["p"], [GROUP]) == [[2, 1, 0]]
    assert labeler.name == "sentiment" and SentimentLabeler(0.5).name == "sentiment-T0.5"
    with pytest.raises(ValueError, match=r"completions\[1\] must be a list of at least 2 strings"):
        labeler.label(["p", "q"], [GROUP, ["alone"]])
    with pytest.raises(ValueError, match="temperature must be a finite number >= 0"):
        SentimentLabeler(temperature=-1)


def test_boltzmann_frequencies_match_softmax():
    scores = [0.0, 0.5, 1.0]
    rng = np.random.default_rng(0)
    n = 6000
    counts = Counter(boltzmann_choice(scores, 0.5, rng) for _ in range(n))
    expected = np.exp(np.array(scores) / 0.5)
    expected /= expected.sum()  # [0.090, 0.245, 0.665]
    for i in range(3):
        assert abs(counts[i] / n - expected[i]) < 0.02
    first = Counter(plackett_luce_ranking(scores, 0.5, rng)[0] for _ in range(n))
    for i in range(3):
        assert abs(first[i] / n - expected[i]) < 0.02
    assert boltzmann_choice([1.0, 3.0, 3.0], 0.0, rng) == 1  # argmax, first on ties


def test_noisy_labeler_is_seeded_and_noisier_when_hotter():
    prompts, groups = ["p"] * 200, [GROUP] * 200
    a = SentimentLabeler(temperature=0.3, seed=7).label(prompts, groups)
    assert a == SentimentLabeler(temperature=0.3, seed=7).label(prompts, groups)
    assert a != SentimentLabeler(temperature=0.3, seed=8).label(prompts, groups)
    agree_cold = np.mean(np.array(a) == 2)
    agree_hot = np.mean(np.array(SentimentLabeler(temperature=5.0, seed=7).label(prompts, groups)) == 2)
    assert 0.8 < agree_cold < 0.99 and 0.3 < agree_hot < 0.45  # T=5: near-uniform over 3


def test_scorer_labeler_validates_score_fn():
    by_length = ScorerLabeler(lambda p, c: [len(x) for x in c])
    assert by_length.label(["p", "q"], [["aa", "a", "aaa"], ["b", "bb"]]) == [2, 1]
    assert by_length.scores(["p"], [["aa", "a"]]) == [[2.0, 1.0]]
    with pytest.raises(ValueError, match="score_fn returned 1 scores for 2 completions"):
        ScorerLabeler(lambda p, c: [0.0]).label(["p"], [["a", "b"]])
    with pytest.raises(ValueError, match="non-finite"):
        ScorerLabeler(lambda p, c: [0.0, float("nan")]).label(["p"], [["a", "b"]])


def test_scorer_labeler_from_reward_model(tiny_tokenizer):
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tiny_tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, num_labels=1,
                         pad_token_id=tiny_tokenizer.pad_token_id)
    model = LlamaForSequenceClassification(config).eval()
    labeler = ScorerLabeler.from_reward_model(model, tiny_tokenizer)
    prompts = ["The cat sat.", "A dog ran."]
    groups = [["It was good.", "The rain fell.", "He laughed."], ["I love it.", "I hate it."]]
    expected = [int(score_texts(model, tiny_tokenizer, [p] * len(g), g).argmax()) for p, g in zip(prompts, groups)]
    assert labeler.label(prompts, groups) == expected
    assert labeler.name == "reward-model"


def test_label_comparisons_records_once(tmp_path):
    store = LabelStore(tmp_path / "s.db")
    ids = store.add_comparisons(["p", "q"], [GROUP, GROUP[::-1]], round=0)
    calls = []
    labeler = ScorerLabeler(lambda p, c: calls.append(len(c)) or sentiment_score(c), name="sim", rankings=True)
    assert labeler.label_comparisons(store, ids) == [2, 0]
    assert labeler.label_comparisons(store, ids[::-1]) == [0, 2]  # already answered: read back, not re-scored
    assert calls == [6]
    assert [(a.labeler, a.best, a.ranking) for a in store.answers()] == [("sim", 2, [2, 1, 0]), ("sim", 0, [0, 1, 2])]
    assert store.to_dataset()["ranking"] == [[2, 1, 0], [0, 1, 2]]



def test_skip_ties_records_a_skip_for_a_shared_top_score(tmp_path):
    store = LabelStore(tmp_path / "s.db")
    neutral = ["The box sat on the table.", "The door was shut.", "It was a terrible day."]  # 0.0, 0.0, < 0
    ids = store.add_comparisons(["p", "q"], [neutral, GROUP], round=0)
    labeler = SentimentLabeler(name="sim", skip_ties=True)
    assert labeler.label_comparisons(store, ids) == [None, 2]
    assert labeler.label_comparisons(store, ids) == [None, 2]  # the skip is an answer: read back, not re-asked
    assert [a.skipped for a in store.answers()] == [True, False]
    assert store.to_dataset()["best"] == [2]
    assert SentimentLabeler(skip_ties=True).label(["p"], [neutral]) == [0]  # no store, no skip: argmax

def test_human_labeler_assigns_polls_and_times_out(tmp_path):
    store = LabelStore(tmp_path / "h.db")
    store.add_labeler("ann")
    store.add_labeler("bob")
    ids = store.add_comparisons(["p", "q"], [GROUP, GROUP], round=0)
    human = HumanLabeler(store, poll_interval=0.05, timeout=0.2)
    assert human.label_comparisons(store, ids, wait=False) == [None, None]
    assert sorted(cid for cid, _ in store.assignments()) == ids  # each to one person (no overlap asked)
    with pytest.raises(TimeoutError, match="2 of 2 comparisons still unanswered after 0.2 s"):
        human.label_comparisons(store, ids)

    def answer_later() -> None:
        time.sleep(0.3)
        for cid, name in store.assignments():
            if cid == ids[0]:
                store.add_answer(cid, name, 1, require_assignment=True)
            else:  # skipped by its assignee: goes to the other labeler, who answers
                store.add_answer(cid, name, skipped=True, require_assignment=True)
        deadline = time.monotonic() + 10
        while not (reassigned := [(c, n) for c, n in store.assignments([ids[1]])
                                  if store.answers([c], labeler=n) == []]) and time.monotonic() < deadline:
            time.sleep(0.05)  # the poller hands the skip on; on a loaded machine that takes a few polls
        (cid, other), = reassigned
        store.add_answer(cid, other, 2, require_assignment=True)

    worker = threading.Thread(target=answer_later)
    worker.start()
    human.timeout = 10
    assert human.label_comparisons(store, ids) == [1, 2]
    worker.join()


def test_human_labeler_returns_none_when_everyone_skipped(tmp_path):
    store = LabelStore(tmp_path / "h.db")
    store.add_labeler("ann")
    human = HumanLabeler(store, poll_interval=0.01, timeout=5, task="sentiment")
    (cid,) = store.add_comparisons(["p"], [GROUP])
    human.label_comparisons(store, [cid], wait=False)
    store.add_answer(cid, "ann", skipped=True, require_assignment=True)
    assert human.label_comparisons(store, [cid]) == [None]  # nobody left to ask: returns instead of hanging

    def answer() -> None:
        while not (pending := store.next_assignment("ann")):
            time.sleep(0.01)
        store.add_answer(pending.id, "ann", 0, require_assignment=True)

    worker = threading.Thread(target=answer)
    worker.start()
    assert human.label(["new"], [GROUP]) == [0]
    worker.join()
    assert store.comparisons()[-1].task == "sentiment"
