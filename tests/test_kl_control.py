"""KL controllers against hand-computed sequences, their state, and AdaptiveKLCallback on a tiny RLOO run."""

import json
import math

import pytest
from datasets import Dataset
from trl import RLOOConfig, RLOOTrainer

from ziegler_trl.ppo import AdaptiveKLCallback, AdaptiveKLController, FixedKLController
from ziegler_trl.ppo.kl_control import KL_CONTROLLER_FILE


def test_adaptive_controller_matches_hand_computed_sequence():
    ctl = AdaptiveKLController(init_kl_coef=0.15, target=6.0, horizon=10000)
    # KL 12 → error clipped to +0.2; β·(1 + 0.2·512/10000)
    ctl.update(12.0, 512)
    assert ctl.value == pytest.approx(0.15 * 1.01024)
    # KL 3 → error −0.5 clipped to −0.2
    ctl.update(3.0, 512)
    assert ctl.value == pytest.approx(0.15 * 1.01024 * 0.98976)
    # KL 6.6 → error +0.1 (inside the clip): β·(1 + 0.1·1000/10000)
    ctl.update(6.6, 1000)
    assert ctl.value == pytest.approx(0.15 * 1.01024 * 0.98976 * 1.01)
    # KL exactly on target: no change
    before = ctl.value
    ctl.update(6.0, 512)
    assert ctl.value == pytest.approx(before)


def test_adaptive_controller_state_round_trip_and_errors():
    ctl = AdaptiveKLController(0.2, 4.0, 100)
    ctl.update(100.0, 50)
    restored = AdaptiveKLController(1.0, 1.0, 1)
    restored.load_state_dict(json.loads(json.dumps(ctl.state_dict())))
    assert restored.value == ctl.value == pytest.approx(0.22)
    assert (restored.target, restored.horizon) == (4.0, 100)
    with pytest.raises(ValueError, match="target must be > 0"):
        AdaptiveKLController(0.1, 0.0, 10)
    with pytest.raises(FloatingPointError, match="non-finite KL"):
        ctl.update(math.nan, 10)


def test_fixed_controller_never_moves():
    ctl = FixedKLController(0.03)
    for kl in (0.0, 100.0, 1e6):
        ctl.update(kl, 512)
    assert ctl.value == 0.03
    other = FixedKLController(1.0)
    other.load_state_dict(ctl.state_dict())
    assert other.value == 0.03


def test_adaptive_kl_callback_drives_rloo_beta(tiny_model_dir, tiny_tokenizer, tmp_path):
    prompts = Dataset.from_dict({"prompt": ["The cat sat", "A happy dog", "She was sad", "I love this"] * 2})
    args = RLOOConfig(
        output_dir=str(tmp_path / "rloo"), per_device_train_batch_size=4, num_generations=2, max_completion_length=6,
        beta=0.1, max_steps=3, logging_steps=1, learning_rate=1e-2, report_to=[], bf16=False,
        activation_checkpointing=False, save_strategy="steps", save_steps=3, seed=0, log_completions=False,
    )
    trainer = RLOOTrainer(
        model=str(tiny_model_dir), reward_funcs=lambda completions, **kw: [float(len(c)) for c in completions],
        args=args, train_dataset=prompts, processing_class=tiny_tokenizer,
    )
    controller = AdaptiveKLController(init_kl_coef=0.1, target=0.05, horizon=8)
    callback = AdaptiveKLCallback(controller).attach(trainer)
    trainer.train()

    logs = [entry for entry in trainer.state.log_history if "kl" in entry]
    assert len(logs) == 3
    beta = 0.1
    assert len(callback.history) == 3
    for entry, record in zip(logs, callback.history):  # 4 episodes per optimizer step; KL × mean length
        sequence_kl = entry["kl"] * entry["completions/mean_length"]
        assert record["sequence_kl"] == pytest.approx(sequence_kl)
        beta *= 1 + min(max(sequence_kl / 0.05 - 1, -0.2), 0.2) * 4 / 8
        assert record["kl_coef"] == pytest.approx(beta)
    assert trainer.beta == controller.value == pytest.approx(beta)
    assert beta != pytest.approx(0.1)
    saved = json.loads((tmp_path / "rloo" / "checkpoint-3" / KL_CONTROLLER_FILE).read_text())
    assert saved["value"] == pytest.approx(beta)
    assert callback.trainer is trainer


def test_adaptive_kl_callback_refuses_beta_zero(tiny_model_dir, tiny_tokenizer, tmp_path):
    args = RLOOConfig(
        output_dir=str(tmp_path / "rloo0"), per_device_train_batch_size=2, num_generations=2, max_completion_length=4,
        beta=0.0, max_steps=1, report_to=[], bf16=False, activation_checkpointing=False,
    )
    trainer = RLOOTrainer(
        model=str(tiny_model_dir), reward_funcs=lambda completions, **kw: [0.0] * len(completions), args=args,
        train_dataset=Dataset.from_dict({"prompt": ["a", "b"]}), processing_class=tiny_tokenizer,
    )
    with pytest.raises(ValueError, match="beta=0.0"):
        AdaptiveKLCallback(AdaptiveKLController(0.1, 1.0, 10)).attach(trainer)
