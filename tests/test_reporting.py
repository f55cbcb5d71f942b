"""report_to writes under each stage's output_dir (the reward stage's TensorBoard run: tests/test_model_cards.py)."""

import os
from types import SimpleNamespace

from ziegler_trl.reporting import log_under_output_dir


def stage(output_dir, report_to):
    return SimpleNamespace(args=SimpleNamespace(output_dir=str(output_dir), report_to=report_to),
                           callback_handler=SimpleNamespace(callbacks=[]))


def test_wandb_files_follow_each_stage_unless_the_user_chose(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_DIR", raising=False)
    log_under_output_dir(stage(tmp_path / "reward", ["wandb"]))
    assert (tmp_path / "reward").is_dir()
    assert os.environ["WANDB_DIR"] == str(tmp_path / "reward")
    log_under_output_dir(stage(tmp_path / "policy", ["wandb"]))  # the next stage of the same process
    assert os.environ["WANDB_DIR"] == str(tmp_path / "policy")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "mine"))  # the user's own choice is kept
    log_under_output_dir(stage(tmp_path / "sft", ["wandb"]))
    assert os.environ["WANDB_DIR"] == str(tmp_path / "mine")
    monkeypatch.delenv("WANDB_DIR")
    log_under_output_dir(stage(tmp_path / "quiet", ["tensorboard"]))
    assert "WANDB_DIR" not in os.environ
