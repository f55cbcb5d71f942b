"""Evaluation: ROUGE and lead-3, copying analysis, preference win rates, labeler agreement, the reward-KL frontier.

Names are imported on first use; `ziegler_trl.evaluation.commands` holds the `ziegler-trl eval <table>` commands.
"""

from ..lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(["Agreement", "agreement_table"], ".agreement"),
    **dict.fromkeys(["copy_stats", "copy_table", "has_preamble"], ".copying"),
    **dict.fromkeys(
        ["FrontierPoint", "optimal_policy_frontier", "optimal_policy_point", "sample_rewards"], ".frontier"
    ),
    **dict.fromkeys(["add_preference_items", "judgments_from_store"], ".label_store"),
    **dict.fromkeys(["plot_frontier", "plot_novelty"], ".plots"),
    **dict.fromkeys(
        ["PreferenceItems", "PreferenceResult", "preference_items", "preference_win_rate", "wilson_interval",
         "win_rate_from_records"],
        ".preference",
    ),
    "read_records": ".records",
    **dict.fromkeys(["rouge", "rouge_per_document"], ".rouge_scores"),
    **dict.fromkeys(["Summaries", "lead3", "model_summaries", "row_summaries", "split_sentences", "table_rows"],
                    ".summaries"),
    **dict.fromkeys(["markdown_table", "write_markdown"], ".tables"),
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
