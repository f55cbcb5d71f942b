"""How a reward model reads a (query, response) pair: the one convention every trainer and labeler shares.

The reward model sees the query's content tokens (`Query.reward_ids`, no task prefix/suffix — the paper's code)
followed by the truncated response with its pad tokens removed; no EOS is appended. Sequences are right-padded
with the tokenizer's pad token (distinct from EOS), so the classifier's score is read at the last real token.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from .model import score_head


def reward_sequence(query_ids: Sequence[int], response_ids: Sequence[int], pad_token_id: int) -> list[int]:
    """query ‖ response with the response's pad tokens dropped."""
    return list(query_ids) + [t for t in response_ids if t != pad_token_id]


def pad_right(sequences: Sequence[Sequence[int]], pad_token_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask), right-padded to the longest sequence."""
    width = max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        input_ids[row, : len(seq)] = torch.as_tensor(list(seq), dtype=torch.long)
        attention_mask[row, : len(seq)] = 1
    return input_ids, attention_mask


@torch.no_grad()
def score_sequences(
    model: PreTrainedModel, sequences: Sequence[Sequence[int]], pad_token_id: int, batch_size: int = 16
) -> torch.Tensor:
    """Scalar reward for each token sequence, in order, as a float32 CPU tensor [N]."""
    device = next(model.parameters()).device
    scores = []
    for start in range(0, len(sequences), batch_size):
        input_ids, attention_mask = pad_right(sequences[start : start + batch_size], pad_token_id)
        logits = model(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device)).logits
        scores.append(logits[:, 0].float().cpu())
    return torch.cat(scores) if scores else torch.zeros(0)


@torch.no_grad()
def score_prefixes(
    model: PreTrainedModel,
    query_ids: Sequence[Sequence[int]],
    responses: torch.Tensor,
    pad_token_id: int,
    batch_size: int = 16,
) -> torch.Tensor:
    """Reward of every prefix, float32 CPU [N, T+1] for responses [N, T]: column t scores the query followed by the
    first t tokens the reward model reads of the response (`reward_sequence`: pads dropped); past the response's
    end, its whole score. One forward per sequence: a causal reward model's head read at every position."""
    device = next(model.parameters()).device
    base = getattr(model, "module", model)  # a DeepSpeed engine wraps the model
    if hasattr(base, "get_base_model"):  # PEFT: its adapters stay active inside the base's modules
        base = base.get_base_model()
    head = score_head(base)
    sequences = [reward_sequence(q, r.tolist(), pad_token_id) for q, r in zip(query_ids, responses)]
    width = responses.shape[1] + 1
    rows = []
    for start in range(0, len(sequences), batch_size):
        chunk = sequences[start : start + batch_size]
        input_ids, attention_mask = pad_right(chunk, pad_token_id)
        hidden = base.base_model(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device))
        scores = head(hidden.last_hidden_state).squeeze(-1).float().cpu()
        for row, (query, sequence) in enumerate(zip(query_ids[start : start + batch_size], chunk)):
            positions = (len(query) - 1 + torch.arange(width)).clamp(max=len(sequence) - 1)
            rows.append(scores[row, positions])
    return torch.stack(rows) if rows else torch.zeros(0, width)


def score_texts(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    completions: Sequence[str],
    batch_size: int = 16,
) -> torch.Tensor:
    """Reward of each (prompt, completion) string pair: the same token layout as `reward_sequence`."""
    if len(prompts) != len(completions):
        raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
    sequences = [
        tokenizer.encode(p, add_special_tokens=False) + tokenizer.encode(c, add_special_tokens=False)
        for p, c in zip(prompts, completions)
    ]
    return score_sequences(model, sequences, tokenizer.pad_token_id, batch_size)
