"""The KL coefficient β of the paper's reward R = r − β·log(π/ρ), fixed or adapted toward a KL target.

`AdaptiveKLCallback` drives the `beta` of TRL's own online trainers (`RLOOTrainer`, `GRPOTrainer`) with the same
controller, for users who stay on those trainers.
"""

from __future__ import annotations

import json
import math
import os

from transformers import (
    TrainerCallback,
    TrainerControl,
    TrainerState,
    TrainingArguments,
)
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

KL_CONTROLLER_FILE = "kl_controller.json"


class FixedKLController:
    """β that never moves."""

    def __init__(self, kl_coef: float):
        self.value = float(kl_coef)

    def update(self, current_kl: float, n_steps: int) -> None:
        """A fixed β ignores the measured KL."""

    def state_dict(self) -> dict:
        return {"value": self.value}

    def load_state_dict(self, state: dict) -> None:
        self.value = float(state["value"])


class AdaptiveKLController:
    """β adapted toward a target KL (Ziegler et al. 2019, eq. 2):

        e_t = clip(KL_t / KL_target − 1, −0.2, 0.2)
        β_{t+1} = β_t · (1 + K_β · e_t),   K_β = n_steps / horizon

    `n_steps` is the number of episodes the measured KL was averaged over (the batch size), so β moves by at most
    20% every `horizon` episodes.
    """

    def __init__(self, init_kl_coef: float, target: float, horizon: int):
        if target <= 0:
            raise ValueError(f"AdaptiveKLController: target must be > 0, got {target}")
        if horizon <= 0:
            raise ValueError(f"AdaptiveKLController: horizon must be > 0, got {horizon}")
        self.value = float(init_kl_coef)
        self.target = float(target)
        self.horizon = int(horizon)

    def update(self, current_kl: float, n_steps: int) -> None:
        if not math.isfinite(current_kl):
            raise FloatingPointError(f"AdaptiveKLController.update got a non-finite KL ({current_kl})")
        error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_steps / self.horizon

    def state_dict(self) -> dict:
        return {"value": self.value, "target": self.target, "horizon": self.horizon}

    def load_state_dict(self, state: dict) -> None:
        self.value = float(state["value"])
        self.target = float(state["target"])
        self.horizon = int(state["horizon"])


KLController = FixedKLController | AdaptiveKLController


def save_controller(controller: KLController, folder: str) -> None:
    with open(os.path.join(folder, KL_CONTROLLER_FILE), "w") as handle:
        json.dump({"type": type(controller).__name__, **controller.state_dict()}, handle)


def load_controller(controller: KLController, folder: str) -> None:
    path = os.path.join(folder, KL_CONTROLLER_FILE)
    with open(path) as handle:
        state = json.load(handle)
    if state.pop("type") != type(controller).__name__:
        raise ValueError(f"{path} holds a {state['type']} state; this run uses {type(controller).__name__}")
    controller.load_state_dict(state)


class AdaptiveKLCallback(TrainerCallback):
    """Drive `trainer.beta` of TRL's `RLOOTrainer` / `GRPOTrainer` with a KL controller.

    Those trainers log `kl`, the mean per-token KL of their last batches, and `completions/mean_length`. The
    paper's controller works on the KL of whole responses, so the callback feeds it `kl × mean_length` once per log
    (set `logging_steps=1` for one update per optimizer step), with `n_steps` = episodes sampled since the last
    update. The controller state is written to each checkpoint and read back when a run resumes.

    Usage: `AdaptiveKLCallback(controller).attach(trainer)` before `trainer.train()`.
    """

    def __init__(self, controller: KLController):
        self.controller = controller
        self.trainer = None
        self.history: list[dict] = []  # (step, KL fed to the controller, β after the update), one per log
        self._last_step = 0

    def attach(self, trainer) -> AdaptiveKLCallback:
        if not hasattr(trainer, "beta"):
            raise TypeError(f"{type(trainer).__name__} has no `beta` attribute to drive (use RLOOTrainer or GRPOTrainer)")
        if trainer.beta == 0.0:
            raise ValueError(
                f"{type(trainer).__name__} was built with beta=0.0, so it loaded no reference model and computes no "
                "KL; build it with a non-zero `beta` (e.g. the controller's initial value)"
            )
        self.trainer = trainer
        trainer.beta = self.controller.value
        if self not in trainer.callback_handler.callbacks:
            trainer.add_callback(self)
        return self

    def _episodes_per_step(self, args: TrainingArguments) -> float:
        """Fresh episodes sampled per optimizer step: one generation batch every steps_per_generation × num_iterations
        micro-steps."""
        micro_per_generation = args.steps_per_generation * getattr(args, "num_iterations", 1)
        return args.generation_batch_size * args.gradient_accumulation_steps / micro_per_generation

    def on_train_begin(self, args, state: TrainerState, control: TrainerControl, **kwargs):
        if self.trainer is None:
            raise RuntimeError("AdaptiveKLCallback was not attached: call `AdaptiveKLCallback(controller).attach(trainer)`")
        self._last_step = state.global_step
        checkpoint = os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")
        if state.global_step > 0 and os.path.isfile(os.path.join(checkpoint, KL_CONTROLLER_FILE)):
            load_controller(self.controller, checkpoint)
        self.trainer.beta = self.controller.value

    def on_log(self, args, state: TrainerState, control: TrainerControl, logs=None, **kwargs):
        if not logs or "kl" not in logs or logs["kl"] is None:
            return
        sequence_kl = logs["kl"] * logs.get("completions/mean_length", 1.0)
        n_steps = round((state.global_step - self._last_step) * self._episodes_per_step(args))
        self._last_step = state.global_step
        if n_steps > 0:
            self.controller.update(sequence_kl, n_steps)
        self.trainer.beta = self.controller.value
        self.history.append({"step": state.global_step, "sequence_kl": sequence_kl, "kl_coef": self.controller.value})

    def on_save(self, args, state: TrainerState, control: TrainerControl, **kwargs):
        if state.is_world_process_zero:
            checkpoint = os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")
            os.makedirs(checkpoint, exist_ok=True)
            save_controller(self.controller, checkpoint)
