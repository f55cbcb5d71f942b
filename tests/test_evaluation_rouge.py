import pytest

from ziegler_trl.evaluation import rouge


def test_identical_texts_score_100():
    scores = rouge(["The cat sat on the mat."], ["The cat sat on the mat."])
    assert scores == pytest.approx({"rouge1": 100.0, "rouge2": 100.0, "rougeL": 100.0, "rougeLsum": 100.0})


def test_hand_computed_f_measures():
    # prediction 3 words, reference 6: R-1 P=1 R=1/2 -> F=2/3; R-2 P=2/2 R=2/5 -> F=4/7.
    scores = rouge(["the cat sat"], ["the cat sat on the mat"])
    assert scores["rouge1"] == pytest.approx(200 / 3)
    assert scores["rouge2"] == pytest.approx(400 / 7)


def test_porter_stemming_as_rouge155_m():
    assert rouge(["cats running"], ["cat runs"])["rouge1"] == pytest.approx(100.0)


def test_rouge_lsum_is_summary_level_over_sentences():
    # Swapped sentences: one LCS over the whole text covers only one sentence (F = 1/2), the union LCS per
    # reference sentence (ROUGE-1.5.5 summary level) covers both.
    scores = rouge(["apple banana. cherry grape."], ["cherry grape. apple banana."])
    assert scores["rougeL"] == pytest.approx(50.0)
    assert scores["rougeLsum"] == pytest.approx(100.0)


def test_mean_over_documents_and_bootstrap_interval():
    predictions = ["the cat sat", "a dog", "birds fly high"]
    references = ["the cat sat", "the dog", "fish swim"]
    scores = rouge(predictions, references, bootstrap_samples=500, seed=1)
    assert scores["rouge1"] == pytest.approx((100 + 50 + 0) / 3)
    assert scores["rouge1_low"] <= scores["rouge1"] <= scores["rouge1_high"]
    assert scores["rouge1_low"] < scores["rouge1_high"]
    assert rouge(predictions, references, bootstrap_samples=500, seed=1) == scores


def test_errors():
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        rouge(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="at least one"):
        rouge([], [])
