"""Our configs' defaults: built without a FutureWarning (transformers renamed gradient_checkpointing), and with
activation checkpointing off, where TRL's configs turn it on (it costs 1.3-2x compute on a CPU)."""

import warnings

import pytest

from ziegler_trl import BestOfKRewardConfig, ZieglerPPOConfig, ZieglerSFTConfig


@pytest.mark.parametrize("config", [ZieglerPPOConfig, BestOfKRewardConfig, ZieglerSFTConfig])
def test_configs_build_quietly_with_checkpointing_off(config, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        args = config(output_dir=str(tmp_path))
    assert args.activation_checkpointing is False and args.gradient_checkpointing is False


def test_the_new_checkpointing_name_reaches_the_reward_configs_check(tmp_path):
    with pytest.raises(ValueError, match="share_prompt_forward needs the prompt's KV cache"):
        BestOfKRewardConfig(output_dir=str(tmp_path), activation_checkpointing=True)
