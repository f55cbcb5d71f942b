"""The policy with its value function: a zero-initialised scalar head on the policy's own trunk (the paper's code),
so one forward pass gives both the next-token logits and the values; or, as an option, on a separate trunk.

Saved as a standard HF causal-LM folder (the policy, or its PEFT adapter) plus `value_head.safetensors` (and a
`value_model/` folder for a separate trunk).
"""

from __future__ import annotations

import contextlib
import os
from typing import NamedTuple

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import PreTrainedModel

from ..adapters import is_peft_model, merged_copy
from ..blocks import blocks_from
from ..models import init_value_head
from .core import position_ids_from_mask

VALUE_HEAD_FILE = "value_head.safetensors"
VALUE_MODEL_DIR = "value_model"


class PolicyValueOutput(NamedTuple):
    """One forward of π and V over left-padded query ‖ response (T response tokens)."""

    logits: torch.Tensor  # [B, T, V]: the logits predicting each response token
    values: torch.Tensor  # [B, T]: V of the state (x, y_<t), fp32
    frozen_hidden: torch.Tensor | None  # [B, L, d] entering block `cached_blocks`, on a full forward with them > 0


class PolicyAndValue(nn.Module):
    def __init__(self, policy: PreTrainedModel, value_model: PreTrainedModel | None = None):
        super().__init__()
        self.policy = policy
        self.value_model = value_model
        trunk_config = (value_model or policy).config.get_text_config()
        # The trunk's dtype too: ZeRO-3 partitions the head with the trunk's (bf16) shards and needs one dtype.
        trunk_param = next((value_model or policy).parameters())
        self.value_head = init_value_head(nn.Linear(trunk_config.hidden_size, 1))
        self.value_head.to(device=trunk_param.device, dtype=trunk_param.dtype)

    @property
    def config(self):
        return self.policy.config

    @property
    def generation_config(self):
        return self.policy.generation_config

    def generate(self, *args, **kwargs):
        """Sample from the policy. Under FSDP2 this is registered as a forward method of this (root) module, so the
        root's shards are gathered around it as around `forward`."""
        return self.policy.generate(*args, **kwargs)

    @property
    def _no_split_modules(self) -> list[str] | None:
        """The policy's transformer block classes: what FSDP's transformer-based auto wrap shards as units."""
        return getattr(self.policy, "_no_split_modules", None)

    @property
    def is_gradient_checkpointing(self) -> bool:
        return self.policy.is_gradient_checkpointing

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs: dict | None = None) -> None:
        for trunk in (self.policy, self.value_model):
            if trunk is not None:
                trunk.gradient_checkpointing_enable(gradient_checkpointing_kwargs=gradient_checkpointing_kwargs)

    def gradient_checkpointing_disable(self) -> None:
        for trunk in (self.policy, self.value_model):
            if trunk is not None:
                trunk.gradient_checkpointing_disable()

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        response_length: int,
        cached_blocks: int = 0,
        frozen_hidden: torch.Tensor | None = None,
    ) -> PolicyValueOutput:
        """Logits and values over the response of left-padded query ‖ response.

        The value at response position t is read from the same hidden state that predicts token t, i.e. it values
        the state (x, y_<t).

        `cached_blocks` = n > 0 (the policy's bottom n blocks are frozen, see `block_cache`): a full forward also
        returns the hidden states entering block n, and given back as `frozen_hidden` they replace the embeddings and
        the bottom n blocks, which then do not run (the PPO epochs reuse the rollout's).
        """
        position_ids = position_ids_from_mask(attention_mask)
        shared = self.value_model is None
        keep_hidden = cached_blocks > 0 and frozen_hidden is None
        policy_inputs = {"input_ids": input_ids}
        skip = contextlib.nullcontext()
        if frozen_hidden is not None:
            policy_inputs = {"inputs_embeds": frozen_hidden}
            skip = blocks_from(self.policy, cached_blocks)
        with skip:
            out = self.policy(
                **policy_inputs, attention_mask=attention_mask, position_ids=position_ids,
                logits_to_keep=response_length + 1, output_hidden_states=shared or keep_hidden,
                use_cache=False,
            )
        if shared:
            hidden = out.hidden_states[-1]
        else:
            hidden = self.value_model(
                input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                logits_to_keep=1, output_hidden_states=True, use_cache=False,
            ).hidden_states[-1]
        values = self.value_head(hidden[:, -response_length - 1 : -1]).squeeze(-1).float()
        return PolicyValueOutput(out.logits[:, :-1], values, out.hidden_states[cached_blocks] if keep_hidden else None)

    @property
    def has_adapters(self) -> bool:
        return is_peft_model(self.policy)

    def save(
        self,
        folder: str,
        is_main_process: bool = True,
        state_dict: dict[str, torch.Tensor] | None = None,
        merge_adapters: bool = False,
    ) -> None:
        """The policy's HF folder (or PEFT adapter; merged into a plain folder with `merge_adapters`) with the value
        head beside it. `state_dict`: this module's whole weights when its own are shards (gathered by the Trainer
        under ZeRO-3 / FSDP)."""
        parts = split_state_dict(state_dict, ("policy", "value_model", "value_head")) if state_dict is not None else {}
        if merge_adapters and self.has_adapters:
            if is_main_process:
                merged_copy(self.policy).save_pretrained(folder)
        else:
            self.policy.save_pretrained(folder, is_main_process=is_main_process, state_dict=parts.get("policy"))
        if not is_main_process:
            return
        head = parts.get("value_head") or self.value_head.state_dict()
        save_file({k: v.contiguous() for k, v in head.items()}, os.path.join(folder, VALUE_HEAD_FILE))
        if self.value_model is not None:
            self.value_model.save_pretrained(os.path.join(folder, VALUE_MODEL_DIR), state_dict=parts.get("value_model"))

    def load_value_function(self, folder: str) -> None:
        """Read back what `save` wrote beside the policy (the policy itself is loaded by the Trainer)."""
        device = self.value_head.weight.device
        self.value_head.load_state_dict(load_file(os.path.join(folder, VALUE_HEAD_FILE), device=str(device)))
        if self.value_model is not None:
            state = load_file(os.path.join(folder, VALUE_MODEL_DIR, "model.safetensors"), device=str(device))
            missing, unexpected = self.value_model.load_state_dict(state, strict=False)
            tied = set(getattr(self.value_model, "_tied_weights_keys", None) or [])
            if unexpected or set(missing) - tied:
                raise ValueError(f"{folder}/{VALUE_MODEL_DIR}: missing {missing}, unexpected {unexpected}")


def split_state_dict(
    state_dict: dict[str, torch.Tensor], prefixes: tuple[str, ...]
) -> dict[str, dict[str, torch.Tensor]]:
    """{prefix: {key without "prefix.": tensor}} for the given submodule names; other keys are an error."""
    parts: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in state_dict.items():
        prefix, _, rest = key.partition(".")
        if prefix not in prefixes or not rest:
            raise ValueError(f"Unexpected key {key!r} in the policy/value state dict (expected {prefixes} prefixes)")
        parts.setdefault(prefix, {})[rest] = tensor
    return parts
