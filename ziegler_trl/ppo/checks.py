"""Checks that PPO pushes the way the paper means, made on what the run itself computes (the paper's own bug: a sign
flip in the reward ran unnoticed overnight and optimised for the opposite).

* The KL penalty: two probe episodes ride along in every rollout's call to `per_token_rewards`, so a flip in that
  call (π and ρ swapped, a sign) shows on the first rollout, where π = ρ and the real episodes' KL term is zero
  whichever way round, and on every rollout after it, for two rows of elementwise work.
* The reward: before training, how often it picks the labeled best of held-out comparisons, against chance (1/K),
  by a one-sided exact binomial test.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import torch
from datasets import Dataset

from ..errors import UserInputError
from ..reward.held_out import load_held_out_labels
from ..reward.labels import validate_label_rows

logger = logging.getLogger(__name__)


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


def held_out_labels(eval_labels: Dataset | None, reward_model) -> tuple[Dataset, str] | None:
    """The labels to check the reward against and where they came from: `eval_labels`, else the held-out split the
    reward stage saved in the reward model's folder (`reward_model`: a path or a model loaded from one)."""
    if eval_labels is not None:
        return eval_labels, "eval_labels"
    if reward_model is None:
        return None
    folder = reward_model if isinstance(reward_model, str) else getattr(reward_model, "name_or_path", None)
    saved = load_held_out_labels(folder) if folder and os.path.isdir(folder) else None
    return None if saved is None else (saved[0], str(saved[1]))


def check_reward(
    enabled: bool,
    alpha: float,
    eval_labels: Dataset | None,
    reward_model,
    score_comparisons: Callable[[list[dict]], torch.Tensor],
) -> None:
    """Before training: the reward against held-out labels (`held_out_labels`), by `check_reward_on_labels`."""
    if not enabled:
        logger.warning("reward_check=False: the reward is not checked against held-out labels before training")
        return
    found = held_out_labels(eval_labels, reward_model)
    if found is None:
        logger.info("Reward check skipped: no held-out labels (give eval_labels, or a reward model folder saved by "
                    "the reward stage)")
    else:
        check_reward_on_labels(*found, score_comparisons, alpha)


@torch.no_grad()
def check_reward_on_labels(
    labels: Dataset, source: str, score_comparisons: Callable[[list[dict]], torch.Tensor], alpha: float
) -> None:
    """How often the reward's argmax is the labeled best, against chance (1/K), by a one-sided exact binomial test at
    `alpha`: a reward significantly worse than chance is refused, one not significantly better is warned about.
    `score_comparisons(rows)` gives the rows' K completions' rewards, row by row ([n·K])."""
    rows = validate_label_rows(labels, source)
    k = len(rows[0]["completions"])
    logger.info(f"Reward check: scoring {len(rows)} held-out comparisons of {k} completions ({source})")
    picks = score_comparisons(rows).view(len(rows), k).argmax(dim=1).tolist()
    agreement = LabelAgreement(sum(p == row["best"] for p, row in zip(picks, rows)), len(rows), k)
    p_worse, p_better = agreement.tail_probabilities()
    summary = (f"the reward picks the labeled best in {agreement.accuracy:.1%} of {agreement.n} held-out "
               f"comparisons ({source}); chance {agreement.chance:.1%}")
    if p_worse <= alpha:
        raise UserInputError(
            f"Reward check failed: {summary}, significantly worse (one-sided exact binomial p = {p_worse:.3g} <= "
            f"reward_check_alpha {alpha}). Is its sign or its input format wrong? (reward_check=False skips this)"
        )
    if p_better > alpha:
        logger.warning(f"Reward check: {summary}, not significantly better (one-sided exact binomial p = "
                       f"{p_better:.3g} > {alpha}); the reward may have learned little from its labels")
    else:
        logger.info(f"Reward check passed: {summary} (p = {p_better:.3g})")
