"""Reward normalisation against samples of the initial policy ρ (the paper: mean 0, std 1 on y ~ ρ(·|x)).

The gain is folded into the score head's weight and the bias into the head's bias and `config.reward_bias`, so a
folder saved with `save_pretrained` keeps the normalisation and `load_reward_model` restores it (`model.py` says how
a head without a bias keeps one).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from .model import biased_score_head
from .scoring import score_texts


def fit_reward_normalization(
    raw_rewards: torch.Tensor, target_mean: float = 0.0, target_std: float = 1.0
) -> tuple[float, float]:
    """(gain, bias) such that gain·r + bias has mean `target_mean` and population std `target_std`:

        gain = target_std / std(r),   bias = target_mean − gain · mean(r).
    """
    raw = torch.as_tensor(raw_rewards, dtype=torch.float64).flatten()
    if raw.numel() < 2:
        raise ValueError(f"need at least 2 rewards to normalise, got {raw.numel()}")
    std = raw.std(unbiased=False)
    if not torch.isfinite(std) or std <= 0:
        raise ValueError(f"rewards have std {std.item()}; cannot normalise (is the reward head constant?)")
    gain = target_std / std.item()
    return gain, target_mean - gain * raw.mean().item()


@torch.no_grad()
def apply_reward_normalization(model: PreTrainedModel, gain: float, bias: float) -> None:
    """Compose r ← gain·r + bias into the head; record the cumulative bias in `config.reward_bias`."""
    head = biased_score_head(model)
    head.weight.mul_(gain)
    head.bias.mul_(gain).add_(bias)
    model.config.reward_bias = float(head.bias.item())
    model.config.reward_gain = float(getattr(model.config, "reward_gain", 1.0) or 1.0) * gain


def normalize_reward_model(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    completions: Sequence[str],
    target_mean: float = 0.0,
    target_std: float = 1.0,
    batch_size: int = 16,
) -> tuple[float, float]:
    """Score samples of ρ (prompt i with completion i), fit (gain, bias), fold them into the model; return them.

    The paper runs this before and after reward training on 256-512 samples from ρ at the task temperature, raw:
    the whole fixed-length responses, not cut at the truncate token (`reward.pipeline.sample_rho_for_normalization`).
    Under several processes the statistics are computed over all ranks' samples.
    """
    was_training = model.training
    model.eval()
    raw = score_texts(model, tokenizer, prompts, completions, batch_size)
    model.train(was_training)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        # Every rank must fold in the same (gain, bias): fit on all ranks' samples together.
        from accelerate.utils import gather_object

        raw = torch.tensor(gather_object(raw.tolist()))
    gain, bias = fit_reward_normalization(raw, target_mean, target_std)
    apply_reward_normalization(model, gain, bias)
    return gain, bias
