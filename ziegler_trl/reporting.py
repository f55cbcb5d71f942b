"""`report_to` integrations write under the stage's `output_dir`, as TRL's trainers do when they only train.

transformers' TensorBoard callback picks `output_dir/runs/<time>_<host>` at `on_train_begin`; a stage that logs
before training (the reward stage evaluates the fresh model first) would otherwise open its writer on the
default `./runs` of the working directory and keep writing there. Weights & Biases keeps its run files in
`$WANDB_DIR`, else `./wandb`: each stage points it at its own output folder unless the user set it. (Trackio
keeps one local database for all projects in its own cache, `$TRACKIO_DIR`, read when it is imported.)
"""

from __future__ import annotations

import os

from transformers import Trainer
from transformers.integrations.integration_utils import TensorBoardCallback, default_logdir

_WANDB_DIR = "WANDB_DIR"
_set_by_us: dict[str, str] = {}


def log_under_output_dir(trainer: Trainer) -> None:
    """Call after building `trainer` and before its first `evaluate()` / `train()`."""
    output_dir = trainer.args.output_dir
    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, TensorBoardCallback) and callback.logging_dir is None and callback.tb_writer is None:
            callback.logging_dir = os.path.join(output_dir, default_logdir())
    if "wandb" in (trainer.args.report_to or []):
        current = os.environ.get(_WANDB_DIR)
        if current is None or current == _set_by_us.get(_WANDB_DIR):  # not the user's own choice
            os.makedirs(output_dir, exist_ok=True)
            os.environ[_WANDB_DIR] = _set_by_us[_WANDB_DIR] = os.path.abspath(output_dir)
