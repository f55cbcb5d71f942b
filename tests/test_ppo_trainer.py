"""ZieglerPPOTrainer on tiny Llama models: log-probs, rewards, β control, resume, NaN guard, PEFT, reward caches."""

import pytest
import torch
from datasets import Dataset
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from tests.conftest import tiny_llama
from ziegler_trl.models import load_policy
from ziegler_trl.ppo import (
    AdaptiveKLController,
    NonFiniteError,
    ZieglerPPOConfig,
    ZieglerPPOTrainer,
)
from ziegler_trl.ppo.block_cache import rollout_layout_lengths
from ziegler_trl.ppo.core import logprobs_from_logits
from ziegler_trl.ppo.rollout import RolloutStats, collect_rollout, reference_logits
from ziegler_trl.reward.scoring import score_prefixes, score_sequences
from ziegler_trl.sampling import pad_left, sampling_config

PROMPTS = ["The cat sat", "A happy dog ran in", "She was", "I love this wonderful", "The rain", "He laughed", "It", "Nothing happened"]
TEXTS = [
    "The cat sat on the mat. It was a good day. A happy dog ran in the park.",
    "She was sad and tired. The rain fell all night. He laughed; the joke was great.",
    "I love this wonderful book. I hate the terrible ending. Nothing happened, then everything happened.",
    "It was late. The market fell sharply today. Stocks dropped.",
] * 2


def length_reward(prompts, completions):
    return [len(c) / 10 for c in completions]


def make_trainer(tokenizer, tmp_path, name="ppo", model=None, reward_fn=length_reward, dataset=None, **overrides):
    config = {
        "output_dir": str(tmp_path / name), "per_device_train_batch_size": 4, "gradient_accumulation_steps": 1,
        "num_ppo_epochs": 2, "response_length": 6, "temperature": 0.7, "total_episodes": 12, "learning_rate": 3e-3,
        "init_kl_coef": 0.1, "kl_target": 0.5, "kl_horizon": 8, "report_to": [], "save_strategy": "no", "seed": 0,
        "log_completions": False, "disable_tqdm": True,
        "whiten_rewards": False,  # minibatches of 4: below the 8 the paper's code asserts for whitening
    }
    config.update(overrides)
    trainer_kwargs = {
        k: config.pop(k) for k in ("ref_model", "peft_config", "eval_labels", "value_model", "reward_model") if k in config
    }
    return ZieglerPPOTrainer(
        model if model is not None else tiny_llama(tokenizer), ZieglerPPOConfig(**config),
        train_dataset=dataset if dataset is not None else Dataset.from_dict({"prompt": PROMPTS}),
        processing_class=tokenizer, reward_fn=reward_fn, **trainer_kwargs,
    )


def rollout_logs(trainer):
    return [entry for entry in trainer.state.log_history if "objective/kl" in entry]


def collect(trainer, rows):
    """One rollout as the trainer collects it: its models, setup, β and frozen-block cache."""
    return collect_rollout(rows, trainer.rollout_models(), trainer.rollout_setup, trainer.kl_controller.value,
                           trainer.block_cache)


def rho_logits(trainer, rollout):
    """ρ's logits over the rollout's responses, from a whole forward."""
    with torch.no_grad():
        return reference_logits(trainer.rollout_models(), rollout.input_ids, rollout.attention_mask,
                                rollout.responses.shape[1])


def cache_used_by_the_epochs(trainer) -> bool:
    """Whether the PPO epochs' forwards start from the rollout's kept hidden states (what compute_loss passes)."""
    return trainer.block_cache is not None and bool(trainer.block_cache.epoch_inputs(torch.arange(1)))


def test_rollout_and_recomputed_logprobs_agree_at_temperature(tiny_tokenizer, tmp_path):
    trainer = make_trainer(tiny_tokenizer, tmp_path)
    wrapper, pad = trainer.model, tiny_tokenizer.pad_token_id
    queries = [tiny_tokenizer.encode(p) for p in PROMPTS[:4]]  # different lengths: left padding matters
    input_ids, mask = pad_left(queries, pad)
    torch.manual_seed(0)
    out = wrapper.policy.generate(
        input_ids=input_ids, attention_mask=mask, generation_config=sampling_config(trainer.sampling_task, pad),
        output_scores=True, return_dict_in_generate=True,
    )
    responses = out.sequences[:, input_ids.shape[1] :]
    sampled = torch.log_softmax(torch.stack(out.scores, dim=1), dim=-1).gather(-1, responses.unsqueeze(-1)).squeeze(-1)
    full_ids = torch.cat([input_ids, responses], dim=1)
    full_mask = torch.cat([mask, torch.ones_like(responses)], dim=1)
    with torch.no_grad():
        logits, values, _ = wrapper(full_ids, full_mask, responses.shape[1])
    torch.testing.assert_close(logprobs_from_logits(logits, responses, 0.7), sampled, atol=1e-4, rtol=0)
    assert (logprobs_from_logits(logits, responses, 1.0) - sampled).abs().max() > 1e-2
    assert values.abs().max().item() == 0.0  # zero-initialised value head


@pytest.mark.parametrize("penalize_invalid", [True, False])
def test_per_token_rewards_in_a_task_rollout(tiny_tokenizer, tmp_path, penalize_invalid):
    # response_length 4 < truncate_after 16: no response can be valid, every one earns the −1 penalty (or, with
    # the penalty off, the reward like a valid one)
    trainer = make_trainer(
        tiny_tokenizer, tmp_path, task="sentiment", response_length=4, dataset=Dataset.from_dict({"text": TEXTS}),
        reward_fn=lambda p, c: [5.0] * len(c), ref_model=tiny_llama(tiny_tokenizer, seed=1),
        penalize_invalid=penalize_invalid,
    )
    score = -1.0 if penalize_invalid else 5.0
    rows = [trainer.train_dataset[i] for i in range(4)]
    assert all(row["query_ids"][-1] == tiny_tokenizer.encode(".")[0] for row in rows)
    rollout = collect(trainer, rows)
    ref_logprobs = logprobs_from_logits(rho_logits(trainer, rollout), rollout.responses, 0.7)
    kl_part = -0.1 * (rollout.logprobs - ref_logprobs)
    assert kl_part.abs().min() > 0
    torch.testing.assert_close(rollout.rewards[:, :-1], kl_part[:, :-1])
    torch.testing.assert_close(rollout.rewards[:, -1], kl_part[:, -1] + score)
    stats = RolloutStats.of(rollout)  # what the trainer logs (one process: the mean over processes is its own)
    assert stats.score == score
    assert stats.valid_fraction == 0.0


@pytest.mark.parametrize("task", ["sentiment", None])
@pytest.mark.parametrize("stop_at_eos", [True, False])
def test_stop_at_eos_hides_what_follows_the_eos_from_the_reward(
    tiny_tokenizer, tmp_path, monkeypatch, task, stop_at_eos
):
    eos, word = tiny_tokenizer.eos_token_id, tiny_tokenizer.encode(" cat")[0]
    sampled = torch.tensor([word, word, eos, word, word, word])
    monkeypatch.setattr(
        "ziegler_trl.ppo.rollout.generate_responses", lambda model, queries, *a: sampled.repeat(len(queries), 1)
    )
    seen = []
    dataset = Dataset.from_dict({"text": TEXTS}) if task else None
    trainer = make_trainer(tiny_tokenizer, tmp_path, task=task, dataset=dataset, stop_at_eos=stop_at_eos,
                           reward_fn=lambda p, c: seen.extend(c) or [1.0] * len(c))
    assert trainer.sampling_task.stop_at_eos is stop_at_eos
    rollout = collect(trainer, [trainer.train_dataset[i] for i in range(4)])
    whole = tiny_tokenizer.decode(sampled)
    assert seen == [tiny_tokenizer.decode(sampled[:2]) if stop_at_eos else whole] * 4
    # only a task's '.' window makes a response invalid (here none has a '.'); an EOS ending makes it valid
    assert RolloutStats.of(rollout).valid_fraction == (1.0 if stop_at_eos or task is None else 0.0)
    assert torch.equal(rollout.responses.cpu(), sampled.repeat(4, 1))  # KL still covers every sampled token


@pytest.mark.parametrize(("sampling_dtype", "autocast"), [("float32", None), ("bfloat16", torch.bfloat16)])
def test_rollouts_sample_in_the_sampling_dtype_and_score_in_fp32(
    tiny_tokenizer, tmp_path, monkeypatch, sampling_dtype, autocast
):
    from ziegler_trl.ppo import rollout as rollout_module

    seen = []

    def generate(model, queries, *args):
        seen.append(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None)
        return generate_responses(model, queries, *args)

    generate_responses = rollout_module.generate_responses
    monkeypatch.setattr(rollout_module, "generate_responses", generate)
    trainer = make_trainer(tiny_tokenizer, tmp_path, sampling_dtype=sampling_dtype)
    rollout = collect(trainer, [trainer.train_dataset[i] for i in range(4)])
    assert seen == [autocast]
    # only `generate` runs in bf16: log-probs, values and the KL stay fp32 and finite
    for key in ("logprobs", "values", "rewards"):
        tensor = getattr(rollout, key)
        assert tensor.dtype == torch.float32 and torch.isfinite(tensor).all(), key
    assert not torch.is_autocast_enabled("cpu")


def test_unknown_sampling_dtype_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"sampling_dtype must be one of \('auto', 'float32', 'bfloat16'\), got 'half'"):
        ZieglerPPOConfig(output_dir=str(tmp_path), sampling_dtype="half")


def test_three_updates_move_beta_toward_the_target(tiny_tokenizer, tmp_path):
    trainer = make_trainer(tiny_tokenizer, tmp_path, num_ppo_epochs=4, learning_rate=1e-2, kl_target=0.05)
    assert trainer.args.max_steps == 12
    trainer.train()
    logs = rollout_logs(trainer)
    assert len(logs) == 3 and logs[0]["objective/kl"] == 0.0  # π = ρ before the first update
    beta = 0.1
    for entry in logs:
        assert entry["objective/kl_coef"] == pytest.approx(beta)
        error = min(max(entry["objective/kl"] / 0.05 - 1, -0.2), 0.2)
        new_beta = beta * (1 + error * 4 / 8)
        assert (new_beta - beta) * (entry["objective/kl"] - 0.05) > 0  # β rises above target, falls below
        beta = new_beta
    assert trainer.kl_controller.value == pytest.approx(beta)
    assert any(entry["objective/kl"] > 0.05 for entry in logs[1:])  # the policy moved; β was pushed back up
    for key in ("ppo/loss/policy", "ppo/loss/value", "ppo/val/var_explained", "ppo/policy/entropy", "ppo/returns/var"):
        assert key in trainer.state.log_history[0]


def test_resume_reproduces_beta_step_and_weights(tiny_tokenizer, tmp_path):
    full = make_trainer(tiny_tokenizer, tmp_path, name="full", save_strategy="steps", save_steps=2)
    full.train()
    full.save_model(str(tmp_path / "final"))
    resumed = make_trainer(tiny_tokenizer, tmp_path, name="resumed", save_strategy="no")
    resumed.train(resume_from_checkpoint=str(tmp_path / "full" / "checkpoint-4"))
    assert resumed.state.global_step == full.state.global_step == 6
    assert resumed.kl_controller.value == full.kl_controller.value
    assert rollout_logs(resumed)[-1]["objective/kl"] == pytest.approx(rollout_logs(full)[-1]["objective/kl"])
    for (name, a), b in zip(full.model.named_parameters(), resumed.model.parameters()):
        torch.testing.assert_close(a, b, msg=name)
    # the final folder is a plain HF causal LM plus the value head
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "final")
    torch.testing.assert_close(reloaded.model.embed_tokens.weight, full.model.policy.model.embed_tokens.weight)
    torch.testing.assert_close(load_file(tmp_path / "final" / "value_head.safetensors")["weight"], full.model.value_head.weight)


def test_non_finite_reward_stops_with_error_and_keeps_last_checkpoint(tiny_tokenizer, tmp_path):
    calls = []

    def flaky_reward(prompts, completions):
        calls.append(1)
        return [float("nan") if len(calls) > 1 else 1.0] * len(completions)

    trainer = make_trainer(tiny_tokenizer, tmp_path, reward_fn=flaky_reward, save_strategy="steps", save_steps=2)
    with pytest.raises(NonFiniteError, match=r"Non-finite values in the rollout .* global step 2 .*checkpoint-2"):
        trainer.train()
    assert sorted(p.name for p in (tmp_path / "ppo").glob("checkpoint-*")) == ["checkpoint-2"]


def test_lora_policy_uses_adapters_off_as_reference(tiny_tokenizer, tmp_path):
    from peft import LoraConfig

    trainer = make_trainer(
        tiny_tokenizer, tmp_path, total_episodes=8, learning_rate=5e-2,
        peft_config=LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]),
    )
    assert trainer.ref_model is None
    trainer.train()
    logs = rollout_logs(trainer)
    assert logs[0]["objective/kl"] == 0.0 and logs[1]["objective/kl"] != 0.0
    trainer.save_model(str(tmp_path / "lora"))
    assert (tmp_path / "lora" / "adapter_model.safetensors").is_file()
    assert (tmp_path / "lora" / "value_head.safetensors").is_file()


def test_tf_adam_fixed_kl_and_gradient_accumulation(tiny_tokenizer, tmp_path):
    trainer = make_trainer(
        tiny_tokenizer, tmp_path, tf_adam=True, kl_control="fixed", init_kl_coef=0.03, total_episodes=8,
        per_device_train_batch_size=2, gradient_accumulation_steps=2,  # 2 micro-batches per optimizer step
    )
    trainer.train()
    assert trainer.state.global_step == 4 and trainer._step == 8
    assert type(trainer.optimizer.optimizer if hasattr(trainer.optimizer, "optimizer") else trainer.optimizer).__name__ == "TFAdam"
    assert [e["objective/kl_coef"] for e in rollout_logs(trainer)] == [0.03, 0.03]
    assert not isinstance(trainer.kl_controller, AdaptiveKLController)


def test_reward_check_names_malformed_held_out_labels(tiny_tokenizer, tmp_path):
    """The statistics of the check are in test_sign_checks.py; malformed labels are refused by row and field."""
    labels = Dataset.from_dict({"prompt": ["a", "b"], "completions": [["x", "yy"], ["z", "ww"]], "best": [1, 5]})
    with pytest.raises(ValueError, match=r"eval_labels, record 1, field 'best': must be an integer in 0..1 \(got 5\)"):
        make_trainer(tiny_tokenizer, tmp_path, eval_labels=labels)
    with pytest.raises(ValueError, match=r"eval_labels, record 0, field 'completions': missing"):
        make_trainer(tiny_tokenizer, tmp_path, eval_labels=Dataset.from_dict({"prompt": ["a"], "best": [0]}))


def test_bad_inputs_are_named(tiny_tokenizer, tmp_path):
    with pytest.raises(ValueError, match=r"needs a `prompt` column .* got columns \['question'\]"):
        make_trainer(tiny_tokenizer, tmp_path, dataset=Dataset.from_dict({"question": ["a"]}))
    with pytest.raises(ValueError, match="set both `response_length` and `temperature`"):
        make_trainer(tiny_tokenizer, tmp_path, response_length=None)
    with pytest.raises(ValueError, match=r"save_steps \(3\) must be a multiple .* = 2"):
        ZieglerPPOConfig(output_dir=str(tmp_path), num_ppo_epochs=2, save_steps=3, report_to=[])
    with pytest.raises(ValueError, match="exactly one of `reward_model`"):
        ZieglerPPOTrainer(tiny_llama(tiny_tokenizer), ZieglerPPOConfig(output_dir=str(tmp_path), report_to=[]),
                          train_dataset=Dataset.from_dict({"prompt": ["a"]}), processing_class=tiny_tokenizer)


def test_ppo_raises_a_simple_reward(tiny_tokenizer, tmp_path):
    """End to end: the policy learns to write more 'e's (a sign flip anywhere would make the score fall)."""
    trainer = make_trainer(
        tiny_tokenizer, tmp_path, per_device_train_batch_size=16, response_length=8, total_episodes=16 * 30,
        init_kl_coef=0.01, kl_target=50.0, kl_horizon=10000, num_ppo_epochs=4, logging_steps=4,
        dataset=Dataset.from_dict({"prompt": PROMPTS * 4}),
        reward_fn=lambda prompts, completions: [5 * c.count("e") / max(len(c), 1) for c in completions],
    )
    trainer.train()
    scores = [entry["objective/scores"] for entry in rollout_logs(trainer)]
    assert len(scores) == 30
    assert sum(scores[-5:]) / 5 > sum(scores[:5]) / 5 + 0.5


def test_lora_policy_saved_merged_while_checkpoints_keep_adapters(tiny_tokenizer, tmp_path):
    from peft import LoraConfig

    trainer = make_trainer(
        tiny_tokenizer, tmp_path, total_episodes=8, learning_rate=5e-2, save_merged_model=True,
        save_strategy="steps", save_steps=2, peft_config=LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]),
    )
    trainer.train()
    checkpoint = tmp_path / "ppo" / "checkpoint-2"
    assert (checkpoint / "adapter_model.safetensors").is_file()
    trainer.save_model(str(tmp_path / "merged"))
    assert not (tmp_path / "merged" / "adapter_config.json").exists()
    assert (tmp_path / "merged" / "value_head.safetensors").is_file()
    merged = load_policy(str(tmp_path / "merged"), tiny_tokenizer)
    ids = torch.tensor([tiny_tokenizer.encode(PROMPTS[0])])
    with torch.no_grad():
        expected = trainer.model.policy(input_ids=ids).logits
        assert torch.allclose(merged(input_ids=ids).logits, expected, atol=1e-5)
    assert trainer.model.has_adapters  # the run's own model keeps its adapters


def _frozen_bottom_llama(tokenizer):
    from transformers import LlamaForCausalLM

    from tests.conftest import tiny_config
    from ziegler_trl.blocks import freeze_bottom_layers

    torch.manual_seed(0)
    policy = LlamaForCausalLM(tiny_config(tokenizer, num_hidden_layers=4))
    freeze_bottom_layers(policy, 2)
    return policy


@pytest.mark.parametrize("variant", ["top_blocks", "lora", "separate_value"])
def test_frozen_block_cache_trains_exactly_like_full_forwards(tiny_tokenizer, tmp_path, variant):
    """The PPO epochs (and ρ's rollout forward) start at the first trainable block from the rollout's hidden states:
    same KLs and weights after training as rerunning the frozen blocks. With LoRA on the top blocks only, ρ is the
    policy with adapters off, whose bottom blocks are the policy's too; a separate value trunk runs whole."""
    from peft import LoraConfig

    runs = {}
    for cache in (True, False):
        extra = {}
        if variant == "separate_value":
            extra["value_model"] = tiny_llama(tiny_tokenizer, seed=1)
        if variant == "lora":
            extra["peft_config"] = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                              layers_to_transform=[2, 3], task_type="CAUSAL_LM")
        trainer = make_trainer(tiny_tokenizer, tmp_path, name=f"cache-{cache}", model=_frozen_bottom_llama(tiny_tokenizer),
                               cache_frozen_blocks=cache, **extra)
        trainer.train()
        wrapper = trainer.accelerator.unwrap_model(trainer.model)
        assert (trainer.block_cache.policy_blocks if trainer.block_cache else 0) == (2 if cache else 0)
        assert cache_used_by_the_epochs(trainer) == cache == (trainer.block_cache is not None
                                                               and trainer.block_cache.hidden is not None)
        runs[cache] = (wrapper.state_dict(), [e["objective/kl"] for e in rollout_logs(trainer)])
    assert runs[True][1] == pytest.approx(runs[False][1], abs=1e-5)
    for name, weight in runs[True][0].items():
        torch.testing.assert_close(weight, runs[False][0][name], rtol=1e-4, atol=1e-6, msg=name)


def test_frozen_block_cache_falls_back_with_a_warning_where_the_architecture_differs(tiny_tokenizer, tmp_path, caplog):
    """GPT-2 adds position embeddings to `inputs_embeds`, so the cached hidden states would be shifted: the first
    rollout's check finds it, warns, and the run trains with full forwards."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from ziegler_trl.blocks import freeze_bottom_layers

    torch.manual_seed(0)
    gpt2 = GPT2LMHeadModel(GPT2Config(
        vocab_size=len(tiny_tokenizer), n_embd=16, n_layer=3, n_head=2, n_positions=64,
        pad_token_id=tiny_tokenizer.pad_token_id, eos_token_id=tiny_tokenizer.eos_token_id, bos_token_id=None,
    ))
    freeze_bottom_layers(gpt2, 1)
    trainer = make_trainer(tiny_tokenizer, tmp_path, model=gpt2, total_episodes=4)
    assert trainer.block_cache.policy_blocks == 2
    with caplog.at_level("WARNING"):
        trainer.train()
    assert "differs from its full forward" in caplog.text and "run full forwards instead" in caplog.text
    assert trainer.block_cache.policy_blocks == 0
    assert not cache_used_by_the_epochs(trainer) and trainer.block_cache.hidden is None


def _reward_model_sharing_bottom(tokenizer, policy, **config):
    """A reward model whose embeddings and bottom 2 blocks are `policy`'s (trained from ρ with them frozen), with
    its own top blocks and head."""
    from transformers import LlamaForSequenceClassification

    from tests.conftest import tiny_config

    torch.manual_seed(1)
    reward_model = LlamaForSequenceClassification(tiny_config(tokenizer, num_hidden_layers=4, num_labels=1, **config))
    reward_model.model.load_state_dict(policy.model.state_dict())
    with torch.no_grad():
        for param in reward_model.model.layers[2:].parameters():
            param.add_(0.1 * torch.randn_like(param))
        reward_model.score.weight.mul_(100.0)  # scores of order 1, as a normalised reward model's
    return reward_model


def test_reward_model_with_the_policys_frozen_bottom_scores_from_the_cache_exactly(tiny_tokenizer, tmp_path):
    """A reward model sharing the policy's frozen bottom blocks starts from the rollout's cached hidden states: the
    same scores, KLs and weights as scoring it whole."""
    runs = {}
    for cache in (True, False):
        policy = _frozen_bottom_llama(tiny_tokenizer)
        trainer = make_trainer(tiny_tokenizer, tmp_path, name=f"rm-cache-{cache}", model=policy, reward_fn=None,
                               reward_model=_reward_model_sharing_bottom(tiny_tokenizer, policy),
                               cache_frozen_blocks=cache)
        trainer.train()
        logs = rollout_logs(trainer)
        assert [e["ppo/reward_cached_blocks"] for e in logs] == [2 if cache else 0] * len(logs)
        runs[cache] = (trainer.accelerator.unwrap_model(trainer.model).state_dict(),
                       [e[key] for e in logs for key in ("objective/scores", "objective/kl")])
    assert runs[True][1] == pytest.approx(runs[False][1], abs=1e-5)
    for name, weight in runs[True][0].items():
        torch.testing.assert_close(weight, runs[False][0][name], rtol=1e-4, atol=1e-6, msg=name)


def test_reward_from_the_cache_reads_each_truncated_response_at_its_last_token(tiny_tokenizer, tmp_path):
    from ziegler_trl.sampling import generate_responses

    policy = _frozen_bottom_llama(tiny_tokenizer)
    trainer = make_trainer(tiny_tokenizer, tmp_path, model=policy, reward_fn=None, response_length=8,
                           reward_model=_reward_model_sharing_bottom(tiny_tokenizer, policy))
    assert trainer.block_cache.reward_blocks == 2
    rows = [trainer.train_dataset[i] for i in range(4)]
    pad = tiny_tokenizer.pad_token_id
    torch.manual_seed(0)
    responses = generate_responses(policy, [r["query_ids"] for r in rows], trainer.sampling_task, pad)
    responses[responses == pad] = 5  # no pad sampled inside a response
    truncated = responses.clone()
    for row, length in enumerate([8, 3, 0, 5]):  # whole, cut, empty (the query alone is scored), cut
        truncated[row, length:] = pad
    query_ids, query_mask = pad_left([r["query_ids"] for r in rows], pad)
    input_ids = torch.cat([query_ids, responses], dim=1)
    attention_mask = torch.cat([query_mask, torch.ones_like(responses)], dim=1)
    with torch.no_grad():
        hidden = trainer.model(input_ids, attention_mask, 8, cached_blocks=2).frozen_hidden
        lengths = rollout_layout_lengths(rows, responses, truncated, pad)
        assert lengths.tolist() == [8, 3, 0, 5]
        potentials = trainer.block_cache.potentials_from_hidden(
            trainer.reward_model, hidden, attention_mask, lengths, 8, trainer.rollout_setup.forward_batch_size
        )
    reward_ids = [r["reward_ids"] for r in rows]
    full = trainer.reward_source.score(reward_ids, truncated)
    torch.testing.assert_close(potentials[:, -1], full, atol=1e-5, rtol=0)
    assert len(set(full.tolist())) == 4
    # every prefix: column t scores the query and the first t tokens, past the response's end its whole score
    torch.testing.assert_close(potentials, score_prefixes(trainer.reward_model, reward_ids, truncated, pad),
                               atol=1e-5, rtol=0)
    cut = truncated[1].tolist()
    by_prefix = score_sequences(trainer.reward_model, [reward_ids[1] + cut[:t] for t in range(4)], pad)
    torch.testing.assert_close(potentials[1], torch.cat([by_prefix, by_prefix[-1:].repeat(5)]), atol=1e-5, rtol=0)
    assert len(set(by_prefix.tolist())) == 4

    inner_pad = truncated.clone()
    inner_pad[1, 1] = pad  # the reward model's sequence drops it: not the rollout's layout
    assert rollout_layout_lengths(rows, responses, inner_pad, pad) is None
    prefixed = [{**r, "reward_ids": r["reward_ids"][1:]} for r in rows]  # e.g. a task prefix
    assert rollout_layout_lengths(prefixed, responses, truncated, pad) is None


def test_potential_shaping_spreads_the_score_and_keeps_the_return_from_the_first_token(tiny_tokenizer, tmp_path):
    """reward_shaping='potential': R_t = −β·KL_t + Φ(s_{t+1}) − Φ(s_t), so a response's rewards sum to its KL part
    plus r(x, y) − Φ(s_0) (Φ(s_0): the query alone); the same from cached hidden states as from whole forwards."""
    rollouts = {}
    for cache in (True, False):
        policy = _frozen_bottom_llama(tiny_tokenizer)
        trainer = make_trainer(tiny_tokenizer, tmp_path, name=f"shaped-{cache}", model=policy, reward_fn=None,
                               reward_model=_reward_model_sharing_bottom(tiny_tokenizer, policy),
                               reward_shaping="potential", cache_frozen_blocks=cache, response_length=8)
        rows = [trainer.train_dataset[i] for i in range(4)]
        torch.manual_seed(0)
        rollout = collect(trainer, rows)
        assert rollout.reward_cached_blocks == (2 if cache else 0)
        rollouts[cache] = rollout.rewards
    pad = tiny_tokenizer.pad_token_id
    kl_part = -0.1 * (rollout.logprobs - logprobs_from_logits(rho_logits(trainer, rollout), rollout.responses, 0.7))
    reward_ids = [r["reward_ids"] for r in rows]
    scores = score_sequences(trainer.reward_model, [q + r.tolist() for q, r in zip(reward_ids, rollout.responses)], pad)
    start = score_sequences(trainer.reward_model, reward_ids, pad)
    shaped = rollout.rewards - kl_part
    torch.testing.assert_close(shaped.sum(dim=1), scores - start, atol=1e-5, rtol=0)
    assert (shaped[:, :-1].abs() > 1e-4).all()  # the score is spread over the tokens, not put at the last one
    torch.testing.assert_close(rollouts[True], rollouts[False], atol=1e-5, rtol=0)

    with pytest.raises(ValueError, match="reward_shaping='potential' scores every prefix .* give a reward_model"):
        make_trainer(tiny_tokenizer, tmp_path, reward_shaping="potential")
    with pytest.raises(ValueError, match="reward_shaping must be one of .* got 'dense'"):
        ZieglerPPOConfig(output_dir=str(tmp_path), reward_shaping="dense")


def test_reward_model_with_other_bottom_blocks_or_outputs_is_scored_whole(tiny_tokenizer, tmp_path, caplog):
    policy = _frozen_bottom_llama(tiny_tokenizer)
    other = _reward_model_sharing_bottom(tiny_tokenizer, policy)
    with torch.no_grad():
        other.model.layers[1].mlp.up_proj.weight.add_(0.01)
    trainer = make_trainer(tiny_tokenizer, tmp_path, model=policy, reward_fn=None, reward_model=other)
    assert trainer.block_cache.reward_blocks == 0

    # Same weights but another norm epsilon: the hidden states differ, which only the first rollout's check sees.
    policy = _frozen_bottom_llama(tiny_tokenizer)
    trainer = make_trainer(tiny_tokenizer, tmp_path, model=policy, reward_fn=None, total_episodes=8,
                           reward_model=_reward_model_sharing_bottom(tiny_tokenizer, policy, rms_norm_eps=0.5))
    assert trainer.block_cache.reward_blocks == 2
    with caplog.at_level("WARNING"):
        trainer.train()
    assert "scores differently from its own forward" in caplog.text and "it runs whole instead" in caplog.text
    assert [e["ppo/reward_cached_blocks"] for e in rollout_logs(trainer)] == [0, 0]


@pytest.mark.parametrize("setting", [{"disable_dropout": False}, {"activation_checkpointing": True},
                                     {"cache_frozen_blocks": False}])
def test_frozen_block_cache_is_off_where_it_would_not_be_exact(tiny_tokenizer, tmp_path, setting):
    """Dropout makes the frozen blocks' output random; gradient checkpointing may need the embeddings' grad hook."""
    trainer = make_trainer(tiny_tokenizer, tmp_path, model=_frozen_bottom_llama(tiny_tokenizer), **setting)
    assert trainer.block_cache is None
