"""The reward-KL frontier of the optimal KL-regularised policy (the paper's Figure 3).

For reward r and prior ρ, the policy maximising E_π[r] − β·KL(π‖ρ) is π*(y) = ρ(y)·exp(r(y)/β) / Z(β) with
Z(β) = E_ρ[exp(r/β)]. From samples y_1..y_N ~ ρ it is estimated by self-normalised importance weights
w_i = exp(r_i/β) / Σ_j exp(r_j/β), which give

    E_π*[r]   = Σ_i w_i·r_i
    KL(π*‖ρ)  = E_π*[log π*/ρ] = E_π*[r]/β − log Z(β),   log Z(β) ≈ logsumexp(r_i/β) − log N.

As β shrinks the weights concentrate on the best samples; the effective sample size 1/Σ w_i² says how many
samples the estimate really rests on (and log N bounds the KL it can show).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..reward.scoring import reward_sequence, score_sequences
from ..sampling import sample_completions
from ..tasks import Query, TaskSpec, get_task


@dataclass(frozen=True)
class FrontierPoint:
    beta: float
    reward: float
    kl: float
    effective_samples: float


def optimal_policy_point(rewards: Sequence[float] | np.ndarray | torch.Tensor, beta: float) -> FrontierPoint:
    """E_π*[r], KL(π*‖ρ) (nats) and the effective sample size for π* ∝ ρ·exp(r/β), from rewards of ρ samples."""
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    r = np.asarray(rewards, dtype=np.float64).ravel()
    if r.size == 0:
        raise ValueError("need rewards of at least one sample from ρ")
    if not np.all(np.isfinite(r)):
        raise ValueError("rewards contain NaN or infinity")
    logits = r / beta
    log_total = logits.max() + math.log(np.exp(logits - logits.max()).sum())
    weights = np.exp(logits - log_total)
    expected = float(weights @ r)
    log_z = log_total - math.log(r.size)
    kl = max(0.0, expected / beta - log_z)  # ≥ 0 exactly; the max drops float round-off at large β
    return FrontierPoint(float(beta), expected, float(kl), float(1.0 / np.square(weights).sum()))


def optimal_policy_frontier(
    rewards: Sequence[float] | np.ndarray | torch.Tensor, betas: Iterable[float]
) -> list[FrontierPoint]:
    """`optimal_policy_point` for each β (sorted from large β, near ρ, to small β, high reward)."""
    return [optimal_policy_point(rewards, beta) for beta in sorted(betas, reverse=True)]


def sample_rewards(
    policy: PreTrainedModel,
    reward_model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    queries: Sequence[Query],
    task: str | TaskSpec,
    k: int = 1,
    batch_size: int = 8,
) -> torch.Tensor:
    """Rewards r(x, y) of k samples y ~ policy(·|x) per query, the task's penalty where truncation failed."""
    task = get_task(task)
    batch = sample_completions(policy, tokenizer, queries, task, k=k, batch_size=batch_size)
    sequences = [
        reward_sequence(batch.queries[i // k].reward_ids, batch.responses[i].tolist(), tokenizer.pad_token_id)
        for i in range(len(batch.responses))
    ]
    scores = score_sequences(reward_model, sequences, tokenizer.pad_token_id, batch_size)
    return torch.where(batch.valid, scores, torch.full_like(scores, task.penalty_reward))
