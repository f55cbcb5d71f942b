"""Checks that PPO pushes the way the paper means, made on what the run itself computes (the paper's own bug: a sign
flip in the reward ran unnoticed overnight and optimised for the opposite).

* The KL penalty: two probe episodes ride along in every rollout's call to `per_token_rewards`, so a flip in that
  call (π and ρ swapped, a sign) shows on the first rollout, where π = ρ and the real episodes' KL term is zero
  whichever way round, and on every rollout after it, for two rows of elementwise work.
* The reward: before training, how often it picks the labeled best of held-out comparisons, against chance (1/K),
  by a one-sided exact binomial test.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import torch


@dataclass
class KLProbe:
    """A rollout's reward inputs with two probe episodes appended. Both have the score (and potentials) and the
    reference log-probs of the rollout's first episode; log π − log ρ is 0 at every token in the first and +1 nat in
    the second. Whatever the score part, the second probe's per-token rewards must be β lower than the first's."""

    scores: torch.Tensor
    logprobs: torch.Tensor
    ref_logprobs: torch.Tensor
    potentials: torch.Tensor | None = None

    @classmethod
    def around(
        cls,
        scores: torch.Tensor,
        logprobs: torch.Tensor,
        ref_logprobs: torch.Tensor,
        potentials: torch.Tensor | None = None,
    ) -> KLProbe:
        ref = ref_logprobs[:1].expand(2, -1)
        drift = torch.tensor([[0.0], [1.0]], dtype=ref.dtype, device=ref.device)
        return cls(
            scores=torch.cat([scores, scores[:1].expand(2)]),
            logprobs=torch.cat([logprobs, ref + drift]),
            ref_logprobs=torch.cat([ref_logprobs, ref]),
            potentials=None if potentials is None else torch.cat([potentials, potentials[:1].expand(2, -1)]),
        )

    @staticmethod
    def check(
        rewards: torch.Tensor, kl_penalty: torch.Tensor, kl_coef: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The rollout's own (rewards, KL part) without the probe rows; raises if one more nat of log π − log ρ did
        not lower every token's reward by β."""
        change = rewards[-1] - rewards[-2]
        tolerance = 1e-3 * abs(kl_coef) + 1e-6 * (1.0 + rewards[-2:].abs().max().item())
        error = (change + kl_coef).abs().max().item()
        if error > tolerance:
            raise RuntimeError(
                f"KL penalty sign check failed: in the rollout's rewards one more nat of log π − log ρ moved a token's "
                f"reward by {change.mean().item():+.4g} (expected −β = {-kl_coef:+.4g}); are π and ρ swapped where "
                "the rewards are built (per_token_rewards(scores, logprobs, ref_logprobs, ...))?"
            )
        return rewards[:-2], kl_penalty[:-2]


@dataclass(frozen=True)
class LabelAgreement:
    """How often a reward picked the labeled best of `n` held-out comparisons of `k` completions, against chance."""

    hits: int
    n: int
    k: int

    @property
    def accuracy(self) -> float:
        return self.hits / self.n

    @property
    def chance(self) -> float:
        return 1.0 / self.k

    def tail_probabilities(self) -> tuple[float, float]:
        """(P(X ≤ hits), P(X ≥ hits)) for X ~ Binomial(n, 1/k), the hits of a reward that picks at random: the
        one-sided p-values of "worse than chance" and "better than chance", exact (integer arithmetic)."""
        weights = [math.comb(self.n, i) * (self.k - 1) ** (self.n - i) for i in range(self.hits + 1)]
        total, below = self.k**self.n, sum(weights[:-1])
        return float(Fraction(below + weights[-1], total)), float(Fraction(total - below, total))
