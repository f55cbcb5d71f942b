"""Atomic checkpoints: a kill -9 at any file of a save still resumes exactly; unfinished saves are skipped by name."""

import builtins
import io
import json
import logging
import os
import shutil
import signal
import sys

import pytest
import safetensors.torch
import torch

from tests.test_ppo_trainer import make_trainer
from tests.test_reward_trainer import comparisons, config
from ziegler_trl import BestOfKRewardTrainer
from ziegler_trl.checkpoints import (
    INCOMPLETE_DIR,
    last_complete_checkpoint,
    publish_folder,
    write_text_atomically,
)
from ziegler_trl.ppo import ZieglerPPOTrainer

# 2 rollouts of 4 episodes × 2 PPO epochs: optimizer steps 1-4, checkpoints at steps 2 and 4 (the last one kept).
RUN = dict(total_episodes=8, save_strategy="steps", save_steps=2, save_total_limit=1, response_length=4)
KILLED_SAVE = "checkpoint-4"


class SaveTrap:
    """Counts what a checkpoint save does to the disk — each file written (`open` for writing, `torch.save`,
    safetensors' `save_file`), each rename and each folder removal — and SIGKILLs the process at the N-th one of the
    watched save. A file being written when the kill comes is left half written."""

    def __init__(self, monkeypatch):
        self.kill_at: int | None = None
        self.events: list[str] = []
        self.watching = False
        original_save_checkpoint = ZieglerPPOTrainer._save_checkpoint

        def save_checkpoint(trainer, model, trial):
            self.watching = trainer.state.global_step == 4
            try:
                original_save_checkpoint(trainer, model, trial)
            finally:
                self.watching = False

        monkeypatch.setattr(ZieglerPPOTrainer, "_save_checkpoint", save_checkpoint)
        real_open = builtins.open

        def open_(file, mode="r", *args, **kwargs):
            handle = real_open(file, mode, *args, **kwargs)
            if any(flag in mode for flag in "wax+"):
                self.event(f"open {file}")  # killed here: the file exists, empty
            return handle

        for module in (builtins, io):
            monkeypatch.setattr(module, "open", open_)
        for name, writer in (("torch.save", torch.save), ("save_file", safetensors.torch.save_file)):
            wrapped = self.half_written(name, writer)
            for module in list(sys.modules.values()):  # every module that imported the writer by name
                for attribute, value in list(getattr(module, "__dict__", {}).items()):
                    if value is writer:
                        monkeypatch.setattr(module, attribute, wrapped)
        for module, name in ((os, "replace"), (os, "rename"), (shutil, "rmtree")):
            monkeypatch.setattr(module, name, self.before(f"{module.__name__}.{name}", getattr(module, name)))

    def event(self, what: str) -> None:
        if not self.watching:
            return
        self.events.append(what)
        if len(self.events) == self.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    def before(self, name, function):
        def call(*args, **kwargs):
            self.event(f"{name} {args[0]}")
            return function(*args, **kwargs)

        return call

    def half_written(self, name, writer):
        def write(obj, path, *args, **kwargs):
            result = writer(obj, path, *args, **kwargs)
            if self.watching and len(self.events) + 1 == self.kill_at and isinstance(path, (str, os.PathLike)):
                os.truncate(path, os.path.getsize(path) // 2)
            self.event(f"{name} {path}")
            return result

        return write


def final_state(trainer):
    return trainer.kl_controller.value, {k: v.clone() for k, v in trainer.model.state_dict().items()}


def test_a_kill_at_any_file_of_a_checkpoint_save_resumes_like_an_uninterrupted_run(
    tiny_tokenizer, tmp_path, monkeypatch, caplog
):
    trap = SaveTrap(monkeypatch)
    reference = make_trainer(tiny_tokenizer, tmp_path, name="reference", **RUN)
    reference.train()
    events = list(trap.events)
    beta, weights = final_state(reference)
    # the save writes the weights, value head, optimizer, scheduler, RNG, trainer state and β, then publishes
    assert sum(e.startswith(("open", "torch.save", "save_file")) for e in events) >= 10
    assert any(e.startswith("os.replace") and e.endswith(f"{INCOMPLETE_DIR}/{KILLED_SAVE}") for e in events)
    assert [p.name for p in (tmp_path / "reference").glob("checkpoint-*")] == [KILLED_SAVE]  # rotated: limit 1

    for kill_at in range(1, len(events) + 1):
        name = f"killed-{kill_at}"
        trap.kill_at, trap.events = kill_at, []
        pid = os.fork()
        if pid == 0:  # the child trains until the trap kills it
            try:
                make_trainer(tiny_tokenizer, tmp_path, name=name, **RUN).train()
            finally:
                os._exit(3)
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, (kill_at, events[kill_at - 1])
        trap.kill_at = None

        out = tmp_path / name
        visible = sorted(p.name for p in out.iterdir() if p.name.startswith("checkpoint-"))
        for checkpoint in visible:  # every folder named checkpoint-N is whole
            assert {"trainer_state.json", "kl_controller.json", "value_head.safetensors", "optimizer.pt"} <= {
                p.name for p in (out / checkpoint).iterdir()}, (kill_at, checkpoint)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="ziegler_trl.checkpoints"):
            resumed = make_trainer(tiny_tokenizer, tmp_path, name=name, **RUN)
            resumed.train(resume_from_checkpoint=True)
        if (out / INCOMPLETE_DIR / KILLED_SAVE).exists():
            assert f"Skipping {out / INCOMPLETE_DIR / KILLED_SAVE}: its save did not finish" in caplog.text, kill_at
        resumed_beta, resumed_weights = final_state(resumed)
        assert resumed.state.global_step == 4 and resumed_beta == beta, (kill_at, events[kill_at - 1])
        for key, value in weights.items():
            torch.testing.assert_close(resumed_weights[key], value, rtol=0, atol=0, msg=f"{kill_at}: {key}")
        shutil.rmtree(out)


def test_resume_and_the_non_finite_stop_skip_an_unfinished_save(tiny_tokenizer, tmp_path, caplog):
    from ziegler_trl.ppo import NonFiniteError

    full = make_trainer(tiny_tokenizer, tmp_path, name="run", save_strategy="steps", save_steps=2)
    full.train()
    out = tmp_path / "run"
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4", "checkpoint-6"]
    assert not (out / INCOMPLETE_DIR).exists()  # cleared once published
    # what a kill leaves: a save under _incomplete/, and a checkpoint-N written without atomic saves
    shutil.copytree(out / "checkpoint-4", out / INCOMPLETE_DIR / "checkpoint-8")
    shutil.copytree(out / "checkpoint-4", out / "checkpoint-10")
    (out / "checkpoint-10" / "trainer_state.json").unlink()
    with caplog.at_level(logging.WARNING, logger="ziegler_trl.checkpoints"):
        assert last_complete_checkpoint(out) == str(out / "checkpoint-6")
    assert f"Skipping {out / INCOMPLETE_DIR / 'checkpoint-8'}: its save did not finish" in caplog.text
    assert f"Skipping {out / 'checkpoint-10'}: incomplete checkpoint (no trainer_state.json)" in caplog.text

    trainer = make_trainer(tiny_tokenizer, tmp_path, name="run", reward_fn=lambda p, c: [float("nan")] * len(c),
                           save_strategy="no", total_episodes=36)
    with pytest.raises(NonFiniteError, match=r"Last good checkpoint: .*run/checkpoint-6$"):
        trainer.train(resume_from_checkpoint=True)
    assert trainer.state.global_step == 6  # resumed from checkpoint-6, stopped at its first rollout
    with pytest.raises(ValueError, match="No complete checkpoint found in output directory"):
        make_trainer(tiny_tokenizer, tmp_path, name="empty").train(resume_from_checkpoint=True)


def test_publish_folder_replaces_whole_and_text_is_written_atomically(tmp_path):
    staged, final = tmp_path / INCOMPLETE_DIR / "checkpoint-2", tmp_path / "checkpoint-2"
    for folder, text in ((final, "old"), (staged, "new")):
        folder.mkdir(parents=True)
        (folder / "a.txt").write_text(text)
    (final / "stale.txt").write_text("from the older save")
    publish_folder(staged, final)
    assert sorted(p.name for p in final.iterdir()) == ["a.txt"] and (final / "a.txt").read_text() == "new"
    assert not staged.exists() and list((tmp_path / INCOMPLETE_DIR).iterdir()) == []

    target = tmp_path / "stages.json"
    write_text_atomically(target, "{}")
    assert target.read_text() == "{}" and not (tmp_path / "stages.json.tmp").exists()


def test_reward_trainer_checkpoints_best_model_and_rotation(tmp_path, tiny_model_dir, tiny_tokenizer):
    """The reward trainer publishes whole checkpoints too; the Trainer's record of the best one names the published
    folder (not the staged one), rotation keeps it, load_best_model_at_end loads it, and a resume is exact."""
    def trainer(**overrides):
        args = config(tmp_path, max_steps=6, learning_rate=1e-2, **overrides)
        return BestOfKRewardTrainer(str(tiny_model_dir), args=args, train_dataset=comparisons(24),
                                    eval_dataset=comparisons(8, seed=1), processing_class=tiny_tokenizer)

    best_run = trainer(save_strategy="steps", save_steps=2, eval_strategy="steps", eval_steps=2, save_total_limit=1,
                       load_best_model_at_end=True, metric_for_best_model="eval_loss")
    best_run.train()
    out = tmp_path / "rm"
    best = best_run.state.best_model_checkpoint
    assert best is not None and INCOMPLETE_DIR not in best and os.path.isdir(best)
    assert not (out / INCOMPLETE_DIR).exists()
    kept = {str(p) for p in out.glob("checkpoint-*")}
    # rotation kept the best beside the latest; with save_total_limit=1 the Trainer drops the latest at the end
    assert kept == {best}
    for folder in kept:
        state = json.loads((out / os.path.basename(folder) / "trainer_state.json").read_text())
        assert INCOMPLETE_DIR not in (state["best_model_checkpoint"] or "")
    best_state = json.loads((out / os.path.basename(best) / "trainer_state.json").read_text())
    assert best_state["best_model_checkpoint"] == best

    shutil.rmtree(out)
    full = trainer(save_strategy="steps", save_steps=4)
    full.train()
    resumed = trainer()
    resumed.train(resume_from_checkpoint=True)  # from checkpoint-4
    for (name, a), b in zip(full.model.named_parameters(), resumed.model.parameters()):
        torch.testing.assert_close(a, b, msg=name)


def test_a_stage_left_half_written_is_redone_from_a_clean_slate(tmp_path, capsys):
    from ziegler_trl.stages import Stages

    out = tmp_path / "reward_model"

    def killed_midway():
        out.mkdir()
        (out / "adapter_config.json").write_text("{}")  # would make the folder read as a LoRA adapter
        raise KeyboardInterrupt  # the run stops here: the stage is not marked done

    def complete():
        out.mkdir(exist_ok=True)
        (out / "config.json").write_text("{}")
        return "trained"

    with pytest.raises(KeyboardInterrupt):
        Stages(tmp_path).run("reward", killed_midway, outputs=[out])
    assert "reward" not in Stages(tmp_path).done
    assert Stages(tmp_path).run("reward", complete, outputs=[out]) == "trained"
    assert f"removing {out}, left unfinished by a run stopped in this stage" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["config.json"]  # nothing of the killed attempt survives
    assert set(json.loads((tmp_path / "stages.json").read_text())) == {"reward"}
    assert Stages(tmp_path).run("reward", killed_midway, outputs=[out]) is None  # done: skipped
    with pytest.raises(RuntimeError, match=r"stage policy finished without writing \['.*policy'\]"):
        Stages(tmp_path).run("policy", lambda: None, outputs=[tmp_path / "policy"])
    assert set(Stages(tmp_path).done) == {"reward"}
