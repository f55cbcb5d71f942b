"""How much a summary copies its source: the paper's novelty analysis (Figure 5), first-3-words copying and
preamble skipping (Table 7), and repetition within the summary (Figure 6).

Words are lower-cased runs of letters and digits, so case and punctuation are ignored ("Don't!" -> "don", "t" on
both sides). Sentences come from `split_sentences` (pysbd, newlines as boundaries).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from ..tasks import TaskSpec, get_task
from .summaries import split_sentences

_WORD = re.compile(r"[^\W_]+")
MAX_N = 4
TLDR_PREAMBLE_WORDS = frozenset({"hi", "hello", "hey", "ok", "okay", "so"})


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def _occurs_in(run: list[str], source_text: str) -> bool:
    """`run` occurs as consecutive words of the source (`source_text` is its words joined, space-padded)."""
    return f" {' '.join(run)} " in source_text


def has_preamble(source: str, task: str | TaskSpec) -> bool:
    """Whether the source opens with a preamble a good summary skips (the paper's Table 7 heuristics).

    TL;DR: the post starts with hi / hello / hey / ok / okay / so. CNN/DM: a colon within the first 3 words
    (a dateline or kicker such as "WASHINGTON: ..." or "EXCLUSIVE: ...").
    """
    task = get_task(task)
    if task.name == "tldr":
        first = words(source)[:1]
        return bool(first) and first[0] in TLDR_PREAMBLE_WORDS
    if task.name == "cnndm":
        return any(":" in token for token in source.split()[:3])
    raise ValueError(f"has_preamble is defined for tasks 'tldr' and 'cnndm', not {task.name!r}")


def copy_stats(source: str, summary: str) -> dict[str, float | bool | None]:
    """Copying statistics of one summary against its source.

    novel_ngram[n] = |{summary n-grams not in source}| / |{summary n-grams}|, where summary n-grams are runs of n
    consecutive words inside one summary sentence, counted with multiplicity, and "in source" means the n words
    occur consecutively somewhere in the source. None when the summary has no n-gram of that length.
    novel_sentences = fraction of summary sentences whose words do not occur consecutively in the source.
    copied_whole = the summary has a sentence and every one occurs in the source.
    first3_copied = the summary's first 3 words are the source's first 3 words.
    repeated_3gram = fraction of the summary's 3-grams (within sentences) that repeat an earlier one.
    """
    source_words = words(source)
    source_text = f" {' '.join(source_words)} "
    sentences = [w for w in (words(s) for s in split_sentences(summary)) if w]
    stats: dict[str, float | bool | None] = {}
    for n in range(1, MAX_N + 1):
        source_ngrams = set(ngrams(source_words, n))
        grams = [g for sentence in sentences for g in ngrams(sentence, n)]
        stats[f"novel_{n}gram"] = sum(g not in source_ngrams for g in grams) / len(grams) if grams else None
    copied = [_occurs_in(sentence, source_text) for sentence in sentences]
    stats["novel_sentences"] = 1.0 - sum(copied) / len(copied) if copied else None
    stats["copied_whole"] = bool(copied) and all(copied)
    summary_words = words(summary)
    stats["first3_copied"] = len(summary_words) >= 3 and summary_words[:3] == source_words[:3]
    trigrams = [g for sentence in sentences for g in ngrams(sentence, 3)]
    stats["repeated_3gram"] = 1.0 - len(set(trigrams)) / len(trigrams) if trigrams else None
    return stats


def copy_table(
    sources: Sequence[str], summaries: Sequence[str], task: str | TaskSpec | None = None
) -> dict[str, float | int]:
    """Mean of each `copy_stats` key over the dataset (booleans become rates; None entries are left out).

    With a summarization task it adds `preamble_rate` (sources with a preamble) and `first3_copied_preamble` /
    `first3_copied_no_preamble`: how often the summary starts with the source's first 3 words, split by whether
    there is a preamble to skip (Table 7). `n` is the number of summaries.
    """
    if len(sources) != len(summaries):
        raise ValueError(f"{len(sources)} sources but {len(summaries)} summaries")
    if not sources:
        raise ValueError("copy_table needs at least one (source, summary) pair")
    rows = [copy_stats(source, summary) for source, summary in zip(sources, summaries)]
    table: dict[str, float | int] = {"n": len(rows)}
    for key in rows[0]:
        values = [float(row[key]) for row in rows if row[key] is not None]
        table[key] = float(np.mean(values)) if values else float("nan")
    if task is not None:
        preamble = np.array([has_preamble(source, task) for source in sources])
        first3 = np.array([bool(row["first3_copied"]) for row in rows])
        table["preamble_rate"] = float(preamble.mean())
        table["first3_copied_preamble"] = float(first3[preamble].mean()) if preamble.any() else float("nan")
        table["first3_copied_no_preamble"] = float(first3[~preamble].mean()) if (~preamble).any() else float("nan")
    return table
