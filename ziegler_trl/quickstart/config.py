"""The quickstart's options: the shared stage options (`StageConfig`) with the quickstart's defaults, the fields of
its own stages, and the smoke preset. Why each default differs from the paper, with the measurements: docs/
quickstart.md."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config_files import override_default
from ..errors import UserInputError
from ..models import SAMPLING_DTYPES
from ..stages import StageConfig

# Option names of earlier releases → today's (accepted with a warning, argv and YAML; a saved run's config.json).
RENAMED = {
    "model": "model_name_or_path",
    "trainable_top_layers": "policy_trainable_top_layers",
    "reward_top_layers": "reward_trainable_top_layers",
    "reward_lr": "reward_learning_rate",
    "reward_epochs": "reward_num_train_epochs",
    "ppo_episodes": "total_episodes",
    "ppo_batch_size": "policy_batch_size",
    "ppo_lr": "policy_learning_rate",
    "ppo_lr_scheduler": "policy_lr_scheduler_type",
    "gae_lambda": "lam",
    "validity_penalty": "penalize_invalid",
}


@dataclass
class QuickstartConfig(StageConfig):
    output_dir: str = override_default(StageConfig, "output_dir", "runs/quickstart")
    reward_learning_rate: float = override_default(StageConfig, "reward_learning_rate", 2e-3)
    policy_learning_rate: float = override_default(StageConfig, "policy_learning_rate", 1.3e-4)
    smoke: bool = field(
        default=False,
        metadata={"help": "Run the smoke preset: a tiny random model and tiny sizes, a plumbing check. Its sizes "
                  "are defaults: options given with it keep their values."},
    )
    query_length: int = field(default=32, metadata={"help": "Query tokens (the paper: 64)."})
    passages_per_opening: int = field(
        default=3, metadata={"help": "Continuations of each story opening sampled by ρ; each one, cut by the task's "
                             "rules, becomes a query."}
    )
    passage_tokens: int = field(default=56, metadata={"help": "Length of each sampled passage, in tokens."})
    held_out_queries: int = field(
        default=40, metadata={"help": "Queries kept out of labeling and PPO for the evaluation (at most a quarter)."}
    )
    num_comparisons: int = field(
        default=576, metadata={"help": "Best-of-K comparisons sampled from ρ and labeled (the paper: 5k labels)."}
    )
    labeler_skip_ties: bool = field(
        default=True,
        metadata={"help": "The simulated labeler skips a comparison whose top VADER score is shared instead of "
                  "picking one of the tied completions (the paper's labeler always picks)."},
    )
    policy_trainable_top_layers: int = field(
        default=2,
        metadata={"help": "Top blocks of the policy that PPO trains, with its final norm and heads (the paper: every "
                  "weight)."},
    )
    reward_trainable_top_layers: int = field(
        default=2,
        metadata={"help": "Top blocks of the reward model that train, with its final norm and head; 0 trains only "
                  "those two (the paper: every weight)."},
    )
    reward_normalize_samples: int = field(
        default=256,
        metadata={"help": "Raw ρ samples (one per comparison's prompt, not cut at the '.') the reward is normalised "
                  "on, before and after training (the paper: 256)."},
    )
    reward_num_train_epochs: float = field(
        default=2.0, metadata={"help": "Passes over the labels in reward training (the paper: 1)."}
    )
    total_episodes: int = field(default=448, metadata={"help": "PPO episodes (the paper's sentiment run: 1M)."})
    policy_lr_scheduler_type: str = field(
        default="constant",
        metadata={"help": "Learning-rate schedule of PPO: 'constant', or any transformers scheduler name such as "
                  "'linear' (decay to 0, the paper's)."},
    )
    kl_horizon: int = field(
        default=64,
        metadata={"help": "Horizon of the adaptive KL controller in episodes: one update moves β by a factor of at "
                  "most 1 ± 0.2 × its episodes / horizon (the paper: 10,000)."},
    )
    reward_shaping: str = field(
        default="none",
        metadata={"help": "'none' (the paper): the reward model's score at the last token. 'potential': each token "
                  "earns the change it made to the score of the response so far (use with lam 0.95)."},
    )
    lam: float = field(default=1.0, metadata={"help": "GAE λ; 1 is the Monte-Carlo return (the paper: 0.95)."})
    penalize_invalid: bool = field(
        default=False,
        metadata={"help": "Score a response without '.' in tokens 16-24 with -1 (the paper's sentiment rule, on by "
                  "default in the library). Responses are truncated at the '.' either way."},
    )
    stop_at_eos: bool = field(
        default=True,
        metadata={"help": "End every response (and query passage) before ρ's EOS, <|im_end|>, the instruct model's "
                  "end of turn, and count it as valid (not the paper's: GPT-2 samples a fixed length)."},
    )
    sampling_dtype: str = field(
        default="auto",
        metadata={"help": "Precision of every sampling: ρ's query passages, comparisons and normalisation samples, "
                  "PPO's rollouts (autocast around generate) and the evaluation's samples of ρ and π. 'auto': "
                  "bfloat16 where the CPU/GPU computes it natively, else float32; or 'float32' / 'bfloat16'. "
                  "Log-probs, KL, rewards, the labeler and training stay float32."},
    )
    eval_samples_per_query: int = field(
        default=8, metadata={"help": "Samples per held-out query from π and ρ for the report's 2-way comparisons."}
    )

    def __post_init__(self):
        if self.smoke and not isinstance(self, SmokeQuickstartConfig):
            raise UserInputError("smoke is the smoke preset: choose it with --smoke on the command line, or "
                                 "SmokeQuickstartConfig in Python, not in a config file")
        if self.sampling_dtype not in SAMPLING_DTYPES:
            raise ValueError(f"sampling_dtype must be one of {SAMPLING_DTYPES}, got {self.sampling_dtype!r}")
        # Checked here, not when the PPO stage builds its config after minutes of labeling and reward training.
        from transformers import SchedulerType

        schedulers = [s.value for s in SchedulerType]
        if self.policy_lr_scheduler_type not in schedulers:
            raise ValueError(f"policy_lr_scheduler_type must be one of {schedulers}, got "
                             f"{self.policy_lr_scheduler_type!r}")
        super().__post_init__()


@dataclass
class SmokeQuickstartConfig(QuickstartConfig):
    """The smoke preset: a tiny random Llama with the embedded tokenizer instead of ρ, and tiny sizes. A random
    model's gibberish is mostly VADER-neutral, so the labeler picks among ties instead of skipping them."""

    smoke: bool = override_default(QuickstartConfig, "smoke", True)
    passages_per_opening: int = override_default(QuickstartConfig, "passages_per_opening", 1)
    passage_tokens: int = override_default(QuickstartConfig, "passage_tokens", 40)
    held_out_queries: int = override_default(QuickstartConfig, "held_out_queries", 6)
    num_comparisons: int = override_default(QuickstartConfig, "num_comparisons", 16)
    labeler_skip_ties: bool = override_default(QuickstartConfig, "labeler_skip_ties", False)
    reward_batch_size: int = override_default(QuickstartConfig, "reward_batch_size", 4)
    total_episodes: int = override_default(QuickstartConfig, "total_episodes", 16)
    policy_batch_size: int = override_default(QuickstartConfig, "policy_batch_size", 8)
    kl_horizon: int = override_default(QuickstartConfig, "kl_horizon", 100)
    eval_samples_per_query: int = override_default(QuickstartConfig, "eval_samples_per_query", 1)

    def __post_init__(self):
        if not self.smoke:
            raise UserInputError("SmokeQuickstartConfig is the smoke preset: smoke cannot be false there")
        if self.model_name_or_path != "embedded":
            raise UserInputError(f"--smoke runs a tiny random model (with the embedded tokenizer), so "
                                 f"--model_name_or_path {self.model_name_or_path} cannot go with it: drop one of them")
        super().__post_init__()
