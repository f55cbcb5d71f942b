"""Evaluation: ROUGE and lead-3, copying analysis, preference win rates, labeler agreement, the reward-KL frontier."""

from .agreement import Agreement, agreement_table
from .copying import copy_stats, copy_table, has_preamble
from .frontier import FrontierPoint, optimal_policy_frontier, optimal_policy_point, sample_rewards
from .label_store import add_preference_items, judgments_from_store
from .plots import plot_frontier, plot_novelty
from .preference import (
    PreferenceItems,
    PreferenceResult,
    preference_items,
    preference_win_rate,
    wilson_interval,
    win_rate_from_records,
)
from .records import read_records
from .rouge import rouge, rouge_per_document
from .summaries import Summaries, lead3, model_summaries, row_summaries, split_sentences, table_rows
from .tables import markdown_table, write_markdown

__all__ = [
    "Agreement",
    "FrontierPoint",
    "PreferenceItems",
    "PreferenceResult",
    "Summaries",
    "add_preference_items",
    "agreement_table",
    "copy_stats",
    "copy_table",
    "has_preamble",
    "judgments_from_store",
    "lead3",
    "markdown_table",
    "model_summaries",
    "optimal_policy_frontier",
    "optimal_policy_point",
    "plot_frontier",
    "plot_novelty",
    "preference_items",
    "preference_win_rate",
    "read_records",
    "rouge",
    "rouge_per_document",
    "row_summaries",
    "sample_rewards",
    "split_sentences",
    "table_rows",
    "wilson_interval",
    "win_rate_from_records",
    "write_markdown",
]
