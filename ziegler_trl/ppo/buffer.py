"""One PPO update's training data: `num_ppo_epochs` fresh shuffles of the rollout into minibatches, each with its
own advantages and returns (as the paper's code computes them inside the minibatch loss), split into micro-batches
for gradient accumulation.

Responses have a fixed length (the paper's sampling), so every token counts and nothing is masked.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .core import gae, whiten


@dataclass(frozen=True)
class MicroBatch:
    rows: torch.Tensor  # [m] the rollout episodes it trains on
    advantages: torch.Tensor  # [m, T] whitened over the minibatch
    returns: torch.Tensor  # [m, T]
    returns_var: torch.Tensor  # () the (population) variance of the whole minibatch's returns, as the paper logs it


def ppo_minibatches(
    rewards: torch.Tensor,
    values: torch.Tensor,
    *,
    num_epochs: int,
    num_minibatches: int,
    micro_batch_size: int,
    gamma: float,
    lam: float,
    whiten_rewards: bool,
) -> list[MicroBatch]:
    """The update's micro-batches in training order, from the rollout's rewards R and values V [B, T]. Per epoch a
    fresh permutation (torch's global generator) is cut into `num_minibatches` minibatches; in each

        R ← (R − μ_R)/σ_R + μ_R  (with `whiten_rewards`),   A, G = GAE_γ,λ(R, V)  (`core.gae`),   A ← whiten(A)

    and the minibatch is split into micro-batches of `micro_batch_size` episodes."""
    batch = rewards.shape[0]
    size = batch // num_minibatches
    plan = []
    for _ in range(num_epochs):
        order = torch.randperm(batch, device=rewards.device)
        for minibatch in order.split(size):
            minibatch_rewards = rewards[minibatch]
            if whiten_rewards:
                minibatch_rewards = whiten(minibatch_rewards, shift_mean=False)
            advantages, returns = gae(minibatch_rewards, values[minibatch], gamma, lam)
            advantages = whiten(advantages)
            returns_var = returns.var(unbiased=False)
            for part in range(0, size, micro_batch_size):
                window = slice(part, part + micro_batch_size)
                plan.append(MicroBatch(minibatch[window], advantages[window], returns[window], returns_var))
    return plan


def loss_inputs(
    micro_batch: MicroBatch,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    responses: torch.Tensor,
    logprobs: torch.Tensor,
    values: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """What the PPO loss reads for one micro-batch: its episodes of the rollout with their rollout-time log-probs and
    values, advantages and returns."""
    rows = micro_batch.rows
    return {
        "input_ids": input_ids[rows], "attention_mask": attention_mask[rows], "responses": responses[rows],
        "old_logprobs": logprobs[rows], "old_values": values[rows], "advantages": micro_batch.advantages,
        "returns": micro_batch.returns, "returns_var": micro_batch.returns_var, "rows": rows,
    }
