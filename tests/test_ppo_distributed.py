"""The PPO recipe under `accelerate launch` with 2 CPU processes: the batch spans both ranks, β follows the KL of
all ranks, checkpoints carry the controller."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "train_policy.py"
ACCELERATE = Path(sys.executable).with_name("accelerate")


@pytest.mark.slow
@pytest.mark.skipif(not ACCELERATE.exists(), reason="accelerate launcher not found")
def test_two_process_ppo_run(tiny_model_dir, tmp_path):
    text = "It was late. She smiled at the happy dog and laughed. The rain fell all night and the road was wet."
    data = tmp_path / "books.jsonl"
    data.write_text("\n".join(json.dumps({"text": f"{text} Day {i}."}) for i in range(16)))
    config = tmp_path / "ppo.yaml"
    config.write_text(
        # the reward model: a classifier on ρ's own trunk, so it also starts from the policy's cached block output
        f"model_name_or_path: {tiny_model_dir}\nreward_model: {tiny_model_dir}\ndataset_name: {data}\ntask: sentiment\n"
        f"output_dir: {tmp_path / 'out'}\nper_device_train_batch_size: 2\nnum_ppo_epochs: 2\ntotal_episodes: 12\n"
        "response_length: 20\nsave_steps: 2\nreport_to: none\nlog_completions: false\nkl_horizon: 8\nkl_target: 0.01\n"
        "trainable_top_layers: 1\n"  # the bottom block frozen: the PPO epochs and ρ reuse its output under DDP
        "whiten_rewards: false\n"  # 2 episodes per process: below the paper's minimum of 8 for whitening
    )
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    launcher = [str(ACCELERATE), "launch", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
                "--dynamo_backend", "no", "--main_process_port", "29541", "--multi_gpu"]
    done = subprocess.run([*launcher, str(RECIPE), "--config", str(config)], env=env, capture_output=True, text=True,
                          timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    out = tmp_path / "out"
    # 2 ranks × 2 episodes = 4 per update → 3 updates × 2 epochs = 6 optimizer steps
    state = json.loads((out / "checkpoint-6" / "trainer_state.json").read_text())
    assert state["global_step"] == 6
    beta = 0.15
    for entry in [e for e in state["log_history"] if "objective/kl" in e]:
        assert entry["ppo/cached_frozen_blocks"] == entry["ppo/reward_cached_blocks"] == 1
        assert entry["objective/kl_coef"] == pytest.approx(beta)
        beta *= 1 + min(max(entry["objective/kl"] / 0.01 - 1, -0.2), 0.2) * 4 / 8
    assert json.loads((out / "checkpoint-6" / "kl_controller.json").read_text())["value"] == pytest.approx(beta)
    assert (out / "value_head.safetensors").is_file()
