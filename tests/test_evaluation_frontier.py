import math
from itertools import pairwise

import numpy as np
import pytest
import torch
from transformers import LlamaForCausalLM, LlamaForSequenceClassification

from tests.conftest import tiny_config
from ziegler_trl.evaluation import optimal_policy_frontier, optimal_policy_point, sample_rewards

RHO = np.array([0.5, 0.3, 0.2])
R = np.array([0.0, 1.0, 2.0])


def closed_form(beta):
    pi = RHO * np.exp(R / beta)
    pi /= pi.sum()
    return float(pi @ R), float(pi @ np.log(pi / RHO))



@pytest.mark.parametrize("beta", [0.25, 1.0, 4.0])
def test_exact_on_samples_in_proportion_to_rho(beta):
    samples = np.repeat(R, [50, 30, 20])  # the empirical distribution is exactly ρ
    point = optimal_policy_point(samples, beta)
    reward, kl = closed_form(beta)
    assert point.reward == pytest.approx(reward, abs=1e-12)
    assert point.kl == pytest.approx(kl, abs=1e-12)


def test_monte_carlo_estimate_of_the_toy_distribution():
    rng = np.random.default_rng(0)
    samples = R[rng.choice(3, size=200_000, p=RHO)]
    for beta in (0.5, 1.0, 2.0):
        point = optimal_policy_point(samples, beta)
        reward, kl = closed_form(beta)
        assert point.reward == pytest.approx(reward, abs=0.01)
        assert point.kl == pytest.approx(kl, abs=0.01)


def test_limits_and_ordering():
    samples = np.repeat(R, [50, 30, 20])
    near_rho = optimal_policy_point(samples, 1e4)
    assert near_rho.reward == pytest.approx(RHO @ R, abs=1e-3) and near_rho.kl == pytest.approx(0.0, abs=1e-6)
    assert near_rho.effective_samples == pytest.approx(100, rel=1e-3)
    greedy = optimal_policy_point(samples, 1e-3)  # all mass on r = 2, which ρ gives 0.2
    assert greedy.reward == pytest.approx(2.0) and greedy.kl == pytest.approx(math.log(5))
    assert greedy.effective_samples == pytest.approx(20)
    frontier = optimal_policy_frontier(samples, [0.5, 2.0, 1.0])
    assert [p.beta for p in frontier] == [2.0, 1.0, 0.5]
    assert all(a.kl < b.kl and a.reward < b.reward for a, b in pairwise(frontier))


def test_errors():
    with pytest.raises(ValueError, match="beta must be > 0"):
        optimal_policy_point([1.0], 0.0)
    with pytest.raises(ValueError, match="at least one sample"):
        optimal_policy_point([], 1.0)
    with pytest.raises(ValueError, match="NaN or infinity"):
        optimal_policy_point([1.0, float("nan")], 1.0)


def test_sample_rewards_scores_valid_samples_and_penalises_the_rest():
    from ziegler_trl.models import load_tokenizer
    from ziegler_trl.reward.scoring import reward_sequence, score_sequences
    from ziegler_trl.sampling import sample_completions
    from ziegler_trl.tasks import build_queries

    tokenizer = load_tokenizer("embedded")
    torch.manual_seed(0)
    config = tiny_config(
        tokenizer, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=2, tie_word_embeddings=False, num_labels=1
    )
    policy, reward_model = LlamaForCausalLM(config).eval(), LlamaForSequenceClassification(config).eval()
    # Uniform next tokens except "." at p ~ 0.1 (at T = 0.7): some samples end in the truncation window, some not.
    policy.lm_head = torch.nn.Linear(16, len(tokenizer), bias=True)
    with torch.no_grad():
        policy.lm_head.weight.zero_()
        policy.lm_head.bias.zero_()
        policy.lm_head.bias[tokenizer.convert_tokens_to_ids(".")] = 0.7 * math.log(0.1 / 0.9 * (len(tokenizer) - 1))
    queries = build_queries(["Intro. She walked home. It was cold.", "Start. He ate the cake."], "sentiment", tokenizer)
    torch.manual_seed(1)
    rewards = sample_rewards(policy, reward_model, tokenizer, queries, "sentiment", k=4)
    torch.manual_seed(1)
    batch = sample_completions(policy, tokenizer, queries, "sentiment", k=4, progress=False)
    sequences = [
        reward_sequence(queries[i // 4].reward_ids, r.tolist(), tokenizer.pad_token_id)
        for i, r in enumerate(batch.responses)
    ]
    scores = score_sequences(reward_model, sequences, tokenizer.pad_token_id)
    assert rewards.shape == (8,)
    assert 0 < int(batch.valid.sum()) < 8
    assert torch.allclose(rewards[batch.valid], scores[batch.valid])
    assert torch.all(rewards[~batch.valid] == -1.0)
