"""ROUGE as the paper reports it: ROUGE-1.5.5 with `-m` (Porter stemming), F-measures x 100, averaged over documents.

Scores come from Google's `rouge-score` package (a faithful port of ROUGE-1.5.5). Its `rougeLsum` is ROUGE-1.5.5's
summary-level ROUGE-L, which needs one sentence per line, so every text is first split into sentences with the
same splitter as lead-3. The paper's "R-L" column is this summary-level score (`rougeLsum`); `rougeL` treats the
whole text as one sequence.
"""

from __future__ import annotations

import numpy as np
from rouge_score import rouge_scorer

from .summaries import split_sentences

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")


def rouge_per_document(predictions: list[str], references: list[str]) -> dict[str, np.ndarray]:
    """F-measure x 100 of each (prediction, reference) pair, per ROUGE type."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    if not predictions:
        raise ValueError("rouge needs at least one prediction")
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
    scores = {key: np.empty(len(predictions)) for key in ROUGE_TYPES}
    for i, (prediction, reference) in enumerate(zip(predictions, references)):
        result = scorer.score("\n".join(split_sentences(reference)), "\n".join(split_sentences(prediction)))
        for key in ROUGE_TYPES:
            scores[key][i] = 100.0 * result[key].fmeasure
    return scores


def rouge(
    predictions: list[str],
    references: list[str],
    bootstrap_samples: int = 0,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, float]:
    """Mean F-measure x 100 over documents for `rouge1`, `rouge2`, `rougeL`, `rougeLsum`.

    With `bootstrap_samples` > 0 it adds `<key>_low` / `<key>_high`: a percentile bootstrap interval of the mean,
    resampling documents with replacement (ROUGE-1.5.5's own resampling).
    """
    per_doc = rouge_per_document(predictions, references)
    result = {key: float(values.mean()) for key, values in per_doc.items()}
    if bootstrap_samples > 0:
        rng = np.random.default_rng(seed)
        n = len(predictions)
        draws = rng.integers(0, n, size=(bootstrap_samples, n))
        tail = 100.0 * (1.0 - confidence) / 2.0
        for key, values in per_doc.items():
            means = values[draws].mean(axis=1)
            result[f"{key}_low"], result[f"{key}_high"] = (float(x) for x in np.percentile(means, [tail, 100 - tail]))
    return result
