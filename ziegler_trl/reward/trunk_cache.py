"""The frozen trunk cache, a CPU speed-up for reward training with frozen bottom blocks (`freeze_bottom_layers`).

With the embeddings and the bottom blocks frozen, what they compute for a completion never changes during training:
it is computed once and later steps run only the part of the model that trains. `BestOfKRewardTrainer` takes a
`FrozenTrunkCache` or not (`cache_frozen_trunk`); `FrozenTrunkCache.rewards` returns what `comparison_rewards` would.
"""

from __future__ import annotations

import hashlib
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn
from transformers.utils import logging

from ..blocks import blocks_from, frozen_bottom_count, transformer_layers
from .forward import comparison_rewards

logger = logging.get_logger(__name__)


def _has_dropout(module: nn.Module) -> bool:
    rate = getattr(module, "attention_dropout", 0.0)  # Llama-likes' attention dropout is a float, not an nn.Dropout
    return (isinstance(module, nn.Dropout) and module.p > 0) or (isinstance(rate, float) and rate > 0)


def content_key(ids: list[int]) -> bytes:
    """A 128-bit digest of a token sequence: a fixed-size key however long the sequence (tuples of ids would hold
    every token of a large label set in memory)."""
    return hashlib.blake2b(np.asarray(ids, dtype=np.int64).tobytes(), digest_size=16).digest()


@contextmanager
def _quiet_pooling_warning(model: nn.Module):
    """HF's sequence classifiers warn that they cannot find pads in `inputs_embeds`; the cache passes one real
    position per row, so there are none."""
    log = logging.get_logger(type(model).forward.__module__)
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


class FrozenTrunkCache:
    """The part of each completion's forward that training cannot change, computed once.

    The blocks below the first trainable one never change (`applies`: at least one frozen block), so the trunk runs
    once per distinct prompt ‖ completion (a digest of its token ids is the key: content-based, so shuffling,
    sharding and eval batches need no index) and later steps run only what trains, through the model's own top,
    with the same rewards and gradients as the full forward:

    * head only (every block frozen): the last block's output at the token the head scores; the final norm and
      head run on it. Holds completions × hidden size × dtype bytes.
    * top blocks trainable (`trainable_top_layers`): every token's hidden state entering the first trainable
      block; the top blocks, norm and head run on them. Holds completions × tokens × hidden size × dtype bytes, in
      CPU memory.
    """

    def __init__(self, model: nn.Module):
        self.model = model  # unwrapped from DDP: `blocks_from` edits its block stack
        blocks = transformer_layers(model)
        self.start = frozen_bottom_count(model)  # the first block that trains (len(blocks): none does)
        self.head_only = self.start == len(blocks)
        self.capture_at = blocks[-1] if self.head_only else blocks[self.start]
        self.pad_token_id = model.config.pad_token_id
        self.hidden: dict[bytes, torch.Tensor] = {}  # `content_key(prompt ‖ completion ids)` → its cached state
        self.exact: bool | None = None  # whether the first fill matched the full forward (None: not checked yet)

    @staticmethod
    def applies(model: nn.Module) -> bool:
        """Something below the trainable part is frozen — the embeddings and at least one block — and no dropout
        makes its output random (our loaders and `disable_dropout` turn it all off)."""
        try:
            transformer_layers(model)
        except ValueError:  # e.g. an encoder: no recognised block stack
            return False
        return frozen_bottom_count(model) > 0 and not any(_has_dropout(m) for m in model.modules())

    @staticmethod
    def _keys(batch: dict[str, torch.Tensor]) -> list[bytes]:
        """prompt ‖ completion ids of each row, pads removed: all the trunk reads for that completion."""
        def unpad(ids: torch.Tensor, mask: torch.Tensor) -> list[list[int]]:
            return [[t for t, m in zip(row, row_mask) if m] for row, row_mask in zip(ids.tolist(), mask.tolist())]

        rows = unpad(batch["input_ids"], batch["attention_mask"])
        if "prompt_ids" not in batch:
            return [content_key(row) for row in rows]
        prompts = unpad(batch["prompt_ids"], batch["prompt_mask"])
        k = len(rows) // len(prompts)
        return [content_key(prompts[i // k] + row) for i, row in enumerate(rows)]

    @torch.no_grad()
    def _fill(self, model: nn.Module, batch: dict[str, torch.Tensor], keys: list[bytes]) -> torch.Tensor:
        """Run the batch's full forward, keep what the cache holds of each row; return its rewards [B, K]. (The
        last block's output is pre-norm; `output_hidden_states`' last entry is post-norm in transformers 5.)"""
        seen = []
        if self.head_only:
            hook = self.capture_at.register_forward_hook(lambda _m, _i, out: seen.append(out))
        else:
            hook = self.capture_at.register_forward_pre_hook(
                lambda _m, args, kwargs: seen.append(args[0] if args else kwargs["hidden_states"]), with_kwargs=True
            )
        try:
            rewards = comparison_rewards(model, batch)
        finally:
            hook.remove()
        seen = [out[0] if isinstance(out, tuple) else out for out in seen]
        ids, mask = batch["input_ids"], batch["attention_mask"].bool()
        if self.head_only:  # the token the model's own pooling scores: the rightmost non-pad one
            scored = (torch.arange(ids.shape[1], device=ids.device) * (ids != self.pad_token_id)).argmax(-1)
            rows = torch.arange(len(ids), device=ids.device)
            last = seen[-1][rows, scored]  # the shared layout's 2nd call: completions
            if "prompt_ids" in batch:  # an empty completion is scored at its (left-padded) prompt's last token
                empty = ~mask.any(dim=1)
                last = torch.where(empty[:, None], seen[0][:, -1].repeat_interleave(len(ids) // len(seen[0]), 0), last)
            self.hidden.update(zip(keys, last))
        elif "prompt_ids" in batch:  # two calls: prompts [B, P], then completions [B·K, C] on their KV cache
            prompts, completions = seen
            prompt_mask, k = batch["prompt_mask"].bool(), len(ids) // len(prompts)
            for i, key in enumerate(keys):
                state = torch.cat([prompts[i // k][prompt_mask[i // k]], completions[i][mask[i]]])
                self.hidden[key] = state.cpu()
        else:
            self.hidden.update((key, seen[0][i][mask[i]].cpu()) for i, key in enumerate(keys))
        return rewards

    def _top_rewards(self, model: nn.Module, keys: list[bytes]) -> torch.Tensor:
        """Scores [N] from the cached states: only the part of the model that trains runs."""
        device = self.model.device
        if self.head_only:  # no block runs: one position per row goes to the final norm and head
            hidden = torch.stack([self.hidden[key] for key in keys])[:, None, :]
            mask = torch.ones(len(keys), 1, dtype=torch.long, device=device)
            extra = {}
        else:  # left-padded, so the last position (where pooling reads `inputs_embeds`) is each row's last token
            states = [self.hidden[key] for key in keys]
            width = max(len(state) for state in states)
            hidden = states[0].new_zeros(len(states), width, states[0].shape[-1], device=device)
            mask = torch.zeros(len(states), width, dtype=torch.long, device=device)
            for row, state in enumerate(states):
                hidden[row, width - len(state) :] = state.to(device)
                mask[row, width - len(state) :] = 1
            extra = {"position_ids": (mask.cumsum(1) - 1).clamp(min=0)}  # as in the full forward: 0 at the prompt
        with blocks_from(self.model, self.start), _quiet_pooling_warning(self.model):
            logits = model(inputs_embeds=hidden, attention_mask=mask, use_cache=False, **extra).logits
        return logits.squeeze(-1)

    def rewards(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Rewards [B, K] of a collated batch, as `comparison_rewards` gives them, from the cached states (the batch's
        new completions filled in first); `model` is the (possibly wrapped) model to call. The first fill is checked
        against the full forward; where they differ the cache warns, empties, and runs full forwards from then on."""
        if self.exact is False:
            return comparison_rewards(model, batch)
        keys = self._keys(batch)
        full = self._fill(model, batch, keys) if any(key not in self.hidden for key in keys) else None
        rewards = self._top_rewards(model, keys).view(len(batch["best"]), -1)
        if full is not None and self.exact is None:
            error = (rewards.detach() - full).abs().max().item()
            mismatch = error > 1e-4 * max(1.0, full.abs().max().item())
            self.exact = not mismatch
            if mismatch:
                what = "last-block states" if self.head_only else f"states entering block {self.start}"
                logger.warning(
                    f"cache_frozen_trunk: {type(self.model).__name__} scored from its cached {what} differs "
                    f"from its full forward (max |Δ| = {error:.3g}); training runs full forwards instead"
                )
                self.hidden.clear()
                return comparison_rewards(model, batch)
        return rewards
