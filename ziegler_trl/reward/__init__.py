"""The paper's reward model: best-of-K loss, trainer, normalisation against ρ, and label importers."""

from .labels import load_label_dataset, load_openai_labels, validate_label_rows
from .loss import best_of_k_loss, ranking_loss
from .normalization import (
    apply_reward_normalization,
    fit_reward_normalization,
    normalize_reward_model,
    restore_reward_bias,
)
from .scoring import reward_sequence, score_prefixes, score_sequences, score_texts
from .trainer import BestOfKRewardConfig, BestOfKRewardTrainer, DataCollatorForBestOfK
