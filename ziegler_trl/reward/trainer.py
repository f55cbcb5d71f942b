"""BestOfKRewardTrainer: TRL's RewardTrainer trained on best-of-K choices with the paper's softmax loss.

TRL's RewardTrainer learns from (chosen, rejected) pairs. The paper's labels are "the best of K": this trainer
keeps TRL's model set-up, PEFT, logging and checkpointing and changes only what the data and loss need:
`_prepare_dataset` (tokenize K completions per prompt), the collator (B·K sequences in one forward, `forward.py`),
and `compute_loss` (softmax over the K scores, eq. 1; or InstructGPT's ranking loss). With a frozen trunk, the
rewards come from a `FrozenTrunkCache` (`trunk_cache.py`): the same numbers, the trunk run once per completion.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from datasets import Dataset
from transformers import PreTrainedModel, PreTrainedTokenizerBase, set_seed
from transformers.utils import logging
from trl import RewardConfig, RewardTrainer

from ..adapters import check_merge_supported, is_peft_model, merged_copy
from ..checkpoints import AtomicCheckpoints
from ..models import ensure_pad_token, load_tokenizer
from ..non_finite import NonFiniteGuard
from ..ppo.tf_adam import tf_adam_for
from ..precision import cuda_bf16_available, warn_if_slow_bf16
from .forward import DataCollatorForBestOfK, comparison_rewards, tokenize_comparison
from .labels import validate_label_rows
from .loss import best_of_k_loss, ranking_loss
from .model import load_reward_model
from .trunk_cache import FrozenTrunkCache

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


class BestOfKRewardTrainer(AtomicCheckpoints, NonFiniteGuard, RewardTrainer):
    """Reward model trainer for best-of-K labels. `model` may be a path, a Hub id, `"embedded"` or an instance of
    `AutoModelForSequenceClassification` with `num_labels=1`; a path gets the paper's head init
    N(0, 1/sqrt(d+1)) and dropout off. Checkpoints appear only when complete (`AtomicCheckpoints`); a NaN/inf
    gradient or weight stops training with `NonFiniteError` (`NonFiniteGuard`). `trunk_cache` is the
    `FrozenTrunkCache` the rewards come from (`cache_frozen_trunk`), or None: full forwards."""

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
            set_seed(args.seed)  # the fresh head's draw depends on args.seed alone, as with the Trainer's model_init
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
        self.trunk_cache = FrozenTrunkCache(unwrapped) if use_cache else None

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
        score = comparison_rewards if self.trunk_cache is None else self.trunk_cache.rewards
        rewards = score(model, inputs)  # [B, K]: r(x, y_k) for each comparison's K completions
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
