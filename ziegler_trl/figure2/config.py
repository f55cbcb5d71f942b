"""The study's settings and its three presets (`--scale smoke | cpu | gpu`).

A study is a grid of runs: the direct reward, and a reward model for each label count N, each over the same seeds.
Everything but the grid's size is the quickstart's (`QuickstartConfig`: queries, labeler, reward model, PPO), so the
study measures the quickstart's setup, as the paper's Figure 2 measures its mock-sentiment setup.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ..errors import UserInputError
from ..quickstart.config import QuickstartConfig, SmokeQuickstartConfig

SCALES = ("smoke", "cpu", "gpu")
# QuickstartConfig fields the study sets itself (per pool, per run) or never reads.
UNUSED_QUICKSTART_FIELDS = ("output_dir", "num_comparisons", "total_episodes", "eval_samples_per_query")


@dataclass
class Figure2Config:
    """One study's settings. `label_counts` and `seeds` may change between invocations of the same folder (new runs
    are added, finished ones kept); the other fields are fixed for the folder (`fixed_settings`)."""

    scale: str
    output_dir: str
    label_counts: list[int] = field(metadata={"help": "N: comparisons labeled for each reward model."})
    seeds: list[int] = field(metadata={"help": "Seeds of every setting (the paper's Figure 2: 5)."})
    total_episodes: int = field(metadata={"help": "PPO episodes of every run (the paper's Figure 2: 2M)."})
    eval_every: int = field(metadata={"help": "Episodes between measurements of r_s on the held-out queries."})
    eval_samples_per_query: int = field(metadata={"help": "Samples of π per held-out query at each measurement."})
    policy_micro_batch: int = field(metadata={"help": "Episodes per forward/backward in PPO (a memory knob)."})
    quickstart: QuickstartConfig = field(
        metadata={"help": "Queries, labeler, reward model and PPO settings: the quickstart's, with the scale's "
                  "sizes."}
    )

    def __post_init__(self):
        batch = self.quickstart.policy_batch_size
        if self.eval_every < 1 or self.eval_every % batch:
            raise UserInputError(f"--eval_every must be a positive multiple of the PPO batch ({batch} episodes), "
                                 f"got {self.eval_every}")
        if self.policy_micro_batch < 1 or batch % min(self.policy_micro_batch, batch):
            raise UserInputError(f"--policy_micro_batch must divide the PPO batch ({batch}), got "
                                 f"{self.policy_micro_batch}")
        if self.total_episodes < batch:
            raise UserInputError(f"--total_episodes must be at least one PPO batch ({batch}), got "
                                 f"{self.total_episodes}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise UserInputError(f"--seeds must be distinct and at least one, got {self.seeds}")
        if not self.label_counts or min(self.label_counts) < 2 or len(set(self.label_counts)) != len(self.label_counts):
            raise UserInputError(f"--label_counts must be distinct and at least 2 each, got {self.label_counts}")

    def fixed_settings(self) -> dict:
        """What every run of a study folder shares: a rerun with other values would mix incomparable runs."""
        settings = dataclasses.asdict(self)
        for name in ("output_dir", "label_counts", "seeds"):
            settings.pop(name)
        for name in UNUSED_QUICKSTART_FIELDS:
            settings["quickstart"].pop(name)
        return settings


def preset(scale: str, output_dir: str | None = None) -> Figure2Config:
    """The study at `scale`.

    smoke: a tiny random model (the quickstart's smoke preset), N = 8 and 16 labels, 2 seeds, one PPO update each:
        seconds.
    cpu: the embedded model with the quickstart's settings; N = 200 and 800 labels, 3 seeds, 256 episodes each
        (under 2 hours on one CPU core; measured in docs/figure2.md).
    gpu: the paper's PPO batch (512 episodes) and KL horizon (10,000 episodes), N = 1,250 / 2,500 / 5,000 labels,
        5 seeds, 65,536 episodes each.
    """
    if scale not in SCALES:
        raise UserInputError(f"--scale must be one of {SCALES}, got {scale!r}")
    output_dir = output_dir or f"runs/figure2-{scale}"
    if scale == "smoke":
        quickstart = SmokeQuickstartConfig(output_dir=output_dir)
        return Figure2Config(scale, output_dir, label_counts=[8, 16], seeds=[0, 1], total_episodes=8, eval_every=8,
                             eval_samples_per_query=1, policy_micro_batch=8, quickstart=quickstart)
    if scale == "cpu":
        # Sized to run beside other work in a working session: N a quarter apart, as the gpu preset's 1,250 / 5,000.
        quickstart = QuickstartConfig(output_dir=output_dir)
        return Figure2Config(scale, output_dir, label_counts=[200, 800], seeds=[0, 1, 2], total_episodes=256,
                             eval_every=64, eval_samples_per_query=2, policy_micro_batch=8, quickstart=quickstart)
    quickstart = QuickstartConfig(output_dir=output_dir, passages_per_opening=32, held_out_queries=128,
                                  policy_batch_size=512, kl_horizon=10_000)
    return Figure2Config(scale, output_dir, label_counts=[1250, 2500, 5000], seeds=[0, 1, 2, 3, 4],
                         total_episodes=65_536, eval_every=4096, eval_samples_per_query=4, policy_micro_batch=64,
                         quickstart=quickstart)
