"""Which prompts each PPO update samples from: a fresh permutation per epoch, seeded by (seed, epoch).

The Trainer pulls one batch per micro-step, so each rollout batch of prompts is yielded once per micro-step of its
update; `_prepare_inputs` samples on the first and trains on the buffer for the rest. Seeding by epoch (not by
advancing one generator) lets a run resumed in a later epoch see the same prompt order as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Iterator, Sized

import torch
from torch.utils.data import Sampler


class RolloutSampler(Sampler[int]):
    def __init__(self, data_source: Sized, rollout_batch_size: int, repeat_count: int, seed: int):
        if len(data_source) < rollout_batch_size:
            raise ValueError(
                f"The training set has {len(data_source)} usable prompts, fewer than one rollout batch "
                f"({rollout_batch_size}); add prompts or lower the batch size"
            )
        self.num_samples = len(data_source)
        self.rollout_batch_size = rollout_batch_size
        self.repeat_count = repeat_count
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(self.num_samples, generator=generator).tolist()
        for start in range(0, len(self) // self.repeat_count, self.rollout_batch_size):
            chunk = order[start : start + self.rollout_batch_size]
            for _ in range(self.repeat_count):
                yield from chunk

    def __len__(self) -> int:
        return (self.num_samples // self.rollout_batch_size) * self.rollout_batch_size * self.repeat_count
