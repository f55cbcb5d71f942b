"""YAML config files are checked before TRL's parser: each mistake is a ConfigFileError naming file, line and key."""

import pytest

from ziegler_trl.config_files import load_config_file, parse_args_and_config
from ziegler_trl.errors import ConfigFileError, UserInputError
from ziegler_trl.pipeline import RENAMED, PipelineConfig


def config(tmp_path, text: str | bytes):
    path = tmp_path / "cfg.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def test_a_valid_file_reads_as_its_mapping(tmp_path):
    path = config(tmp_path, "task: sentiment\nrounds: 2\nreward_learning_rate: 1e-5\nlabeler_temperature: 1\nenv:\n  A: 1\n")
    assert load_config_file(path, [PipelineConfig]) == {
        "task": "sentiment", "rounds": 2, "reward_learning_rate": "1e-5", "labeler_temperature": 1, "env": {"A": 1}
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("task: sentiment\nrouds: 2\n", "cfg.yaml, line 2, field 'rouds': unknown option; did you mean 'rounds'?"),
        ("zzz: 1\n", "cfg.yaml, line 1, field 'zzz': unknown option"),
        ("rounds: two\n", "cfg.yaml, line 1, field 'rounds': must be an integer (got 'two')"),
        ("rounds: 2.5\n", "cfg.yaml, line 1, field 'rounds': must be an integer (got 2.5)"),
        ("rounds: true\n", "cfg.yaml, line 1, field 'rounds': must be an integer (got True)"),
        ("reward_learning_rate: fast\n",
         "cfg.yaml, line 1, field 'reward_learning_rate': must be a number (got 'fast')"),
        ("mode: no\n", "cfg.yaml, line 1, field 'mode': must be a string; YAML reads unquoted yes/no/on/off/true/false "
         "as a boolean: quote the value (got False)"),
        ("seed: 1\n\nseed: 2\n", "cfg.yaml, line 3, field 'seed': repeated key (first on line 1)"),
        ("task: [sentiment\n", "cfg.yaml, line 2: not valid YAML: while parsing a flow sequence expected ',' or ']', "
         "but got '<stream end>'"),
        ("- task\n- seed\n", "cfg.yaml, line 1: expected a mapping of option: value at the top level, got a list"),
        ("", "cfg.yaml: is empty: expected a mapping of option: value"),
        ("env: 3\n", "cfg.yaml, line 1, field 'env': must be a mapping of environment variable: value (got 3)"),
        ("model: a\nmodel_name_or_path: b\n", "cfg.yaml, line 1, field 'model': both 'model' and its new name "
         "'model_name_or_path' are set"),
        (b"task: sentiment\nmode: \xff\n", "cfg.yaml, line 2: not UTF-8 text (byte 0xff at offset 22)"),
    ],
)
def test_mistakes_name_file_line_and_key(tmp_path, text, message):
    with pytest.raises(ConfigFileError) as error:
        load_config_file(config(tmp_path, text), [PipelineConfig], RENAMED)
    assert str(error.value) == f"{tmp_path / message}"


def test_unreadable_paths(tmp_path):
    with pytest.raises(ConfigFileError, match="missing.yaml: no such config file"):
        load_config_file(tmp_path / "missing.yaml", [PipelineConfig])
    with pytest.raises(ConfigFileError, match="is a folder, not a config file"):
        load_config_file(tmp_path, [PipelineConfig])


def test_training_config_types(tmp_path):
    """Types of TRL's / transformers' fields: enums, optional values, lists given as one scalar."""
    from trl import ModelConfig

    from ziegler_trl.reward import BestOfKRewardConfig

    good = "lr_scheduler_type: linear\nreport_to: none\nmax_steps: 3\nlora_target_modules: all-linear\n" \
           "save_strategy: 'no'\nlearning_rate: 1.0e-5\nbf16: false\n"
    assert load_config_file(config(tmp_path, good), [BestOfKRewardConfig, ModelConfig])["max_steps"] == 3
    with pytest.raises(ConfigFileError, match=r"field 'save_strategy': must be one of 'no', 'steps', 'epoch', 'best' "
                                              r"or a string; YAML reads unquoted"):
        load_config_file(config(tmp_path, "save_strategy: no\n"), [BestOfKRewardConfig, ModelConfig])


def test_parse_applies_the_file_then_the_command_line(tmp_path, monkeypatch):
    monkeypatch.delenv("ZIEGLER_TEST_VAR", raising=False)
    path = config(tmp_path, "dataset_name: builtin\nrounds: 3\nqueries: x\nenv:\n  ZIEGLER_TEST_VAR: on\n")
    with pytest.raises(ConfigFileError, match="both 'queries' and its new name 'dataset_name' are set"):
        parse_args_and_config([PipelineConfig], ["--config", str(path)], RENAMED)
    path = config(tmp_path, "queries: builtin\nrounds: 3\nenv:\n  ZIEGLER_TEST_VAR: 1\n")
    (cfg,) = parse_args_and_config([PipelineConfig], ["--config", str(path), "--rounds", "5"], RENAMED)
    assert (cfg.dataset_name, cfg.rounds) == ("builtin", 5)
    import os

    assert os.environ["ZIEGLER_TEST_VAR"] == "1"
    (cfg,) = parse_args_and_config([PipelineConfig], [f"--config={path}", "--queries=other"], RENAMED)
    assert cfg.dataset_name == "other"


def test_parse_refuses_what_the_dataclass_refuses(tmp_path):
    with pytest.raises(UserInputError, match="--mode must be 'offline' or 'batched', got 'online'"):
        parse_args_and_config([PipelineConfig], ["--dataset_name", "builtin", "--mode", "online"])
    with pytest.raises(UserInputError, match="--config needs the path of a YAML file"):
        parse_args_and_config([PipelineConfig], ["--config"])
    with pytest.raises(UserInputError, match="--config is given more than once"):
        parse_args_and_config([PipelineConfig], ["--config", "a.yaml", "--config", "b.yaml"])
