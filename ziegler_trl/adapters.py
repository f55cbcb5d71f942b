"""Saving PEFT (LoRA) models with their adapters merged into the base weights, without disturbing the run.

A merged folder is a plain HF model that any tool loads; the adapter-only folder is small but needs the base. The
trainers merge only for the final `save_model` a user asks for; checkpoints keep the adapters so a run resumes.
"""

from __future__ import annotations

import copy

from peft import PeftModel
from torch import nn
from transformers.integrations.deepspeed import is_deepspeed_zero3_enabled


def is_peft_model(model: nn.Module) -> bool:
    return isinstance(model, PeftModel)


def merged_copy(model: nn.Module) -> nn.Module:
    """A PEFT-free copy of `model` with the adapters merged into the base weights; `model` keeps its adapters."""
    if not is_peft_model(model):
        raise TypeError(f"{type(model).__name__} has no PEFT adapters to merge")
    return copy.deepcopy(model).merge_and_unload()


def check_merge_supported(trainer) -> None:
    """Merging reads whole weights from this process; under ZeRO-3 / FSDP the weights are shards."""
    if trainer.is_fsdp_enabled or is_deepspeed_zero3_enabled():
        raise ValueError(
            "save_merged_model is not supported under ZeRO-3 / FSDP (the weights are sharded): save the adapters "
            "(save_merged_model=False) and merge afterwards with peft's merge_and_unload()"
        )
