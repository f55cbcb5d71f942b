"""Two CPU processes (gloo) against one: statistics the paper reduces across ranks agree everywhere."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("distributed_worker.py")
pytestmark = pytest.mark.skipif(shutil.which("accelerate") is None and not Path(sys.executable).with_name(
    "accelerate").exists(), reason="accelerate launcher not found")


def launch(n_processes: int, model_dir: Path, out: Path) -> list[dict]:
    out.mkdir(parents=True)
    accelerate = str(Path(sys.executable).with_name("accelerate"))
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(WORKER.parents[1])}
    launcher = [accelerate, "launch", "--num_processes", str(n_processes), "--num_machines", "1",
                "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29531"]
    launcher += ["--multi_gpu"] if n_processes > 1 else ["--cpu"]
    done = subprocess.run([*launcher, str(WORKER), str(model_dir), str(out)], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    return [json.loads((out / f"rank{i}.json").read_text()) for i in range(n_processes)]


@pytest.mark.slow
def test_two_processes_agree_with_each_other_and_with_one(tmp_path, tiny_model_dir):
    two = launch(2, tiny_model_dir, tmp_path / "two")
    one = launch(1, tiny_model_dir, tmp_path / "one")
    assert [r["world_size"] for r in two] == [2, 2] and one[0]["world_size"] == 1

    # Normalisation fitted on all ranks' samples: same gain/bias on both ranks, and as one process on all 16.
    assert two[0]["gain_bias"] == pytest.approx(two[1]["gain_bias"], abs=1e-6)
    assert two[0]["gain_bias"] == pytest.approx(one[0]["gain_bias"], abs=1e-5)

    # Reward training: metrics reduced across ranks, weights in sync after DDP steps.
    assert two[0]["rm_accuracy"] == two[1]["rm_accuracy"]
    assert two[0]["rm_head_sum"] == pytest.approx(two[1]["rm_head_sum"], abs=1e-6)

    # PPO: β is identical on every rank after every update, and moves as in one process on the same global
    # batch (the KL stays far under target, so each update multiplies β by 1 - 0.2 · 8 / 100 on any data).
    assert two[0]["kl_coef_log"] == two[1]["kl_coef_log"]
    assert two[0]["beta"] == pytest.approx(two[1]["beta"], abs=1e-12)
    assert two[0]["beta"] == pytest.approx(one[0]["beta"], rel=1e-6)
    assert one[0]["beta"] == pytest.approx(0.2 * (1 - 0.2 * 8 / 100) ** 2, rel=1e-6)
