"""A CPU speed-up outside the paper: the output of the policy's frozen bottom blocks, computed once per rollout.

When the policy's bottom n transformer blocks (and its embeddings) never train (`trainable_top_layers`), their output
for a rollout's sequences is the same in every forward of that update. The rollout's own forward keeps it; the PPO
epochs, ρ (when it is made from π: a copy, or π with its LoRA adapters off) and a reward model with those same bottom
blocks (trained from ρ with them frozen) start from it at block n. Each reuse is checked once per run against the
whole forward and dropped, with a warning, where an architecture makes it inexact.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
from torch import nn

from ..blocks import blocks_from, frozen_bottom_count, shares_bottom_blocks
from ..reward.model import score_head
from .core import position_ids_from_mask
from .policy_value import PolicyAndValue

logger = logging.getLogger(__name__)


class FrozenBlockCache:
    """Which forwards may start at block n, and the current rollout's hidden states entering it."""

    def __init__(self, policy_blocks: int, reference_shares: bool = False, reward_blocks: int = 0):
        self.policy_blocks = policy_blocks  # n; 0 once the check found the cached forward inexact
        self.reference_shares = reference_shares  # ρ is made from π: its bottom n blocks are π's
        self.reward_blocks = reward_blocks  # n if the reward model's bottom blocks are π's; 0 once found inexact
        self.hidden: torch.Tensor | None = None  # of the current rollout: [local batch, L, d]
        self._policy_checked = self._reward_checked = False

    @classmethod
    def for_models(
        cls, policy: nn.Module, reward_model: nn.Module | None, reference_is_policy: bool
    ) -> FrozenBlockCache | None:
        """A cache for `policy`'s frozen bottom blocks, or None when none is frozen."""
        blocks = frozen_bottom_count(policy)
        if blocks == 0:
            return None
        shares = reward_model is not None and shares_bottom_blocks(policy, reward_model, blocks)
        return cls(blocks, reference_is_policy, blocks if shares else 0)

    # ----- the policy (and ρ) -----

    @torch.no_grad()
    def verified(
        self, policy_and_value: PolicyAndValue, input_ids: torch.Tensor, attention_mask: torch.Tensor,
        response_length: int,
    ) -> FrozenBlockCache | None:
        """This cache, or None once the forward from cached hidden states has not reproduced the full forward (checked
        once per run, on a few rollout rows); the run then trains with full forwards."""
        if self.policy_blocks and not self._policy_checked:
            self._policy_checked = True
            full = policy_and_value(input_ids, attention_mask, response_length, cached_blocks=self.policy_blocks)
            cached = policy_and_value(input_ids, attention_mask, response_length, cached_blocks=self.policy_blocks,
                                      frozen_hidden=full.frozen_hidden)
            error = max((full.logits - cached.logits).abs().max().item(),
                        (full.values - cached.values).abs().max().item())
            scale = max(full.logits.abs().max().item(), full.values.abs().max().item(), 1.0)
            if error > 1e-3 * scale:
                logger.warning(
                    f"cache_frozen_blocks: {type(policy_and_value.policy).__name__} from cached hidden states differs "
                    f"from its full forward (max |Δ| = {error:.3g}); the PPO epochs run full forwards instead"
                )
                self.policy_blocks = 0
        return self if self.policy_blocks else None

    def epoch_inputs(self, rows: torch.Tensor) -> dict:
        """`PolicyAndValue` arguments that start a PPO epoch's forward of rollout `rows` at block n (none without
        kept hidden states)."""
        if self.hidden is None:
            return {}
        return {"cached_blocks": self.policy_blocks, "frozen_hidden": self.hidden[rows]}

    # ----- the reward model -----

    def reward_potentials(
        self,
        reward_model: nn.Module,
        rows: list[dict],
        responses: torch.Tensor,
        truncated: torch.Tensor,
        attention_mask: torch.Tensor,
        pad_token_id: int,
        batch_size: int,
        score_whole: Callable[[], torch.Tensor],
    ) -> torch.Tensor | None:
        """Φ [B, T+1] (as `RewardSource.potentials`) from the kept hidden states, or None where the reward model must
        run whole: it does not share the blocks, or reads other tokens than the rollout rows. The first time, checked
        against `score_whole()` (r(x, y) [B] from the whole reward model); inexact, it runs whole from then on."""
        if not self.reward_blocks or self.hidden is None:
            return None
        lengths = rollout_layout_lengths(rows, responses, truncated, pad_token_id)
        if lengths is None:
            return None
        response_length = responses.shape[1]
        potentials = self.potentials_from_hidden(
            reward_model, self.hidden, attention_mask, lengths, response_length, batch_size
        )
        if not self._reward_checked:
            self._reward_checked = True
            full, cached = score_whole(), potentials[:, -1]
            error, scale = (full - cached).abs().max().item(), max(full.abs().max().item(), 1.0)
            if error > 1e-3 * scale:
                logger.warning(
                    f"cache_frozen_blocks: the reward model ({type(reward_model).__name__}) from the policy's cached "
                    f"hidden states scores differently from its own forward (max |Δ| = {error:.3g}); it runs whole "
                    "instead"
                )
                self.reward_blocks = 0
                return None
        return potentials

    def potentials_from_hidden(
        self,
        reward_model: nn.Module,
        frozen_hidden: torch.Tensor,
        attention_mask: torch.Tensor,
        lengths: torch.Tensor,
        response_length: int,
        batch_size: int,
    ) -> torch.Tensor:
        """Φ [B, T+1], the reward of every prefix (column t: the query and the first t response tokens; past the
        truncated response's end, its whole score), from the policy's hidden states entering block n: the reward
        model runs its blocks n.. over the rollout rows and its head reads every position from the query's last
        token on (by causality nothing after a position counts)."""
        first = attention_mask.shape[1] - response_length - 1  # the query's last token: Φ(s_0)
        potentials = []
        with blocks_from(reward_model, self.reward_blocks):
            for start in range(0, len(lengths), batch_size):
                chunk = slice(start, start + batch_size)
                mask = attention_mask[chunk]
                hidden = reward_model.base_model(
                    inputs_embeds=frozen_hidden[chunk], attention_mask=mask,
                    position_ids=position_ids_from_mask(mask), use_cache=False,
                ).last_hidden_state
                potentials.append(score_head(reward_model)(hidden[:, first:]).squeeze(-1).float())
        potentials = torch.cat(potentials)
        steps = torch.arange(potentials.shape[1], device=potentials.device)
        return potentials.gather(1, torch.minimum(steps, lengths.to(potentials.device)[:, None]))


def rollout_layout_lengths(
    rows: list[dict], responses: torch.Tensor, truncated: torch.Tensor, pad_token_id: int
) -> torch.Tensor | None:
    """Lengths of the truncated responses when what the reward model reads (query content ‖ truncated response
    without pads, `reward_sequence`) is exactly the start of every rollout row; else None."""
    if any(list(row["reward_ids"]) != list(row["query_ids"]) for row in rows):
        return None  # a task prefix or suffix: the reward model reads other tokens
    kept = truncated != pad_token_id
    lengths = kept.sum(dim=1)
    prefix = torch.arange(truncated.shape[1]) < lengths[:, None]
    if not torch.equal(kept, prefix) or not torch.equal(truncated[prefix], responses.cpu()[prefix]):
        return None  # a pad token sampled inside a response: the reward model's sequence drops it
    return lengths
