"""Labeler–labeler agreement: how often two people who judged the same comparison picked the same completion.

`labeler_agreement` is the one definition, used by the labeling app's admin page and `label status` (through
`agreement_summary`) and by the paper's Table 9 (`ziegler_trl.evaluation.agreement_table`), so they report the same
figure for the same labels. Judgement rows, one per non-skipped answer (`LabelStore.judgements`, or a JSONL file):

    {"item_id": str | int, "labeler": str, "best": int, "k": int}   # k = number of completions shown

Pure Python (no numpy), so that `ziegler-trl label status` stays a quick command.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from itertools import combinations

Labels = Mapping[Hashable, Mapping[str, int]]  # item -> {labeler: index of the completion they chose}


@dataclass(frozen=True)
class Agreement:
    """An agreement rate with its standard error over `n_items` items (`n_pairs` label pairs in all)."""

    rate: float
    stderr: float
    n_items: int
    n_pairs: int


def labels_by_item(rows: Iterable[Mapping]) -> tuple[dict, dict]:
    """({item: {labeler: best}}, {item: k}) from judgement rows; a row that contradicts another is a ValueError."""
    labels: dict = {}
    sizes: dict = {}
    for row_no, row in enumerate(rows, start=1):
        item, labeler, best, k = row["item_id"], row["labeler"], row["best"], row["k"]
        if k < 2:
            raise ValueError(f"record {row_no}: k={k}; an item needs at least 2 completions")
        if not 0 <= best < k:
            raise ValueError(f"record {row_no}: best={best} is not in 0..{k - 1}")
        if sizes.setdefault(item, k) != k:
            raise ValueError(f"record {row_no}: item {item!r} has k={k} here but k={sizes[item]} before")
        if labeler in labels.setdefault(item, {}):
            raise ValueError(f"record {row_no}: labeler {labeler!r} labeled item {item!r} twice")
        labels[item][labeler] = best
    return labels, sizes


def _everyone(labeler: str) -> bool:
    return True


def labeler_agreement(
    labels: Labels, first: Callable[[str], bool] | None = None, second: Callable[[str], bool] | None = None
) -> Agreement:
    """Agreement of the label pairs (a, b), a ≠ b, of each item, with a passing `first` and b `second` (None:
    everyone; e.g. labelers against reference labelers), weighting every item equally:

        A = (1/|I|) Σ_{i∈I} (1/|P_i|) Σ_{(a,b)∈P_i} 1[best_a(i) = best_b(i)],   SE = sd_{i∈I}(A_i) / sqrt(|I|)

    where P_i are the item's pairs and I the items with at least one. Items, not pairs, are the units because the
    pairs of one item share their labels: they are not independent draws, so the standard error is taken over
    items, and this mean is the estimate that standard error belongs to. Weighting pairs instead would let an item
    answered by 5 people (10 pairs) count 10 times one answered by 2. In the paper's design every repeated query
    is labeled the same number of times (5% of queries, 5 times each), where both weightings give the same rate;
    they differ in a live store, where some repeats are still unanswered or skipped.
    """
    first, second = first or _everyone, second or _everyone
    per_item, n_pairs = [], 0
    for by_labeler in labels.values():
        pairs = [
            (a, b)
            for a, b in combinations(sorted(by_labeler), 2)
            if (first(a) and second(b)) or (first(b) and second(a))
        ]
        if pairs:
            per_item.append(sum(by_labeler[a] == by_labeler[b] for a, b in pairs) / len(pairs))
            n_pairs += len(pairs)
    if not per_item:
        return Agreement(math.nan, math.nan, 0, 0)
    stderr = statistics.stdev(per_item) / math.sqrt(len(per_item)) if len(per_item) > 1 else math.nan
    return Agreement(statistics.fmean(per_item), stderr, len(per_item), n_pairs)


def chance_agreement(sizes: Mapping[Hashable, int], items: Iterable[Hashable]) -> float:
    """The agreement of labelers who pick at random: the mean of 1/K over `items` (nan without any)."""
    chances = [1.0 / sizes[item] for item in items]
    return statistics.fmean(chances) if chances else math.nan


@dataclass(frozen=True)
class LabelAgreement:
    """Labeler–labeler agreement of a label store, as the admin page and `label status` show it."""

    pairs: int  # label pairs compared
    comparisons: int  # comparisons with at least two non-skipped answers
    rate: float  # `labeler_agreement` over those comparisons (nan without any)
    stderr: float  # its standard error over comparisons (nan with fewer than two)
    chance: float  # mean 1/K over the same comparisons (nan without any)
    by_pair: dict[tuple[str, str], tuple[int, int]]  # (a, b) -> (agreeing, compared): one pair per shared comparison


def agreement_summary(rows: Iterable[Mapping]) -> LabelAgreement:
    """`labeler_agreement` among all labelers of the judgement rows, with chance and a count for each two people."""
    labels, sizes = labels_by_item(rows)
    repeated = {item: by for item, by in labels.items() if len(by) > 1}
    overall = labeler_agreement(repeated)
    by_pair: dict[tuple[str, str], list[int]] = {}
    for by_labeler in repeated.values():
        for a, b in combinations(sorted(by_labeler), 2):
            counts = by_pair.setdefault((a, b), [0, 0])
            counts[0] += by_labeler[a] == by_labeler[b]
            counts[1] += 1
    return LabelAgreement(
        pairs=overall.n_pairs,
        comparisons=overall.n_items,
        rate=overall.rate,
        stderr=overall.stderr,
        chance=chance_agreement(sizes, repeated),
        by_pair={pair: (agree, compared) for pair, (agree, compared) in by_pair.items()},
    )
