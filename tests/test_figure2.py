"""The Figure 2 study (`eval/figure2.py`) end to end at `--scale smoke`: report, plot and results for every
(setting, seed), finished runs skipped on a rerun that adds seeds, and the r_s measurement cadence."""

import dataclasses
import json
from types import SimpleNamespace

import pytest

from tests.conftest import load_script
from ziegler_trl.errors import UserInputError
from ziegler_trl.figure2 import preset, run_study
from ziegler_trl.figure2.runs import LabelerScoreCallback


def test_smoke_study_resumes_and_reports(tmp_path, capsys):
    out = tmp_path / "study"
    figure2 = load_script("eval/figure2.py").main
    assert figure2(["--scale", "smoke", "--output_dir", str(out), "--seeds", "0"]) == 0
    first = {p.parent.name: p.read_text() for p in (out / "runs").glob("*/stages.json")}
    assert sorted(first) == ["direct-seed0", "rm-16-seed0", "rm-8-seed0"]
    capsys.readouterr()

    # The same folder with one more seed: seed 0's runs and the shared stages are skipped, seed 1's added.
    assert figure2(["--scale", "smoke", "--output_dir", str(out), "--seeds", "0", "1"]) == 0
    log = capsys.readouterr().out
    for name in first:
        assert f"[{name}] policy: done in an earlier run" in log
    for stage in ("queries", "rho_samples", "labels-8", "labels-16", "direct_reward"):
        assert f"[study] {stage}: done in an earlier run" in log
    assert {name: (out / "runs" / name / "stages.json").read_text() for name in first} == first
    assert "[rm-8-seed1] policy ..." in log

    assert (out / "figure2.png").stat().st_size > 0
    report = (out / "figure2.md").read_text()
    assert "python eval/figure2.py --scale smoke" in report and "Commit: `" in report
    rows = [line for line in report.splitlines() if line.startswith(("| r_s directly", "| reward model"))]
    assert [row.split("|")[1].strip() for row in rows] == ["r_s directly", "reward model, N = 8",
                                                           "reward model, N = 16"]
    assert all(row.split("|")[2].strip() == "2" for row in rows)

    results = json.loads((out / "results.json").read_text())
    assert list(results["settings"]) == ["direct", "rm-8", "rm-16"]
    assert sorted((r["setting"], r["seed"]) for r in results["runs"]) == sorted(
        (s, seed) for s in ("direct", "rm-8", "rm-16") for seed in (0, 1))
    for run in results["runs"]:
        assert run["episodes"] == [0, 8]  # ρ, then one measurement per eval_every and at the end
        assert run["r_s"][0] == results["rho_r_s"] and all(-1 <= v <= 1 for v in run["r_s"])
        assert run["final_r_s"] == run["r_s"][-1] and 0 <= run["win_rate"] <= 1
        assert (run["rm_accuracy"] is None) == (run["setting"] == "direct")
    for setting, summary in results["settings"].items():
        assert summary["seeds"] == [0, 1]
        runs = [r for r in results["runs"] if r["setting"] == setting]
        values = [r["final_r_s"] for r in runs]
        assert summary["final_r_s"] == {"mean": sum(values) / 2, "min": min(values), "max": max(values)}
        assert summary["curve"]["episodes"] == [0, 8] and summary["curve"]["min"] <= summary["curve"]["max"]
    assert not any((out / "runs").glob("*/policy"))  # measured during training; the weights are not kept


def test_fixed_settings_cannot_change_in_a_folder(tmp_path):
    cfg = preset("smoke", str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({**cfg.fixed_settings(), "total_episodes": 800}))
    with pytest.raises(UserInputError, match="total_episodes"):
        run_study(cfg)


def test_eval_every_must_be_whole_updates():
    with pytest.raises(UserInputError, match="eval_every"):
        dataclasses.replace(preset("smoke"), eval_every=12)


def test_labeler_score_callback_measures_every_k_episodes_and_at_the_end():
    sampled = []
    callback = LabelerScoreCallback(lambda policy: sampled.append(policy) or [["good"], ["bad day"]], every=32)
    args = SimpleNamespace(steps_per_update=4, rollout_batch_size=16)
    model = SimpleNamespace(policy="π")
    for step in range(1, 21):  # 5 updates of 16 episodes, 4 optimizer steps each
        callback.on_step_end(args, SimpleNamespace(global_step=step, max_steps=20), None, model=model)
    assert [p["episodes"] for p in callback.points] == [32, 64, 80]
    assert sampled == ["π"] * 3 and callback.samples == [["good"], ["bad day"]]
