"""Preference evaluation between two policies, the paper's human-evaluation protocols (Tables 1 and 5).

2-way: each query gets one sample from each policy, shown in random order; each labeler picks the better one.
4-way: two samples from each policy, shuffled; each labeler picks the best of four, a vote for its policy.
The majority over labelers decides each query (a tied vote counts half); the win rate of policy A is the mean
over queries, with a Wilson 95% interval.

Labels come from any labeler object with `.label(prompts: list[str], completions: list[list[str]]) -> list[int]`
(simulated now), or from already-labeled records such as a label store's export, one record per judgment:

    {"prompt": str, "completions": list[str], "best": int, "labeler": str,
     "model_of_each_completion": list[str]}   # model_of_each_completion[i] produced completions[i]

Records of one item (same prompt and completions) from several labelers are that item's votes.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..sampling import sample_completions
from ..tasks import Query, TaskSpec, format_query, get_task
from .records import read_records

PROTOCOLS = {"2way": 1, "4way": 2}  # samples per policy per query
RECORD_FIELDS = {"prompt": str, "completions": list, "best": int, "labeler": str, "model_of_each_completion": list}


class Labeler(Protocol):
    def label(self, prompts: list[str], completions: list[list[str]]) -> list[int]: ...


@dataclass
class PreferenceResult:
    """How often `model_a` beat `model_b`; `records` are the judgments that counted (label-store rows)."""

    model_a: str
    model_b: str
    protocol: str
    n: int
    win_rate: float
    ci_low: float
    ci_high: float
    records: list[dict] = field(default_factory=list, repr=False)


def wilson_interval(p: float, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval: (p + z²/2n ± z·sqrt(p(1−p)/n + z²/4n²)) / (1 + z²/n)."""
    center = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, center - half), min(1.0, center + half)


def win_rate_from_records(records: str | Path | Iterable[Mapping], model_a: str, model_b: str) -> PreferenceResult:
    """Win rate of `model_a` over `model_b` from labeled records (a JSONL path or an iterable of dicts).

    Only items whose completions all come from the two models, with both present, count; other pairs in the
    same store are ignored. The protocol is read off the items: 2 completions are 2-way, 4 are 4-way.
    """
    rows = read_records(records, RECORD_FIELDS)
    votes: dict[tuple, list[str]] = {}
    used = []
    for row_no, row in enumerate(rows, start=1):
        completions, models, best = row["completions"], row["model_of_each_completion"], row["best"]
        if len(models) != len(completions):
            raise ValueError(
                f"record {row_no}: {len(completions)} completions but {len(models)} entries in model_of_each_completion"
            )
        if not 0 <= best < len(completions):
            raise ValueError(f"record {row_no}: best={best} is not an index into {len(completions)} completions")
        if set(models) != {model_a, model_b}:
            continue
        votes.setdefault((row["prompt"], tuple(completions)), []).append(models[best])
        used.append(row)
    if not votes:
        raise ValueError(f"no labeled item compares exactly {model_a!r} with {model_b!r}")
    scores = []
    for item_votes in votes.values():
        a, b = item_votes.count(model_a), item_votes.count(model_b)
        scores.append(1.0 if a > b else 0.5 if a == b else 0.0)
    sizes = {len(key[1]) for key in votes}
    protocol = {2: "2way", 4: "4way"}.get(sizes.pop(), "other") if len(sizes) == 1 else "mixed"
    p = sum(scores) / len(scores)
    low, high = wilson_interval(p, len(scores))
    return PreferenceResult(model_a, model_b, protocol, len(scores), p, low, high, used)


def _completions(
    policy: PreTrainedModel | Sequence[Sequence[str]],
    name: str,
    indices: list[int],
    queries: Sequence[Query] | None,
    per_query: int,
    tokenizer: PreTrainedTokenizerBase | None,
    task: TaskSpec | None,
    batch_size: int,
) -> list[list[str]]:
    if isinstance(policy, PreTrainedModel):
        batch = sample_completions(policy, tokenizer, queries, task, k=per_query, batch_size=batch_size)
        return batch.texts(tokenizer)
    if len(policy) <= indices[-1]:
        raise ValueError(f"policy {name!r} has completions for {len(policy)} queries; query {indices[-1]} needs one")
    chosen = []
    for i in indices:
        samples = list(policy[i])
        if len(samples) < per_query:
            raise ValueError(
                f"policy {name!r}: query {i} has {len(samples)} completions; the protocol needs {per_query}"
            )
        chosen.append(samples[:per_query])
    return chosen


@dataclass
class PreferenceItems:
    """What labelers are shown: `completions[i]` (shuffled) for `prompts[i]`, `models[i][j]` made completion j."""

    prompts: list[str]
    completions: list[list[str]]
    models: list[list[str]]


def preference_items(
    policy_a: PreTrainedModel | Sequence[Sequence[str]],
    policy_b: PreTrainedModel | Sequence[Sequence[str]],
    queries: Sequence[str],
    protocol: str = "2way",
    *,
    tokenizer: PreTrainedTokenizerBase | None = None,
    task: str | TaskSpec | None = None,
    names: tuple[str, str] = ("a", "b"),
    batch_size: int = 8,
    seed: int = 0,
) -> PreferenceItems:
    """The items of a 2-way or 4-way comparison of two policies, each in a random order.

    A policy is a model (sampled with `sample_completions` at the task temperature; needs `tokenizer` and
    `task`) or precomputed completions, `policy[i]` being a list of samples for `queries[i]`. With a model,
    prompts are the query texts as the task cuts them (without prefix/suffix), and rejected queries are skipped.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {sorted(PROTOCOLS)}, got {protocol!r}")
    if names[0] == names[1]:
        raise ValueError(f"the two policies need different names, got {names}")
    per_query = PROTOCOLS[protocol]
    if any(isinstance(p, PreTrainedModel) for p in (policy_a, policy_b)):
        if tokenizer is None or task is None:
            raise ValueError("sampling from a model needs tokenizer= and task=")
        task = get_task(task)
        formatted = [(i, format_query(text, task, tokenizer)) for i, text in enumerate(queries)]
        kept = [(i, q) for i, q in formatted if q is not None]
        indices, formatted_queries = [i for i, _ in kept], [q for _, q in kept]
        prompts = [tokenizer.decode(q.reward_ids) for q in formatted_queries]
    else:
        indices, formatted_queries, prompts = list(range(len(queries))), None, list(queries)
    if not indices:
        raise ValueError("no query left to evaluate")
    samples_a = _completions(policy_a, names[0], indices, formatted_queries, per_query, tokenizer, task, batch_size)
    samples_b = _completions(policy_b, names[1], indices, formatted_queries, per_query, tokenizer, task, batch_size)

    rng = random.Random(seed)
    items = PreferenceItems(prompts, [], [])
    for a, b in zip(samples_a, samples_b):
        pairs = [(text, names[0]) for text in a] + [(text, names[1]) for text in b]
        rng.shuffle(pairs)
        items.completions.append([text for text, _ in pairs])
        items.models.append([model for _, model in pairs])
    return items


def preference_win_rate(
    policy_a: PreTrainedModel | Sequence[Sequence[str]],
    policy_b: PreTrainedModel | Sequence[Sequence[str]],
    queries: Sequence[str],
    labeler: Labeler | Sequence[Labeler],
    protocol: str = "2way",
    n_labelers: int = 3,
    *,
    tokenizer: PreTrainedTokenizerBase | None = None,
    task: str | TaskSpec | None = None,
    names: tuple[str, str] = ("a", "b"),
    batch_size: int = 8,
    seed: int = 0,
) -> PreferenceResult:
    """Win rate of policy A over policy B under the paper's 2-way or 4-way protocol (see `preference_items`).

    `labeler` is one labeler asked `n_labelers` times (independent draws of a noisy labeler) or a list of
    labelers; the majority of their votes decides each item.
    """
    labelers = list(labeler) if isinstance(labeler, Sequence) else [labeler] * n_labelers
    if not labelers:
        raise ValueError("need at least one labeler")
    items = preference_items(
        policy_a,
        policy_b,
        queries,
        protocol,
        tokenizer=tokenizer,
        task=task,
        names=names,
        batch_size=batch_size,
        seed=seed,
    )
    records = []
    for j, judge in enumerate(labelers):
        bests = judge.label(items.prompts, items.completions)
        if len(bests) != len(items.prompts):
            raise ValueError(f"labeler {j} returned {len(bests)} labels for {len(items.prompts)} items")
        judge_name = f"{type(judge).__name__}#{j}"
        for prompt, completions, models, best in zip(items.prompts, items.completions, items.models, bests):
            records.append(
                {
                    "prompt": prompt,
                    "completions": completions,
                    "best": int(best),
                    "labeler": judge_name,
                    "model_of_each_completion": models,
                }
            )
    return win_rate_from_records(records, *names)
