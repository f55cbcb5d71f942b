"""The study's settings and its three presets (`--scale smoke | cpu | gpu`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ..errors import UserInputError
from ..ppo.config import MIN_WHITEN_MINIBATCH
from ..tasks import TASKS, TaskSpec

SCALES = ("smoke", "cpu", "gpu")


@dataclass
class SummarizationStudyConfig:
    """One study's settings; every one of them is fixed for an output folder (a rerun resumes only the same study)."""

    scale: str = field(metadata={"help": "The preset these settings started from."})
    output_dir: str = field(metadata={"help": "Where the study goes."})
    model_name_or_path: str = field(
        default="embedded",
        metadata={"help": "ρ: the initial policy and the reward model's start ('embedded' = SmolLM2-135M-Instruct; "
                  "'smoke' = a tiny random Llama)."},
    )
    dataset_name: str = field(
        default="webis/tldr-17",
        metadata={"help": "TL;DR posts with their authors' TL;DRs: a Hub source of the tldr task, a JSONL file with "
                  "`post` and `summary` fields, or 'builtin' (the package's 40 invented posts)."},
    )
    dataset_split: str = field(default="train", metadata={"help": "Split of a Hub dataset."})
    posts: int = field(default=200, metadata={"help": "Posts read from the start of the data (before filtering)."})
    held_out_posts: int = field(default=40, metadata={"help": "Posts kept out of labeling and PPO for the tables."})
    query_length: int = field(
        default=500, metadata={"help": "Content tokens of a query; longer posts are cut there (the paper: 500)."}
    )
    num_comparisons: int = field(
        default=256, metadata={"help": "Best-of-k comparisons of ρ on the training posts, labeled by the labeler."}
    )
    k: int = field(default=4, metadata={"help": "Completions per comparison (the paper: 4)."})
    reward_trainable_top_layers: int = field(
        default=2, metadata={"help": "Top blocks of the reward model that train, with its norm and head."}
    )
    reward_learning_rate: float = field(default=2e-3, metadata={"help": "Learning rate of the reward model."})
    reward_num_train_epochs: float = field(default=2.0, metadata={"help": "Passes over the labels."})
    reward_batch_size: int = field(default=4, metadata={"help": "Comparisons per reward-model step."})
    reward_normalize_samples: int = field(
        default=64, metadata={"help": "ρ samples the reward is normalised on, before and after training (paper: 256)."}
    )
    policy_trainable_top_layers: int = field(
        default=2, metadata={"help": "Top blocks of the policy that PPO trains (the paper: every weight)."}
    )
    policy_learning_rate: float = field(default=1.3e-4, metadata={"help": "Adam learning rate of PPO (paper: 2e-6)."})
    policy_batch_size: int = field(default=16, metadata={"help": "Episodes per PPO update (the paper: 32)."})
    total_episodes: int = field(default=256, metadata={"help": "PPO episodes (the paper: 1M)."})
    kl_coef: float = field(default=0.03, metadata={"help": "Fixed β of the KL penalty (the paper's TL;DR run: 0.03)."})
    lam: float = field(default=1.0, metadata={"help": "GAE λ (the paper: 0.95; 1 in short runs, docs/quickstart.md)."})
    sampling_dtype: str = field(
        default="auto", metadata={"help": "Precision of every sampling (autocast around generate): auto, float32, "
                                  "bfloat16."}
    )
    seed: int = field(default=0, metadata={"help": "Seed of every stage."})

    def __post_init__(self):
        if self.scale not in SCALES:
            raise UserInputError(f"--scale must be one of {SCALES}, got {self.scale!r}")
        if not 0 < self.held_out_posts < self.posts:
            raise UserInputError(f"--held_out_posts must be between 1 and --posts - 1 ({self.posts - 1}), got "
                                 f"{self.held_out_posts}")
        if self.policy_batch_size < MIN_WHITEN_MINIBATCH:
            raise UserInputError(f"--policy_batch_size must be at least {MIN_WHITEN_MINIBATCH}, got "
                                 f"{self.policy_batch_size}")
        if self.total_episodes < self.policy_batch_size:
            raise UserInputError(f"--total_episodes must be at least one PPO batch ({self.policy_batch_size}), got "
                                 f"{self.total_episodes}")
        if self.num_comparisons < 8 or self.k < 2:
            raise UserInputError(f"need at least 8 comparisons of k >= 2 completions, got {self.num_comparisons} of "
                                 f"{self.k}")
        if self.query_length < 16:
            raise UserInputError(f"--query_length must be at least 16 tokens, got {self.query_length}")

    @property
    def task(self) -> TaskSpec:
        """The paper's TL;DR task (75-token responses cut after a newline at token 55 or later, −1 without one) with
        this study's query length; a response also ends at the instruct model's end of turn (`stop_at_eos`)."""
        return dataclasses.replace(TASKS["tldr"], query_length=self.query_length, stop_at_eos=True)


def preset(scale: str, output_dir: str | None = None) -> SummarizationStudyConfig:
    """The study at `scale`.

    smoke: a tiny random model on the package's 40 invented posts, 16 comparisons, one PPO update: seconds.
    cpu: the embedded model, posts cut to 192 tokens (the paper: 500), 256 comparisons, 256 PPO episodes.
    gpu: the paper's query length (500), 4,096 comparisons from 2,000 posts, 16,384 PPO episodes of 64.
    """
    output_dir = output_dir or f"runs/summarization-{scale}"
    if scale == "smoke":
        return SummarizationStudyConfig(scale, output_dir, model_name_or_path="smoke", dataset_name="builtin",
                                        posts=40, held_out_posts=8, query_length=96, num_comparisons=16,
                                        reward_normalize_samples=8, policy_batch_size=8, total_episodes=8)
    if scale == "cpu":
        return SummarizationStudyConfig(scale, output_dir, query_length=192)
    if scale == "gpu":
        return SummarizationStudyConfig(scale, output_dir, posts=2_200, held_out_posts=200, num_comparisons=4_096,
                                        reward_normalize_samples=256, policy_batch_size=64, total_episodes=16_384)
    raise UserInputError(f"--scale must be one of {SCALES}, got {scale!r}")
