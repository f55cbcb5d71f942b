"""Parity with the paper's own code, openai/lm-human-preferences (TF1): each `paper_*` function below is our port of
the named function, written here from its source with numpy (or torch where a gradient is needed) in place of the
TF ops, and compared with ours on identical seeded random inputs to float rounding.

    python -m pytest -q tests/test_paper_parity.py

Covered: query formatting and the query budget (language/datasets.py, lm_tasks.py), truncation and the −1 penalty
(lm_tasks.py, train_policy.py), temperature log-probs and entropy (policy.py, utils/core.py), per-token rewards,
whitening, GAE, the clipped policy and value losses and their logged statistics (train_policy.py PPOTrainer), the
adaptive KL controller, the per-update learning-rate decay, the whitening minimum (train_policy.py), reward
normalisation on raw ρ samples (train_reward.py, rewards.py), the best-of-4 loss (label_types.py), TF's Adam with
ε = 1e-5 (utils/core.py minimize) and the recipes that use it; and one whole minibatch of our trainer, from the
rollout through the loss and its gradients to the optimizer step and the logged statistics.
"""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from datasets import Dataset

from tests.conftest import tiny_llama
from ziegler_trl import TASKS, AdaptiveKLController, best_of_k_loss, fit_reward_normalization, format_query
from ziegler_trl.models import load_policy
from ziegler_trl.ppo import TFAdam, ZieglerPPOConfig, ZieglerPPOTrainer
from ziegler_trl.ppo.buffer import loss_inputs, ppo_minibatches
from ziegler_trl.ppo.core import (
    explained_variance,
    gae,
    logprobs_and_entropy,
    logprobs_from_logits,
    per_token_rewards,
    policy_loss,
    value_loss,
    whiten,
)
from ziegler_trl.reward.model import load_reward_model
from ziegler_trl.reward.normalization import apply_reward_normalization
from ziegler_trl.reward.pipeline import sample_rho_for_normalization
from ziegler_trl.reward.scoring import score_texts
from ziegler_trl.sampling import generate_responses
from ziegler_trl.tasks import single_token_id, truncate_responses

RECIPES = Path(__file__).resolve().parents[1] / "recipes" / "configs"


# ----- ports of the paper's functions -----

def paper_query_tokens(tokens: list[int], sequence_length: int, start_token, end_token) -> list[int] | None:
    """language/datasets.py `Dataset.tf_dataset`'s generator, before padding (None: the text is skipped)."""
    if start_token is not None:
        if start_token not in tokens:
            return None
        first_index = tokens.index(start_token) + 1
        if first_index < len(tokens):
            tokens = tokens[first_index:]
    tokens = tokens[:sequence_length]
    if end_token is not None:
        if end_token not in tokens:
            return None
        tokens = tokens[: len(tokens) - tokens[::-1].index(end_token)]
    return tokens


def paper_context(query: list[int], prefix: list[int], suffix: list[int]) -> list[int]:
    """lm_tasks.py `query_formatter`: prefix ‖ query ‖ suffix (the query's padding is masked by the model)."""
    return prefix + query + suffix


def paper_truncate(responses: np.ndarray, truncate_token: int, truncate_after: int, padding_token: int) -> np.ndarray:
    """lm_tasks.py `postprocess_fn_from_hparams`: pad everything after the first truncate token at >= truncate_after."""
    hits = (responses == truncate_token).astype(np.int64)
    hits[:, :truncate_after] = 0
    after_first = (np.cumsum(hits, axis=1) - hits).astype(bool)
    return np.where(after_first, padding_token, responses)


def paper_penalize(responses: np.ndarray, scores: np.ndarray, truncate_token: int, truncate_after: int) -> np.ndarray:
    """lm_tasks.py `filter_fn_from_hparams` + train_policy.py `penalize`: −1 without a truncate token in the window."""
    valid = (responses[:, truncate_after:] == truncate_token).any(axis=-1)
    return np.where(valid, scores, -1.0)


def paper_logprobs_and_entropy(logits: torch.Tensor, labels: torch.Tensor, temperature: float):
    """policy.py `analyze_responses_op` with utils/core.py `logprobs_from_logits` and `entropy_from_logits`."""
    logits = logits / temperature
    logprobs = -torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels, reduction="none")
    probs = torch.softmax(logits, dim=-1)
    entropies = torch.logsumexp(logits, dim=-1) - (probs * logits).sum(dim=-1)
    return logprobs, entropies


def paper_compute_rewards(scores, logprobs, ref_logprobs, kl_coef):
    """train_policy.py `PPOTrainer.compute_rewards`."""
    non_score_reward = -kl_coef * (logprobs - ref_logprobs)
    rewards = non_score_reward.copy()
    rewards[:, -1] += scores
    return rewards, non_score_reward


def paper_whiten(values, shift_mean=True):
    """utils/core.py `whiten`: tf.nn.moments over every axis (population variance), rsqrt(var + 1e-8)."""
    mean, var = values.mean(), values.var()
    whitened = (values - mean) / np.sqrt(var + 1e-8)
    return whitened if shift_mean else whitened + mean


def paper_advantages(rewards, values, gamma, lam, whiten_rewards):
    """The start of train_policy.py `PPOTrainer.loss`: (whitened advantages, returns) of one minibatch."""
    if whiten_rewards:
        rewards = paper_whiten(rewards, shift_mean=False)
    lastgaelam, advantages_reversed = 0.0, []
    length = rewards.shape[1]
    for t in reversed(range(length)):
        nextvalues = values[:, t + 1] if t < length - 1 else 0.0
        delta = rewards[:, t] + gamma * nextvalues - values[:, t]
        lastgaelam = delta + gamma * lam * lastgaelam
        advantages_reversed.append(lastgaelam)
    advantages = np.stack(advantages_reversed[::-1], axis=1)
    returns = advantages + values
    return paper_whiten(advantages), returns


def paper_loss(values, old_logprob, advantages, returns, logprob, vpred, entropies, cliprange, cliprange_value, vf_coef):
    """The rest of train_policy.py `PPOTrainer.loss` (in torch, for gradients): the loss and its statistics."""
    vpredclipped = torch.clamp(vpred, values - cliprange_value, values + cliprange_value)
    vf_losses1 = (vpred - returns) ** 2
    vf_losses2 = (vpredclipped - returns) ** 2
    vf_loss = 0.5 * torch.maximum(vf_losses1, vf_losses2).mean()
    ratio = torch.exp(logprob - old_logprob)
    pg_losses = -advantages * ratio
    pg_losses2 = -advantages * torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange)
    pg_loss = torch.maximum(pg_losses, pg_losses2).mean()
    loss = pg_loss + vf_coef * vf_loss
    stats = {
        "loss/policy": pg_loss, "loss/value": vf_loss, "loss/total": loss,
        "policy/entropy": entropies.mean(), "policy/approxkl": 0.5 * ((logprob - old_logprob) ** 2).mean(),
        "policy/clipfrac": (pg_losses2 > pg_losses).float().mean(),
        "returns/mean": returns.mean(), "returns/var": returns.var(unbiased=False),
        "val/vpred": vpred.mean(), "val/error": ((vpred - returns) ** 2).mean(),
        "val/clipfrac": (vf_losses2 > vf_losses1).float().mean(),
    }
    return loss, {k: v.item() for k, v in stats.items()}


def paper_var_explained(stats: dict) -> float:
    """train_policy.py `record_step_stats`: from the averaged statistics, 1 − val/error / returns/var."""
    return 1 - stats["val/error"] / stats["returns/var"]


def paper_kl_coefs(init_kl_coef, target, horizon, kls, n_steps):
    """train_policy.py `AdaptiveKLController.update`, once per measured KL."""
    value, coefs = init_kl_coef, []
    for current in kls:
        proportional_error = np.clip(current / target - 1, -0.2, 0.2)
        value *= 1 + proportional_error * n_steps / horizon
        coefs.append(value)
    return coefs


def paper_learning_rates(lr, nupdates, steps_per_update):
    """train_policy.py `train_minibatch`: lrnow = lr·(1 − global_step/nupdates); the global step counts updates."""
    return [lr * (1 - update / nupdates) for update in range(nupdates) for _ in range(steps_per_update)]


def paper_per_rank_minibatch_ok(batch_size, nminibatches, ranks, whiten_rewards) -> bool:
    """train_policy.py `train`: the per-rank minibatch must hold >= 8 episodes when rewards are whitened."""
    return not whiten_rewards or batch_size // (nminibatches * ranks) >= 8


def paper_reward_norm(rewards, new_mean=0.0, new_std=1.0):
    """train_reward.py `stats` (population moments from sums) and rewards.py `set_reward_norm`: (gain, bias)."""
    sums = np.asarray([rewards.sum(), np.square(rewards).sum()])
    mean, sqr_mean = sums / rewards.shape[0]
    std = np.sqrt(sqr_mean - mean**2)
    gain = new_std / std
    return gain, new_mean - gain * mean


def paper_best_of_n_loss(logits, best):
    """label_types.py `PickBest.loss`: mean sparse softmax cross-entropy of the labeled best."""
    logits = logits - logits.max(axis=1, keepdims=True)
    log_softmax = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return -log_softmax[np.arange(len(best)), best].mean()


def paper_adam(param, grads, lr, beta1=0.9, beta2=0.999, epsilon=1e-5):
    """tf.train.AdamOptimizer (utils/core.py `minimize` passes epsilon=1e-5), step by step."""
    m, v = np.zeros_like(param), np.zeros_like(param)
    for t, g in enumerate(grads, start=1):
        lr_t = lr * np.sqrt(1 - beta2**t) / (1 - beta1**t)
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        param = param - lr_t * m / (np.sqrt(v) + epsilon)
    return param


# ----- inputs: queries, responses, rewards -----

def encode(tokenizer, text: str) -> list[int]:
    return tokenizer.encode(text, add_special_tokens=False)


def random_text(rng: random.Random, alphabet: str, length: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(length))


@pytest.mark.parametrize("task_name", ["sentiment", "descriptiveness"])
def test_book_queries_match_the_paper_on_random_texts(tiny_tokenizer, task_name):
    # datasets.py's own test generator: 40 characters from a-z and "." (here 404 of them, some "." sparser)
    rng = random.Random(0)
    texts = [random_text(rng, "abcdefghijklmnopqrstuvwxyz." + "abcdefgh " * (i % 3), 40) for i in range(404)]
    texts += ["abc def.", "abc.", ".", "a.b", "no end here"]  # only "." last, "." alone, no "." after the start
    task = dataclasses.replace(TASKS[task_name], query_length=16)
    start, end = single_token_id(tiny_tokenizer, "."), single_token_id(tiny_tokenizer, ".")
    kept = 0
    for text in texts:
        expected = paper_query_tokens(encode(tiny_tokenizer, text), task.query_length, start, end)
        query = format_query(text, task, tiny_tokenizer)
        assert (query is None) == (expected is None), text
        if query is not None:
            kept += 1
            assert query.reward_ids == expected and query.ids == paper_context(expected, [], []), text
    assert 50 < kept < len(texts)  # both outcomes occur


@pytest.mark.parametrize("task_name", ["tldr", "cnndm"])
def test_summarization_queries_get_the_full_budget_and_prefix_suffix_around_it(tiny_tokenizer, task_name):
    rng = random.Random(1)
    task = dataclasses.replace(TASKS[task_name], query_length=24)
    prefix = encode(tiny_tokenizer, task.query_prefix) if task.query_prefix else []
    suffix = encode(tiny_tokenizer, task.query_suffix)
    end = single_token_id(tiny_tokenizer, task.end_text) if task.end_text else None
    kept = 0
    for _ in range(404):
        text = random_text(rng, "abcdefgh ijklm\n", rng.randint(5, 80))
        tokens = encode(tiny_tokenizer, text)
        expected = paper_query_tokens(tokens, task.query_length, None, end)
        query = format_query(text, task, tiny_tokenizer)
        if expected is None:  # CNN/DM without a newline in the budget: the paper skips it; we keep the hard cut
            assert task_name == "cnndm" and query.reward_ids == tokens[: task.query_length]
            continue
        kept += 1
        assert query.reward_ids == expected
        assert query.ids == paper_context(expected, prefix, suffix)
    assert kept > 300


def test_truncation_and_penalty_match_the_paper(tiny_tokenizer):
    generator = torch.Generator().manual_seed(0)
    dot, pad = single_token_id(tiny_tokenizer, "."), tiny_tokenizer.pad_token_id
    # Few distinct tokens so that "." falls before, at and after index 16 in many rows
    vocab = torch.tensor([dot, 5, 6, 7, 8, 9])
    responses = vocab[torch.randint(0, len(vocab), (256, 24), generator=generator)]
    scores = torch.randn(256, generator=generator)
    truncated, valid = truncate_responses(responses, "sentiment", tiny_tokenizer)
    np.testing.assert_array_equal(truncated.numpy(), paper_truncate(responses.numpy(), dot, 16, pad))
    penalised = torch.where(valid, scores, torch.full_like(scores, TASKS["sentiment"].penalty_reward))  # the trainer's
    np.testing.assert_array_equal(penalised.numpy(), paper_penalize(truncated.numpy(), scores.numpy(), dot, 16))
    assert 0 < valid.sum() < 256


def test_temperature_logprobs_and_entropy_match_the_paper():
    generator = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(4, 7, 50, generator=generator)
    labels = torch.randint(0, 50, (4, 7), generator=generator)
    expected_logprobs, expected_entropy = paper_logprobs_and_entropy(logits, labels, 0.7)
    logprobs, entropies = logprobs_and_entropy(logits, labels, 0.7)  # what PPO's loss uses
    torch.testing.assert_close(logprobs, expected_logprobs)
    torch.testing.assert_close(entropies, expected_entropy)


def test_per_token_rewards_whitening_and_gae_match_the_paper():
    rng = np.random.default_rng(0)
    logprobs, ref_logprobs = rng.normal(-2, 1, (8, 24)), rng.normal(-2, 1, (8, 24))
    scores, values = rng.normal(0, 1, 8), rng.normal(0, 1, (8, 24))
    expected_rewards, expected_kl = paper_compute_rewards(scores, logprobs, ref_logprobs, 0.15)
    rewards, kl_part = per_token_rewards(*map(torch.from_numpy, (scores, logprobs, ref_logprobs)), kl_coef=0.15)
    np.testing.assert_allclose(rewards.numpy(), expected_rewards, rtol=1e-12)
    np.testing.assert_allclose(kl_part.numpy(), expected_kl, rtol=1e-12)
    for shift_mean in (True, False):
        np.testing.assert_allclose(whiten(rewards, shift_mean).numpy(), paper_whiten(expected_rewards, shift_mean),
                                   rtol=1e-10, atol=1e-12)
    for gamma, lam, whiten_rewards in ((1.0, 0.95, True), (0.9, 0.8, False)):
        expected_advantages, expected_returns = paper_advantages(expected_rewards, values, gamma, lam, whiten_rewards)
        ours = whiten(rewards, shift_mean=False) if whiten_rewards else rewards
        advantages, returns = gae(ours, torch.from_numpy(values), gamma, lam)
        np.testing.assert_allclose(returns.numpy(), expected_returns, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(whiten(advantages).numpy(), expected_advantages, rtol=1e-10, atol=1e-12)


def test_clipped_losses_and_their_statistics_match_the_paper():
    generator = torch.Generator().manual_seed(0)
    shape = (8, 24)
    old_logprob, values = torch.randn(shape, generator=generator) - 2, torch.randn(shape, generator=generator)
    logprob = old_logprob + 0.3 * torch.randn(shape, generator=generator)  # ratios on both sides of the clip
    vpred = values + 0.4 * torch.randn(shape, generator=generator)
    advantages, returns = torch.randn(shape, generator=generator), torch.randn(shape, generator=generator)
    _, expected = paper_loss(values, old_logprob, advantages, returns, logprob, vpred, torch.zeros(shape), 0.2, 0.2, 0.1)
    pg, pg_stats = policy_loss(logprob, old_logprob, advantages, 0.2)
    vf, vf_stats = value_loss(vpred, values, returns, 0.2)
    ours = {"loss/policy": pg, "loss/value": vf, "loss/total": pg + 0.1 * vf, "policy/clipfrac": pg_stats["clipfrac"],
            "policy/approxkl": pg_stats["approxkl"], "val/clipfrac": vf_stats["clipfrac"],
            "val/error": vf_stats["error"], "val/vpred": vf_stats["vpred"]}
    for key, value in ours.items():
        assert value.item() == pytest.approx(expected[key], rel=1e-6, abs=1e-7), key
    assert 0 < expected["policy/clipfrac"] < 1 and 0 < expected["val/clipfrac"] < 1
    # var_explained from the averaged statistics; a value function off by a constant is charged for the offset
    ours_explained = explained_variance(expected["val/error"], expected["returns/var"])
    assert ours_explained == pytest.approx(paper_var_explained(expected))
    offset = returns + 3.0
    error, var = ((offset - returns) ** 2).mean().item(), returns.var(unbiased=False).item()
    assert explained_variance(error, var) == pytest.approx(1 - 9.0 / var)


def test_adaptive_kl_controller_matches_the_paper():
    rng = np.random.default_rng(0)
    kls = rng.uniform(0, 15, 50)
    controller, ours = AdaptiveKLController(0.15, target=6.0, horizon=10000), []
    for kl in kls:
        controller.update(float(kl), 512)
        ours.append(controller.value)
    np.testing.assert_allclose(ours, paper_kl_coefs(0.15, 6.0, 10000, kls, 512), rtol=1e-12)


def test_best_of_4_loss_matches_the_paper():
    rng = np.random.default_rng(0)
    logits, best = rng.normal(0, 2, (32, 4)), rng.integers(0, 4, 32)
    ours = best_of_k_loss(torch.from_numpy(logits), torch.from_numpy(best)).item()
    assert ours == pytest.approx(paper_best_of_n_loss(logits, best), rel=1e-6)


def test_reward_normalization_matches_the_paper_and_a_second_one_composes_like_a_reset(tiny_model_dir, tiny_tokenizer):
    rng = np.random.default_rng(0)
    raw = rng.normal(3.0, 2.5, 256)
    gain, bias = fit_reward_normalization(torch.from_numpy(raw))
    np.testing.assert_allclose((gain, bias), paper_reward_norm(raw), rtol=1e-9)
    # The paper resets gain/bias to (1, 0) before normalising after training; we fold a second normalisation into the
    # first: the composed head must equal the one fitted afresh on the raw scores.
    model = load_reward_model(str(tiny_model_dir), tiny_tokenizer)
    prompts = [f"query {i}." for i in range(16)]
    completions = [" " + random_text(random.Random(i), "abcdefgh .", 20) for i in range(16)]
    raw_scores = score_texts(model, tiny_tokenizer, prompts, completions).double().numpy()
    apply_reward_normalization(model, 0.5, 2.0)  # "before training"
    again = score_texts(model, tiny_tokenizer, prompts, completions).double()
    apply_reward_normalization(model, *fit_reward_normalization(again))  # "after training"
    expected_gain, expected_bias = paper_reward_norm(raw_scores)
    final = score_texts(model, tiny_tokenizer, prompts, completions).double().numpy()
    np.testing.assert_allclose(final, expected_gain * raw_scores + expected_bias, atol=1e-4)


def test_normalisation_samples_are_raw_responses_as_in_the_paper(tiny_model_dir, tiny_tokenizer):
    # train_reward.py `sample_policy_batch` scores ρ's responses as `respond_op` draws them (no postprocess_fn)
    policy = load_policy(str(tiny_model_dir), tiny_tokenizer)
    pad = tiny_tokenizer.pad_token_id
    prompts = [f"query {i}." for i in range(8)]
    task = dataclasses.replace(TASKS["sentiment"], response_length=12, truncate_after=0)
    torch.manual_seed(0)
    raw = torch.cat([generate_responses(policy, [encode(tiny_tokenizer, p) for p in prompts[i : i + 4]], task, pad)
                     for i in (0, 4)])
    # A truncate token ρ did sample inside row 0, so that truncation would change what is scored
    token = next(int(t) for t in raw[0, 1:-1] if encode(tiny_tokenizer, tiny_tokenizer.decode([int(t)])) == [int(t)])
    task = dataclasses.replace(task, truncate_token=tiny_tokenizer.decode([token]))
    torch.manual_seed(0)
    completions = sample_rho_for_normalization(policy, tiny_tokenizer, prompts, task, batch_size=4)
    decode = [tiny_tokenizer.decode([t for t in row.tolist() if t != pad]) for row in raw]
    assert completions == decode
    truncated, _ = truncate_responses(raw, task, tiny_tokenizer)
    assert not torch.equal(truncated[0], raw[0])  # what PPO scores (truncated) is not what normalisation sees


def test_tf_adam_matches_tensorflow_adam():
    rng = np.random.default_rng(0)
    start = rng.normal(0, 1, 10)
    grads = [rng.normal(0, 1e-3 * (t + 1), 10) for t in range(20)]  # small gradients: where ε placement matters
    param = torch.nn.Parameter(torch.from_numpy(start.copy()))
    optimizer = TFAdam([param], lr=1e-2, eps=1e-5)
    for g in grads:
        param.grad = torch.from_numpy(g)
        optimizer.step()
    np.testing.assert_allclose(param.detach().numpy(), paper_adam(start, grads, 1e-2), rtol=1e-10)


def test_paper_recipes_use_the_papers_adam():
    configs = sorted(RECIPES.glob("ppo_*.yaml")) + sorted(RECIPES.glob("reward_*.yaml"))
    paper = [path for path in configs if path.name != "ppo_cpu_small.yaml"]  # the CPU demo is no paper run
    assert len(paper) == 8
    for path in paper:
        assert yaml.safe_load(path.read_text()).get("tf_adam") is True, path.name


@pytest.mark.parametrize("per_device, accumulation, minibatches", [(8, 1, 1), (4, 2, 4), (4, 1, 1), (2, 2, 2), (1, 8, 1)])
@pytest.mark.parametrize("whiten_rewards", [True, False])
def test_whitening_minimum_matches_the_papers_assertion(tmp_path, per_device, accumulation, minibatches, whiten_rewards):
    settings = dict(output_dir=str(tmp_path), per_device_train_batch_size=per_device, num_mini_batches=minibatches,
                    gradient_accumulation_steps=accumulation, whiten_rewards=whiten_rewards, save_strategy="no", report_to=[])
    batch_size = per_device * accumulation * minibatches  # one process: the paper's ppo.batch_size
    if paper_per_rank_minibatch_ok(batch_size, minibatches, 1, whiten_rewards):
        ZieglerPPOConfig(**settings)
    else:
        with pytest.raises(ValueError, match=r"whiten_rewards needs at least 8 episodes per minibatch on each process.*"
                           r"per_device_train_batch_size × gradient_accumulation_steps = \d × \d = [1-7]\. Raise them, "
                           r"or set whiten_rewards=False"):
            ZieglerPPOConfig(**settings)


# ----- one minibatch of the trainer, end to end -----

def length_reward(prompts, completions):
    return [len(c) / 10 for c in completions]


def parity_trainer(tokenizer, tmp_path, **overrides) -> ZieglerPPOTrainer:
    """8 episodes per update in 2 micro-batches of 4 (the smallest minibatch whitening allows), 2 PPO epochs."""
    settings = dict(
        output_dir=str(tmp_path), per_device_train_batch_size=4, gradient_accumulation_steps=2, num_ppo_epochs=2,
        response_length=6, temperature=0.7, total_episodes=24, learning_rate=1e-2, lr_scheduler_type="linear",
        tf_adam=True, report_to=[], save_strategy="no", seed=0, log_completions=False, disable_tqdm=True,
    )
    args = ZieglerPPOConfig(**{**settings, **overrides})
    return ZieglerPPOTrainer(tiny_llama(tokenizer), args, train_dataset=Dataset.from_dict({"prompt": ["a"] * 8}),
                             processing_class=tokenizer, reward_fn=length_reward)


def test_learning_rate_decays_per_update_as_in_the_paper(tiny_tokenizer, tmp_path):
    trainer = parity_trainer(tiny_tokenizer, tmp_path)
    steps = trainer.args.max_steps  # 3 updates × 2 epochs
    trainer.create_optimizer_and_scheduler(num_training_steps=steps)
    rates = []
    for _ in range(steps):
        rates.append(trainer.optimizer.param_groups[0]["lr"])
        trainer.optimizer.step()
        trainer.lr_scheduler.step()
    np.testing.assert_allclose(rates, paper_learning_rates(1e-2, 3, 2), rtol=1e-12)
    assert rates[0] == rates[1] > rates[2] == rates[3] > rates[4] == rates[5]


def test_one_minibatch_from_rollout_to_optimizer_step_matches_the_paper(tiny_tokenizer, tmp_path):
    trainer = parity_trainer(tiny_tokenizer, tmp_path)
    wrapper, args = trainer.model, trainer.args
    generator = torch.Generator().manual_seed(0)
    batch, length, vocab = args.local_rollout_batch_size, args.response_length, len(tiny_tokenizer)
    queries = torch.randint(3, vocab, (batch, 5), generator=generator)
    responses = torch.randint(3, vocab, (batch, length), generator=generator)
    input_ids = torch.cat([queries, responses], dim=1)
    attention_mask = torch.ones_like(input_ids)
    with torch.no_grad():
        logits = wrapper(input_ids, attention_mask, length).logits
    current = logprobs_from_logits(logits, responses, args.temperature)
    old_logprobs = current + 0.3 * torch.randn(current.shape, generator=generator)  # ratios beyond the clip range
    old_values = torch.randn(batch, length, generator=generator)  # the zero value head's predictions get clipped
    scores = torch.randn(batch, generator=generator)
    ref_logprobs = current + 0.2 * torch.randn(current.shape, generator=generator)
    rewards, _ = per_token_rewards(scores, old_logprobs, ref_logprobs, trainer.kl_controller.value)

    torch.manual_seed(0)
    plan = ppo_minibatches(  # as the trainer's update makes it
        rewards, old_values, num_epochs=args.num_ppo_epochs, num_minibatches=args.num_mini_batches,
        micro_batch_size=args.per_device_train_batch_size, gamma=args.gamma, lam=args.lam,
        whiten_rewards=args.whiten_rewards,
    )
    micro_batches = [loss_inputs(mb, input_ids, attention_mask, responses, old_logprobs, old_values)
                     for mb in plan[: args.gradient_accumulation_steps]]  # epoch 1's one minibatch
    # The minibatch's episodes in the order the trainer shuffled them (every random response row is distinct)
    order = [next(i for i in range(batch) if torch.equal(responses[i], row))
             for mb in micro_batches for row in mb["responses"]]
    assert sorted(order) == list(range(batch))

    advantages, returns = paper_advantages(rewards[order].double().numpy(), old_values[order].double().numpy(),
                                           args.gamma, args.lam, whiten_rewards=True)
    ours_advantages = torch.cat([mb["advantages"] for mb in micro_batches])
    ours_returns = torch.cat([mb["returns"] for mb in micro_batches])
    np.testing.assert_allclose(ours_advantages.numpy(), advantages, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ours_returns.numpy(), returns, rtol=1e-5, atol=1e-6)

    # The paper: one loss over the whole minibatch, its gradients, one Adam step
    params = [p for p in wrapper.parameters() if p.requires_grad]
    logits, vpred, _ = wrapper(input_ids[order], attention_mask[order], length)
    logprob, entropies = paper_logprobs_and_entropy(logits.float(), responses[order], args.temperature)
    loss, stats = paper_loss(old_values[order], old_logprobs[order], torch.from_numpy(advantages).float(),
                             torch.from_numpy(returns).float(), logprob, vpred, entropies, args.cliprange,
                             args.cliprange_value, args.vf_coef)
    loss.backward()
    paper_grads = [p.grad.clone() for p in params]
    wrapper.zero_grad(set_to_none=True)

    # Ours: each micro-batch's loss / accumulation steps, backpropagated (what the Trainer's training_step does)
    losses = []
    for mb in micro_batches:
        ours_loss = trainer.compute_loss(wrapper, mb)
        (ours_loss / args.gradient_accumulation_steps).backward()
        losses.append(ours_loss.item())
    assert np.mean(losses) == pytest.approx(loss.item(), rel=1e-5)
    for param, expected in zip(params, paper_grads):
        torch.testing.assert_close(param.grad, expected, rtol=1e-4, atol=1e-7)
    # The step from our gradients (equal to the paper's to float rounding, which Adam's first step, lr·g/(|g| + 31.6ε),
    # would magnify where |g| is near ε)
    paper_params = [paper_adam(p.detach().double().numpy(), [p.grad.double().numpy()], args.learning_rate)
                    for p in params]
    trainer.create_optimizer()
    trainer.optimizer.step()
    for param, expected in zip(params, paper_params):
        np.testing.assert_allclose(param.detach().double().numpy(), expected, rtol=1e-5, atol=1e-7)
    trainer.log({})
    logged = trainer.state.log_history[-1]
    for key, value in stats.items():
        assert logged[f"ppo/{key}"] == pytest.approx(value, rel=1e-4, abs=1e-6), key
    assert logged["ppo/val/var_explained"] == pytest.approx(paper_var_explained(stats), rel=1e-4)
    assert 0 < stats["policy/clipfrac"] < 1 and 0 < stats["val/clipfrac"] < 1
