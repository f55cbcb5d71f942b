"""Block surgery on a transformer's stack: find its blocks, freeze the bottom ones, and run only the top ones.

A compute knob for CPU runs (`freeze_bottom_layers`) and what the reward trunk cache and the PPO frozen-block
cache build on: blocks below the first trainable one compute the same output for the same input all training, so
a cache can keep what enters the first trainable block and run the model from there (`blocks_from`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


def _blocks_owner(model: nn.Module) -> tuple[nn.Module, str]:
    """(module, attribute) holding the stack of transformer blocks (`layers` for Llama-likes, `h` for GPT-2-likes)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    trunk = getattr(base, "base_model", base)
    for name in ("layers", "h", "blocks"):
        if isinstance(getattr(trunk, name, None), nn.ModuleList):
            return trunk, name
    raise ValueError(f"cannot find the transformer blocks of {type(base).__name__}")


def transformer_layers(model: nn.Module) -> nn.ModuleList:
    """The stack of transformer blocks of a decoder (`layers` for Llama-likes, `h` for GPT-2-likes)."""
    owner, name = _blocks_owner(model)
    return getattr(owner, name)


def _below_blocks(model: nn.Module) -> list[nn.Module]:
    """What feeds the first block: the input embeddings and the trunk's modules registered before the blocks
    (e.g. GPT-2's position embeddings)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    owner, name = _blocks_owner(model)
    before = [base.get_input_embeddings()]
    for child_name, child in owner.named_children():
        if child_name == name:
            break
        before.append(child)
    return before


def frozen_bottom_count(model: nn.Module) -> int:
    """How many leading transformer blocks have no trainable parameter, provided nothing below them trains either
    (else 0): for a given input their output never changes during training."""
    if any(p.requires_grad for module in _below_blocks(model) for p in module.parameters()):
        return 0
    if hasattr(model, "get_base_model"):  # PEFT prompt/prefix tuning trains an encoder outside the base model
        inside = {id(p) for p in model.get_base_model().parameters()}
        if any(p.requires_grad and id(p) not in inside for p in model.parameters()):
            return 0
    count = 0
    for layer in transformer_layers(model):
        if any(p.requires_grad for p in layer.parameters()):
            break
        count += 1
    return count


def shares_bottom_blocks(model: nn.Module, other: nn.Module, count: int) -> bool:
    """Whether `other`'s embeddings (and what else feeds its blocks) and its bottom `count` blocks hold exactly
    `model`'s weights: then, for the same input, `other`'s hidden states entering block `count` are `model`'s."""
    below, other_below = _below_blocks(model), _below_blocks(other)
    if len(below) != len(other_below) or len(transformer_layers(other)) < count:
        return False
    pairs = list(zip(below, other_below)) + list(zip(transformer_layers(model)[:count], transformer_layers(other)[:count]))
    for mine, theirs in pairs:
        params, other_params = list(mine.parameters()), list(theirs.parameters())
        if len(params) != len(other_params) or not all(
            a.shape == b.shape and a.dtype == b.dtype and a.device == b.device and torch.equal(a, b)
            for a, b in zip(params, other_params)
        ):
            return False
    return True


@contextmanager
def blocks_from(model: nn.Module, start: int) -> Iterator[None]:
    """Within the context, `model` runs its transformer blocks `start`.. only, and `inputs_embeds` given to it stand
    for the hidden states entering block `start` (`hidden_states[start]` of a full forward). Exact for models whose
    forward passes `inputs_embeds` to the first block unchanged (Llama-likes); callers check it against a full
    forward (`reward.trunk_cache.FrozenTrunkCache`, `ZieglerPPOTrainer`)."""
    owner, name = _blocks_owner(model)
    blocks = getattr(owner, name)
    setattr(owner, name, nn.ModuleList(list(blocks)[start:]))
    try:
        yield
    finally:
        setattr(owner, name, blocks)


def freeze_bottom_layers(model: nn.Module, trainable_top_layers: int) -> int:
    """Train only the top `trainable_top_layers` blocks (plus final norm and heads); return the frozen count.

    A compute knob for CPU runs, not the paper's setting (which trains every weight): backward stops at the first
    trainable block. What feeds the blocks is frozen too: the embeddings (tied to the LM head in small models) and,
    e.g., GPT-2's position embeddings.
    """
    layers = transformer_layers(model)
    n_frozen = max(0, len(layers) - trainable_top_layers)
    for module in _below_blocks(model):
        module.requires_grad_(False)
    for layer in layers[:n_frozen]:
        layer.requires_grad_(False)
    return n_frozen
