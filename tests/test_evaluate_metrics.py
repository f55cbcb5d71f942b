"""Our ROUGE / lead-3 and copying statistics as `evaluate` modules, loaded offline from the package."""

from __future__ import annotations

import math
import socket

import evaluate
import pytest

from ziegler_trl import load_task_texts
from ziegler_trl.errors import UserInputError
from ziegler_trl.evaluation import copy_table, lead3, rouge
from ziegler_trl.metrics import METRICS, metric_path

PAIRS = (
    ["The council voted to close the old bridge.\nRepairs start in May.", "A dog found its way home after a week."],
    ["The old bridge will close for repairs in May.", "A lost dog walked home after seven days."],
)


@pytest.fixture()
def no_network(monkeypatch):
    """Any connection attempt fails the test: the modules must load from the package alone."""
    def refuse(*_args, **_kwargs):
        raise AssertionError("evaluate tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        (math.isnan(a[k]) and math.isnan(b[k])) if isinstance(a[k], float) and math.isnan(a[k]) else a[k] == b[k]
        for k in a
    )


@pytest.fixture(scope="module")
def cnndm():
    data = load_task_texts("cnndm", "builtin")
    return list(data["text"]), list(data["reference"])


def test_rouge_module_equals_the_library(no_network, cnndm):
    module = evaluate.load(metric_path("ziegler_rouge"))
    assert module.name == "ziegler_rouge"
    predictions, references = PAIRS
    assert module.compute(predictions=predictions, references=references) == rouge(predictions, references)
    articles, highlights = cnndm
    leads = [lead3(a) for a in articles]
    expected = rouge(leads, highlights, bootstrap_samples=200, seed=3)
    assert module.compute(predictions=leads, references=highlights, bootstrap_samples=200, seed=3) == expected
    assert expected["rouge1_low"] < expected["rouge1"] < expected["rouge1_high"]
    for prediction, reference in zip(leads[:10], highlights[:10]):  # streamed in batches, as evaluate users do
        module.add_batch(predictions=[prediction], references=[reference])
    assert module.compute() == rouge(leads[:10], highlights[:10])


def test_lead3_config_scores_the_first_three_sentences(no_network, cnndm):
    articles, highlights = cnndm
    module = evaluate.load(metric_path("ziegler_rouge"), "lead3")
    scores = module.compute(articles=articles, references=highlights)
    assert scores == rouge([lead3(a) for a in articles], highlights)
    assert 20 < scores["rouge1"] < 70  # lead-3 of news against its highlights: a real, non-trivial overlap
    with pytest.raises(ValueError, match=r"ziegler_rouge has configs \['default', 'lead3'\], not 'lead4'"):
        evaluate.load(metric_path("ziegler_rouge"), "lead4")


def test_copying_module_equals_copy_table(no_network, cnndm):
    module = evaluate.load(metric_path("ziegler_copying"))
    articles, highlights = cnndm
    leads = [lead3(a) for a in articles]
    assert _same(module.compute(sources=articles, summaries=highlights), copy_table(articles, highlights))
    with_task = module.compute(sources=articles, summaries=leads, task="cnndm")
    assert _same(with_task, copy_table(articles, leads, "cnndm"))
    assert with_task["copied_whole"] == 1.0 and with_task["novel_1gram"] == 0.0  # lead-3 copies its article
    posts = load_task_texts("tldr", "builtin")
    tldr = module.compute(sources=posts["text"], summaries=posts["reference"], task="tldr")
    assert _same(tldr, copy_table(posts["text"], posts["reference"], "tldr"))
    assert tldr["n"] == len(posts) and 0 < tldr["novel_2gram"] < 1


def test_metric_path_names_what_ships():
    assert METRICS == ("ziegler_copying", "ziegler_rouge")
    with pytest.raises(UserInputError, match=r"unknown metric 'rouge'; ziegler-trl ships \['ziegler_copying', 'ziegler_rouge'\]"):
        metric_path("rouge")
