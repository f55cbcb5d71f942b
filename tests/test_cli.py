"""Every command-line entry point parses: `--help` of each command and recipe, and the reward recipe end to end."""

import json
import runpy
import sys
from pathlib import Path

import pytest

from ziegler_trl.cli import DATACLASS_COMMANDS, main

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT / "recipes").glob("*.py"))


@pytest.mark.parametrize("command", [*DATACLASS_COMMANDS, "label", "eval"])
def test_every_command_prints_its_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage:" in capsys.readouterr().out


@pytest.mark.parametrize("command", list(DATACLASS_COMMANDS))
def test_a_finished_stage_exits_0_whatever_its_main_returns(command, monkeypatch):
    """A stage's `main` returns metrics, a report path or a trainer to Python callers; the shell sees status 0."""
    import importlib

    module = importlib.import_module(DATACLASS_COMMANDS[command][0])
    monkeypatch.setattr(module, "main", lambda argv, prog=None: {"eval_accuracy": 0.5})
    with pytest.raises(SystemExit) as exit_info:
        main([command])
    assert exit_info.value.code == 0


def test_quickstart_help_lists_its_fields(capsys):
    with pytest.raises(SystemExit):
        main(["quickstart", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--kl-horizon KL_HORIZON Horizon of the adaptive KL controller in episodes" in out
    assert "(the paper: 10,000)" in out and "--policy-learning-rate" in out and "--smoke" in out


@pytest.mark.parametrize("recipe", RECIPES, ids=[p.name for p in RECIPES])
def test_every_recipe_prints_its_help(recipe, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", [str(recipe), "--help"])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(recipe), run_name="__main__")
    assert exit_info.value.code == 0
    assert "--output_dir" in capsys.readouterr().out


def test_reward_recipe_trains_from_yaml_and_cli(tmp_path, tiny_model_dir):
    """The README's command: a YAML config plus CLI overrides, `--model_name_or_path` picking ρ (TRL's ModelConfig)."""
    labels = tmp_path / "labels.jsonl"
    rows = [{"prompt": "The cat sat.", "completions": ["good good", "bad", "fine day", "no"], "best": 0}] * 8
    labels.write_text("\n".join(json.dumps(r) for r in rows))
    config = tmp_path / "reward.yaml"
    config.write_text(
        f"model_name_or_path: {tiny_model_dir}\ntask: sentiment\ndataset_name: {labels}\neval_fraction: 0.25\n"
        "normalize_samples: 4\nsampling_batch_size: 4\nper_device_train_batch_size: 2\nper_device_eval_batch_size: 2\n"
        "report_to: none\nsave_strategy: 'no'\nseed: 0\n"
    )
    from ziegler_trl.reward.pipeline import main as reward_main

    metrics = reward_main(["--config", str(config), "--output_dir", str(tmp_path / "rm"), "--max_steps", "2"])
    assert (metrics["num_train"], metrics["num_eval"]) == (6, 2)
    assert "eval_accuracy" in metrics and len(metrics["normalize_after"]) == 2  # (gain, bias)
    saved = json.loads((tmp_path / "rm" / "config.json").read_text())
    assert saved["hidden_size"] == json.loads((tiny_model_dir / "config.json").read_text())["hidden_size"]
    assert json.loads((tmp_path / "rm" / "reward_metrics.json").read_text())["num_train"] == 6


def _types_for(config: Path) -> tuple:
    from trl import ModelConfig

    from ziegler_trl.ppo import ZieglerPPOConfig
    from ziegler_trl.ppo.pipeline import PolicyScriptArguments
    from ziegler_trl.reward import BestOfKRewardConfig
    from ziegler_trl.reward.pipeline import RewardScriptArguments
    from ziegler_trl.sft import SFTScriptArguments, ZieglerSFTConfig

    stage = config.name.split("_")[0]
    return {
        "reward": (RewardScriptArguments, BestOfKRewardConfig, ModelConfig),
        "ppo": (PolicyScriptArguments, ZieglerPPOConfig, ModelConfig),
        "sft": (SFTScriptArguments, ZieglerSFTConfig),
    }[stage]


CONFIGS = sorted((ROOT / "recipes" / "configs").glob("*.yaml"))


@pytest.mark.parametrize("config", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_recipe_config_parses(config, caplog):
    """The shipped YAML files hold only known fields of valid types, under today's names (a typo would stop a
    cluster job at launch)."""
    from ziegler_trl.config_files import load_config_file, parse_args_and_config

    types = _types_for(config)
    assert load_config_file(config, types)  # every key known, every value of its field's type
    with caplog.at_level("WARNING", logger="ziegler_trl.config_files"):
        parsed = parse_args_and_config(types, ["--config", str(config)])
    assert not caplog.records  # no deprecated option name
    assert len(parsed) == len(types)
    assert parsed[1].output_dir.startswith("runs/")
    model = parsed[-1] if config.name.startswith(("reward", "ppo")) else parsed[0]
    assert model.model_name_or_path == "embedded" and parsed[0].dataset_name
