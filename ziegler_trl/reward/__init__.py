"""The paper's reward model: best-of-K loss, trainer, normalisation against ρ, and label importers (imported on
first use)."""

from ..lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(["DataCollatorForBestOfK", "comparison_rewards", "tokenize_comparison"], ".forward"),
    **dict.fromkeys(["load_label_dataset", "load_openai_labels", "validate_label_rows"], ".labels"),
    **dict.fromkeys(["best_of_k_loss", "ranking_loss"], ".loss"),
    **dict.fromkeys(["init_reward_head", "load_reward_model", "restore_reward_bias", "score_head"], ".model"),
    **dict.fromkeys(["apply_reward_normalization", "fit_reward_normalization", "normalize_reward_model"],
                    ".normalization"),
    **dict.fromkeys(["reward_sequence", "score_prefixes", "score_sequences", "score_texts"], ".scoring"),
    **dict.fromkeys(["BestOfKRewardConfig", "BestOfKRewardTrainer"], ".trainer"),
    "FrozenTrunkCache": ".trunk_cache",
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
