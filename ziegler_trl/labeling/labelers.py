"""Labelers: whoever picks the best of K completions — a scorer standing in for people, or people themselves.

Every labeler has `.label(prompts, completions) -> list[int]` (the index of the best completion of each group)
and `.label_comparisons(store, ids) -> list[int | None]`, which answers comparisons already in a `LabelStore`
and records the answers there under `labeler.name`, `batch_size` comparisons per call and per commit: a killed
collection loop repeats at most one batch of labeler calls and never pays for a recorded label twice.
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from functools import lru_cache

import numpy as np
from tqdm.auto import tqdm

from .records import Answer, Comparison
from .store import LabelStore

ScoreFn = Callable[[Sequence[str], Sequence[str]], Sequence[float]]


@lru_cache(maxsize=1)
def _vader():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def sentiment_score(texts: Sequence[str]) -> list[float]:
    """VADER's compound sentiment of each text, in [-1, 1] (positive is higher)."""
    analyzer = _vader()
    return [analyzer.polarity_scores(text)["compound"] for text in texts]


def sentiment_reward(prompts: Sequence[str], completions: Sequence[str], **kwargs) -> list[float]:
    """r_s(x, y): the sentiment of the completion alone; a TRL-style reward function for PPO/GRPO/RLOO."""
    if len(prompts) != len(completions):
        raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
    return sentiment_score(completions)


def boltzmann_choice(scores: Sequence[float], temperature: float, rng: np.random.Generator) -> int:
    """Pick i with P(i) = exp(s_i / T) / sum_j exp(s_j / T); T = 0 is the argmax (first on ties)."""
    scores = np.asarray(scores, dtype=np.float64)
    if temperature == 0.0:
        return int(np.argmax(scores))
    logits = scores / temperature
    probs = np.exp(logits - logits.max())
    return int(rng.choice(len(scores), p=probs / probs.sum()))


def plackett_luce_ranking(scores: Sequence[float], temperature: float, rng: np.random.Generator) -> list[int]:
    """A full ranking, best first: sort by s_i / T + Gumbel noise (Plackett–Luce; its first place is distributed
    as `boltzmann_choice`); T = 0 sorts by score, ties in index order."""
    scores = np.asarray(scores, dtype=np.float64)
    if temperature == 0.0:
        return [int(i) for i in np.argsort(-scores, kind="stable")]
    keys = scores / temperature + rng.gumbel(size=len(scores))
    return [int(i) for i in np.argsort(-keys, kind="stable")]


class Labeler(ABC):
    """Anything that picks the best of K completions per prompt.

    A subclass implements `label`; `answer` (what to record, e.g. skips or rankings) and `label_comparisons`
    (how answers reach the store) have defaults built on it.
    """

    name: str
    batch_size: int = 32  # comparisons per labeler call and per store commit in `label_comparisons`

    @abstractmethod
    def label(self, prompts: Sequence[str], completions: Sequence[Sequence[str]]) -> list[int]:
        """Index of the best completion for each prompt."""

    def answer(self, comparisons: Sequence[Comparison]) -> list[Answer]:
        """This labeler's answers to stored comparisons, not recorded yet (one `label` call for all)."""
        best = self.label([c.prompt for c in comparisons], [c.completions for c in comparisons])
        return [Answer(c.id, self.name, int(b)) for c, b in zip(comparisons, best)]

    def label_comparisons(self, store: LabelStore, ids: Sequence[int], wait: bool = True) -> list[int | None]:
        """Answer the store's comparisons `ids` this labeler has not answered yet and return the best per id
        (None where skipped).

        The unanswered ones go `batch_size` at a time: each batch is asked for, then committed in one transaction
        before the next is asked, so a kill repeats at most one batch of (possibly paid-for) calls.
        """
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        done = {a.comparison_id: a.best for a in store.answers(ids, labeler=self.name)}
        todo = [i for i in dict.fromkeys(int(i) for i in ids) if i not in done]
        with tqdm(total=len(todo), desc=f"labeler {self.name}", disable=len(todo) <= self.batch_size) as bar:
            for start in range(0, len(todo), self.batch_size):
                answers = self.answer(store.get_comparisons(todo[start : start + self.batch_size]))
                store.add_answers(answers)
                done.update({a.comparison_id: a.best for a in answers})
                bar.update(len(answers))
        return [done[int(i)] for i in ids]


def _check_groups(prompts: Sequence[str], completions: Sequence[Sequence[str]]) -> None:
    if len(prompts) != len(completions):
        raise ValueError(f"{len(prompts)} prompts but {len(completions)} completion lists")
    for row, group in enumerate(completions):
        if isinstance(group, str) or len(group) < 2:
            raise ValueError(f"completions[{row}] must be a list of at least 2 strings")


class ScorerLabeler(Labeler):
    """Picks the completion a scalar scorer likes best; with temperature > 0, picks ∝ exp(score / T).

    `score_fn(prompts, completions)` takes flat, equally long lists of (prompt, completion) pairs and returns one
    float per pair. `ScorerLabeler.from_reward_model` wraps a reward model through `score_texts`.
    With `rankings=True`, answers recorded in a store also carry a full ranking. With `skip_ties=True`, a
    comparison whose top score is shared (VADER gives many neutral texts exactly 0.0) is recorded as skipped, as
    a person would skip it in the web app: the scorer has no preference there, and a pick by index order would
    only teach the reward model noise. `label` (no store, no skip) still answers every comparison. Answering a
    store's comparisons sends `batch_size` of them to `score_fn` per call, each batch committed before the next.
    """

    def __init__(
        self,
        score_fn: ScoreFn,
        temperature: float = 0.0,
        seed: int | None = None,
        name: str = "scorer",
        rankings: bool = False,
        skip_ties: bool = False,
        batch_size: int = Labeler.batch_size,
    ):
        if not temperature >= 0.0 or math.isinf(temperature):
            raise ValueError(f"temperature must be a finite number >= 0, got {temperature}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self.score_fn = score_fn
        self.temperature = float(temperature)
        self.rng = np.random.default_rng(seed)
        self.name = name
        self.rankings = rankings
        self.skip_ties = skip_ties

    @classmethod
    def from_reward_model(cls, model, tokenizer, batch_size: int = 16, **kwargs) -> ScorerLabeler:
        """A labeler that prefers what the reward model scores highest (the RM input convention of scoring.py)."""
        from ..reward.scoring import score_texts

        def score(prompts: Sequence[str], completions: Sequence[str]) -> list[float]:
            return score_texts(model, tokenizer, prompts, completions, batch_size).tolist()

        kwargs.setdefault("name", "reward-model")
        return cls(score, **kwargs)

    def scores(self, prompts: Sequence[str], completions: Sequence[Sequence[str]]) -> list[list[float]]:
        """The scorer's value of every completion, grouped like `completions` (one scorer call for all)."""
        _check_groups(prompts, completions)
        flat_prompts = [p for p, group in zip(prompts, completions) for _ in group]
        flat = [c for group in completions for c in group]
        values = [float(v) for v in self.score_fn(flat_prompts, flat)]
        if len(values) != len(flat):
            raise ValueError(f"score_fn returned {len(values)} scores for {len(flat)} completions")
        if not all(math.isfinite(v) for v in values):
            raise ValueError("score_fn returned a non-finite score")
        grouped, start = [], 0
        for group in completions:
            grouped.append(values[start : start + len(group)])
            start += len(group)
        return grouped

    def label(self, prompts: Sequence[str], completions: Sequence[Sequence[str]]) -> list[int]:
        return [boltzmann_choice(s, self.temperature, self.rng) for s in self.scores(prompts, completions)]

    def rank(self, prompts: Sequence[str], completions: Sequence[Sequence[str]]) -> list[list[int]]:
        """A full ranking per prompt, best first (Plackett–Luce at this temperature)."""
        return [plackett_luce_ranking(s, self.temperature, self.rng) for s in self.scores(prompts, completions)]

    def answer(self, comparisons: Sequence[Comparison]) -> list[Answer]:
        """Bests (or rankings; skips for tied top scores with `skip_ties`) from one scorer call."""
        scores = self.scores([c.prompt for c in comparisons], [c.completions for c in comparisons])
        answers = []
        for c, s in zip(comparisons, scores):
            if self.skip_ties and sorted(s)[-2] == max(s):
                answers.append(Answer(c.id, self.name, skipped=True))
            elif self.rankings:
                ranking = plackett_luce_ranking(s, self.temperature, self.rng)
                answers.append(Answer(c.id, self.name, ranking[0], ranking=ranking))
            else:
                answers.append(Answer(c.id, self.name, boltzmann_choice(s, self.temperature, self.rng)))
        return answers


class SentimentLabeler(ScorerLabeler):
    """The paper's mock labeler (§3.1.1): a sentiment model stands in for people and picks the most positive
    completion (VADER compound score of the completion); temperature > 0 simulates noisy people."""

    def __init__(self, temperature: float = 0.0, seed: int | None = None, name: str | None = None,
                 rankings: bool = False, skip_ties: bool = False, batch_size: int = Labeler.batch_size):
        default_name = "sentiment" if temperature == 0 else f"sentiment-T{temperature:g}"
        super().__init__(sentiment_reward, temperature, seed, name or default_name, rankings, skip_ties, batch_size)


class HumanLabeler(Labeler):
    """People answering in the web app (`ziegler-trl label serve`): comparisons are assigned in the store and
    their answers read back from it.

    `label_comparisons(store, ids, wait=False)` assigns and returns at once (None where nobody has answered), so
    a collection loop can stop and resume later; `wait=True` polls every `poll_interval` seconds until each
    comparison has an answer or `timeout` seconds pass (TimeoutError; answers so far stay in the store). A
    comparison every registered labeler skipped stays None.
    """

    def __init__(
        self,
        store: LabelStore,
        labelers: Sequence[str] | None = None,
        overlap: float = 0.0,
        repeats: int = 5,
        seed: int = 0,
        poll_interval: float = 5.0,
        timeout: float | None = None,
        task: str | None = None,
        name: str = "human",
    ):
        self.store = store
        self.labelers = None if labelers is None else list(labelers)
        self.overlap = overlap
        self.repeats = repeats
        self.seed = seed
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.task = task
        self.name = name

    def label(self, prompts: Sequence[str], completions: Sequence[Sequence[str]]) -> list[int]:
        """Store the comparisons, assign them, and block until people have answered every one."""
        _check_groups(prompts, completions)
        ids = self.store.add_comparisons(prompts, completions, task=self.task)
        best = self.label_comparisons(self.store, ids, wait=True)
        missing = [i for i, b in zip(ids, best) if b is None]
        if missing:
            raise RuntimeError(f"comparisons {missing[:10]} were skipped by every labeler; no best to return")
        return best

    def label_comparisons(self, store: LabelStore, ids: Sequence[int], wait: bool = True) -> list[int | None]:
        start = time.monotonic()
        while True:
            store.assign(ids, self.labelers, overlap=self.overlap, repeats=self.repeats, seed=self.seed)
            best = store.best_answers(ids)
            open_ids = self._open(store, ids, best)
            if not wait or not open_ids:
                return best
            if self.timeout is not None and time.monotonic() - start >= self.timeout:
                raise TimeoutError(
                    f"{len(open_ids)} of {len(ids)} comparisons still unanswered after {self.timeout:g} s "
                    f"(store {store.path}); the answers so far are saved — call again to keep waiting"
                )
            time.sleep(self.poll_interval)

    @staticmethod
    def _open(store: LabelStore, ids: Sequence[int], best: list[int | None]) -> list[int]:
        """Comparisons without a best that someone with a live link is still assigned to and has not answered."""
        unanswered = {int(i) for i, b in zip(ids, best) if b is None}
        if not unanswered:
            return []
        active = set(store.active_labelers())
        answered = {(a.comparison_id, a.labeler) for a in store.answers(list(unanswered))}
        return sorted({cid for cid, labeler in store.assignments(list(unanswered))
                       if labeler in active and (cid, labeler) not in answered})
