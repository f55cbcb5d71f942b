"""ZieglerPPOTrainer: the PPO of Ziegler et al. (2019) on TRL's trainer base.

Like TRL's online trainers, the Trainer loop is left in charge of optimizer steps, gradient accumulation,
checkpointing, logging and the accelerate/DeepSpeed plumbing. The dataloader hands `_prepare_inputs` one rollout
batch of prompts, repeated once per micro-step of the update; the first time it is seen we sample responses, score
them, build the per-token rewards and cut the batch into `num_ppo_epochs` freshly shuffled passes of
minibatches; every micro-step then trains on its slice of that buffer.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import math
import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import ClassVar

import torch
from datasets import Dataset
from torch.optim.lr_scheduler import LambdaLR
from transformers import (
    PreTrainedModel,
    PreTrainedTokenizerBase,
    TrainerCallback,
    set_seed,
)
from transformers.integrations.deepspeed import is_deepspeed_zero3_enabled
from transformers.utils import is_rich_available
from trl.models import prepare_deepspeed, prepare_fsdp, unwrap_model_for_generation
from trl.trainer.base_trainer import _BaseTrainer
from trl.trainer.utils import identity, print_prompt_completions_sample

from ..adapters import check_merge_supported
from ..blocks import blocks_from, frozen_bottom_count, shares_bottom_blocks
from ..checkpoints import AtomicCheckpoints
from ..errors import UserInputError
from ..models import disable_dropout, load_policy, load_tokenizer, sampling_dtype
from ..non_finite import NonFiniteError, NonFiniteGuard
from ..reward.forward import tokenize_comparison
from ..reward.held_out import load_held_out_labels
from ..reward.labels import validate_label_rows
from ..reward.model import load_reward_model, score_head
from ..reward.scoring import reward_sequence, score_prefixes, score_sequences
from ..sampling import RANK_SEED_STRIDE, generate_responses, pad_left
from ..tasks import TaskSpec, format_query, get_task, truncate_responses
from .config import ZieglerPPOConfig
from .core import (
    entropy,
    explained_variance,
    gae,
    logprobs_from_logits,
    per_token_rewards,
    policy_loss,
    position_ids_from_mask,
    value_loss,
    whiten,
)
from .kl_control import (
    AdaptiveKLController,
    FixedKLController,
    KLController,
    load_controller,
    save_controller,
)
from .lr_schedule import hold_within_updates
from .policy_value import PolicyAndValue
from .rollout_sampler import RolloutSampler
from .sign_checks import KLProbe, LabelAgreement
from .tf_adam import tf_adam_for

logger = logging.getLogger(__name__)

RewardFn = Callable[[list[str], list[str]], Sequence[float]]

__all__ = ["NonFiniteError", "ZieglerPPOTrainer"]


class ZieglerPPOTrainer(AtomicCheckpoints, NonFiniteGuard, _BaseTrainer):
    """PPO with a per-token KL penalty toward the initial policy, as in Ziegler et al. (2019).

    Args:
        model: the policy π (path, `"embedded"`, or a causal LM). ρ = a frozen copy of it unless `ref_model` is given;
            with `peft_config`, π gets LoRA adapters and ρ = π with the adapters disabled.
        args: `ZieglerPPOConfig`.
        train_dataset: a TRL prompt dataset (`prompt` column: text, or conversational messages to which the chat
            template is applied), or raw texts (`text` column) that `args.task` formats into queries.
        processing_class: tokenizer (default: the policy's, with a pad token distinct from EOS).
        reward_model: scalar sequence classifier (path or model) that reads query ‖ truncated response (see
            `reward.scoring`). Exactly one of `reward_model` and `reward_fn`.
        reward_fn: `reward_fn(prompts, completions) -> list[float]` on the query content and truncated response text.
        value_model: optional separate value trunk (path or causal LM); default: a head on the policy's trunk.
        eval_labels: held-out comparisons (`prompt`, `completions`, `best`) to check the reward against before training
            (`reward_check`). Default: the `held_out_labels.jsonl` that the reward stage saves in a reward model folder.
    """

    _tag_names: ClassVar[list[str]] = ["trl", "ppo", "ziegler-trl"]
    _name = "ZieglerPPO"
    _paper: ClassVar[dict[str, str]] = {
        "title": "Fine-Tuning Language Models from Human Preferences",
        "id": "1909.08593",
        "citation": "@article{ziegler2019fine, title={{Fine-Tuning Language Models from Human Preferences}}, "
        "author={Ziegler, Daniel M. and Stiennon, Nisan and Wu, Jeffrey and Brown, Tom B. and Radford, Alec and "
        "Amodei, Dario and Christiano, Paul and Irving, Geoffrey}, journal={arXiv preprint arXiv:1909.08593}, "
        "year={2019}}",
    }
    loss_is_scaled_for_ga = False  # compute_loss returns a micro-batch mean; the Trainer divides by GA

    def __init__(
        self,
        model: str | PreTrainedModel,
        args: ZieglerPPOConfig | None = None,
        train_dataset: Dataset | None = None,
        processing_class: PreTrainedTokenizerBase | None = None,
        reward_model: str | PreTrainedModel | None = None,
        reward_fn: RewardFn | None = None,
        ref_model: str | PreTrainedModel | None = None,
        value_model: str | PreTrainedModel | None = None,
        peft_config=None,
        eval_labels: Dataset | None = None,
        callbacks: list[TrainerCallback] | None = None,
        optimizers: tuple = (None, None),
    ):
        args = args or ZieglerPPOConfig(output_dir="ziegler-ppo")
        if args.log_completions and not is_rich_available():
            raise ImportError("log_completions=True prints its table with `rich`: pip install rich, or set log_completions=False")
        if (reward_model is None) == (reward_fn is None):
            raise ValueError("Give exactly one of `reward_model` (a scalar classifier) and `reward_fn` (a callable)")
        if args.reward_shaping == "potential" and reward_model is None:
            raise ValueError("reward_shaping='potential' scores every prefix of a response with the reward model's "
                             "head: give a reward_model, or reward_shaping='none' with a reward_fn")
        if not isinstance(train_dataset, Dataset):
            raise TypeError(f"train_dataset must be a datasets.Dataset, got {type(train_dataset).__name__}")
        name = model if isinstance(model, str) else model.config._name_or_path
        tokenizer = processing_class or load_tokenizer(name)
        policy = load_policy(model, tokenizer) if isinstance(model, str) else model

        # Reference ρ: the initial policy unless given; with LoRA, the same weights with the adapters off.
        if peft_config is not None:
            from peft import get_peft_model

            # ZeRO-3 needs one dtype across the partitioned weights: keep the adapters in the base's (bf16) dtype
            # rather than PEFT's default upcast to fp32.
            policy = get_peft_model(policy, peft_config, autocast_adapter_dtype=not is_deepspeed_zero3_enabled())
            if ref_model is not None:
                raise ValueError("With peft_config the reference is the policy with adapters disabled; drop ref_model")
            self.ref_model = None
        elif ref_model is None:
            if is_deepspeed_zero3_enabled():  # ZeRO-3 init partitioned the policy: load ρ afresh, no deep copy
                if not isinstance(model, str):
                    raise ValueError("Under DeepSpeed ZeRO-3 pass the policy as a path (or give ref_model): a "
                                     "partitioned model cannot be copied to make the reference")
                self.ref_model = load_policy(model, tokenizer)
            else:
                self.ref_model = copy.deepcopy(policy)
        else:
            self.ref_model = load_policy(ref_model, tokenizer) if isinstance(ref_model, str) else ref_model
        # ρ made here from the policy (a copy, or the base under LoRA) shares its frozen bottom blocks' output.
        self._ref_is_policy_copy = ref_model is None and not is_deepspeed_zero3_enabled()
        if isinstance(value_model, str):
            value_model = load_policy(value_model, tokenizer)
        self.reward_model = load_reward_model(reward_model, tokenizer) if isinstance(reward_model, str) else reward_model
        self.reward_fn = reward_fn
        for frozen in (self.ref_model, self.reward_model):
            if frozen is not None:
                frozen.eval().requires_grad_(False)
        if args.disable_dropout:
            for module in (policy, value_model, self.ref_model, self.reward_model):
                if module is not None:
                    disable_dropout(module)

        self.sampling_task = self._sampling_task(args)
        self.task = self.sampling_task if args.task else None
        self.temperature = self.sampling_task.temperature
        self.response_length = self.sampling_task.response_length
        train_dataset = self._prepare_dataset(train_dataset, tokenizer)

        super().__init__(
            model=PolicyAndValue(policy, value_model),
            args=args,
            data_collator=identity,
            train_dataset=train_dataset,
            processing_class=tokenizer,
            callbacks=callbacks,
            optimizers=optimizers,
        )
        if self.ref_model is not None:
            self.ref_model = self._prepare_frozen(self.ref_model)
        if self.reward_model is not None:
            self.reward_model = self._prepare_frozen(self.reward_model)
        # Different samples on every rank: the Trainer seeded all ranks alike.
        set_seed(args.seed + self.accelerator.process_index * RANK_SEED_STRIDE)

        self.kl_controller: KLController = (
            AdaptiveKLController(args.init_kl_coef, args.kl_target, args.kl_horizon)
            if args.kl_control == "adaptive"
            else FixedKLController(args.init_kl_coef)
        )
        self._step = 0  # micro-steps, as the Trainer's dataloader counts them
        self._buffer: list[dict[str, torch.Tensor]] | None = None
        self._metrics: dict[str, list[float]] = defaultdict(list)
        self._samples: dict[str, list] = {}
        self._episodes = 0
        self._merge_adapters = False  # set by save_model for the duration of a user's save
        self._window = {"episodes": 0, "start": time.perf_counter()}  # episodes/s between logs

        wrapper = self.accelerator.unwrap_model(self.model)
        # Not with sharded weights, nor with gradient checkpointing (it may need inputs that require grad, which the
        # skipped embeddings' hook would have set; and it trades memory for compute, the cache the other way).
        sharded = self.is_deepspeed_enabled or self.is_fsdp_enabled
        if args.cache_frozen_blocks and args.disable_dropout and not (sharded or args.gradient_checkpointing):
            wrapper.cached_blocks = frozen_bottom_count(wrapper.policy)
        self._block_cache_checked = False
        # A reward model trained from ρ with those blocks frozen too (the quickstart's head-only one) reads the same
        # hidden states there: it starts from the policy's as well (checked on the first rollout, like the policy).
        shared = self.reward_model is not None and wrapper.cached_blocks > 0
        self._reward_cached_blocks = (
            wrapper.cached_blocks
            if shared and shares_bottom_blocks(wrapper.policy, self.reward_model, wrapper.cached_blocks) else 0
        )
        self._reward_cache_checked = False
        self._frozen_hidden: torch.Tensor | None = None  # of the current rollout: [local batch, L, d]

        self._check_reward(eval_labels, reward_model)

    # ----- data -----

    def _prepare_frozen(self, model: PreTrainedModel):
        """ρ and the reward model only run inference: under DeepSpeed an inference engine (ZeRO-3 shards it like the
        policy, ZeRO-1/2 keep a whole copy per rank), under FSDP sharded like the policy, else moved to the device."""
        if self.is_deepspeed_enabled:
            return prepare_deepspeed(model, self.accelerator)
        if self.is_fsdp_enabled:
            return prepare_fsdp(model, self.accelerator)
        return model.to(self.accelerator.device)

    @staticmethod
    def _sampling_task(args: ZieglerPPOConfig) -> TaskSpec:
        """The TaskSpec responses are sampled and cut by: the task's, with the config's overrides; or a bare one
        (no truncate token: whole responses, cut at EOS only with `stop_at_eos`)."""
        names = ("response_length", "temperature", "stop_at_eos")
        overrides = {k: getattr(args, k) for k in names if getattr(args, k) is not None}
        if args.task:
            return dataclasses.replace(get_task(args.task), **overrides)
        if args.response_length is None or args.temperature is None:
            raise ValueError("Without `task`, set both `response_length` and `temperature` in ZieglerPPOConfig")
        return TaskSpec("prompt", 0, truncate_token="", truncate_after=0, **overrides)

    def _prepare_dataset(self, dataset: Dataset, tokenizer: PreTrainedTokenizerBase) -> Dataset:
        """Tokenize into `query_ids` (what π reads) and `reward_ids` (what the reward model reads before y)."""
        columns = dataset.column_names
        if "prompt" in columns:
            def encode(row):
                prompt = row["prompt"]
                if isinstance(prompt, list):
                    prompt = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
                ids = tokenizer.encode(prompt, add_special_tokens=False)
                return {"query_ids": ids, "reward_ids": ids}
        elif "text" in columns and self.task is not None:
            def encode(row):
                query = format_query(row["text"], self.task, tokenizer)
                return {"query_ids": query.ids if query else [], "reward_ids": query.reward_ids if query else []}
        else:
            raise ValueError(
                f"train_dataset needs a `prompt` column (TRL prompt dataset) or a `text` column with `task` set; "
                f"got columns {columns} and task={self.task.name if self.task else None}"
            )
        prepared = dataset.map(encode, remove_columns=columns).filter(lambda row: len(row["query_ids"]) > 0)
        if len(prepared) == 0:
            raise ValueError(f"No usable query in train_dataset ({len(dataset)} rows): all were empty or rejected by the task")
        return prepared

    def _set_signature_columns_if_needed(self):
        if self._signature_columns is None:
            self._signature_columns = ["query_ids", "reward_ids"]

    @property
    def _micro_steps_per_update(self) -> int:
        return self.args.steps_per_update * self.args.gradient_accumulation_steps

    def get_train_dataloader(self):
        # One local rollout batch per item, each repeated for all micro-steps of its PPO update.
        return self._get_dataloader(
            dataset=self.train_dataset,
            description="Training",
            batch_size=self.args.local_rollout_batch_size,
            sampler_fn=self._get_train_sampler,
            is_training=True,
        )

    def _get_train_sampler(self, dataset: Dataset | None = None):
        return RolloutSampler(
            dataset if dataset is not None else self.train_dataset,
            rollout_batch_size=self.args.rollout_batch_size,
            repeat_count=self._micro_steps_per_update,
            seed=self.args.seed,
        )

    # ----- rollouts -----

    def _prepare_inputs(self, rollout_prompts: list[dict]) -> dict[str, torch.Tensor]:
        if self._buffer is None:  # first call, or resumed from a checkpoint taken between updates
            self._step = self.state.global_step * self.args.gradient_accumulation_steps
            self._window = {"episodes": 0, "start": time.perf_counter()}
        if self._step % self._micro_steps_per_update == 0 or self._buffer is None:
            self._buffer = self._minibatches(self._rollout(rollout_prompts))
        return self._buffer[self._step % self._micro_steps_per_update]

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        self._step += 1
        return loss

    @contextmanager
    def _policy_for_generation(self) -> Iterator[PreTrainedModel]:
        """A model to call `generate` on with whole weights. ZeRO-3 gathers every shard for the whole sampling loop
        (TRL's helper). FSDP2 samples through the root module's `generate`, registered as an FSDP forward method so
        the root's shards (embeddings, head) gather around it; the transformer blocks gather theirs as they run."""
        if self.is_fsdp_enabled and hasattr(self.model, "unshard"):
            if getattr(self.model.generate, "__func__", None) is PolicyAndValue.generate:  # not registered yet
                from torch.distributed.fsdp import register_fsdp_forward_method

                register_fsdp_forward_method(self.model, "generate")
            yield self.model
            return
        with unwrap_model_for_generation(self.model_wrapped, self.accelerator) as wrapper:
            yield wrapper.policy

    def _sampling_precision(self) -> contextlib.AbstractContextManager:
        """Autocast to `args.sampling_dtype` around `generate` (nothing for float32: the training precision holds)."""
        device = self.accelerator.device
        dtype = sampling_dtype(device, self.args.sampling_dtype)
        if dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=dtype)

    def _forward_reference(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, frozen_hidden: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Logits of ρ over the response positions (the policy with LoRA adapters off, under PEFT). `frozen_hidden`:
        the policy's hidden states entering its first trainable block, which are ρ's too when ρ is the policy's copy
        (or the policy without adapters): ρ then starts there."""
        wrapper = self.accelerator.unwrap_model(self.model)
        model = self.ref_model if self.ref_model is not None else wrapper.policy
        inputs = {"input_ids": input_ids} if frozen_hidden is None else {"inputs_embeds": frozen_hidden}
        with contextlib.ExitStack() as stack:
            if frozen_hidden is not None:
                stack.enter_context(blocks_from(model, wrapper.cached_blocks))
            if self.ref_model is None:
                stack.enter_context(model.disable_adapter())
            return model(
                **inputs, attention_mask=attention_mask, position_ids=position_ids_from_mask(attention_mask),
                logits_to_keep=self.response_length + 1, use_cache=False,
            ).logits[:, :-1]

    def _score(self, reward_ids: list[list[int]], responses: torch.Tensor) -> torch.Tensor:
        """r(x, y) of truncated responses; reward models read query content ‖ response without pads."""
        pad = self.processing_class.pad_token_id
        if self.reward_model is not None:
            sequences = [reward_sequence(q, r.tolist(), pad) for q, r in zip(reward_ids, responses)]
            return score_sequences(self.reward_model, sequences, pad, self.args.rollout_forward_batch_size)
        prompts, completions = self._texts(reward_ids, responses)
        scores = list(self.reward_fn(prompts, completions))
        if len(scores) != len(prompts):
            raise ValueError(f"reward_fn returned {len(scores)} scores for {len(prompts)} completions")
        return torch.tensor([float(s) for s in scores])

    def _texts(self, reward_ids: list[list[int]], responses: torch.Tensor) -> tuple[list[str], list[str]]:
        pad = self.processing_class.pad_token_id
        prompts = self.processing_class.batch_decode(reward_ids)
        completions = self.processing_class.batch_decode([[t for t in r.tolist() if t != pad] for r in responses])
        return prompts, completions

    @torch.no_grad()
    def _rollout(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        """Sample, score and reward one local rollout batch; update β from the KL of all ranks."""
        device, args = self.accelerator.device, self.args
        wrapper = self.accelerator.unwrap_model(self.model)
        pad = self.processing_class.pad_token_id
        queries = [row["query_ids"] for row in rows]
        # Mixed precision (bf16 on GPUs) for sampling and every frozen forward too, not only the training step.
        with self.accelerator.autocast():
            with self._policy_for_generation() as policy, self._sampling_precision():
                responses = generate_responses(policy, queries, self.sampling_task, pad).to(device)

            query_ids, query_mask = pad_left(queries, pad)
            input_ids = torch.cat([query_ids.to(device), responses], dim=1)
            attention_mask = torch.cat([query_mask.to(device), torch.ones_like(responses)], dim=1)
            if wrapper.cached_blocks and not self._block_cache_checked:
                self._check_block_cache(wrapper, input_ids[:2], attention_mask[:2])
            cache = wrapper.cached_blocks > 0
            logprobs, ref_logprobs, values, frozen_hidden = [], [], [], []
            for start in range(0, len(rows), args.rollout_forward_batch_size):
                chunk = slice(start, start + args.rollout_forward_batch_size)
                logits, chunk_values, *hidden = wrapper(
                    input_ids[chunk], attention_mask[chunk], self.response_length, return_frozen_hidden=cache
                )
                logprobs.append(logprobs_from_logits(logits, responses[chunk], self.temperature))
                values.append(chunk_values)
                frozen_hidden += hidden
                shared_bottom = hidden[0] if hidden and self._ref_is_policy_copy else None
                ref_logits = self._forward_reference(input_ids[chunk], attention_mask[chunk], shared_bottom)
                ref_logprobs.append(logprobs_from_logits(ref_logits, responses[chunk], self.temperature))
            logprobs, ref_logprobs, values = torch.cat(logprobs), torch.cat(ref_logprobs), torch.cat(values)
            frozen_hidden = torch.cat(frozen_hidden) if frozen_hidden else None

            truncated, valid = truncate_responses(responses.cpu(), self.sampling_task, self.processing_class)
            reward_ids = [row["reward_ids"] for row in rows]
            raw_scores, potentials, from_cache = self._score_rollout(
                rows, responses, truncated, attention_mask, frozen_hidden
            )
        if self.task is not None and self.args.penalize_invalid:
            scores = torch.where(valid.to(device), raw_scores, torch.full_like(raw_scores, self.task.penalty_reward))
        else:
            scores = raw_scores

        kl_coef = self.kl_controller.value
        probe = KLProbe.around(scores, logprobs, ref_logprobs, potentials)  # checks the sign of this very call
        rewards, kl_penalty = per_token_rewards(
            probe.scores, probe.logprobs, probe.ref_logprobs, kl_coef, probe.potentials
        )
        rewards, kl_penalty = probe.check(rewards, kl_penalty, kl_coef)
        sequence_kl = (logprobs - ref_logprobs).sum(dim=1)
        local = torch.stack([
            sequence_kl.mean(), (-logprobs.sum(dim=1)).mean(), scores.mean(), (scores + kl_penalty.sum(dim=1)).mean(),
            valid.float().mean().to(device), values.mean(),
            sum((~torch.isfinite(t)).sum() for t in (scores, logprobs, ref_logprobs, values)).float(),
        ])
        mean_kl, neg_logp, mean_score, score_total, valid_frac, mean_value, bad = (
            self.accelerator.reduce(local, reduction="mean").tolist()
        )
        if bad > 0 or not all(math.isfinite(v) for v in (mean_kl, mean_score, score_total)):
            self._stop_on_non_finite("rollout (scores, log-probs or values)", mean_kl=mean_kl, mean_score=mean_score)
        self.kl_controller.update(mean_kl, args.rollout_batch_size)
        if isinstance(self.kl_controller, AdaptiveKLController) and mean_kl > args.kl_warn_factor * args.kl_target:
            logger.warning(
                f"KL(π‖ρ) = {mean_kl:.2f} nats exceeds {args.kl_warn_factor}× the target {args.kl_target} at step "
                f"{self.state.global_step} (β = {kl_coef:.4f})"
            )

        metrics = {
            "objective/kl": mean_kl, "objective/kl_coef": kl_coef, "objective/entropy": neg_logp,
            "objective/scores": mean_score, "objective/score_total": score_total,
            "objective/valid_fraction": valid_frac, "ppo/val/mean": mean_value,
            "ppo/cached_frozen_blocks": wrapper.cached_blocks,  # > 0: the epochs skip these blocks
            "ppo/reward_cached_blocks": self._reward_cached_blocks if from_cache else 0,
        }
        for key, value in metrics.items():
            self._metrics[key].append(value)
        self._episodes += args.rollout_batch_size
        self._window["episodes"] += args.rollout_batch_size
        n = args.num_completions_to_print
        prompts, completions = self._texts(reward_ids[:n], truncated[:n])
        self._samples = {
            "prompt": prompts, "completion": completions,
            "score": scores[:n].tolist(), "kl": sequence_kl[:n].tolist(),
        }
        rollout = {
            "input_ids": input_ids, "attention_mask": attention_mask, "responses": responses,
            "logprobs": logprobs, "values": values, "rewards": rewards,
        }
        if frozen_hidden is not None:
            rollout["frozen_hidden"] = frozen_hidden
        return rollout

    def _rollout_layout_lengths(
        self, rows: list[dict], responses: torch.Tensor, truncated: torch.Tensor
    ) -> torch.Tensor | None:
        """Lengths of the truncated responses when what the reward model reads (query content ‖ truncated response
        without pads, `reward_sequence`) is exactly the start of every rollout row; else None."""
        if any(list(row["reward_ids"]) != list(row["query_ids"]) for row in rows):
            return None  # a task prefix or suffix: the reward model reads other tokens
        kept = truncated != self.processing_class.pad_token_id
        lengths = kept.sum(dim=1)
        prefix = torch.arange(truncated.shape[1]) < lengths[:, None]
        if not torch.equal(kept, prefix) or not torch.equal(truncated[prefix], responses.cpu()[prefix]):
            return None  # a pad token sampled inside a response: the reward model's sequence drops it
        return lengths

    def _score_rollout(
        self,
        rows: list[dict],
        responses: torch.Tensor,
        truncated: torch.Tensor,
        attention_mask: torch.Tensor,
        frozen_hidden: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, bool]:
        """(r(x, y) [B], Φ [B, T+1] of every prefix under `reward_shaping="potential"` else None, whether the reward
        model ran from the policy's cached hidden states)."""
        device = attention_mask.device
        reward_ids = [row["reward_ids"] for row in rows]
        shaping = self.args.reward_shaping == "potential"
        lengths = None
        if frozen_hidden is not None and self._reward_cached_blocks:
            lengths = self._rollout_layout_lengths(rows, responses, truncated)
        if lengths is not None:
            potentials = self._potentials_from_frozen_hidden(frozen_hidden, attention_mask, lengths)
            full = None if self._reward_cache_checked else self._score(reward_ids, truncated).to(device)
            if full is None or self._check_reward_cache(full, potentials[:, -1]):
                return potentials[:, -1], potentials if shaping else None, True
            if not shaping:  # the check's own whole-model scores serve this rollout
                return full, None, False
        if shaping:
            potentials = score_prefixes(self.reward_model, reward_ids, truncated, self.processing_class.pad_token_id,
                                        self.args.rollout_forward_batch_size).to(device)
            return potentials[:, -1], potentials, False
        return self._score(reward_ids, truncated).to(device), None, False

    def _potentials_from_frozen_hidden(
        self, frozen_hidden: torch.Tensor, attention_mask: torch.Tensor, lengths: torch.Tensor
    ) -> torch.Tensor:
        """Φ [B, T+1], the reward of every prefix (column t: the query and the first t response tokens; past the
        truncated response's end, its whole score), from the policy's hidden states entering block n, the reward
        model's too (same bottom blocks): it runs its blocks n.. over the rollout rows and its head reads every
        position from the query's last token on (by causality nothing after a position counts)."""
        model = self.reward_model
        first = attention_mask.shape[1] - self.response_length - 1  # the query's last token: Φ(s_0)
        potentials = []
        with blocks_from(model, self._reward_cached_blocks):
            for start in range(0, len(lengths), self.args.rollout_forward_batch_size):
                chunk = slice(start, start + self.args.rollout_forward_batch_size)
                mask = attention_mask[chunk]
                hidden = model.base_model(
                    inputs_embeds=frozen_hidden[chunk], attention_mask=mask,
                    position_ids=position_ids_from_mask(mask), use_cache=False,
                ).last_hidden_state
                potentials.append(score_head(model)(hidden[:, first:]).squeeze(-1).float())
        potentials = torch.cat(potentials)
        steps = torch.arange(potentials.shape[1], device=potentials.device)
        return potentials.gather(1, torch.minimum(steps, lengths.to(potentials.device)[:, None]))

    def _check_reward_cache(self, full: torch.Tensor, cached: torch.Tensor) -> bool:
        """Once per run: the reward model from cached hidden states must score like its own forward, else it runs
        whole from now on. Returns whether the cached scores stand."""
        self._reward_cache_checked = True
        error, scale = (full - cached).abs().max().item(), max(full.abs().max().item(), 1.0)
        if error > 1e-3 * scale:
            logger.warning(
                f"cache_frozen_blocks: the reward model ({type(self.reward_model).__name__}) from the policy's cached "
                f"hidden states scores differently from its own forward (max |Δ| = {error:.3g}); it runs whole instead"
            )
            self._reward_cached_blocks = 0
            return False
        return True

    @torch.no_grad()
    def _check_block_cache(self, wrapper: PolicyAndValue, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        """Once per run: the forward from cached hidden states must reproduce the full forward, else run full ones."""
        self._block_cache_checked = True
        logits, values, hidden = wrapper(input_ids, attention_mask, self.response_length, return_frozen_hidden=True)
        cached_logits, cached_values = wrapper(input_ids, attention_mask, self.response_length, frozen_hidden=hidden)
        error = max((logits - cached_logits).abs().max().item(), (values - cached_values).abs().max().item())
        scale = max(logits.abs().max().item(), values.abs().max().item(), 1.0)
        if error > 1e-3 * scale:
            logger.warning(
                f"cache_frozen_blocks: {type(wrapper.policy).__name__} from cached hidden states differs from its full "
                f"forward (max |Δ| = {error:.3g}); the PPO epochs run full forwards instead"
            )
            wrapper.cached_blocks = 0

    def _minibatches(self, rollout: dict[str, torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        """All micro-batches of one update: per epoch a fresh shuffle into minibatches, each with its own GAE and
        whitening (as the paper's code computes them inside the minibatch loss), split for gradient accumulation."""
        args = self.args
        size = args.local_rollout_batch_size // args.num_mini_batches
        micro = args.per_device_train_batch_size
        self._frozen_hidden = rollout.get("frozen_hidden")  # the frozen bottom blocks' output, for every epoch
        buffer = []
        for _ in range(args.num_ppo_epochs):
            order = torch.randperm(args.local_rollout_batch_size, device=rollout["rewards"].device)
            for minibatch in order.split(size):
                rewards = rollout["rewards"][minibatch]
                if args.whiten_rewards:
                    rewards = whiten(rewards, shift_mean=False)
                advantages, returns = gae(rewards, rollout["values"][minibatch], args.gamma, args.lam)
                advantages = whiten(advantages)
                returns_var = returns.var(unbiased=False)  # the minibatch's, as the paper logs it (not a micro-batch's)
                for part in range(0, size, micro):
                    rows = minibatch[part : part + micro]
                    micro_batch = {
                        "input_ids": rollout["input_ids"][rows], "attention_mask": rollout["attention_mask"][rows],
                        "responses": rollout["responses"][rows], "old_logprobs": rollout["logprobs"][rows],
                        "old_values": rollout["values"][rows], "advantages": advantages[part : part + micro],
                        "returns": returns[part : part + micro], "returns_var": returns_var,
                    }
                    if self._frozen_hidden is not None:  # sliced in compute_loss: no copy per epoch held here
                        micro_batch["rows"] = rows
                    buffer.append(micro_batch)
        return buffer

    # ----- loss -----

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        responses = inputs["responses"]
        frozen_hidden = self._frozen_hidden[inputs["rows"]] if "rows" in inputs else None
        logits, vpred = model(
            inputs["input_ids"], inputs["attention_mask"], responses.shape[1], frozen_hidden=frozen_hidden
        )
        logprobs = logprobs_from_logits(logits, responses, self.temperature)
        pg_loss, pg_stats = policy_loss(logprobs, inputs["old_logprobs"], inputs["advantages"], self.args.cliprange)
        vf_loss, vf_stats = value_loss(vpred, inputs["old_values"], inputs["returns"], self.args.cliprange_value)
        loss = pg_loss + self.args.vf_coef * vf_loss

        bad = self.accelerator.reduce((~torch.isfinite(loss.detach())).float(), reduction="sum")
        if bad.item() > 0:
            self._stop_on_non_finite("PPO loss", policy_loss=pg_loss.item(), value_loss=vf_loss.item())
        with torch.no_grad():
            returns = inputs["returns"]
            stats = {
                "ppo/loss/policy": pg_loss, "ppo/loss/value": vf_loss, "ppo/loss/total": loss,
                "ppo/policy/approxkl": pg_stats["approxkl"], "ppo/policy/clipfrac": pg_stats["clipfrac"],
                "ppo/policy/entropy": entropy(logits, self.temperature).mean(),
                "ppo/val/vpred": vf_stats["vpred"], "ppo/val/error": vf_stats["error"],
                "ppo/val/clipfrac": vf_stats["clipfrac"],
                "ppo/returns/mean": returns.mean(), "ppo/returns/var": inputs["returns_var"],
            }
            values = self.accelerator.reduce(torch.stack([v.float() for v in stats.values()]), reduction="mean")
        for key, value in zip(stats, values.tolist()):
            self._metrics[key].append(value)
        return loss

    # ----- optimizer, logging, checkpoints -----

    def create_optimizer(self, model=None):
        if not self.args.tf_adam or self.optimizer is not None:
            return super().create_optimizer(model)
        self.optimizer = tf_adam_for(model or self.model, self.args)
        return self.optimizer

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        created = self.lr_scheduler is None  # a scheduler the user passed in `optimizers` is left as given
        scheduler = super().create_scheduler(num_training_steps, optimizer)
        if created and self.args.lr_schedule_per_update and isinstance(scheduler, LambdaLR):
            hold_within_updates(scheduler, self.args.steps_per_update)
        return scheduler

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        logs.update({key: sum(values) / len(values) for key, values in self._metrics.items() if values})
        self._metrics.clear()
        if "ppo/val/error" in logs:  # from the window's averages, as the paper's code computes it
            logs["ppo/val/var_explained"] = explained_variance(logs["ppo/val/error"], logs["ppo/returns/var"])
        if self._window["episodes"]:
            now = time.perf_counter()
            logs["episodes"] = self._episodes
            logs["episodes_per_second"] = self._window["episodes"] / (now - self._window["start"])
            self._window = {"episodes": 0, "start": now}
        super().log(logs, start_time)
        if self.args.log_completions and self.accelerator.is_main_process and self._samples:
            print_prompt_completions_sample(
                self._samples["prompt"], self._samples["completion"],
                {"score": self._samples["score"], "kl": self._samples["kl"]}, None, self.state.global_step,
            )
            if "wandb" in (self.args.report_to or []):
                import wandb

                if wandb.run is not None:
                    columns = list(self._samples)
                    rows = [list(row) for row in zip(*self._samples.values())]
                    wandb.log({"completions": wandb.Table(columns=columns, data=rows)}, step=self.state.global_step)
            self._samples = {}

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        # Only a save the user asks for merges LoRA adapters; checkpoints (internal calls) keep them for resuming.
        self._merge_adapters = self.args.save_merged_model and not _internal_call
        if self._merge_adapters and self.accelerator.unwrap_model(self.model).has_adapters:
            check_merge_supported(self)
        try:
            super().save_model(output_dir, _internal_call)
        finally:
            self._merge_adapters = False

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        output_dir = output_dir or self.args.output_dir
        if self.args.should_save:
            os.makedirs(output_dir, exist_ok=True)
        # Under ZeRO-3 / FSDP the Trainer hands us the gathered state dict: the unwrapped weights are shards.
        self.accelerator.unwrap_model(self.model).save(
            output_dir, is_main_process=self.args.should_save, state_dict=state_dict,
            merge_adapters=self._merge_adapters,
        )
        if self.args.should_save:
            self.processing_class.save_pretrained(output_dir)
            torch.save(self.args, os.path.join(output_dir, "training_args.bin"))

    def _save_extra_checkpoint_state(self, folder: str) -> None:
        save_controller(self.kl_controller, folder)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        wrapper = self.accelerator.unwrap_model(model if model is not None else self.model)
        super()._load_from_checkpoint(resume_from_checkpoint, model=wrapper.policy)
        wrapper.load_value_function(resume_from_checkpoint)

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        # β is training state like Adam's moments, and this hook runs on every resume path (DeepSpeed restores the
        # model through its own engine and never calls _load_from_checkpoint).
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is not None:
            load_controller(self.kl_controller, checkpoint)

    def _issue_warnings_after_load(self, load_result) -> None:
        """A resumed policy must load completely; only weights tied to others (lm_head) may be absent."""
        policy = self.accelerator.unwrap_model(self.model).policy
        missing = set(load_result.missing_keys) - set(getattr(policy, "_tied_weights_keys", None) or [])
        if missing or load_result.unexpected_keys:
            raise ValueError(
                f"Checkpoint does not match the policy: missing {sorted(missing)}, unexpected {load_result.unexpected_keys}"
            )

    # ----- the reward's sign (the paper: a sign flip in the reward ran unnoticed overnight) -----

    def _check_reward(self, eval_labels: Dataset | None, reward_model) -> None:
        """Before training: the reward against held-out labels, `eval_labels` or those saved with the reward model."""
        if not self.args.reward_check:
            logger.warning("reward_check=False: the reward is not checked against held-out labels before training")
            return
        source = "eval_labels"
        if eval_labels is None and reward_model is not None:
            folder = reward_model if isinstance(reward_model, str) else getattr(reward_model, "name_or_path", None)
            saved = load_held_out_labels(folder) if folder and os.path.isdir(folder) else None
            if saved is not None:
                eval_labels, path = saved
                source = str(path)
        if eval_labels is None:
            logger.info("Reward check skipped: no held-out labels (give eval_labels, or a reward model folder saved by "
                        "the reward stage)")
        else:
            self._check_reward_on_labels(eval_labels, source)

    @torch.no_grad()
    def _check_reward_on_labels(self, labels: Dataset, source: str) -> None:
        """How often the reward's argmax is the labeled best, against chance (1/K), by a one-sided exact binomial
        test at `reward_check_alpha`: a reward significantly worse than chance is refused, one not significantly
        better is warned about."""
        rows = validate_label_rows(labels, source)
        k = len(rows[0]["completions"])
        logger.info(f"Reward check: scoring {len(rows)} held-out comparisons of {k} completions ({source})")
        if self.reward_model is not None:
            pad = self.processing_class.pad_token_id
            sequences = []
            for row in rows:
                ids = tokenize_comparison(row, self.processing_class)
                sequences += [ids["prompt_ids"] + completion for completion in ids["completion_ids"]]
            scores = score_sequences(self.reward_model, sequences, pad, self.args.rollout_forward_batch_size)
        else:
            prompts = [row["prompt"] for row in rows for _ in range(k)]
            completions = [completion for row in rows for completion in row["completions"]]
            scores = torch.tensor([float(s) for s in self.reward_fn(prompts, completions)])
            if len(scores) != len(prompts):
                raise ValueError(f"reward_fn returned {len(scores)} scores for {len(prompts)} completions")
        picks = scores.view(len(rows), k).argmax(dim=1).tolist()
        agreement = LabelAgreement(sum(p == row["best"] for p, row in zip(picks, rows)), len(rows), k)
        p_worse, p_better = agreement.tail_probabilities()
        alpha = self.args.reward_check_alpha
        summary = (f"the reward picks the labeled best in {agreement.accuracy:.1%} of {agreement.n} held-out "
                   f"comparisons ({source}); chance {agreement.chance:.1%}")
        if p_worse <= alpha:
            raise UserInputError(
                f"Reward check failed: {summary}, significantly worse (one-sided exact binomial p = {p_worse:.3g} <= "
                f"reward_check_alpha {alpha}). Is its sign or its input format wrong? (reward_check=False skips this)"
            )
        if p_better > alpha:
            logger.warning(f"Reward check: {summary}, not significantly better (one-sided exact binomial p = "
                           f"{p_better:.3g} > {alpha}); the reward may have learned little from its labels")
        else:
            logger.info(f"Reward check passed: {summary} (p = {p_better:.3g})")
