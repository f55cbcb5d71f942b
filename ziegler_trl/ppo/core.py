"""The paper's PPO math, one small function per equation (shapes: B episodes × T response tokens).

Responses have a fixed length T (the paper's sampling), so every position is a real token and nothing is masked.
"""

from __future__ import annotations

import torch
from trl.trainer.utils import selective_log_softmax, selective_log_softmax_and_entropy


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions that start at 0 on the first real token of a left-padded row (pads get 0)."""
    return (attention_mask.long().cumsum(dim=1) - 1).clamp(min=0)


def logprobs_from_logits(logits: torch.Tensor, tokens: torch.Tensor, temperature: float) -> torch.Tensor:
    """log π(y_t | x, y_<t) of the sampled tokens under the *sampling* distribution softmax(logits / T).

    The paper divides logits by the sampling temperature everywhere log-probs are computed (π and ρ, rollout and
    training), so the ratio π/π_old and the KL refer to the distribution the samples were actually drawn from.
    """
    return selective_log_softmax(logits.float() / temperature, tokens)


def logprobs_and_entropy(
    logits: torch.Tensor, tokens: torch.Tensor, temperature: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(`logprobs_from_logits`, H_t = −Σ_v p_v log p_v) of softmax(logits / T) at each position, from one scaling of
    the logits (one fused pass where TRL has a kernel for it); the entropy, a metric, carries no gradient."""
    return selective_log_softmax_and_entropy(logits.float() / temperature, tokens, entropy_requires_grad=False)


def per_token_rewards(
    scores: torch.Tensor,
    logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor,
    kl_coef: float,
    potentials: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """R_t = −β·(log π(y_t) − log ρ(y_t)) at every position, plus r(x, y) at the last position (eq. 2).

    With `potentials` [B, T+1] the score is spread over the tokens instead (`potential_shaping`). `scores` [B]
    already hold the penalty (−1) for invalid responses. Returns (rewards [B, T], the KL part alone).
    """
    kl_penalty = -kl_coef * (logprobs - ref_logprobs)
    if potentials is None:
        rewards = kl_penalty.clone()
        rewards[:, -1] += scores
    else:
        rewards = kl_penalty + potential_shaping(scores, potentials)
    return rewards, kl_penalty


def potential_shaping(scores: torch.Tensor, potentials: torch.Tensor) -> torch.Tensor:
    """Potential-based shaping of the score (Ng, Harada & Russell 1999), [B, T]:

        F_t = Φ(s_{t+1}) − Φ(s_t),  t = 0 … T−1,  with Φ(s_T) := r(x, y)

    where Φ(s_t) (`potentials[:, t]`) is the reward model's score of the query and the response's first t tokens.
    Σ_t F_t = r(x, y) − Φ(s_0): with γ = 1 every return changes by a constant of the query alone, so the optimal
    policy is the paper's, while each token is credited with the change of score it made rather than the whole
    episode's score (with λ < 1).
    """
    potentials = torch.cat([potentials[:, :-1], scores.to(potentials.dtype)[:, None]], dim=1)
    return potentials[:, 1:] - potentials[:, :-1]


def whiten(values: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8) -> torch.Tensor:
    """(x − μ)/σ over all elements (population σ); with shift_mean=False the mean is kept: (x − μ)/σ + μ."""
    mean, var = values.mean(), values.var(unbiased=False)
    whitened = (values - mean) * torch.rsqrt(var + eps)
    return whitened if shift_mean else whitened + mean


def gae(rewards: torch.Tensor, values: torch.Tensor, gamma: float, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over the response (Schulman et al. 2016), V_T = 0 after the last token:

        δ_t = R_t + γ·V_{t+1} − V_t,   A_t = δ_t + γ·λ·A_{t+1},   returns_t = A_t + V_t
    """
    advantages = torch.zeros_like(rewards)
    next_advantage = torch.zeros_like(rewards[:, 0])
    next_value = torch.zeros_like(values[:, 0])
    for t in reversed(range(rewards.shape[1])):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        next_advantage = delta + gamma * lam * next_advantage
        advantages[:, t] = next_advantage
        next_value = values[:, t]
    return advantages, advantages + values


def policy_loss(
    logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor, cliprange: float
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped surrogate: mean_t max(−A·ρ_t, −A·clip(ρ_t, 1−ε, 1+ε)), ρ_t = exp(log π − log π_old)."""
    ratio = torch.exp(logprobs - old_logprobs)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange)
    loss = torch.max(unclipped, clipped).mean()
    stats = {
        "clipfrac": (clipped > unclipped).float().mean(),
        "approxkl": 0.5 * ((logprobs - old_logprobs) ** 2).mean(),
    }
    return loss, stats


def value_loss(
    values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, cliprange_value: float
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped value loss: ½·mean_t max((V − G)², (clip(V, V_old ± ε_v) − G)²)."""
    clipped_values = torch.clamp(values, old_values - cliprange_value, old_values + cliprange_value)
    unclipped_error = (values - returns) ** 2
    clipped_error = (clipped_values - returns) ** 2
    loss = 0.5 * torch.max(unclipped_error, clipped_error).mean()
    stats = {
        "clipfrac": (clipped_error > unclipped_error).float().mean(),
        "error": unclipped_error.mean(),
        "vpred": values.mean(),
    }
    return loss, stats


def explained_variance(value_error: float, returns_var: float) -> float:
    """1 − E[(V − G)²]/Var(G), the paper's `ppo/val/var_explained`, from the mean squared value error and the
    (population) variance of the returns, each averaged over minibatches and processes before the ratio is taken.

    Unlike 1 − Var(G − V)/Var(G), a value function off by a constant does not count as explaining the returns.
    """
    return 1.0 - value_error / max(returns_var, 1e-8)
