import pytest
import torch

from ziegler_trl import fit_reward_normalization, load_reward_model, normalize_reward_model
from ziegler_trl.reward.scoring import score_texts


def test_fit_reward_normalization_is_exact():
    raw = torch.tensor([1.0, 2.0, 3.0, 4.0, 10.0])
    gain, bias = fit_reward_normalization(raw)
    normalised = gain * raw.double() + bias
    assert normalised.mean().item() == pytest.approx(0.0, abs=1e-6)
    assert normalised.std(unbiased=False).item() == pytest.approx(1.0, abs=1e-6)  # population std
    gain, bias = fit_reward_normalization(raw, target_mean=2.0, target_std=0.5)
    normalised = gain * raw.double() + bias
    assert normalised.mean().item() == pytest.approx(2.0, abs=1e-6)
    assert normalised.std(unbiased=False).item() == pytest.approx(0.5, abs=1e-6)


def test_fit_reward_normalization_rejects_constant_rewards():
    with pytest.raises(ValueError, match="std 0"):
        fit_reward_normalization(torch.ones(8))
    with pytest.raises(ValueError, match="at least 2"):
        fit_reward_normalization(torch.ones(1))


PROMPTS = ["The cat sat.", "A happy dog.", "She was sad.", "The rain fell.", "I love this.", "He laughed."]
COMPLETIONS = [" It was good.", " The day.", " Nothing happened.", " great joke!", " the park.", " all night."]


def test_normalized_model_scores_mean0_std1_and_survives_save_reload(tiny_model_dir, tiny_tokenizer, tmp_path):
    model = load_reward_model(str(tiny_model_dir), tiny_tokenizer)
    gain, bias = normalize_reward_model(model, tiny_tokenizer, PROMPTS, COMPLETIONS)
    scores = score_texts(model, tiny_tokenizer, PROMPTS, COMPLETIONS).double()
    assert scores.mean().item() == pytest.approx(0.0, abs=1e-5)
    assert scores.std(unbiased=False).item() == pytest.approx(1.0, abs=1e-5)

    model.save_pretrained(tmp_path / "rm")
    reloaded = load_reward_model(str(tmp_path / "rm"), tiny_tokenizer)
    again = score_texts(reloaded, tiny_tokenizer, PROMPTS, COMPLETIONS).double()
    assert torch.allclose(again, scores, atol=1e-5)
    assert reloaded.config.reward_bias == pytest.approx(bias, abs=1e-6)

    # A second normalisation composes with the first (before and after training, as the paper does).
    normalize_reward_model(reloaded, tiny_tokenizer, PROMPTS, COMPLETIONS, target_mean=1.0, target_std=2.0)
    twice = score_texts(reloaded, tiny_tokenizer, PROMPTS, COMPLETIONS).double()
    assert twice.mean().item() == pytest.approx(1.0, abs=1e-5)
    assert twice.std(unbiased=False).item() == pytest.approx(2.0, abs=1e-5)


def test_plain_from_pretrained_gives_scores_shifted_by_the_bias(tiny_model_dir, tiny_tokenizer, tmp_path):
    from transformers import AutoModelForSequenceClassification

    model = load_reward_model(str(tiny_model_dir), tiny_tokenizer)
    _, _ = normalize_reward_model(model, tiny_tokenizer, PROMPTS, COMPLETIONS)
    model.save_pretrained(tmp_path / "rm")
    plain = AutoModelForSequenceClassification.from_pretrained(tmp_path / "rm")
    ours = score_texts(model, tiny_tokenizer, PROMPTS, COMPLETIONS)
    theirs = score_texts(plain, tiny_tokenizer, PROMPTS, COMPLETIONS)
    assert torch.allclose(theirs, ours - model.config.reward_bias, atol=1e-5)


def test_fresh_reward_head_gets_paper_init(tiny_model_dir, tiny_tokenizer):
    torch.manual_seed(0)
    model = load_reward_model(str(tiny_model_dir), tiny_tokenizer)
    weight = model.score.weight
    d = weight.shape[1]
    # N(0, 1/sqrt(d+1)): with d = 32 the std is 0.174; HF's default init would be 0.02
    assert 0.08 < weight.std().item() < 0.3
    assert weight.std().item() == pytest.approx(1 / (d + 1) ** 0.5, rel=0.5)
