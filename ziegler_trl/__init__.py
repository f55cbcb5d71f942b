"""ziegler-trl: Fine-Tuning Language Models from Human Preferences (Ziegler et al., 2019) on Hugging Face TRL."""

from .evaluation import (
    agreement_table,
    copy_stats,
    copy_table,
    has_preamble,
    lead3,
    optimal_policy_frontier,
    preference_win_rate,
    rouge,
    win_rate_from_records,
)
from .labeling import (
    HumanLabeler,
    Labeler,
    LabelConflictError,
    LabelStore,
    ScorerLabeler,
    SentimentLabeler,
    sentiment_reward,
    sentiment_score,
)
from .models import (
    EMBEDDED,
    embedded_model_dir,
    ensure_pad_token,
    freeze_bottom_layers,
    inference_device,
    init_reward_head,
    init_value_head,
    load_policy,
    load_reward_model,
    load_tokenizer,
    resolve_model_path,
    sampling_dtype,
)
from .ppo import (
    AdaptiveKLCallback,
    AdaptiveKLController,
    FixedKLController,
    NonFiniteError,
    ZieglerPPOConfig,
    ZieglerPPOTrainer,
)
from .reward import (
    BestOfKRewardConfig,
    BestOfKRewardTrainer,
    best_of_k_loss,
    fit_reward_normalization,
    load_label_dataset,
    load_openai_labels,
    normalize_reward_model,
    ranking_loss,
)
from .sampling import sample_completions
from .sft import ZieglerSFTConfig, train_sft
from .tasks import TASKS, Query, TaskSpec, format_query, load_task_texts, truncate_responses

__version__ = "0.1.0"
