"""The study's simulated labeler: it prefers the summary whose ROUGE against the post author's own TL;DR is highest.

Why this labeler: it stands in for a person who knows what the post is about (the author's TL;DR) and rewards a
summary for covering it, word for word, with no notion of faithfulness or style. That is the heuristic the paper
suspected its labelers leaned on ("accuracy" checked by overlap with the source), so it asks the paper's question
directly: does PPO against a reward model of such labels learn to copy?
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..evaluation.rouge_scores import rouge_per_document
from ..labeling import ScorerLabeler


def rouge_avg(summaries: Sequence[str], references: Sequence[str]) -> list[float]:
    """R-AVG of each summary against its reference: the mean of ROUGE-1, ROUGE-2 and ROUGE-L (summary level) F1 ×
    100, the paper's Table 4 average."""
    scores = rouge_per_document(list(summaries), list(references))
    return [float(v) for v in (scores["rouge1"] + scores["rouge2"] + scores["rougeLsum"]) / 3]


class ReferenceRougeLabeler(ScorerLabeler):
    """Picks the completion with the highest `rouge_avg` against the reference of its prompt; skips a comparison
    whose top score is shared (all completions copying nothing of the reference score 0 alike)."""

    def __init__(self, references: Mapping[str, str], name: str = "rouge-reference", **kwargs):
        self.references = dict(references)
        kwargs.setdefault("skip_ties", True)
        super().__init__(self.score, name=name, **kwargs)

    def score(self, prompts: Sequence[str], completions: Sequence[str]) -> list[float]:
        missing = [p for p in prompts if p not in self.references]
        if missing:
            raise KeyError(f"no reference TL;DR for {len(missing)} prompt(s), the first: {missing[0][:80]!r}")
        return rouge_avg(completions, [self.references[p] for p in prompts])


class StandardizedLabelerScore:
    """The direct reward (the paper's Figure 2 arm, here for summaries): the labeler's own score of each response,
    standardised on ρ's labeled samples, (R-AVG − mean) / std, so that β means for it what it means for a reward model
    normalised to mean 0, std 1 on ρ. A PPO `reward_fn`: prompts are the queries' content, as the labels store them."""

    def __init__(self, labeler: ReferenceRougeLabeler, mean: float, std: float):
        if not std > 0:
            raise ValueError(f"the labeler's scores of ρ's samples have std {std}: nothing to standardise by")
        self.labeler, self.mean, self.std = labeler, mean, std

    def __call__(self, prompts: Sequence[str], completions: Sequence[str], **kwargs) -> list[float]:
        return [(score - self.mean) / self.std for score in self.labeler.score(prompts, completions)]
