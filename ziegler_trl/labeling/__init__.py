"""Labeling: simulated and human labelers, the SQLite label store, the web labeling app."""

from .labelers import (
    HumanLabeler,
    Labeler,
    ScorerLabeler,
    SentimentLabeler,
    boltzmann_choice,
    plackett_luce_ranking,
    sentiment_reward,
    sentiment_score,
)
from .store import Answer, Comparison, LabelAgreement, LabelConflictError, LabelStore

__all__ = [
    "Answer",
    "Comparison",
    "HumanLabeler",
    "LabelAgreement",
    "LabelConflictError",
    "LabelStore",
    "Labeler",
    "ScorerLabeler",
    "SentimentLabeler",
    "boltzmann_choice",
    "plackett_luce_ranking",
    "sentiment_reward",
    "sentiment_score",
]
