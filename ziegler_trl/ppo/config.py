"""ZieglerPPOConfig: the paper's PPO hyperparameters on top of TRL's trainer arguments."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from trl.trainer.base_config import _BaseConfig

from ..errors import UserInputError
from ..models import SAMPLING_DTYPES
from ..precision import cuda_bf16_available, warn_if_slow_bf16

REWARD_SHAPINGS = ("none", "potential")
# The paper's code asserts a per-process minibatch of at least 8 episodes when rewards are whitened ("insufficient
# for whitening" below that); its summarization runs, 32 episodes on 8 processes (4 each), turn whitening off.
MIN_WHITEN_MINIBATCH = 8


@dataclass
class ZieglerPPOConfig(_BaseConfig):
    """Configuration of `ZieglerPPOTrainer`. Defaults are the paper's code (lm-human-preferences) for the style tasks.

    Batch layout: one PPO update samples `rollout_batch_size = per_device_train_batch_size ×
    gradient_accumulation_steps × num_processes × num_mini_batches` episodes, then runs `num_ppo_epochs` passes over
    them, each split into `num_mini_batches` optimizer steps. With the paper's 512 episodes and one minibatch on
    8 GPUs: per_device_train_batch_size 8, gradient_accumulation_steps 8.
    """

    # Task and sampling
    task: str | None = field(
        default=None,
        metadata={"help": "Task preset (sentiment, descriptiveness, tldr, cnndm): formats raw `text` rows into queries, "
                  "sets response length, temperature, truncation and the -1 penalty. None: use the dataset's "
                  "`prompt` column with `response_length` and `temperature`, no truncation."},
    )
    response_length: int | None = field(
        default=None, metadata={"help": "Tokens sampled per response (fixed length). Default: the task's value."}
    )
    temperature: float | None = field(
        default=None,
        metadata={"help": "Sampling temperature, also applied to the logits whenever log-probs are computed. "
                  "Default: the task's value."},
    )
    stop_at_eos: bool | None = field(
        default=None,
        metadata={"help": "End each response before the tokenizer's first EOS (an instruct model's end of turn; the "
                  "tokens sampled after it are padding to the reward and the labeler, and the response counts as "
                  "valid). Default: the task's value (off for the paper's tasks and without a task)."},
    )
    penalize_invalid: bool = field(
        default=True,
        metadata={"help": "A response without the task's truncate token in its window scores the task's "
                  "penalty_reward (-1) instead of the reward (the paper). False: it is scored like any other, so "
                  "a short run spends no KL on the rule (a miniature's choice when ρ rarely meets it)."},
    )
    sampling_dtype: str = field(
        default="float32",
        metadata={"help": "Precision of the rollouts' sampling alone (autocast around `generate`): 'float32', "
                  "'bfloat16', or 'auto' (bfloat16 where the CPU/GPU computes it natively). Log-probs, values, "
                  "KL, rewards and updates keep the training precision. Under bf16 mixed precision sampling is bf16 "
                  "anyway."},
    )
    rollout_forward_batch_size: int = field(
        default=32, metadata={"help": "Rows per no-grad forward pass (policy, reference, reward) during rollouts."}
    )
    # PPO
    num_ppo_epochs: int = field(default=4, metadata={"help": "Passes over each rollout batch (noptepochs)."})
    num_mini_batches: int = field(default=1, metadata={"help": "Optimizer steps per PPO epoch (nminibatches)."})
    gamma: float = field(default=1.0, metadata={"help": "Discount factor γ of GAE."})
    lam: float = field(default=0.95, metadata={"help": "GAE λ."})
    cliprange: float = field(default=0.2, metadata={"help": "Clip range ε of the policy ratio."})
    cliprange_value: float = field(default=0.2, metadata={"help": "Clip range of the value prediction around the old value."})
    vf_coef: float = field(default=0.1, metadata={"help": "Weight of the value loss in the total loss."})
    whiten_rewards: bool = field(
        default=True,
        metadata={"help": "Scale per-token rewards by their minibatch std before GAE (the mean is kept). On for the "
                  f"style tasks, off for summarization. Needs >= {MIN_WHITEN_MINIBATCH} episodes per minibatch on each "
                  "process (per_device_train_batch_size × gradient_accumulation_steps), as the paper's code asserts."},
    )
    reward_shaping: str = field(
        default="none",
        metadata={"help": "'none' (the paper): r(x, y) at the last token. 'potential': spread it over the tokens as "
                  "Φ(s_{t+1}) − Φ(s_t), Φ(s_t) = the reward model's score of the query and the first t response "
                  "tokens (read from the same forward); the return from the first token is r(x, y) − Φ(s_0), so the "
                  "optimal policy is unchanged while each token is credited with the change of score it made. Needs "
                  "a reward_model (not a reward_fn). Use with λ < 1, which is what makes the credit local."},
    )
    # KL penalty
    kl_control: str = field(
        default="adaptive", metadata={"help": "'adaptive' (β driven toward kl_target) or 'fixed' (β = init_kl_coef)."}
    )
    init_kl_coef: float = field(default=0.15, metadata={"help": "Initial (or fixed) KL coefficient β."})
    kl_target: float = field(default=6.0, metadata={"help": "Target KL(π‖ρ) per response in nats (adaptive control)."})
    kl_horizon: int = field(default=10000, metadata={"help": "Horizon of the adaptive controller, in episodes."})
    kl_warn_factor: float = field(
        default=3.0, metadata={"help": "Warn when the measured KL exceeds this multiple of kl_target (adaptive control)."}
    )
    # Safety checks
    reward_check: bool = field(
        default=True,
        metadata={"help": "Before training, score held-out comparisons (eval_labels, or the held_out_labels.jsonl the "
                  "reward stage saves in a reward model folder) and test how often the reward picks the labeled best "
                  "against chance (1/K) by a one-sided exact binomial test at reward_check_alpha: a reward "
                  "significantly worse than chance (a flipped sign, a wrong input format) is refused, one not "
                  "significantly better is warned about. False: no check, said in the log."},
    )
    reward_check_alpha: float = field(
        default=0.01, metadata={"help": "Significance level of the reward check's binomial tests (0 < α < 1)."}
    )
    # Run length and optimisation
    total_episodes: int | None = field(
        default=None,
        metadata={"help": "Episodes to train on; sets max_steps = ceil(total_episodes / rollout_batch_size) × "
                  "num_ppo_epochs × num_mini_batches. None: use max_steps or num_train_epochs."},
    )
    learning_rate: float = field(default=1e-5, metadata={"help": "Adam learning rate (linearly decayed to 0)."})
    lr_schedule_per_update: bool = field(
        default=True,
        metadata={"help": "Step the learning-rate schedule once per PPO update: every optimizer step of an update "
                  "uses the rate of the update's first step, so 'linear' gives lr·(1 − u/n_updates) at update u, as "
                  "the paper's code. False: the Trainer's schedule stepped at every optimizer step. Applies to the "
                  "step schedules (all but reduce_lr_on_plateau and greedy); excludes warmup, which would hold "
                  "the whole first update at rate 0."},
    )
    adam_epsilon: float = field(default=1e-5, metadata={"help": "Adam ε (the paper's code: 1e-5)."})
    tf_adam: bool = field(
        default=False,
        metadata={"help": "Use TensorFlow-style Adam (ε outside the bias correction), as the paper's code did; "
                  "PyTorch's Adam makes much larger early updates."},
    )
    bf16: bool | None = field(
        default=None, metadata={"help": "bf16 mixed precision. Default: on only when CUDA supports bf16 (never on CPU)."}
    )
    gradient_checkpointing: bool | None = field(
        default=None,
        metadata={"help": "Deprecated alias of transformers' `activation_checkpointing` (off by default here, where "
                  "TRL's configs turn it on): recompute activations in the backward pass to save memory."},
    )
    cache_frozen_blocks: bool = field(
        default=True,
        metadata={"help": "When the policy's bottom blocks are frozen (e.g. `freeze_bottom_layers`), the PPO epochs "
                  "start from the hidden states the rollout computed at the first trainable block instead of rerunning "
                  "the frozen blocks: same numbers, less compute. So do ρ's rollout forward when ρ is the policy's copy, "
                  "and the reward model's when its embeddings and bottom blocks are the policy's frozen ones (e.g. a "
                  "head-only reward model trained from ρ). Each checked once against a full forward (a warning and "
                  "full forwards where an architecture differs). Off with dropout, gradient checkpointing, DeepSpeed or "
                  "FSDP."},
    )
    save_merged_model: bool = field(
        default=False,
        metadata={"help": "With peft_config: `save_model` writes the policy with its adapters merged into the base "
                  "weights (a plain causal-LM folder). False: the adapters only (ρ is the base). Checkpoints always "
                  "keep the adapters so a run can resume."},
    )
    logging_steps: float = field(default=1, metadata={"help": "Log every X optimizer steps."})
    logging_nan_inf_filter: bool = field(
        default=False,
        metadata={"help": "The Trainer's filter of non-finite losses out of the logged loss; off because a non-finite "
                  "PPO loss stops the run, and the filter costs a host sync every micro-step."},
    )
    disable_dropout: bool = field(default=True, metadata={"help": "Turn off dropout in all models (the paper's code)."})
    log_completions: bool = field(
        default=True, metadata={"help": "Print a table of sample completions with score and KL at each log."}
    )
    num_completions_to_print: int = field(default=4, metadata={"help": "Rows of the completions table."})
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Kept False: the trainer reads its own query columns."}
    )

    def __post_init__(self):
        if self.bf16 is None:
            self.bf16 = cuda_bf16_available()
        warn_if_slow_bf16(self.bf16)
        if self.kl_control not in ("adaptive", "fixed"):
            raise ValueError(f"kl_control must be 'adaptive' or 'fixed', got {self.kl_control!r}")
        if self.sampling_dtype not in SAMPLING_DTYPES:
            raise ValueError(f"sampling_dtype must be one of {SAMPLING_DTYPES}, got {self.sampling_dtype!r}")
        if self.reward_shaping not in REWARD_SHAPINGS:
            raise ValueError(f"reward_shaping must be one of {REWARD_SHAPINGS}, got {self.reward_shaping!r}")
        if not 0 < self.reward_check_alpha < 1:
            raise ValueError(f"reward_check_alpha must be in (0, 1), got {self.reward_check_alpha}")
        for name in ("num_ppo_epochs", "num_mini_batches", "rollout_forward_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        super().__post_init__()
        minibatch = self.per_device_train_batch_size * self.gradient_accumulation_steps
        if self.whiten_rewards and minibatch < MIN_WHITEN_MINIBATCH:
            raise UserInputError(
                f"whiten_rewards needs at least {MIN_WHITEN_MINIBATCH} episodes per minibatch on each process, as the "
                f"paper's code asserts; per_device_train_batch_size × gradient_accumulation_steps = "
                f"{self.per_device_train_batch_size} × {self.gradient_accumulation_steps} = {minibatch}. Raise them, or "
                "set whiten_rewards=False (as the paper's summarization runs do)"
            )
        if self.lr_schedule_per_update and self.warmup_steps > 0:
            raise UserInputError(
                f"warmup_steps={self.warmup_steps} with lr_schedule_per_update: the whole first PPO update would train "
                "at the warmup's starting rate 0. Set warmup_steps=0 (the paper has no warmup) or "
                "lr_schedule_per_update=False to warm up per optimizer step"
            )
        if self.total_episodes is not None:
            self.max_steps = math.ceil(self.total_episodes / self.rollout_batch_size) * self.steps_per_update
        if self.save_strategy == "steps" and self.save_steps >= 1 and int(self.save_steps) % self.steps_per_update:
            raise ValueError(
                f"save_steps ({self.save_steps}) must be a multiple of the optimizer steps per PPO update "
                f"(num_ppo_epochs × num_mini_batches = {self.steps_per_update}) so checkpoints fall between updates "
                "and a resumed run continues exactly"
            )

    @property
    def steps_per_update(self) -> int:
        """Optimizer steps per rollout batch."""
        return self.num_ppo_epochs * self.num_mini_batches

    @property
    def local_rollout_batch_size(self) -> int:
        """Episodes each process samples per PPO update."""
        return self.per_device_train_batch_size * self.gradient_accumulation_steps * self.num_mini_batches

    @property
    def rollout_batch_size(self) -> int:
        """Episodes sampled per PPO update over all processes (the paper's batch size)."""
        return self.local_rollout_batch_size * self.world_size
