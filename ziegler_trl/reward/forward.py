"""The reward model's forward on best-of-K comparisons: tokenizing a comparison, batching B comparisons of K
completions, and scoring them (eq. 1's r(x, y_i) for every i), with the prompt encoded once for its K completions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase
from transformers.data.data_collator import DataCollatorMixin
from trl.data_utils import is_conversational

from ..sampling import pad_left
from .scoring import pad_right


def tokenize_comparison(example: dict[str, Any], tokenizer: PreTrainedTokenizerBase) -> dict[str, Any]:
    """Prompt and completion token ids as the reward model reads prompt ‖ completion (no EOS appended, as the
    paper's code). A conversational completion is the chat-templated conversation minus the templated prompt."""
    if is_conversational(example):
        prompt = tokenizer.apply_chat_template(
            example["prompt"], tokenize=True, add_generation_prompt=True, return_dict=True
        )["input_ids"]
        completions = []
        for completion in example["completions"]:
            full = tokenizer.apply_chat_template(example["prompt"] + completion, tokenize=True, return_dict=True)
            if full["input_ids"][: len(prompt)] != prompt:
                raise ValueError("the chat template renders the prompt differently with and without a completion")
            completions.append(full["input_ids"][len(prompt) :])
    else:
        prompt = tokenizer.encode(example["prompt"], add_special_tokens=False)
        completions = [tokenizer.encode(c, add_special_tokens=False) for c in example["completions"]]
    if not prompt and any(len(ids) == 0 for ids in completions):
        raise ValueError(
            f"an empty completion after an empty prompt: nothing to score (completions {example['completions']!r:.80})"
        )
    return {"prompt_ids": prompt, "completion_ids": completions}


@dataclass
class DataCollatorForBestOfK(DataCollatorMixin):
    """Batch B comparisons of K completions.

    With `share_prompt` (default): `prompt_ids`/`prompt_mask` [B, P] left-padded, and the completions alone as
    `input_ids`/`attention_mask` [B·K, C] right-padded — the prompt is encoded once for its K completions. Without:
    `input_ids` [B·K, P + C] holds prompt ‖ completion, right-padded. Row b·K + j is completion j of comparison b.
    Also `best` [B] and, when present, `ranking` [B, K].
    """

    pad_token_id: int
    share_prompt: bool = True
    return_tensors: str = "pt"

    def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        if self.share_prompt:
            prompt_ids, prompt_mask = pad_left([ex["prompt_ids"] for ex in examples], self.pad_token_id)
            sequences = [ids for ex in examples for ids in ex["completion_ids"]]
            batch = {"prompt_ids": prompt_ids, "prompt_mask": prompt_mask}
        else:
            sequences = [ex["prompt_ids"] + ids for ex in examples for ids in ex["completion_ids"]]
            batch = {}
        batch["input_ids"], batch["attention_mask"] = pad_right(sequences, self.pad_token_id)
        batch["best"] = torch.tensor([ex["best"] for ex in examples], dtype=torch.long)
        if "ranking" in examples[0]:
            batch["ranking"] = torch.tensor([ex["ranking"] for ex in examples], dtype=torch.long)
        return batch


def comparison_rewards(model: PreTrainedModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Rewards [B, K] of a collated batch.

    Shared prompt: one forward over the B prompts fills a KV cache, repeated K times, and a second forward
    scores the B·K completions on top of it, with position ids continuing each prompt. Gradients flow through
    the cache into the prompt's forward; the result equals scoring each prompt ‖ completion separately. An empty
    completion (a response that ended at once) scores as its prompt alone: the prompt's forward scored it.
    """
    n_prompts = batch["best"].shape[0]
    if "prompt_ids" not in batch:
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits
        return logits.squeeze(-1).view(n_prompts, -1)
    k = batch["input_ids"].shape[0] // n_prompts
    prompt_mask = batch["prompt_mask"]
    prompt = model(
        input_ids=batch["prompt_ids"],
        attention_mask=prompt_mask,
        position_ids=(prompt_mask.cumsum(1) - 1).clamp(min=0),
        use_cache=True,
    )
    cache = prompt.past_key_values
    cache.batch_repeat_interleave(k)
    completion_mask = batch["attention_mask"]
    prompt_lengths = prompt_mask.sum(1).repeat_interleave(k)
    logits = model(
        input_ids=batch["input_ids"],
        attention_mask=torch.cat([prompt_mask.repeat_interleave(k, dim=0), completion_mask], dim=1),
        position_ids=prompt_lengths[:, None] + completion_mask.cumsum(1) - 1,
        past_key_values=cache,
        use_cache=True,
    ).logits
    empty = completion_mask.sum(1) == 0
    if empty.any():
        logits = torch.where(empty[:, None], prompt.logits.repeat_interleave(k, dim=0), logits)
    return logits.squeeze(-1).view(n_prompts, k)
