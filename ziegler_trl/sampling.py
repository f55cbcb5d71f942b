"""Sampling responses from a policy the way the paper does.

Fixed length: exactly `response_length` tokens are drawn with pure temperature sampling (top_k 0, top_p 1); EOS
does not stop generation (it is an ordinary token, as in the paper's code). Queries are left-padded for
`generate`. Responses are then truncated by the task (see `tasks.truncate_responses`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm
from transformers import GenerationConfig, PreTrainedModel, PreTrainedTokenizerBase

from .tasks import Query, TaskSpec, get_task, truncate_responses

# Every rank samples differently: seed + rank * RANK_SEED_STRIDE (the paper's code offsets seeds per MPI rank).
RANK_SEED_STRIDE = 100003


def pad_left(sequences: Sequence[Sequence[int]], pad_token_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask), left-padded to the longest sequence."""
    width = max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        if len(seq):
            input_ids[row, width - len(seq) :] = torch.as_tensor(list(seq), dtype=torch.long)
            attention_mask[row, width - len(seq) :] = 1
    return input_ids, attention_mask


def sampling_config(
    task: TaskSpec, pad_token_id: int, temperature: float | None = None, num_return_sequences: int = 1
) -> GenerationConfig:
    """Pure temperature sampling of exactly `response_length` tokens; with no EOS id generation never stops early."""
    return GenerationConfig(
        do_sample=True,
        temperature=task.temperature if temperature is None else temperature,
        top_k=0,
        top_p=1.0,
        max_new_tokens=task.response_length,
        eos_token_id=None,
        pad_token_id=pad_token_id,
        num_return_sequences=num_return_sequences,
    )


@torch.no_grad()
def generate_responses(
    model: PreTrainedModel,
    query_ids: Sequence[Sequence[int]],
    task: TaskSpec,
    pad_token_id: int,
    num_return_sequences: int = 1,
    temperature: float | None = None,
) -> torch.Tensor:
    """Raw (untruncated) response ids [len(query_ids) * num_return_sequences, response_length].

    Rows are grouped by query: rows i*K .. i*K+K-1 answer query i (one prompt encoding serves K samples).
    """
    device = next(model.parameters()).device
    input_ids, attention_mask = pad_left(query_ids, pad_token_id)
    with no_eos_stop(model):
        output = model.generate(
            input_ids=input_ids.to(device),
            attention_mask=attention_mask.to(device),
            generation_config=sampling_config(task, pad_token_id, temperature, num_return_sequences),
        )
    return output[:, input_ids.shape[1] :].cpu()


@contextmanager
def no_eos_stop(model: PreTrainedModel) -> Iterator[None]:
    """Hide the model's own EOS id while generating: `generate` fills an unset `eos_token_id` of the passed config
    from the model's generation config, and would then stop at EOS and pad the rest."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = base.generation_config
    saved = config.eos_token_id
    config.eos_token_id = None
    try:
        yield
    finally:
        config.eos_token_id = saved


@dataclass
class SampledBatch:
    """K responses per query: `responses[i*K + j]` is the j-th sample for query i (truncated, right-padded)."""

    queries: list[Query]
    responses: torch.Tensor
    valid: torch.Tensor
    k: int

    def texts(self, tokenizer: PreTrainedTokenizerBase) -> list[list[str]]:
        decoded = tokenizer.batch_decode(self.responses, skip_special_tokens=False)
        pad = tokenizer.pad_token
        decoded = [text.replace(pad, "") for text in decoded]
        return [decoded[i * self.k : (i + 1) * self.k] for i in range(len(self.queries))]


def sample_completions(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    queries: Sequence[Query],
    task: str | TaskSpec,
    k: int = 1,
    batch_size: int = 8,
    temperature: float | None = None,
    progress: bool = True,
) -> SampledBatch:
    """Sample K truncated responses per query at the task temperature, `batch_size` queries at a time."""
    task = get_task(task)
    chunks = []
    for start in tqdm(range(0, len(queries), batch_size), desc=f"sampling {k}x{len(queries)}", disable=not progress):
        batch = queries[start : start + batch_size]
        chunks.append(generate_responses(model, [q.ids for q in batch], task, tokenizer.pad_token_id, k, temperature))
    raw = torch.cat(chunks) if chunks else torch.zeros((0, task.response_length), dtype=torch.long)
    responses, valid = truncate_responses(raw, task, tokenizer)
    return SampledBatch(list(queries), responses, valid, k)
