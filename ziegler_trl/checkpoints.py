"""Outputs that become visible only when complete: the trainers' checkpoints and the stages' files.

The Trainer writes `checkpoint-N/` file by file, so a run killed during a save left a folder that
`resume_from_checkpoint=True` took for the newest checkpoint and could not load. With `AtomicCheckpoints` every save
goes to `<output_dir>/_incomplete/checkpoint-N/` first; once every process has written its part, the saving process
fsyncs the files and renames the folder to `checkpoint-N`, which on one filesystem is atomic. A folder named
`checkpoint-N` is therefore always whole: a kill during a save leaves only the `_incomplete/` copy, which resuming
skips with a warning and the next save clears. (The leading "_" also keeps it out of the Trainer's Hub upload of
`output_dir`.)
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path

from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints

logger = logging.getLogger(__name__)

INCOMPLETE_DIR = "_incomplete"
TRAINER_STATE_FILE = "trainer_state.json"  # the Trainer writes it last (transformers' TRAINER_STATE_NAME)
_CHECKPOINT_NAME = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")


def _fsync(path: str | Path, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_tree(path: str | Path) -> None:
    """Flush every file and folder under `path` (a file or a folder) to disk, so a rename after it publishes data
    that a power cut cannot take back."""
    path = Path(path)
    if path.is_file():
        _fsync(path)
        return
    for root, _dirs, files in os.walk(path, topdown=False):
        for name in files:
            _fsync(os.path.join(root, name))
        _fsync(root, directory=True)


def write_text_atomically(path: str | Path, text: str) -> None:
    """Replace `path` with `text` in one step: a temporary sibling, fsynced, renamed over it."""
    path = Path(path)
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    _fsync(path.parent, directory=True)


def publish_folder(staged: str | Path, final: str | Path) -> None:
    """Make the complete folder `staged` appear as `final` (same filesystem), replacing an older `final`."""
    staged, final = Path(staged), Path(final)
    sync_tree(staged)
    replaced = staged.with_name(staged.name + ".replaced")
    if final.exists():  # a rerun saving the same step again: the old copy goes once the new one is in place
        shutil.rmtree(replaced, ignore_errors=True)
        os.replace(final, replaced)
    os.replace(staged, final)
    _fsync(final.parent, directory=True)
    shutil.rmtree(replaced, ignore_errors=True)


def last_complete_checkpoint(run_dir: str | Path) -> str | None:
    """The newest `checkpoint-N` in `run_dir` that is complete, or None. An unfinished save (left under
    `_incomplete/`) or a folder without `trainer_state.json` (written by code without atomic saves) is skipped with a
    one-line warning."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return None
    unfinished = sorted(run_dir.glob(f"{INCOMPLETE_DIR}/{PREFIX_CHECKPOINT_DIR}-*"))
    for folder in unfinished:
        logger.warning(f"Skipping {folder}: its save did not finish (the run stopped while writing it)")
    found = sorted(
        ((int(match[1]), folder) for folder in run_dir.iterdir()
         if folder.is_dir() and (match := _CHECKPOINT_NAME.match(folder.name))),
        reverse=True,
    )
    for _step, folder in found:
        if (folder / TRAINER_STATE_FILE).is_file():
            return str(folder)
        logger.warning(f"Skipping {folder}: incomplete checkpoint (no {TRAINER_STATE_FILE})")
    return None


class AtomicCheckpoints:
    """Mixin for a `transformers.Trainer` subclass (listed before the Trainer class): checkpoints are staged and
    renamed into place whole, and `train(resume_from_checkpoint=True)` resumes from the newest complete one.

    Subclasses that keep more training state in a checkpoint write it in `_save_extra_checkpoint_state(folder)`, into
    the staged folder, so it is published with the rest."""

    _staging_run_dir: str | None = None  # while a checkpoint is being written: where the Trainer's save goes

    def _get_output_dir(self, trial) -> str:
        return self._staging_run_dir or super()._get_output_dir(trial)

    def _save_extra_checkpoint_state(self, folder: str) -> None:
        """Write subclass state into `folder`, the checkpoint being staged (main process only)."""

    def _save_checkpoint(self, model, trial) -> None:
        run_dir = super()._get_output_dir(trial)
        name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        staging = os.path.join(run_dir, INCOMPLETE_DIR)
        staged, final = os.path.join(staging, name), os.path.join(run_dir, name)
        saving = self.args.should_save
        if saving:  # what an earlier, killed save left there
            shutil.rmtree(staging, ignore_errors=True)
            os.makedirs(staging)
        self.accelerator.wait_for_everyone()
        # The Trainer would push (and rotate) inside its save: both wait until the checkpoint is published.
        push, self.args.push_to_hub = self.args.push_to_hub, False
        self._staging_run_dir = staging
        try:
            super()._save_checkpoint(model, trial)
            if saving:
                self._save_extra_checkpoint_state(staged)
        finally:
            self._staging_run_dir = None
            self.args.push_to_hub = push
        if self.state.best_model_checkpoint == staged:  # the Trainer recorded the staged path as the best
            self.state.best_model_checkpoint = final
            if saving:
                self.state.save_to_json(os.path.join(staged, TRAINER_STATE_FILE))
        self.accelerator.wait_for_everyone()  # every process's files (DeepSpeed / FSDP shards) are written
        if saving:
            publish_folder(staged, final)
            shutil.rmtree(staging, ignore_errors=True)
            rotate_checkpoints(run_dir, save_total_limit=self.args.save_total_limit,
                               best_model_checkpoint=self.state.best_model_checkpoint, use_mtime=True)
        self.accelerator.wait_for_everyone()
        if push:
            self._push_from_checkpoint(final)

    def train(self, resume_from_checkpoint: str | bool | None = None, trial=None, ignore_keys_for_eval=None):
        if resume_from_checkpoint is True:
            resume_from_checkpoint = last_complete_checkpoint(self.args.output_dir)
            if resume_from_checkpoint is None:
                raise ValueError(f"No complete checkpoint found in output directory ({self.args.output_dir})")
        return super().train(resume_from_checkpoint=resume_from_checkpoint, trial=trial,
                             ignore_keys_for_eval=ignore_keys_for_eval)
