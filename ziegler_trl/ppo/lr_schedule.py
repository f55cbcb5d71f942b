"""The learning-rate schedule stepped once per PPO update, as the paper's code steps it.

lm-human-preferences decays PPO's rate with the update counter, lr·(1 − u/n_updates) at update u, so every optimizer
step of one update (all its epochs and minibatches) uses the same rate. The Trainer steps its schedule at every
optimizer step; `hold_within_updates` makes the schedule read the step at which the current update began.
"""

from __future__ import annotations

from collections.abc import Callable

from torch.optim.lr_scheduler import LambdaLR


def _held(factor: Callable[[int], float], steps_per_update: int) -> Callable[[int], float]:
    # A plain function (not a callable object), so LambdaLR's state_dict stores nothing for it and a checkpoint
    # resumes from `last_epoch` alone.
    def held(step: int) -> float:
        return factor(step - step % steps_per_update)

    return held


def hold_within_updates(scheduler: LambdaLR, steps_per_update: int) -> LambdaLR:
    """Make `scheduler` (any LambdaLR: linear, cosine, constant, ...) give optimizer step s the factor of step
    s − (s mod steps_per_update), the first step of its PPO update. For 'linear' without warmup that is the
    paper's lr·(1 − u/n_updates), with n_updates = max_steps / steps_per_update. Returns the scheduler."""
    if steps_per_update < 1:
        raise ValueError(f"steps_per_update must be >= 1, got {steps_per_update}")
    scheduler.lr_lambdas = [_held(factor, steps_per_update) for factor in scheduler.lr_lambdas]
    return scheduler
