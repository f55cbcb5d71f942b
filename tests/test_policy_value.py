"""PolicyAndValue: saving from a gathered state dict (what the Trainer hands over under ZeRO-3 / FSDP) and FSDP hooks."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import tiny_llama
from ziegler_trl.models import load_policy
from ziegler_trl.ppo.policy_value import VALUE_HEAD_FILE, VALUE_MODEL_DIR, PolicyAndValue, split_state_dict


def test_save_writes_the_given_state_dict_not_the_module_weights(tmp_path, tiny_tokenizer):
    torch.manual_seed(0)
    wrapper = PolicyAndValue(tiny_llama(tiny_tokenizer), value_model=tiny_llama(tiny_tokenizer, seed=1))
    gathered = {k: torch.full_like(v, 0.5) for k, v in wrapper.state_dict().items()}
    wrapper.save(str(tmp_path), state_dict=gathered)

    policy = load_policy(str(tmp_path), tiny_tokenizer)
    assert all(torch.equal(p, torch.full_like(p, 0.5)) for p in policy.parameters())
    head = load_file(str(tmp_path / VALUE_HEAD_FILE))
    assert torch.equal(head["weight"], torch.full((1, wrapper.value_head.in_features), 0.5))
    value_model = load_file(str(tmp_path / VALUE_MODEL_DIR / "model.safetensors"))
    assert all(torch.equal(t, torch.full_like(t, 0.5)) for t in value_model.values())
    # The module's own weights are untouched, and were not what got saved.
    assert not torch.equal(wrapper.value_head.weight, head["weight"])


def test_save_without_state_dict_writes_the_module_weights(tmp_path, tiny_tokenizer):
    wrapper = PolicyAndValue(tiny_llama(tiny_tokenizer))
    with torch.no_grad():
        wrapper.value_head.weight.fill_(0.25)
    wrapper.save(str(tmp_path))
    assert torch.equal(load_file(str(tmp_path / VALUE_HEAD_FILE))["weight"], wrapper.value_head.weight)
    policy = load_policy(str(tmp_path), tiny_tokenizer)
    for saved, own in zip(policy.parameters(), wrapper.policy.parameters()):
        assert torch.equal(saved, own)


def test_split_state_dict_refuses_foreign_keys():
    parts = split_state_dict({"policy.a.b": torch.zeros(1), "value_head.weight": torch.ones(1)}, ("policy", "value_head"))
    assert set(parts) == {"policy", "value_head"} and set(parts["policy"]) == {"a.b"}
    with pytest.raises(ValueError, match="Unexpected key 'module.policy.x'"):
        split_state_dict({"module.policy.x": torch.zeros(1)}, ("policy", "value_head"))


def test_value_head_follows_the_trunk_dtype_and_generate_is_the_policys(tiny_tokenizer):
    policy = tiny_llama(tiny_tokenizer).to(torch.bfloat16)
    wrapper = PolicyAndValue(policy)
    assert wrapper.value_head.weight.dtype == torch.bfloat16 and not wrapper.value_head.weight.any()
    assert wrapper.generation_config is policy.generation_config
    assert wrapper._no_split_modules == policy._no_split_modules
    ids = torch.tensor([[5, 6, 7]])
    torch.manual_seed(0)
    ours = wrapper.generate(input_ids=ids, max_new_tokens=3, do_sample=False)
    assert torch.equal(ours, policy.generate(input_ids=ids, max_new_tokens=3, do_sample=False))
