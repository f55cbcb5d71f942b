"""ZieglerPPOTrainer: the PPO of Ziegler et al. (2019) on TRL's trainer base; only the Trainer's hooks live here.

Like TRL's online trainers, the Trainer loop is left in charge of optimizer steps, gradient accumulation,
checkpointing, logging and the accelerate/DeepSpeed plumbing. The dataloader hands `_prepare_inputs` one rollout
batch of prompts, repeated once per micro-step of the update; the first time it is seen `_rollout` samples and
scores it with eq. 2's per-token rewards (`rollout.collect_rollout`), logs it, adapts β (`kl_control`) and cuts it
into `num_ppo_epochs` freshly shuffled passes of minibatches (`buffer.ppo_minibatches`); every micro-step then
trains on its slice of that buffer (`compute_loss`, the clipped losses of `core`).
"""

from __future__ import annotations

import copy
import logging
import math
import os
import time
from collections import defaultdict
from collections.abc import Iterator
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
from ..checkpoints import AtomicCheckpoints
from ..models import disable_dropout, load_policy, load_tokenizer, sampling_dtype
from ..non_finite import NonFiniteError, NonFiniteGuard
from ..reward.model import load_reward_model
from ..sampling import RANK_SEED_STRIDE
from .block_cache import FrozenBlockCache
from .buffer import loss_inputs, ppo_minibatches
from .checks import check_reward
from .config import ZieglerPPOConfig
from .core import explained_variance, logprobs_and_entropy, policy_loss, value_loss
from .kl_control import (
    AdaptiveKLController,
    FixedKLController,
    KLController,
    load_controller,
    save_controller,
)
from .lr_schedule import hold_within_updates
from .policy_value import PolicyAndValue
from .prompts import sampling_task, tokenize_prompts
from .reward_source import RewardFn, RewardSource, decode_episodes
from .rollout import Rollout, RolloutModels, RolloutSetup, RolloutStats, collect_rollout
from .rollout_sampler import RolloutSampler
from .tf_adam import tf_adam_for

logger = logging.getLogger(__name__)

__all__ = ["NonFiniteError", "ZieglerPPOTrainer"]

# What `compute_loss` logs per micro-step, in the order it stacks them.
LOSS_METRICS = (
    "ppo/loss/policy", "ppo/loss/value", "ppo/loss/total", "ppo/policy/approxkl", "ppo/policy/clipfrac",
    "ppo/policy/entropy", "ppo/val/vpred", "ppo/val/error", "ppo/val/clipfrac", "ppo/returns/mean", "ppo/returns/var",
)


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
            raise ImportError(
                "log_completions=True prints its table with `rich`: pip install rich, or set log_completions=False"
            )
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
        if isinstance(value_model, str):
            value_model = load_policy(value_model, tokenizer)
        self.reward_model = reward_model
        if isinstance(reward_model, str):
            self.reward_model = load_reward_model(reward_model, tokenizer)
        for frozen in (self.ref_model, self.reward_model):
            if frozen is not None:
                frozen.eval().requires_grad_(False)
        if args.disable_dropout:
            for module in (policy, value_model, self.ref_model, self.reward_model):
                if module is not None:
                    disable_dropout(module)

        self.sampling_task = sampling_task(args)
        self.task = self.sampling_task if args.task else None
        self.temperature = self.sampling_task.temperature
        train_dataset = tokenize_prompts(train_dataset, tokenizer, self.task)

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
        self._pending_loss_metrics: list[torch.Tensor] = []  # [len(LOSS_METRICS)] per micro-step, on the device
        self._samples: dict[str, list] = {}
        self._episodes = 0
        self._merge_adapters = False  # set by save_model for the duration of a user's save
        self._window = {"episodes": 0, "start": time.perf_counter()}  # episodes/s between logs

        self.reward_source = RewardSource(tokenizer, args.rollout_forward_batch_size, self.reward_model, reward_fn)
        device = self.accelerator.device
        self.rollout_setup = RolloutSetup(
            task=self.sampling_task, tokenizer=tokenizer, device=device,
            forward_batch_size=args.rollout_forward_batch_size,
            invalid_penalty=self.task.penalty_reward if self.task is not None and args.penalize_invalid else None,
            potential_shaping=args.reward_shaping == "potential",
            sampling_dtype=sampling_dtype(device, args.sampling_dtype), precision=self.accelerator.autocast,
        )
        # A CPU speed-up (block_cache): not with sharded weights, nor with gradient checkpointing (it may need inputs
        # that require grad, which the skipped embeddings' hook would have set; and it trades memory for compute, the
        # cache the other way), nor with dropout (the frozen blocks' output would be random).
        sharded = self.is_deepspeed_enabled or self.is_fsdp_enabled
        self.block_cache: FrozenBlockCache | None = None
        if args.cache_frozen_blocks and args.disable_dropout and not (sharded or args.gradient_checkpointing):
            # ρ made here from the policy (a copy, or the base under LoRA) shares its frozen bottom blocks' output.
            reference_is_policy = ref_model is None and not is_deepspeed_zero3_enabled()
            self.block_cache = FrozenBlockCache.for_models(policy, self.reward_model, reference_is_policy)

        check_reward(args.reward_check, args.reward_check_alpha, eval_labels, reward_model,
                     self.reward_source.score_comparisons)

    # ----- models and data -----

    def _prepare_frozen(self, model: PreTrainedModel):
        """ρ and the reward model only run inference: under DeepSpeed an inference engine (ZeRO-3 shards it like the
        policy, ZeRO-1/2 keep a whole copy per rank), under FSDP sharded like the policy, else moved to the device."""
        if self.is_deepspeed_enabled:
            return prepare_deepspeed(model, self.accelerator)
        if self.is_fsdp_enabled:
            return prepare_fsdp(model, self.accelerator)
        return model.to(self.accelerator.device)

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
            self._buffer = self._rollout(rollout_prompts)
        return self._buffer[self._step % self._micro_steps_per_update]

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        self._step += 1
        if self._step % self._micro_steps_per_update == 0:
            self._gather_loss_metrics()
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

    def rollout_models(self) -> RolloutModels:
        """The models `collect_rollout` runs for this trainer."""
        return RolloutModels(
            self.accelerator.unwrap_model(self.model), self.ref_model, self.reward_source, self._policy_for_generation
        )

    @torch.no_grad()
    def _rollout(self, rows: list[dict]) -> list[dict[str, torch.Tensor]]:
        """One PPO update's training data from one local rollout batch of prompts."""
        args = self.args
        # 1-2. sample y ~ π, score r(x, y) and build the per-token rewards of eq. 2 with the KL penalty at the current β
        kl_coef = self.kl_controller.value
        rollout = collect_rollout(rows, self.rollout_models(), self.rollout_setup, kl_coef, self.block_cache)
        # 3. statistics over the episodes of all ranks
        stats = RolloutStats.of(rollout, lambda local: self.accelerator.reduce(local, reduction="mean"))
        if stats.non_finite > 0 or not all(math.isfinite(v) for v in (stats.kl, stats.score, stats.score_total)):
            self._stop_on_non_finite("rollout (scores, log-probs or values)", mean_kl=stats.kl, mean_score=stats.score)
        self._record_rollout(rollout, stats)
        # 4. adapt β toward the KL target
        self.kl_controller.update(stats.kl, args.rollout_batch_size)
        if isinstance(self.kl_controller, AdaptiveKLController) and stats.kl > args.kl_warn_factor * args.kl_target:
            logger.warning(
                f"KL(π‖ρ) = {stats.kl:.2f} nats exceeds {args.kl_warn_factor}× the target {args.kl_target} at step "
                f"{self.state.global_step} (β = {kl_coef:.4f})"
            )
        # 5. minibatches with their advantages and returns, for every micro-step of the update
        plan = ppo_minibatches(
            rollout.rewards, rollout.values, num_epochs=args.num_ppo_epochs, num_minibatches=args.num_mini_batches,
            micro_batch_size=args.per_device_train_batch_size, gamma=args.gamma, lam=args.lam,
            whiten_rewards=args.whiten_rewards,
        )
        r = rollout
        return [loss_inputs(mb, r.input_ids, r.attention_mask, r.responses, r.logprobs, r.values) for mb in plan]

    def _record_rollout(self, rollout: Rollout, stats: RolloutStats) -> None:
        """The rollout's metrics for the next log, and its first episodes for `log_completions`."""
        metrics = {
            "objective/kl": stats.kl, "objective/kl_coef": rollout.kl_coef, "objective/entropy": stats.entropy,
            "objective/scores": stats.score, "objective/score_total": stats.score_total,
            "objective/valid_fraction": stats.valid_fraction, "ppo/val/mean": stats.value,
            "ppo/cached_frozen_blocks": rollout.cached_blocks,  # > 0: the epochs skip these blocks
            "ppo/reward_cached_blocks": rollout.reward_cached_blocks,
        }
        for key, value in metrics.items():
            self._metrics[key].append(value)
        self._episodes += self.args.rollout_batch_size
        self._window["episodes"] += self.args.rollout_batch_size
        n = self.args.num_completions_to_print
        prompts, completions = decode_episodes(self.processing_class, rollout.reward_ids[:n], rollout.truncated[:n])
        self._samples = {
            "prompt": prompts, "completion": completions,
            "score": rollout.scores[:n].tolist(), "kl": rollout.sequence_kl[:n].tolist(),
        }

    # ----- loss -----

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        responses = inputs["responses"]
        cached = self.block_cache.epoch_inputs(inputs["rows"]) if self.block_cache is not None else {}
        logits, vpred, _ = model(inputs["input_ids"], inputs["attention_mask"], responses.shape[1], **cached)
        logprobs, entropies = logprobs_and_entropy(logits, responses, self.temperature)
        pg_loss, pg_stats = policy_loss(logprobs, inputs["old_logprobs"], inputs["advantages"], self.args.cliprange)
        vf_loss, vf_stats = value_loss(vpred, inputs["old_values"], inputs["returns"], self.args.cliprange_value)
        loss = pg_loss + self.args.vf_coef * vf_loss

        with torch.no_grad():  # kept on the device: gathered once per update (`_gather_loss_metrics`), no sync here
            returns = inputs["returns"]
            stats = (
                pg_loss, vf_loss, loss, pg_stats["approxkl"], pg_stats["clipfrac"], entropies.mean(),
                vf_stats["vpred"], vf_stats["error"], vf_stats["clipfrac"], returns.mean(), inputs["returns_var"],
            )
            self._pending_loss_metrics.append(torch.stack([v.float() for v in stats]))
        if self.is_deepspeed_enabled:  # DeepSpeed steps inside backward: a non-finite loss must stop before it
            self._gather_loss_metrics()
        return loss

    def _gather_loss_metrics(self) -> None:
        """The micro-steps' loss metrics since the last gather, in one reduction over processes and one host sync; a
        non-finite PPO loss on any process stops the run. Runs at the end of every update and before a log (where
        the Trainer logs within an update), so each log has every micro-step's values that came before it."""
        if not self._pending_loss_metrics:
            return
        pending, self._pending_loss_metrics = self._pending_loss_metrics, []
        rows = self.accelerator.reduce(torch.stack(pending), reduction="mean").tolist()
        for row in rows:
            values = dict(zip(LOSS_METRICS, row))
            if not math.isfinite(values["ppo/loss/total"]):
                self._stop_on_non_finite("PPO loss", policy_loss=values["ppo/loss/policy"],
                                         value_loss=values["ppo/loss/value"])
        for row in rows:
            for key, value in zip(LOSS_METRICS, row):
                self._metrics[key].append(value)

    def _stop_on_non_finite(self, where: str, stopped: str | None = None, **values: float) -> None:
        # A non-finite loss makes the gradients non-finite too: the guard's gradient check, which runs first, then
        # reports the loss as the cause.
        self._gather_loss_metrics()
        super()._stop_on_non_finite(where, stopped, **values)

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
        self._gather_loss_metrics()
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
                f"Checkpoint does not match the policy: missing {sorted(missing)}, "
                f"unexpected {load_result.unexpected_keys}"
            )
