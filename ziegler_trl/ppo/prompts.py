"""What PPO samples from: the prompts, tokenized, and the TaskSpec that responses are sampled and cut by."""

from __future__ import annotations

import dataclasses

from datasets import Dataset
from transformers import PreTrainedTokenizerBase

from ..tasks import TaskSpec, format_query, get_task
from .config import ZieglerPPOConfig


def sampling_task(args: ZieglerPPOConfig) -> TaskSpec:
    """The TaskSpec responses are sampled and cut by: the task's, with the config's overrides; or a bare one
    (no truncate token: whole responses, cut at EOS only with `stop_at_eos`)."""
    names = ("response_length", "temperature", "stop_at_eos")
    overrides = {k: getattr(args, k) for k in names if getattr(args, k) is not None}
    if args.task:
        return dataclasses.replace(get_task(args.task), **overrides)
    if args.response_length is None or args.temperature is None:
        raise ValueError("Without `task`, set both `response_length` and `temperature` in ZieglerPPOConfig")
    return TaskSpec("prompt", 0, truncate_token="", truncate_after=0, **overrides)


def tokenize_prompts(dataset: Dataset, tokenizer: PreTrainedTokenizerBase, task: TaskSpec | None) -> Dataset:
    """Tokenize into `query_ids` (what π reads) and `reward_ids` (what the reward model reads before y): a TRL prompt
    dataset (`prompt`: text, or conversational messages to which the chat template is applied) as it is, or raw texts
    (`text`) formatted into queries by `task`; rows without a usable query are dropped."""
    columns = dataset.column_names
    if "prompt" in columns:
        def encode(row):
            prompt = row["prompt"]
            if isinstance(prompt, list):
                prompt = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
            ids = tokenizer.encode(prompt, add_special_tokens=False)
            return {"query_ids": ids, "reward_ids": ids}
    elif "text" in columns and task is not None:
        def encode(row):
            query = format_query(row["text"], task, tokenizer)
            return {"query_ids": query.ids if query else [], "reward_ids": query.reward_ids if query else []}
    else:
        raise ValueError(
            f"train_dataset needs a `prompt` column (TRL prompt dataset) or a `text` column with `task` set; "
            f"got columns {columns} and task={task.name if task else None}"
        )
    prepared = dataset.map(encode, remove_columns=columns).filter(lambda row: len(row["query_ids"]) > 0)
    if len(prepared) == 0:
        raise ValueError(
            f"No usable query in train_dataset ({len(dataset)} rows): all were empty or rejected by the task"
        )
    return prepared
