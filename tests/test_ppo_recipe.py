"""recipes/train_policy.py end to end on a tiny model: YAML-style arguments in, an HF folder + value head out."""

import json
import runpy
import sys
from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM

from ziegler_trl import UserInputError
from ziegler_trl.ppo import ZieglerPPOConfig

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "train_policy.py"


def run_recipe_script(argv: list[str]) -> None:
    """`python recipes/train_policy.py ARGV`, in this process."""
    old_argv, sys.argv = sys.argv, [str(RECIPE), *argv]
    try:
        runpy.run_path(str(RECIPE), run_name="__main__")
    finally:
        sys.argv = old_argv


def test_recipe_trains_and_saves_a_loadable_policy(tiny_model_dir, tmp_path):
    data = tmp_path / "books.jsonl"
    text = "It was late. She smiled at the happy dog and laughed. The rain fell all night and the road was wet."
    data.write_text("\n".join(json.dumps({"text": text}) for _ in range(8)))
    config = tmp_path / "ppo.yaml"
    config.write_text(
        f"model_name_or_path: {tiny_model_dir}\nreward_scorer: vader\ndataset_name: {data}\ntask: sentiment\n"
        f"output_dir: {tmp_path / 'out'}\nper_device_train_batch_size: 4\nnum_ppo_epochs: 1\ntotal_episodes: 8\n"
        "save_strategy: 'no'\nreport_to: none\nlog_completions: false\n"
        "whiten_rewards: false\n"  # minibatches of 4: below the paper's minimum of 8 for whitening
    )
    with pytest.raises(SystemExit) as finished:  # the recipe exits like the CLI: status 0 for a finished stage
        run_recipe_script(["--config", str(config), "--response_length", "20"])
    assert finished.value.code == 0
    out = tmp_path / "out"
    assert (out / "value_head.safetensors").is_file()
    assert AutoModelForCausalLM.from_pretrained(out).config.vocab_size > 0
    assert not list(out.glob("checkpoint-*"))  # save_strategy 'no': only the final folder


def test_recipe_reads_the_old_option_names_with_a_warning(tiny_model_dir, tmp_path, caplog):
    """`policy_model` / `dataset` (YAML) and `--dataset_split` (argv) work for one more release, with a warning."""
    data = tmp_path / "books.jsonl"
    data.write_text(json.dumps({"text": "It was late. She smiled at the happy dog and laughed all night long."}) + "\n")
    config = tmp_path / "ppo.yaml"
    config.write_text(f"policy_model: {tiny_model_dir}\nreward_scorer: vader\ndataset: {data}\ntask: sentiment\n")
    from trl import ModelConfig

    from ziegler_trl.config_files import parse_args_and_config
    from ziegler_trl.ppo.pipeline import RENAMED, PolicyScriptArguments

    with caplog.at_level("WARNING", logger="ziegler_trl.config_files"):
        script, _, model = parse_args_and_config(
            (PolicyScriptArguments, ZieglerPPOConfig, ModelConfig),
            ["--config", str(config), "--output_dir", str(tmp_path), "--dataset_split", "test"], RENAMED,
        )
    assert (model.model_name_or_path, script.dataset_name, script.dataset_train_split) == (
        str(tiny_model_dir), str(data), "test")
    warnings = [r.getMessage() for r in caplog.records]  # the command line is read first, then the file
    assert len(warnings) == 3
    assert warnings[0].startswith("option --dataset_split is deprecated, use --dataset_train_split")
    assert warnings[1] == (f"{config}, line 1: option 'policy_model' is deprecated, use 'model_name_or_path' "
                           "(the old name is removed in the next release)")
    assert warnings[2].startswith(f"{config}, line 3: option 'dataset' is deprecated, use 'dataset_name'")


def test_recipe_requires_exactly_one_reward(tmp_path):
    from ziegler_trl.ppo import pipeline as recipe

    args = recipe.PolicyScriptArguments(reward_model=None, reward_scorer=None)
    with pytest.raises(UserInputError, match="exactly one of --reward_model and --reward_scorer"):
        recipe.train_policy(args, ZieglerPPOConfig(output_dir=str(tmp_path), report_to=[]))
    args = recipe.PolicyScriptArguments(reward_scorer="stars")
    with pytest.raises(UserInputError, match="unknown --reward_scorer 'stars'"):
        recipe.train_policy(args, ZieglerPPOConfig(output_dir=str(tmp_path), report_to=[]))
