"""BestOfKRewardTrainer: TRL's RewardTrainer trained on best-of-K choices with the paper's softmax loss.

TRL's RewardTrainer learns from (chosen, rejected) pairs. The paper's labels are "the best of K": this trainer
keeps TRL's model set-up, PEFT, logging and checkpointing and changes only what the data and loss need:
`_prepare_dataset` (tokenize K completions per prompt), the collator (B·K sequences in one forward), and
`compute_loss` (softmax over the K scores, eq. 1; or InstructGPT's ranking loss). With a frozen trunk, the
trunk's output is computed once per completion (`FrozenTrunkCache`).
"""

from __future__ import annotations

import hashlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from datasets import Dataset
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase
from transformers.data.data_collator import DataCollatorMixin
from transformers.utils import logging
from trl import RewardConfig, RewardTrainer
from trl.data_utils import is_conversational

from ..adapters import check_merge_supported, is_peft_model, merged_copy
from ..blocks import blocks_from, frozen_bottom_count, transformer_layers
from ..checkpoints import AtomicCheckpoints
from ..models import ensure_pad_token, load_tokenizer
from ..non_finite import NonFiniteGuard
from ..ppo.tf_adam import tf_adam_for
from ..precision import cuda_bf16_available, warn_if_slow_bf16
from ..sampling import pad_left
from .labels import validate_label_rows
from .loss import best_of_k_loss, ranking_loss
from .model import load_reward_model
from .scoring import pad_right

logger = logging.get_logger(__name__)


@dataclass
class BestOfKRewardConfig(RewardConfig):
    """RewardConfig with the paper's reward-model defaults (one epoch, linear decay to 0, Adam eps 1e-5, no
    dropout) and the choice of loss. bf16 defaults to on only where the GPU supports it (never on CPU)."""

    loss_type: str = field(
        default="best_of_k",
        metadata={
            "help": "'best_of_k': softmax cross-entropy over the K completions (Ziegler et al. eq. 1). 'ranking': "
            "InstructGPT's mean −log σ(r_w − r_l) over all ordered pairs; needs a 'ranking' column.",
            "choices": ["best_of_k", "ranking"],
        },
    )
    num_train_epochs: float = field(default=1.0, metadata={"help": "The paper trains the reward model one epoch."})
    learning_rate: float = field(
        default=5e-5, metadata={"help": "Adam learning rate (lm-human-preferences: 5e-5 style, 2.5e-5 summarization)."}
    )
    adam_epsilon: float = field(default=1e-5, metadata={"help": "Adam epsilon (the paper's code uses 1e-5)."})
    tf_adam: bool = field(
        default=False,
        metadata={"help": "Use TensorFlow-style Adam (ε outside the bias correction), the optimizer the paper's code "
                  "trained its reward models with; PyTorch's Adam makes much larger early updates."},
    )
    lr_scheduler_type: str = field(default="linear", metadata={"help": "Linear decay to 0 over the run (the paper)."})
    per_device_train_batch_size: int = field(
        default=8, metadata={"help": "Comparisons (not sequences) per device per step; each holds K completions."}
    )
    per_device_eval_batch_size: int = field(default=8, metadata={"help": "Comparisons per device per eval step."})
    bf16: bool | None = field(
        default=None,
        metadata={"help": "bf16 mixed precision. None: on when a CUDA GPU supports bf16, off otherwise (CPU bf16 "
                  "is 7-30x slower)."},
    )
    max_length: int | None = field(
        default=1024, metadata={"help": "Comparisons with a prompt+completion longer than this are dropped."}
    )
    gradient_checkpointing: bool | None = field(
        default=None,
        metadata={"help": "Deprecated alias of transformers' `activation_checkpointing` (off by default here, where "
                  "TRL's RewardConfig turns it on: recomputing activations is 1.3-2x slower on CPU; turn it on when "
                  "memory demands)."},
    )
    save_merged_model: bool = field(
        default=True,
        metadata={"help": "With LoRA: `save_model` writes the reward model with its adapters merged (a plain "
                  "classifier folder, normalisation included, that `load_reward_model` and PPO read). False: the "
                  "adapters only. Checkpoints always keep the adapters."},
    )
    share_prompt_forward: bool = field(
        default=True,
        metadata={"help": "Encode each prompt once and score its K completions on the prompt's KV cache (decoder "
                  "models). Same rewards, K-fold less prompt compute. Off: K full prompt ‖ completion forwards."},
    )
    cache_frozen_trunk: bool = field(
        default=True,
        metadata={"help": "When the embeddings and the bottom blocks are frozen (`freeze_bottom_layers` / "
                  "`trainable_top_layers`), what they compute for each completion is kept from its first forward "
                  "and later steps run only the trainable part on it: same rewards, loss and gradients, one "
                  "trunk forward per distinct completion instead of one per epoch. Head only: the last block's "
                  "state at the scoring token (completions × hidden × dtype bytes: 800 × 576 × 4 B ≈ 1.8 MB for "
                  "SmolLM2-135M); with trainable top blocks: every token's state entering them, in CPU memory "
                  "(× tokens: 800 completions of 56 tokens ≈ 100 MB). Checked once against the full forward (a "
                  "warning and full forwards where an architecture differs, e.g. GPT-2). Off with dropout, "
                  "DeepSpeed or FSDP; fine with gradient checkpointing."},
    )

    def __post_init__(self):
        if self.bf16 is None:
            self.bf16 = cuda_bf16_available() and not self.fp16
        warn_if_slow_bf16(self.bf16)
        if self.loss_type not in ("best_of_k", "ranking"):
            raise ValueError(f"loss_type must be 'best_of_k' or 'ranking', got {self.loss_type!r}")
        super().__post_init__()  # resolves activation_checkpointing and its old name into both
        if self.gradient_checkpointing and self.share_prompt_forward:
            raise ValueError(
                "share_prompt_forward needs the prompt's KV cache, which activation (gradient) checkpointing "
                "disables: set share_prompt_forward=False to use activation_checkpointing=True"
            )


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


def _has_dropout(module: nn.Module) -> bool:
    rate = getattr(module, "attention_dropout", 0.0)  # Llama-likes' attention dropout is a float, not an nn.Dropout
    return (isinstance(module, nn.Dropout) and module.p > 0) or (isinstance(rate, float) and rate > 0)


def _content_key(ids: list[int]) -> bytes:
    """A 128-bit digest of a token sequence: a fixed-size key however long the sequence (tuples of ids would hold
    every token of a large label set in memory)."""
    return hashlib.blake2b(np.asarray(ids, dtype=np.int64).tobytes(), digest_size=16).digest()


@contextmanager
def _quiet_pooling_warning(model: nn.Module):
    """HF's sequence classifiers warn that they cannot find pads in `inputs_embeds`; the cache passes one real
    position per row, so there are none."""
    log = logging.get_logger(type(model).forward.__module__)
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


class FrozenTrunkCache:
    """The part of each completion's forward that training cannot change, computed once.

    The blocks below the first trainable one never change (`applies`: at least one frozen block), so the trunk runs
    once per distinct prompt ‖ completion (a digest of its token ids is the key: content-based, so shuffling,
    sharding and eval batches need no index) and later steps run only what trains, through the model's own top,
    with the same rewards and gradients as the full forward:

    * head only (every block frozen): the last block's output at the token the head scores; the final norm and
      head run on it. Holds completions × hidden size × dtype bytes.
    * top blocks trainable (`trainable_top_layers`): every token's hidden state entering the first trainable
      block; the top blocks, norm and head run on them. Holds completions × tokens × hidden size × dtype bytes, in
      CPU memory.
    """

    def __init__(self, model: nn.Module):
        self.model = model  # unwrapped from DDP: `blocks_from` edits its block stack
        blocks = transformer_layers(model)
        self.start = frozen_bottom_count(model)  # the first block that trains (len(blocks): none does)
        self.head_only = self.start == len(blocks)
        self.capture_at = blocks[-1] if self.head_only else blocks[self.start]
        self.pad_token_id = model.config.pad_token_id
        self.hidden: dict[bytes, torch.Tensor] = {}
        self.checked = False

    @staticmethod
    def applies(model: nn.Module) -> bool:
        """Something below the trainable part is frozen — the embeddings and at least one block — and no dropout
        makes its output random (our loaders and `disable_dropout` turn it all off)."""
        try:
            transformer_layers(model)
        except ValueError:  # e.g. an encoder: no recognised block stack
            return False
        return frozen_bottom_count(model) > 0 and not any(_has_dropout(m) for m in model.modules())

    @staticmethod
    def _keys(batch: dict[str, torch.Tensor]) -> list[bytes]:
        """prompt ‖ completion ids of each row, pads removed: all the trunk reads for that completion."""
        def unpad(ids: torch.Tensor, mask: torch.Tensor) -> list[list[int]]:
            return [[t for t, m in zip(row, row_mask) if m] for row, row_mask in zip(ids.tolist(), mask.tolist())]

        rows = unpad(batch["input_ids"], batch["attention_mask"])
        if "prompt_ids" not in batch:
            return [_content_key(row) for row in rows]
        prompts = unpad(batch["prompt_ids"], batch["prompt_mask"])
        k = len(rows) // len(prompts)
        return [_content_key(prompts[i // k] + row) for i, row in enumerate(rows)]

    @torch.no_grad()
    def _fill(self, model: nn.Module, batch: dict[str, torch.Tensor], keys: list[bytes]) -> torch.Tensor:
        """Run the batch's full forward, keep what the cache holds of each row; return its rewards [B, K]. (The
        last block's output is pre-norm; `output_hidden_states`' last entry is post-norm in transformers 5.)"""
        seen = []
        if self.head_only:
            hook = self.capture_at.register_forward_hook(lambda _m, _i, out: seen.append(out))
        else:
            hook = self.capture_at.register_forward_pre_hook(
                lambda _m, args, kwargs: seen.append(args[0] if args else kwargs["hidden_states"]), with_kwargs=True
            )
        try:
            rewards = comparison_rewards(model, batch)
        finally:
            hook.remove()
        seen = [out[0] if isinstance(out, tuple) else out for out in seen]
        ids, mask = batch["input_ids"], batch["attention_mask"].bool()
        if self.head_only:  # the token the model's own pooling scores: the rightmost non-pad one
            scored = (torch.arange(ids.shape[1], device=ids.device) * (ids != self.pad_token_id)).argmax(-1)
            rows = torch.arange(len(ids), device=ids.device)
            last = seen[-1][rows, scored]  # the shared layout's 2nd call: completions
            if "prompt_ids" in batch:  # an empty completion is scored at its (left-padded) prompt's last token
                empty = ~mask.any(dim=1)
                last = torch.where(empty[:, None], seen[0][:, -1].repeat_interleave(len(ids) // len(seen[0]), 0), last)
            self.hidden.update(zip(keys, last))
        elif "prompt_ids" in batch:  # two calls: prompts [B, P], then completions [B·K, C] on their KV cache
            prompts, completions = seen
            prompt_mask, k = batch["prompt_mask"].bool(), len(ids) // len(prompts)
            for i, key in enumerate(keys):
                state = torch.cat([prompts[i // k][prompt_mask[i // k]], completions[i][mask[i]]])
                self.hidden[key] = state.cpu()
        else:
            self.hidden.update((key, seen[0][i][mask[i]].cpu()) for i, key in enumerate(keys))
        return rewards

    def _top_rewards(self, model: nn.Module, keys: list[bytes]) -> torch.Tensor:
        """Scores [N] from the cached states: only the part of the model that trains runs."""
        device = self.model.device
        if self.head_only:  # no block runs: one position per row goes to the final norm and head
            hidden = torch.stack([self.hidden[key] for key in keys])[:, None, :]
            mask = torch.ones(len(keys), 1, dtype=torch.long, device=device)
            extra = {}
        else:  # left-padded, so the last position (where pooling reads `inputs_embeds`) is each row's last token
            states = [self.hidden[key] for key in keys]
            width = max(len(state) for state in states)
            hidden = states[0].new_zeros(len(states), width, states[0].shape[-1], device=device)
            mask = torch.zeros(len(states), width, dtype=torch.long, device=device)
            for row, state in enumerate(states):
                hidden[row, width - len(state) :] = state.to(device)
                mask[row, width - len(state) :] = 1
            extra = {"position_ids": (mask.cumsum(1) - 1).clamp(min=0)}  # as in the full forward: 0 at the prompt
        with blocks_from(self.model, self.start), _quiet_pooling_warning(self.model):
            logits = model(inputs_embeds=hidden, attention_mask=mask, use_cache=False, **extra).logits
        return logits.squeeze(-1)

    def rewards(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """Rewards [B, K] from the cached states, filling in the batch's new completions first; `model` is the
        (possibly wrapped) model to call. The first fill is checked against the full forward: None (after a
        warning) where they differ."""
        keys = self._keys(batch)
        full = self._fill(model, batch, keys) if any(key not in self.hidden for key in keys) else None
        rewards = self._top_rewards(model, keys).view(len(batch["best"]), -1)
        if full is not None and not self.checked:
            self.checked = True
            error = (rewards.detach() - full).abs().max().item()
            if error > 1e-4 * max(1.0, full.abs().max().item()):
                what = "last-block states" if self.head_only else f"states entering block {self.start}"
                logger.warning(
                    f"cache_frozen_trunk: {type(self.model).__name__} scored from its cached {what} differs "
                    f"from its full forward (max |Δ| = {error:.3g}); training runs full forwards instead"
                )
                return None
        return rewards


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


class BestOfKRewardTrainer(AtomicCheckpoints, NonFiniteGuard, RewardTrainer):
    """Reward model trainer for best-of-K labels. `model` may be a path, a Hub id, `"embedded"` or an instance of
    `AutoModelForSequenceClassification` with `num_labels=1`; a path gets the paper's head init
    N(0, 1/sqrt(d+1)) and dropout off. Checkpoints appear only when complete (`AtomicCheckpoints`); a NaN/inf
    gradient or weight stops training with `NonFiniteError` (`NonFiniteGuard`)."""

    _tag_names = ["trl", "reward-trainer", "ziegler-trl", "best-of-k"]

    def __init__(
        self,
        model: str | PreTrainedModel,
        args: BestOfKRewardConfig | None = None,
        train_dataset: Dataset | None = None,
        eval_dataset: Dataset | dict[str, Dataset] | None = None,
        processing_class: PreTrainedTokenizerBase | None = None,
        data_collator: DataCollatorForBestOfK | None = None,
        **kwargs,
    ):
        args = args or BestOfKRewardConfig(output_dir="reward-model")
        if isinstance(model, str):
            processing_class = processing_class or load_tokenizer(model, padding_side="right")
            model = load_reward_model(model, processing_class, **(args.model_init_kwargs or {}))
            args.model_init_kwargs = None
        elif processing_class is None:
            processing_class = load_tokenizer(model.config._name_or_path, padding_side="right")
        ensure_pad_token(processing_class)
        data_collator = data_collator or DataCollatorForBestOfK(
            pad_token_id=processing_class.pad_token_id, share_prompt=args.share_prompt_forward
        )
        super().__init__(
            model=model,
            args=args,
            data_collator=data_collator,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            **kwargs,
        )
        unwrapped = self.accelerator.unwrap_model(self.model)
        sharded = self.is_deepspeed_enabled or self.is_fsdp_enabled  # the cache's model edit needs whole weights
        use_cache = args.cache_frozen_trunk and not sharded and FrozenTrunkCache.applies(unwrapped)
        self._trunk_cache = FrozenTrunkCache(unwrapped) if use_cache else None

    def create_optimizer(self, model=None):
        if not self.args.tf_adam or self.optimizer is not None:
            return super().create_optimizer(model)
        self.optimizer = tf_adam_for(model or self.model, self.args)
        return self.optimizer

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        model = self.accelerator.unwrap_model(self.model)
        if _internal_call or not (self.args.save_merged_model and is_peft_model(model)):
            return super().save_model(output_dir, _internal_call)
        check_merge_supported(self)
        output_dir = output_dir or self.args.output_dir
        if self.args.should_save:
            merged_copy(model).save_pretrained(output_dir)
            self.processing_class.save_pretrained(output_dir)

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        if "prompt_ids" in dataset.column_names and "completion_ids" in dataset.column_names:  # tokenized
            return dataset
        validate_label_rows(dataset, f"{dataset_name} dataset")
        if args.loss_type == "ranking" and "ranking" not in dataset.column_names:
            raise ValueError(f"loss_type='ranking' needs a 'ranking' column; the {dataset_name} dataset has none")
        dataset = dataset.map(
            tokenize_comparison,
            fn_kwargs={"tokenizer": processing_class},
            remove_columns=[c for c in ("prompt", "completions") if c in dataset.column_names],
            num_proc=args.dataset_num_proc,
            desc=f"Tokenizing {dataset_name} comparisons",
        )
        if args.max_length is not None:
            before = len(dataset)
            dataset = dataset.filter(
                lambda ex: len(ex["prompt_ids"]) + max(len(ids) for ids in ex["completion_ids"]) <= args.max_length,
                num_proc=args.dataset_num_proc,
            )
            if len(dataset) < before:
                logger.warning(
                    f"Dropped {before - len(dataset)} of {before} {dataset_name} comparisons longer than "
                    f"max_length={args.max_length} tokens"
                )
        return dataset

    def _set_signature_columns_if_needed(self):
        if self._signature_columns is None:
            self._signature_columns = ["prompt_ids", "completion_ids", "best", "ranking"]

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        mode = "train" if self.model.training else "eval"
        best = inputs["best"]
        rewards = self._trunk_cache.rewards(model, inputs) if self._trunk_cache is not None else None  # [B, K]
        if rewards is None:  # no cache, or it just failed its exactness check
            self._trunk_cache = None
            rewards = comparison_rewards(model, inputs)

        if self.args.loss_type == "ranking":
            loss = ranking_loss(rewards, inputs["ranking"])
        else:
            loss = best_of_k_loss(rewards, best)
        if self.args.center_rewards_coefficient is not None:
            loss = loss + self.args.center_rewards_coefficient * rewards.pow(2).mean()

        with torch.no_grad():
            accuracy = (rewards.argmax(dim=1) == best).float()
            gathered_rewards = self.accelerator.gather_for_metrics(rewards.detach().float())
            # one entry per comparison, so the logged mean is exact however the batches split
            self._metrics[mode]["accuracy"].extend(self.accelerator.gather_for_metrics(accuracy).tolist())
            self._metrics[mode]["mean_reward"].append(gathered_rewards.mean().item())
            self._metrics[mode]["std_reward"].append(gathered_rewards.std(unbiased=False).item())
            if mode == "train":
                n_tokens = inputs["attention_mask"].sum() + inputs.get("prompt_mask", torch.zeros(1)).sum()
                tokens = self.accelerator.gather_for_metrics(n_tokens).sum().item()
                self._total_train_tokens += tokens
            self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
        return (loss, {"rewards": rewards}) if return_outputs else loss
