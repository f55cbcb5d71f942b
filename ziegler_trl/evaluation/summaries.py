"""Sentences, the lead-3 baseline, and the summaries a table compares (lead-3, references, model samples).

Sentence splitting uses `pysbd` (rule-based "Golden Rules" segmenter, pure Python, no data files): NLTK's punkt
needs a model download that is not available offline, and an untrained `PunktSentenceTokenizer` splits after every
abbreviation ("Mr.", "U.S.", "p.m."), which would cut lead-3 short on news text. Newlines are hard boundaries first
(Reddit paragraphs, CNN/DM highlight lines), then pysbd splits each line.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pysbd
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..jsonl import jsonl_line
from ..models import load_policy, load_tokenizer
from ..sampling import sample_completions
from ..tasks import TaskSpec, format_query, get_task, load_task_texts
from .records import read_records


@lru_cache(maxsize=1)
def _segmenter() -> pysbd.Segmenter:
    return pysbd.Segmenter(language="en", clean=False)


def split_sentences(text: str) -> list[str]:
    """Sentences of `text`, stripped, in order; newlines always end a sentence."""
    return [s.strip() for line in text.splitlines() if line.strip() for s in _segmenter().segment(line) if s.strip()]


def lead3(article: str) -> str:
    """The lead-3 baseline: the article's first three sentences, one per line (for ROUGE-Lsum)."""
    return "\n".join(split_sentences(article)[:3])


@dataclass
class Summaries:
    """One table row: `summaries[i]` summarises document `indices[i]`; `valid[i]` is the task's truncation check
    (always True for lead-3 and references)."""

    name: str
    indices: list[int]
    summaries: list[str]
    valid: list[bool]

    def to_jsonl(self, path: str | Path) -> None:
        """Append this row's summaries to `path`, one {row, index, summary, valid} per line."""
        with Path(path).open("a", encoding="utf-8") as handle:
            handle.writelines(
                jsonl_line({"row": self.name, "index": index, "summary": summary, "valid": valid})
                for index, summary, valid in zip(self.indices, self.summaries, self.valid)
            )


def lead3_summaries(articles: list[str]) -> Summaries:
    return Summaries("lead-3", list(range(len(articles))), [lead3(a) for a in articles], [True] * len(articles))


def reference_summaries(references: list[str]) -> Summaries:
    return Summaries("reference", list(range(len(references))), list(references), [True] * len(references))


def model_summaries(
    name: str,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: list[str],
    task: str | TaskSpec,
    batch_size: int = 8,
) -> Summaries:
    """One sample per document with the paper's sampling (task temperature, fixed length, task truncation).

    The text is cut at the first EOS: with fixed-length sampling the model keeps writing after it has ended its
    answer, and what follows is not part of the summary. Documents the task rejects as queries are skipped.
    """
    task = get_task(task)
    formatted = [(i, format_query(text, task, tokenizer)) for i, text in enumerate(texts)]
    kept = [(i, q) for i, q in formatted if q is not None]
    if not kept:
        raise ValueError(f"row {name!r}: none of the {len(texts)} documents makes a valid {task.name} query")
    batch = sample_completions(model, tokenizer, [q for _, q in kept], task, k=1, batch_size=batch_size)
    summaries = []
    for row in batch.responses:
        ids = row.tolist()
        if tokenizer.eos_token_id in ids:
            ids = ids[: ids.index(tokenizer.eos_token_id)]
        summaries.append(tokenizer.decode(ids, skip_special_tokens=True).strip())
    return Summaries(name, [i for i, _ in kept], summaries, [bool(v) for v in batch.valid])


def load_saved_summaries(path: str | Path, name: str) -> Summaries:
    """The rows named `name` of a JSONL file written by `Summaries.to_jsonl` (fields row, index, summary, valid)."""
    fields = {"row": str, "index": int, "summary": str, "valid": bool}
    rows = [r for r in read_records(path, fields) if r["row"] == name]
    indices, summaries, valid = [r["index"] for r in rows], [r["summary"] for r in rows], [r["valid"] for r in rows]
    if not indices:
        raise ValueError(f"{path}: no summaries for row {name!r}")
    return Summaries(name, indices, summaries, valid)


def row_summaries(
    spec: str,
    texts: list[str],
    references: list[str],
    task: str | TaskSpec,
    model_limit: int | None = None,
    batch_size: int = 8,
    zero_shot_model: str = "embedded",
) -> Summaries:
    """The summaries of one table row given as `spec`:

    `lead-3`; `reference`; `zero-shot` (the pretrained `zero_shot_model` prompted in the task's format);
    `NAME=PATH` with PATH a model folder (or "embedded") to sample, or a JSONL file of saved summaries (its rows
    named NAME). Model rows sample the first `model_limit` documents.
    """
    if spec in ("lead-3", "lead3"):
        return lead3_summaries(texts)
    if spec == "reference":
        if not any(references):
            raise ValueError("row 'reference' needs a data source with reference summaries")
        return reference_summaries(references)
    if spec == "zero-shot":
        name, path = "zero-shot", zero_shot_model
    elif "=" in spec:
        name, path = spec.split("=", 1)
    else:
        raise ValueError(f"row {spec!r}: use lead-3, reference, zero-shot, or NAME=MODEL_FOLDER / NAME=SAMPLES.jsonl")
    if path.endswith(".jsonl"):
        saved = load_saved_summaries(path, name)
        if max(saved.indices) >= len(texts):
            raise ValueError(f"{path}: row {name!r} has document index {max(saved.indices)}, data has {len(texts)}")
        return saved
    tokenizer = load_tokenizer(path)
    model = load_policy(path)
    model.eval()
    return model_summaries(name, model, tokenizer, texts[:model_limit], task, batch_size)


def table_rows(args) -> tuple[list[str], list[str], list[Summaries]]:
    """The sources, the references and one `Summaries` per requested row, for the summarization and copying tables
    (`ziegler-trl eval` arguments: task, dataset_name, dataset_test_split, limit, rows, model_limit, batch_size,
    model_name_or_path (the zero-shot row's model), seed, save_samples)."""
    data = load_task_texts(args.task, args.dataset_name, split=args.dataset_test_split, limit=args.limit)
    texts, references = list(data["text"]), list(data["reference"])
    torch.manual_seed(args.seed)
    rows = [
        row_summaries(spec, texts, references, args.task, args.model_limit, args.batch_size, args.model_name_or_path)
        for spec in args.rows
    ]
    if args.save_samples:
        args.save_samples.write_text("")
        for row in rows:
            row.to_jsonl(args.save_samples)
    return texts, references, rows
