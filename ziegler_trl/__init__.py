"""ziegler-trl: Fine-Tuning Language Models from Human Preferences (Ziegler et al., 2019) on Hugging Face TRL.

Every public name below is importable from here (`from ziegler_trl import ZieglerPPOTrainer`); each is imported on
first use, so `import ziegler_trl` itself pulls in neither torch nor transformers.
"""

from .lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    **dict.fromkeys(
        ["agreement_table", "copy_stats", "copy_table", "has_preamble", "lead3", "optimal_policy_frontier",
         "preference_win_rate", "rouge", "win_rate_from_records"],
        ".evaluation",
    ),
    **dict.fromkeys(
        ["HumanLabeler", "Labeler", "LabelConflictError", "LabelStore", "ScorerLabeler", "SentimentLabeler",
         "sentiment_reward", "sentiment_score"],
        ".labeling",
    ),
    "freeze_bottom_layers": ".blocks",
    **dict.fromkeys(
        ["EMBEDDED", "embedded_model_dir", "ensure_pad_token", "inference_device", "init_value_head", "load_policy",
         "load_tokenizer", "resolve_model_path", "sampling_dtype"],
        ".models",
    ),
    **dict.fromkeys(
        ["AdaptiveKLCallback", "AdaptiveKLController", "FixedKLController", "NonFiniteError", "ZieglerPPOConfig",
         "ZieglerPPOTrainer"],
        ".ppo",
    ),
    **dict.fromkeys(
        ["BestOfKRewardConfig", "BestOfKRewardTrainer", "best_of_k_loss", "fit_reward_normalization",
         "init_reward_head", "load_label_dataset", "load_openai_labels", "load_reward_model", "normalize_reward_model",
         "ranking_loss"],
        ".reward",
    ),
    "ReferenceRougeLabeler": ".summarization_study",
    "sample_completions": ".sampling",
    "ZieglerSFTConfig": ".sft",
    "train_sft": ".sft",
    **dict.fromkeys(["TASKS", "HubSource", "Query", "TaskSpec", "format_query", "load_task_texts", "truncate_responses"],
                   ".tasks"),
    **dict.fromkeys(["ConfigFileError", "DataFileError", "InputFileError", "LabelFileError", "UserInputError"],
                    ".errors"),
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
