"""The paper's PPO on current TRL: KL controllers, ZieglerPPOConfig and ZieglerPPOTrainer (imported on first use)."""

from ..lazy import lazy_exports

_EXPORTS = {
    "ZieglerPPOConfig": ".config",
    **dict.fromkeys(
        ["gae", "logprobs_from_logits", "per_token_rewards", "policy_loss", "potential_shaping", "value_loss",
         "whiten"],
        ".core",
    ),
    **dict.fromkeys(["AdaptiveKLCallback", "AdaptiveKLController", "FixedKLController"], ".kl_control"),
    "PolicyAndValue": ".policy_value",
    "TFAdam": ".tf_adam",
    "NonFiniteError": ".trainer",
    "ZieglerPPOTrainer": ".trainer",
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
