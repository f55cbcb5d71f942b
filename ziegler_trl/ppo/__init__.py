"""The paper's PPO on current TRL: KL controllers, ZieglerPPOConfig and ZieglerPPOTrainer."""

from .config import ZieglerPPOConfig
from .core import (
    gae,
    logprobs_from_logits,
    per_token_rewards,
    policy_loss,
    potential_shaping,
    value_loss,
    whiten,
)
from .kl_control import AdaptiveKLCallback, AdaptiveKLController, FixedKLController
from .policy_value import PolicyAndValue
from .tf_adam import TFAdam
from .trainer import NonFiniteError, ZieglerPPOTrainer

__all__ = [
    "AdaptiveKLCallback",
    "AdaptiveKLController",
    "FixedKLController",
    "NonFiniteError",
    "PolicyAndValue",
    "TFAdam",
    "ZieglerPPOConfig",
    "ZieglerPPOTrainer",
    "gae",
    "logprobs_from_logits",
    "per_token_rewards",
    "policy_loss",
    "potential_shaping",
    "value_loss",
    "whiten",
]
