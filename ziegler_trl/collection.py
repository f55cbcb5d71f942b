"""Comparison collection: sample K completions per query from a policy, have a labeler pick the best.

A comparison row is what the reward trainer reads, plus provenance:
`{"prompt": reward-model view of the query, "query": policy view (with the task's prefix/suffix),
  "completions": K strings, "valid": K bools, "best": int}`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from .labeling import Labeler, LabelStore
from .sampling import sample_completions
from .tasks import Query, TaskSpec, get_task


def sample_comparisons(
    policy: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    queries: Sequence[Query],
    task: str | TaskSpec,
    k: int = 4,
    batch_size: int = 8,
    require_valid: bool = False,
    max_resamples: int = 4,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """K samples per query at the task temperature, one prompt encoding for all K (`num_return_sequences`).

    `require_valid` is the paper's rejection sampling for human labeling: invalid completions (no truncate token
    in the window) are redrawn up to `max_resamples` times; any still invalid stay marked `valid: False`.
    """
    task = get_task(task)
    batch = sample_completions(policy, tokenizer, queries, task, k=k, batch_size=batch_size, progress=progress)
    texts, valid = batch.texts(tokenizer), batch.valid.view(len(queries), k).clone()
    for _ in range(max_resamples if require_valid else 0):
        redo = [i for i in range(len(queries)) if not valid[i].all()]
        if not redo:
            break
        again = sample_completions(policy, tokenizer, [queries[i] for i in redo], task, k=k, batch_size=batch_size,
                                   progress=False)
        again_texts, again_valid = again.texts(tokenizer), again.valid.view(len(redo), k)
        for row, i in enumerate(redo):
            for j in range(k):
                if not valid[i, j] and again_valid[row, j]:
                    texts[i][j], valid[i, j] = again_texts[row][j], True
    return [
        {
            "prompt": tokenizer.decode(q.reward_ids),
            "query": tokenizer.decode(q.ids),
            "completions": texts[i],
            "valid": valid[i].tolist(),
        }
        for i, q in enumerate(queries)
    ]


def label_comparisons(rows: list[dict[str, Any]], labeler: Labeler, batch_size: int = 64) -> list[dict[str, Any]]:
    """Add the labeler's `best` to each row (in place) and return the rows."""
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        for row, best in zip(chunk, labeler.label([r["prompt"] for r in chunk], [r["completions"] for r in chunk])):
            row["best"] = int(best)
    return rows


def collect_round(
    store: LabelStore,
    policy: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    queries: Sequence[Query],
    task: str | TaskSpec,
    labeler: Labeler,
    *,
    k: int = 4,
    round: int = 0,
    policy_name: str = "rho",
    batch_size: int = 8,
    wait: bool = True,
) -> list[int]:
    """One collection round into a `LabelStore`, resumable: sample → store → label.

    Comparisons are stored `batch_size` queries at a time, each batch in one transaction; a rerun finds the ones
    already stored (never re-sampled), samples only the rest, and asks the labeler only for answers it has not
    given. The labeler answers `labeler.batch_size` comparisons per call and the store commits each batch before
    the next call, so a kill at any point repeats at most one batch of labeler calls and leaves no half
    comparison. With a human labeler and `wait=False`, returns once the comparisons are stored and assigned;
    answers arrive through the web app.
    """
    task = get_task(task)
    ids = store.comparison_ids(round=round, task=task.name)
    with tqdm(total=len(queries), initial=len(ids), desc=f"round {round}: comparisons stored") as bar:
        for start in range(len(ids), len(queries), batch_size):
            rows = sample_comparisons(policy, tokenizer, queries[start : start + batch_size], task, k=k,
                                      batch_size=batch_size, progress=False)
            ids += store.add_comparisons(
                [r["prompt"] for r in rows], [r["completions"] for r in rows], task=task.name, round=round,
                policy=policy_name,
            )
            bar.update(len(rows))
    labeler.label_comparisons(store, ids, wait=wait)
    return ids
