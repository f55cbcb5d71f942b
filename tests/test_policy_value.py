"""PolicyAndValue: saving from a gathered state dict (what the Trainer hands over under ZeRO-3 / FSDP) and FSDP hooks."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import tiny_llama
from ziegler_trl.models import load_policy
from ziegler_trl.ppo.policy_value import (
    VALUE_HEAD_FILE,
    VALUE_MODEL_DIR,
    PolicyAndValue,
    split_state_dict,
)


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


def test_forward_from_cached_frozen_blocks_matches_the_full_forward(tiny_tokenizer):
    from transformers import LlamaForCausalLM

    from tests.conftest import tiny_config
    from ziegler_trl.blocks import freeze_bottom_layers, frozen_bottom_count

    torch.manual_seed(0)
    policy = LlamaForCausalLM(tiny_config(tiny_tokenizer, num_hidden_layers=4))
    assert frozen_bottom_count(policy) == 0  # nothing frozen: nothing to cache
    freeze_bottom_layers(policy, 2)
    assert frozen_bottom_count(policy) == 2
    wrapper = PolicyAndValue(policy)
    with torch.no_grad():
        wrapper.value_head.weight.normal_()
    ids = torch.tensor([[0, 0, 5, 6, 7, 8, 9], [3, 4, 5, 6, 7, 8, 9]])
    mask = torch.tensor([[0, 0, 1, 1, 1, 1, 1], [1] * 7])  # left padding, as in rollouts

    logits, values, hidden = wrapper(ids, mask, 3, cached_blocks=2)
    assert hidden.shape == (2, 7, 32)
    (logits.sum() + values.sum()).backward()
    full_grads = [p.grad.clone() for p in wrapper.parameters() if p.requires_grad]
    wrapper.zero_grad()
    calls = []
    hook = policy.model.layers[0].register_forward_hook(lambda *_: calls.append(1))
    cached_logits, cached_values, no_hidden = wrapper(ids, mask, 3, cached_blocks=2, frozen_hidden=hidden)
    hook.remove()
    (cached_logits.sum() + cached_values.sum()).backward()

    assert calls == [] and no_hidden is None  # the frozen blocks did not run
    assert len(policy.model.layers) == 4  # and are back in place
    torch.testing.assert_close(cached_logits, logits, rtol=0, atol=1e-6)
    torch.testing.assert_close(cached_values, values, rtol=0, atol=1e-6)
    for cached, full in zip([p.grad for p in wrapper.parameters() if p.requires_grad], full_grads):
        torch.testing.assert_close(cached, full, rtol=1e-5, atol=1e-7)


def test_frozen_bottom_count_needs_everything_below_frozen(tiny_tokenizer):
    from transformers import GPT2Config, GPT2LMHeadModel

    from ziegler_trl.blocks import freeze_bottom_layers, frozen_bottom_count

    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=len(tiny_tokenizer), n_embd=16, n_layer=3, n_head=2, n_positions=64))
    freeze_bottom_layers(gpt2, 1)  # the token and the position embeddings too: both feed block 0
    assert not gpt2.transformer.wpe.weight.requires_grad
    assert frozen_bottom_count(gpt2) == 2
    gpt2.transformer.wpe.requires_grad_(True)  # a trained input below the blocks: their output would change
    assert frozen_bottom_count(gpt2) == 0


def test_frozen_bottom_count_is_zero_with_a_trained_prompt_encoder(tiny_tokenizer):
    """Prompt tuning trains virtual-token embeddings outside the base model, which feed block 0: nothing to cache."""
    from peft import LoraConfig, PromptTuningConfig, get_peft_model
    from transformers import LlamaForCausalLM

    from tests.conftest import tiny_config
    from ziegler_trl.blocks import freeze_bottom_layers, frozen_bottom_count

    def frozen_llama():
        model = LlamaForCausalLM(tiny_config(tiny_tokenizer, num_hidden_layers=4))
        freeze_bottom_layers(model, 2)
        return model

    prompt_tuned = get_peft_model(frozen_llama(), PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4))
    assert frozen_bottom_count(prompt_tuned) == 0
    lora = get_peft_model(frozen_llama(), LoraConfig(r=2, target_modules=["q_proj"], layers_to_transform=[3],
                                                     task_type="CAUSAL_LM"))
    assert frozen_bottom_count(lora) == 3  # the adapters' own block is the first that trains
