"""Labeling: simulated and human labelers, the SQLite label store, the web labeling app.

Names are imported on first use: the label commands need only the store (sqlite3), not the labelers' numpy/VADER.
"""

from ..lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(
        ["HumanLabeler", "Labeler", "ScorerLabeler", "SentimentLabeler", "boltzmann_choice", "plackett_luce_ranking",
         "sentiment_reward", "sentiment_score"],
        ".labelers",
    ),
    **dict.fromkeys(["Agreement", "LabelAgreement", "agreement_summary", "labeler_agreement"], ".agreement"),
    **dict.fromkeys(["Answer", "Comparison", "FieldError", "LabelConflictError"], ".records"),
    **dict.fromkeys(["LabelStore", "UndoRefusedError"], ".store"),
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
