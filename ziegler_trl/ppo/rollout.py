"""One PPO rollout as the paper's code makes it (Ziegler et al. 2019, §2.2), under no_grad:

1. sample fixed-length responses y ~ π(·|x) at the task's temperature;
2. run π (log-probs and values V) and ρ (log-probs) over query ‖ response;
3. cut the responses where the task says (the reward model sees the cut response; the KL covers every sampled token);
4. score r(x, y), with the task's penalty (−1) for a response that misses its ending;
5. build the per-token rewards of eq. 2, R_t = −β·(log π(y_t) − log ρ(y_t)), plus r(x, y) at the last token.

Given a `FrozenBlockCache`, the forwards of step 2 (and the reward model in step 4, where it shares the blocks)
start at π's first trainable block from hidden states kept for the PPO epochs; without one, nothing else changes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from ..blocks import blocks_from
from ..sampling import generate_responses, pad_left
from ..tasks import TaskSpec, truncate_responses
from .block_cache import FrozenBlockCache
from .checks import KLProbe
from .core import logprobs_from_logits, per_token_rewards, position_ids_from_mask
from .policy_value import PolicyAndValue
from .reward_source import RewardSource


@dataclass
class RolloutModels:
    """The models a rollout runs, unwrapped from the accelerator's wrappers."""

    policy_and_value: PolicyAndValue  # π and V
    reference: nn.Module | None  # ρ; None: π with its LoRA adapters disabled
    reward: RewardSource
    # The model to call `generate` on, as a context (whole weights under sharding); default: π as it is.
    sampling_policy: Callable[[], AbstractContextManager[nn.Module]] | None = None

    def sampler(self) -> AbstractContextManager[nn.Module]:
        if self.sampling_policy is not None:
            return self.sampling_policy()
        return contextlib.nullcontext(self.policy_and_value.policy)


@dataclass(frozen=True)
class RolloutSetup:
    """How a rollout samples, cuts, scores and runs its forwards."""

    task: TaskSpec  # response length, temperature, truncation
    tokenizer: PreTrainedTokenizerBase
    device: torch.device
    forward_batch_size: int  # episodes per forward of π, ρ and the reward model
    invalid_penalty: float | None = None  # the score of a response without the task's ending; None: its own score
    potential_shaping: bool = False  # spread the score over the tokens (`core.potential_shaping`)
    sampling_dtype: torch.dtype = torch.float32  # autocast for `generate` alone
    precision: Callable[[], AbstractContextManager] = contextlib.nullcontext  # mixed precision around all of it


@dataclass
class Rollout:
    """B episodes of T response tokens; the per-token tensors are [B, T]."""

    reward_ids: list[list[int]]  # what the reward model reads before the response
    input_ids: torch.Tensor  # [B, L] left-padded query ‖ response
    attention_mask: torch.Tensor  # [B, L]
    responses: torch.Tensor  # as sampled
    truncated: torch.Tensor  # cut by the task, pads after the cut (CPU)
    valid: torch.Tensor  # [B] bool: the response has the task's ending (CPU)
    logprobs: torch.Tensor  # log π(y_t) at the sampling temperature
    ref_logprobs: torch.Tensor  # log ρ(y_t)
    values: torch.Tensor  # V(x, y_<t)
    scores: torch.Tensor  # [B] r(x, y), with the invalid penalty
    kl_coef: float  # β of the rewards
    rewards: torch.Tensor  # R_t of eq. 2
    kl_penalty: torch.Tensor  # its KL part, −β·(log π − log ρ)
    cached_blocks: int = 0  # blocks the PPO epochs skip (kept hidden states)
    reward_cached_blocks: int = 0  # blocks the reward model skipped

    @property
    def sequence_kl(self) -> torch.Tensor:
        """[B] Σ_t log π(y_t) − log ρ(y_t): each episode's sampled KL(π‖ρ)."""
        return (self.logprobs - self.ref_logprobs).sum(dim=1)


@dataclass(frozen=True)
class RolloutStats:
    """A rollout's means per episode, over the episodes of all processes (the paper's `objective/*` logs)."""

    kl: float  # Σ_t log π − log ρ
    entropy: float  # −Σ_t log π(y_t)
    score: float  # r(x, y), with the invalid penalty
    score_total: float  # r(x, y) + Σ_t of the KL part
    valid_fraction: float
    value: float  # V over every token
    non_finite: float  # NaN/inf among scores, log-probs and values (a count; > 0 anywhere stops the run)

    @classmethod
    def of(
        cls, rollout: Rollout, reduce_mean: Callable[[torch.Tensor], torch.Tensor] = lambda local: local
    ) -> RolloutStats:
        """`reduce_mean`: the mean over processes (e.g. `accelerator.reduce(..., reduction="mean")`)."""
        r = rollout
        local = {
            "kl": r.sequence_kl.mean(),
            "entropy": (-r.logprobs.sum(dim=1)).mean(),
            "score": r.scores.mean(),
            "score_total": (r.scores + r.kl_penalty.sum(dim=1)).mean(),
            "valid_fraction": r.valid.float().mean().to(r.scores.device),
            "value": r.values.mean(),
            "non_finite": sum((~torch.isfinite(t)).sum() for t in (r.scores, r.logprobs, r.ref_logprobs, r.values))
            .float(),
        }
        return cls(**dict(zip(local, reduce_mean(torch.stack(list(local.values()))).tolist())))


@torch.no_grad()
def collect_rollout(
    rows: list[dict],
    models: RolloutModels,
    setup: RolloutSetup,
    kl_coef: float,
    block_cache: FrozenBlockCache | None = None,
) -> Rollout:
    """Sample, score and reward one batch of prompts (`rows`: `query_ids` for π, `reward_ids` for the reward):

        R_t = −β·(log π(y_t|x, y_<t) − log ρ(y_t|x, y_<t)) + [t = T−1]·r(x, y)     (eq. 2, β = `kl_coef`)

    (with potential shaping the score is spread over the tokens instead, `core.potential_shaping`)."""
    device, task, pad = setup.device, setup.task, setup.tokenizer.pad_token_id
    queries = [row["query_ids"] for row in rows]
    reward_ids = [row["reward_ids"] for row in rows]
    # Mixed precision (bf16 on GPUs) for sampling and every frozen forward too, not only the training step.
    with setup.precision():
        # 1. sample
        with models.sampler() as policy, _autocast(device, setup.sampling_dtype):
            responses = generate_responses(policy, queries, task, pad).to(device)
        query_ids, query_mask = pad_left(queries, pad)
        input_ids = torch.cat([query_ids.to(device), responses], dim=1)
        attention_mask = torch.cat([query_mask.to(device), torch.ones_like(responses)], dim=1)

        # 2. forwards of π, V and ρ
        cache = None
        if block_cache is not None:
            cache = block_cache.verified(models.policy_and_value, input_ids[:2], attention_mask[:2],
                                         task.response_length)
        logprobs, ref_logprobs, values = _forwards(models, setup, input_ids, attention_mask, responses, cache)

        # 3. truncate
        truncated, valid = truncate_responses(responses.cpu(), task, setup.tokenizer)

        # 4. score (Φ of every prefix too, under potential shaping)
        scores, potentials, reward_cached_blocks = _score(models, setup, rows, responses, truncated, attention_mask,
                                                          cache)
    if setup.invalid_penalty is not None:  # the task's −1 for a response that misses its ending
        scores = torch.where(valid.to(device), scores, torch.full_like(scores, setup.invalid_penalty))

    # 5. eq. 2, with the KL-sign probe riding along in this very call
    probe = KLProbe.around(scores, logprobs, ref_logprobs, potentials)
    rewards, kl_penalty = per_token_rewards(probe.scores, probe.logprobs, probe.ref_logprobs, kl_coef, probe.potentials)
    rewards, kl_penalty = probe.check(rewards, kl_penalty, kl_coef)
    return Rollout(
        reward_ids=reward_ids, input_ids=input_ids, attention_mask=attention_mask, responses=responses,
        truncated=truncated, valid=valid, logprobs=logprobs, ref_logprobs=ref_logprobs, values=values, scores=scores,
        kl_coef=kl_coef, rewards=rewards, kl_penalty=kl_penalty,
        cached_blocks=cache.policy_blocks if cache is not None else 0, reward_cached_blocks=reward_cached_blocks,
    )


def reference_logits(
    models: RolloutModels,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    response_length: int,
    frozen_hidden: torch.Tensor | None = None,
    cached_blocks: int = 0,
) -> torch.Tensor:
    """Logits of ρ over the response positions (π with its LoRA adapters off when `models.reference` is None).
    `frozen_hidden`: π's hidden states entering block `cached_blocks`, ρ's too when ρ is made from π; ρ starts
    there."""
    model = models.reference if models.reference is not None else models.policy_and_value.policy
    inputs = {"input_ids": input_ids} if frozen_hidden is None else {"inputs_embeds": frozen_hidden}
    with contextlib.ExitStack() as stack:
        if frozen_hidden is not None:
            stack.enter_context(blocks_from(model, cached_blocks))
        if models.reference is None:
            stack.enter_context(model.disable_adapter())
        return model(
            **inputs, attention_mask=attention_mask, position_ids=position_ids_from_mask(attention_mask),
            logits_to_keep=response_length + 1, use_cache=False,
        ).logits[:, :-1]


def _forwards(
    models: RolloutModels,
    setup: RolloutSetup,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    responses: torch.Tensor,
    cache: FrozenBlockCache | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(log π, log ρ, V) [B, T] in chunks of `forward_batch_size`; with a cache, keeps π's hidden states entering
    block n in it (ρ starts there too when made from π)."""
    length, temperature = setup.task.response_length, setup.task.temperature
    blocks = cache.policy_blocks if cache is not None else 0
    logprobs, ref_logprobs, values, hidden = [], [], [], []
    for start in range(0, len(input_ids), setup.forward_batch_size):
        chunk = slice(start, start + setup.forward_batch_size)
        out = models.policy_and_value(input_ids[chunk], attention_mask[chunk], length, cached_blocks=blocks)
        logprobs.append(logprobs_from_logits(out.logits, responses[chunk], temperature))
        values.append(out.values)
        shared = out.frozen_hidden if cache is not None and cache.reference_shares else None
        ref_logits = reference_logits(models, input_ids[chunk], attention_mask[chunk], length, shared, blocks)
        ref_logprobs.append(logprobs_from_logits(ref_logits, responses[chunk], temperature))
        hidden.append(out.frozen_hidden)
    if cache is not None:
        cache.hidden = torch.cat(hidden)
    return torch.cat(logprobs), torch.cat(ref_logprobs), torch.cat(values)


def _score(
    models: RolloutModels,
    setup: RolloutSetup,
    rows: list[dict],
    responses: torch.Tensor,
    truncated: torch.Tensor,
    attention_mask: torch.Tensor,
    cache: FrozenBlockCache | None,
) -> tuple[torch.Tensor, torch.Tensor | None, int]:
    """(r(x, y) [B], Φ [B, T+1] under potential shaping else None, the reward model's blocks the cache skipped)."""
    reward, reward_ids, device = models.reward, [row["reward_ids"] for row in rows], setup.device

    def score_whole() -> torch.Tensor:
        return reward.score(reward_ids, truncated).to(device)

    if cache is not None:
        potentials = cache.reward_potentials(reward.model, rows, responses, truncated, attention_mask,
                                             setup.tokenizer.pad_token_id, setup.forward_batch_size, score_whole)
        if potentials is not None:
            return potentials[:, -1], potentials if setup.potential_shaping else None, cache.reward_blocks
    if setup.potential_shaping:
        potentials = reward.potentials(reward_ids, truncated).to(device)
        return potentials[:, -1], potentials, 0
    return score_whole(), None, 0


def _autocast(device: torch.device, dtype: torch.dtype) -> AbstractContextManager:
    """Autocast to `dtype` (nothing for float32: the training precision holds)."""
    return contextlib.nullcontext() if dtype == torch.float32 else torch.autocast(device.type, dtype=dtype)
