"""The paper's PPO math against hand-computed numbers."""

import math

import pytest
import torch
from transformers import get_scheduler
from trl.trainer.utils import entropy_from_logits

from ziegler_trl.ppo import ZieglerPPOConfig
from ziegler_trl.ppo.core import (
    explained_variance,
    gae,
    logprobs_and_entropy,
    logprobs_from_logits,
    per_token_rewards,
    policy_loss,
    position_ids_from_mask,
    potential_shaping,
    value_loss,
    whiten,
)
from ziegler_trl.ppo.lr_schedule import hold_within_updates
from ziegler_trl.ppo.tf_adam import TFAdam


def test_per_token_reward_layout_kl_everywhere_score_at_last():
    logprobs = torch.tensor([[-1.0, -2.0, -0.5], [-1.0, -1.0, -1.0]])
    ref_logprobs = torch.tensor([[-1.5, -1.0, -0.5], [-2.0, -1.0, -3.0]])
    scores = torch.tensor([2.0, -1.0])  # row 1: an invalid response that earned the −1 penalty
    rewards, kl_part = per_token_rewards(scores, logprobs, ref_logprobs, kl_coef=0.1)
    expected_kl = torch.tensor([[-0.05, 0.1, 0.0], [-0.1, 0.0, -0.2]])
    torch.testing.assert_close(kl_part, expected_kl)
    torch.testing.assert_close(rewards[:, :-1], expected_kl[:, :-1])
    torch.testing.assert_close(rewards[:, -1], torch.tensor([2.0, -1.2]))


def test_potential_shaping_credits_each_token_with_its_change_of_score():
    logprobs = torch.tensor([[-1.0, -2.0, -0.5], [-1.0, -1.0, -1.0]])
    ref_logprobs = torch.tensor([[-1.5, -1.0, -0.5], [-2.0, -1.0, -3.0]])
    # Φ(s_0..s_3): row 0 a whole response (Φ(s_3) is its score), row 1 one cut after 1 token (Φ constant after it)
    # and penalised to −1, which replaces Φ(s_T)
    potentials = torch.tensor([[0.5, 1.0, 1.0, 2.0], [0.2, -0.4, -0.4, -0.4]])
    scores = torch.tensor([2.0, -1.0])
    shaping = potential_shaping(scores, potentials)
    torch.testing.assert_close(shaping, torch.tensor([[0.5, 0.0, 1.0], [-0.6, 0.0, -0.6]]))
    torch.testing.assert_close(shaping.sum(dim=1), scores - potentials[:, 0])  # r(x, y) − Φ(s_0)
    rewards, kl_part = per_token_rewards(scores, logprobs, ref_logprobs, 0.1, potentials)
    torch.testing.assert_close(rewards, kl_part + shaping)
    torch.testing.assert_close(kl_part, torch.tensor([[-0.05, 0.1, 0.0], [-0.1, 0.0, -0.2]]))


def test_gae_matches_hand_computation():
    rewards = torch.tensor([[0.0, 0.0, 1.0]])
    values = torch.tensor([[0.5, 0.2, 0.4]])
    gamma, lam = 1.0, 0.95
    # δ2 = 1 − 0.4 = 0.6; δ1 = 0 + 0.4 − 0.2 = 0.2; δ0 = 0 + 0.2 − 0.5 = −0.3
    a2 = 0.6
    a1 = 0.2 + 0.95 * a2
    a0 = -0.3 + 0.95 * a1
    advantages, returns = gae(rewards, values, gamma, lam)
    torch.testing.assert_close(advantages, torch.tensor([[a0, a1, a2]]))
    torch.testing.assert_close(returns, torch.tensor([[a0 + 0.5, a1 + 0.2, a2 + 0.4]]))
    # γ = 0.5, λ = 1: discounted returns minus V
    advantages, returns = gae(rewards, values, 0.5, 1.0)
    torch.testing.assert_close(returns, torch.tensor([[0.25, 0.5, 1.0]]))


def test_whiten_with_and_without_mean_shift():
    x = torch.tensor([1.0, 2.0, 3.0, 6.0])
    w = whiten(x)
    assert w.mean().item() == pytest.approx(0.0, abs=1e-6)
    assert w.std(unbiased=False).item() == pytest.approx(1.0, abs=1e-5)
    kept = whiten(x, shift_mean=False)
    assert kept.mean().item() == pytest.approx(3.0, abs=1e-5)
    assert (kept - 3.0).std(unbiased=False).item() == pytest.approx(1.0, abs=1e-5)


def test_clipped_policy_and_value_losses():
    old = torch.log(torch.tensor([[0.5, 0.5]]))
    new = torch.log(torch.tensor([[0.75, 0.25]]))  # ratios 1.5 and 0.5
    adv = torch.tensor([[1.0, -1.0]])
    loss, stats = policy_loss(new, old, adv, cliprange=0.2)
    # token 0: max(−1.5, −1.2) = −1.2 (clipped); token 1: max(0.5, 0.8) = 0.8 (clipped)
    assert loss.item() == pytest.approx((-1.2 + 0.8) / 2)
    assert stats["clipfrac"].item() == 1.0
    assert stats["approxkl"].item() == pytest.approx(0.5 * (math.log(1.5) ** 2 + math.log(0.5) ** 2) / 2)

    vpred, old_v, returns = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.5, 0.0]]), torch.tensor([[0.0, 0.1]])
    loss, stats = value_loss(vpred, old_v, returns, cliprange_value=0.2)
    # token 0: clip(1.0, 0.3, 0.7) = 0.7 → max(1.0, 0.49) = 1.0; token 1: max(0.01, 0.01) = 0.01
    assert loss.item() == pytest.approx(0.5 * (1.0 + 0.01) / 2)
    assert stats["clipfrac"].item() == 0.0


def test_logprobs_divide_logits_by_temperature():
    logits = torch.tensor([[[2.0, 0.0, -1.0]]])
    tokens = torch.tensor([[0]])
    expected = torch.log_softmax(logits[0, 0] / 0.7, dim=-1)[0]
    assert logprobs_from_logits(logits, tokens, 0.7).item() == pytest.approx(expected.item(), abs=1e-6)


def test_logprobs_and_entropy_in_one_pass_equal_the_separate_functions():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 300, generator=generator, requires_grad=True)
    tokens = torch.randint(0, 300, (3, 5), generator=generator)
    logprobs, entropies = logprobs_and_entropy(logits, tokens, temperature=0.7)
    assert torch.equal(logprobs, logprobs_from_logits(logits, tokens, 0.7))
    assert torch.equal(entropies, entropy_from_logits(logits / 0.7).detach())
    assert logprobs.requires_grad and not entropies.requires_grad


def test_position_ids_start_at_first_real_token():
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    assert position_ids_from_mask(mask).tolist() == [[0, 0, 0, 1, 2], [0, 1, 2, 3, 4]]


def test_tf_adam_first_step_puts_epsilon_outside_bias_correction():
    param = torch.nn.Parameter(torch.tensor([1.0]))
    param.grad = torch.tensor([1e-4])
    TFAdam([param], lr=0.1, eps=1e-5).step()
    # TF: lr·√(1−β2)/(1−β1) · m/(√v + ε) with m = 0.1·g, v = 0.001·g²  → 0.0240
    g = 1e-4
    step = 0.1 * math.sqrt(0.001) / 0.1 * (0.1 * g) / (math.sqrt(0.001) * g + 1e-5)
    assert param.item() == pytest.approx(1.0 - step, rel=1e-6)
    torch_param = torch.nn.Parameter(torch.tensor([1.0]))
    torch_param.grad = torch.tensor([1e-4])
    torch.optim.Adam([torch_param], lr=0.1, eps=1e-5).step()
    # PyTorch: lr · m̂/(√v̂ + ε) = lr · g/(g + ε) = 0.0909, almost 4× larger
    assert 1.0 - torch_param.item() == pytest.approx(0.1 * g / (g + 1e-5), rel=1e-6)


def test_explained_variance_counts_a_constant_offset_as_error():
    returns = torch.tensor([[1.0, 2.0, 3.0, 6.0]])  # Var = 3.5
    var = returns.var(unbiased=False).item()
    assert explained_variance(0.0, var) == 1.0
    # V = G + 1: E[(V − G)²] = 1 → 1 − 1/3.5 (1 − Var(G − V)/Var(G) would say 1.0)
    assert explained_variance(((returns + 1 - returns) ** 2).mean().item(), var) == pytest.approx(1 - 1 / 3.5)
    assert explained_variance(var, var) == pytest.approx(0.0)  # predicting the mean explains nothing


def _linear(steps: int, steps_per_update: int):
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.6)
    scheduler = get_scheduler("linear", optimizer, num_warmup_steps=0, num_training_steps=steps)
    return optimizer, hold_within_updates(scheduler, steps_per_update)


def _rates(optimizer, scheduler, n: int) -> list[float]:
    rates = []
    for _ in range(n):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


def test_linear_decay_held_within_each_update_and_resumed_exactly(tmp_path):
    # 3 updates of 2 optimizer steps: lr·(1 − u/3) for u = 0, 1, 2, as the paper's code
    optimizer, scheduler = _linear(6, 2)
    assert _rates(optimizer, scheduler, 6) == pytest.approx([0.6, 0.6, 0.4, 0.4, 0.2, 0.2])
    optimizer, scheduler = _linear(6, 2)
    _rates(optimizer, scheduler, 2)  # a checkpoint after the first update, saved and loaded as the Trainer does
    torch.save(scheduler.state_dict(), tmp_path / "scheduler.pt")
    torch.save(optimizer.state_dict(), tmp_path / "optimizer.pt")
    optimizer, scheduler = _linear(6, 2)
    optimizer.load_state_dict(torch.load(tmp_path / "optimizer.pt", weights_only=True))
    scheduler.load_state_dict(torch.load(tmp_path / "scheduler.pt", weights_only=True))
    assert _rates(optimizer, scheduler, 4) == pytest.approx([0.4, 0.4, 0.2, 0.2])


def test_per_update_schedule_rejects_warmup(tmp_path):
    with pytest.raises(ValueError, match=r"warmup_steps=2 with lr_schedule_per_update: the whole first PPO update"):
        ZieglerPPOConfig(output_dir=str(tmp_path), warmup_steps=2, per_device_train_batch_size=8, report_to=[])
    config = ZieglerPPOConfig(output_dir=str(tmp_path), warmup_steps=2, lr_schedule_per_update=False,
                              per_device_train_batch_size=8, report_to=[])
    assert config.warmup_steps == 2
