"""Reward normalisation against samples of the initial policy ρ (the paper: mean 0, std 1 on y ~ ρ(·|x)).

The gain is folded into the score head's weight and the bias into the head's bias and `config.reward_bias`, so a
folder saved with `save_pretrained` keeps the normalisation. A head built without a bias (decoder LMs' score layers)
gets it as a non-persistent buffer: the saved weights keep the architecture's own keys (no "score.bias UNEXPECTED"
when loading) and `config.reward_bias` carries the value:

* `ziegler_trl.load_reward_model(folder)` restores the bias and scores normalised rewards  g·r_raw + b.
* plain `AutoModelForSequenceClassification.from_pretrained(folder)` builds a bias-free head (decoder LMs' score
  layers have none) and scores  g·r_raw, i.e. normalised rewards shifted by −b. Differences between rewards (all
  the loss and the labelers use) are unaffected; absolute values are not.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..models import score_head
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


def _biased_head(model: PreTrainedModel) -> nn.Linear:
    """The score head, given a bias if it has none (the paper's head has one). The best-of-K loss is blind to a
    constant shift, so the added bias needs no gradient: a buffer, left out of the saved state dict."""
    head = score_head(model)
    if head.bias is None:
        del head._parameters["bias"]  # nn.Linear(bias=False) registers the name as an empty parameter slot
        zeros = torch.zeros(head.out_features, dtype=head.weight.dtype, device=head.weight.device)
        head.register_buffer("bias", zeros, persistent=False)
    return head


@torch.no_grad()
def apply_reward_normalization(model: PreTrainedModel, gain: float, bias: float) -> None:
    """Compose r ← gain·r + bias into the head; record the cumulative bias in `config.reward_bias`."""
    head = _biased_head(model)
    head.weight.mul_(gain)
    head.bias.mul_(gain).add_(bias)
    model.config.reward_bias = float(head.bias.item())
    model.config.reward_gain = float(getattr(model.config, "reward_gain", 1.0) or 1.0) * gain


@torch.no_grad()
def restore_reward_bias(model: PreTrainedModel) -> None:
    """After loading a saved folder: put `config.reward_bias` back into the head (no-op if never normalised)."""
    bias = getattr(model.config, "reward_bias", None)
    if bias is not None:
        _biased_head(model).bias.fill_(bias)


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
