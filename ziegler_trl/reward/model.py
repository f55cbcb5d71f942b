"""The reward model as a saved folder holds it: a sequence classifier with the paper's scalar head and its
normalisation.

A fresh head gets the paper's init N(0, 1/sqrt(d_model + 1)). Normalisation (`normalization.py`) folds its gain into
the head's weight and its bias into the head's bias and `config.reward_bias`. A head built without a bias (decoder
LMs' score layers) gets it as a non-persistent buffer, so the saved weights keep the architecture's own keys (no
"score.bias UNEXPECTED" when loading) and `config.reward_bias` carries the value:

* `load_reward_model(folder)` restores the bias and scores normalised rewards  g·r_raw + b.
* plain `AutoModelForSequenceClassification.from_pretrained(folder)` builds a bias-free head (decoder LMs' score
  layers have none) and scores  g·r_raw, i.e. normalised rewards shifted by −b. Differences between rewards (all
  the loss and the labelers use) are unaffected; absolute values are not.
"""

from __future__ import annotations

import math
from contextlib import nullcontext

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForSequenceClassification, PreTrainedModel, PreTrainedTokenizerBase

from ..models import disable_dropout, load_tokenizer, loading, resolve_model_path, whole_parameters


def load_reward_model(
    name_or_path: str, tokenizer: PreTrainedTokenizerBase | None = None, **kwargs
) -> PreTrainedModel:
    """A scalar-output sequence classifier; a fresh head gets the paper's init, a saved one keeps its normalisation.

    A folder saved after `normalize_reward_model` holds its gain in the head weight and its bias in
    `config.reward_bias`; this loader restores the bias, so the model scores normalised rewards. Loading prints no
    MISSING/UNEXPECTED report for what is expected (a new head on a causal-LM folder).
    """
    from trl.trainer.reward_trainer import suppress_seqcls_warning

    kwargs.setdefault("dtype", torch.float32)
    path = resolve_model_path(name_or_path)
    with loading(name_or_path):
        architectures = AutoConfig.from_pretrained(path).architectures or []
    trained_head = any(a.endswith("ForSequenceClassification") for a in architectures)
    # From a causal-LM folder the score head is new (and the LM head unused): the loader's MISSING/UNEXPECTED report
    # for those keys is expected, and TRL's RewardTrainer scopes it out the same way.
    with loading(name_or_path), nullcontext() if trained_head else suppress_seqcls_warning():
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, **kwargs)
    tokenizer = tokenizer or load_tokenizer(name_or_path)
    model.config.pad_token_id = tokenizer.pad_token_id
    if not trained_head:  # the head is new: give it the paper's init
        init_reward_head(score_head(model))
    restore_reward_bias(model)
    disable_dropout(model)
    return model


def score_head(model: nn.Module) -> nn.Linear:
    """The scalar output layer of a sequence classifier (`score` for decoder LMs, `classifier` for encoders)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    for name in ("score", "classifier", "v_head", "value_head"):
        head = getattr(base, name, None)
        copies = getattr(head, "modules_to_save", None)  # PEFT trains (and merges) its own copy of the head
        if isinstance(copies, nn.ModuleDict):
            active = head.active_adapter
            head = copies[active[0] if isinstance(active, list) else active]
        if isinstance(head, nn.Linear):
            return head
    raise ValueError(f"{type(base).__name__} has no linear score head (looked for score/classifier/v_head)")


@torch.no_grad()
def init_reward_head(head: nn.Linear) -> nn.Linear:
    """The paper's reward head: weight ~ N(0, 1/sqrt(d_model + 1)), bias 0."""
    with whole_parameters(head):
        head.weight.normal_(0.0, 1.0 / math.sqrt(head.in_features + 1))
        if head.bias is not None:
            head.bias.zero_()
    return head


def biased_score_head(model: PreTrainedModel) -> nn.Linear:
    """The score head, given a bias if it has none (the paper's head has one). The best-of-K loss is blind to a
    constant shift, so the added bias needs no gradient: a buffer, left out of the saved state dict."""
    head = score_head(model)
    if head.bias is None:
        del head._parameters["bias"]  # nn.Linear(bias=False) registers the name as an empty parameter slot
        zeros = torch.zeros(head.out_features, dtype=head.weight.dtype, device=head.weight.device)
        head.register_buffer("bias", zeros, persistent=False)
    return head


@torch.no_grad()
def restore_reward_bias(model: PreTrainedModel) -> None:
    """After loading a saved folder: put `config.reward_bias` back into the head (no-op if never normalised)."""
    bias = getattr(model.config, "reward_bias", None)
    if bias is not None:
        biased_score_head(model).bias.fill_(bias)
