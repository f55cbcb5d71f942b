"""The paper's PPO on current TRL: KL controllers, ZieglerPPOConfig and ZieglerPPOTrainer, and the steps of an update
(rollout, minibatches, the frozen-block cache) as public pieces (imported on first use)."""

from ..lazy import lazy_exports

_EXPORTS = {
    "ZieglerPPOConfig": ".config",
    **dict.fromkeys(
        ["gae", "logprobs_from_logits", "per_token_rewards", "policy_loss", "potential_shaping", "value_loss",
         "whiten"],
        ".core",
    ),
    **dict.fromkeys(["AdaptiveKLCallback", "AdaptiveKLController", "FixedKLController"], ".kl_control"),
    **dict.fromkeys(["PolicyAndValue", "PolicyValueOutput"], ".policy_value"),
    **dict.fromkeys(["Rollout", "RolloutStats", "collect_rollout"], ".rollout"),
    "ppo_minibatches": ".buffer",
    "FrozenBlockCache": ".block_cache",
    "TFAdam": ".tf_adam",
    "NonFiniteError": ".trainer",
    "ZieglerPPOTrainer": ".trainer",
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
