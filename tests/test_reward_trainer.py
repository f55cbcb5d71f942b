import random

import pytest
import torch
from datasets import Dataset

from ziegler_trl import BestOfKRewardConfig, BestOfKRewardTrainer
from ziegler_trl.reward.forward import DataCollatorForBestOfK, comparison_rewards
from ziegler_trl.reward.trunk_cache import content_key

WORDS = ["good", "bad", "cat", "dog", "happy", "sad", "the", "day"]


def comparisons(n: int, k: int = 4, seed: int = 0, ranking: bool = False) -> Dataset:
    """Best = the completion with the most 'good's (a rule the tiny model can pick up)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        completions = [" ".join(rng.choice(WORDS) for _ in range(4)) for _ in range(k)]
        order = sorted(range(k), key=lambda j: (-completions[j].count("good"), j))
        row = {"prompt": "The cat sat.", "completions": completions, "best": order[0]}
        if ranking:
            row["ranking"] = order
        rows.append(row)
    return Dataset.from_list(rows)


def config(tmp_path, **overrides) -> BestOfKRewardConfig:
    base = dict(
        output_dir=str(tmp_path / "rm"), max_steps=2, per_device_train_batch_size=4, per_device_eval_batch_size=4,
        logging_steps=1, report_to="none", save_strategy="no", seed=0, dataloader_pin_memory=False,
    )
    base.update(overrides)
    return BestOfKRewardConfig(**base)


def test_paper_defaults_and_cpu_precision(tmp_path):
    args = BestOfKRewardConfig(output_dir=str(tmp_path))
    assert args.num_train_epochs == 1.0
    assert args.adam_epsilon == 1e-5
    assert args.lr_scheduler_type == "linear"
    assert args.disable_dropout is True
    assert args.bf16 is (torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    with pytest.raises(ValueError, match="loss_type"):
        BestOfKRewardConfig(output_dir=str(tmp_path), loss_type="pairs")


def test_collator_layouts():
    examples = [
        {"prompt_ids": [1, 2], "completion_ids": [[5, 6], [7], [8, 9, 10]], "best": 2},
        {"prompt_ids": [3], "completion_ids": [[4], [2], [3]], "best": 0},
    ]
    shared = DataCollatorForBestOfK(pad_token_id=0)(examples)
    assert shared["prompt_ids"].tolist() == [[1, 2], [0, 3]]  # prompts left-padded
    assert shared["input_ids"].tolist() == [[5, 6, 0], [7, 0, 0], [8, 9, 10], [4, 0, 0], [2, 0, 0], [3, 0, 0]]
    assert shared["best"].tolist() == [2, 0]
    full = DataCollatorForBestOfK(pad_token_id=0, share_prompt=False)(examples)
    assert "prompt_ids" not in full
    assert full["input_ids"][2].tolist() == [1, 2, 8, 9, 10] and full["input_ids"][3].tolist() == [3, 4, 0, 0, 0]
    assert full["attention_mask"].sum(1).tolist() == [4, 3, 5, 2, 2, 2]


def test_shared_prompt_forward_equals_full_forward_with_gradients(tiny_model_dir, tiny_tokenizer):
    from ziegler_trl import load_reward_model
    from ziegler_trl.reward.forward import tokenize_comparison

    rows = comparisons(3, k=4).to_list()
    rows[1]["prompt"] = "A much longer prompt, so prompts need left padding in the batch."
    rows[1]["completions"][2] = ""  # a response that ended at once (EOS first): it scores as the prompt alone
    examples = [{**tokenize_comparison(r, tiny_tokenizer), "best": r["best"]} for r in rows]
    model = load_reward_model(str(tiny_model_dir), tiny_tokenizer)
    grads = []
    for share in (True, False):
        model.zero_grad()
        rewards = comparison_rewards(model, DataCollatorForBestOfK(0, share_prompt=share)(examples))
        rewards.sum().backward()
        grads.append((rewards.detach(), model.model.layers[0].self_attn.q_proj.weight.grad.clone()))
    (shared, shared_grad), (full, full_grad) = grads
    assert shared.shape == (3, 4)
    assert torch.allclose(shared, full, atol=1e-5)
    with torch.no_grad():
        alone = model(input_ids=torch.tensor([examples[1]["prompt_ids"]])).logits[0, 0]
    assert shared[1, 2].item() == pytest.approx(alone.item(), abs=1e-5)
    assert shared[1, 2] != shared[1, 1]
    assert torch.allclose(shared_grad, full_grad, atol=1e-5)  # gradients reach the prompt's forward


def test_two_step_run_logs_loss_and_accuracy(tmp_path, tiny_model_dir, tiny_tokenizer):
    trainer = BestOfKRewardTrainer(
        str(tiny_model_dir), args=config(tmp_path), train_dataset=comparisons(16), eval_dataset=comparisons(8, seed=1),
        processing_class=tiny_tokenizer,
    )
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logs) == 2
    for entry in logs:
        assert 0.0 <= entry["accuracy"] <= 1.0
        assert entry["loss"] > 0 and "mean_reward" in entry and entry["std_reward"] > 0
    metrics = trainer.evaluate()
    assert {"eval_loss", "eval_accuracy", "eval_mean_reward", "eval_std_reward"} <= metrics.keys()
    # the logged accuracy is argmax == best on the eval comparisons: recompute it by hand
    collator = trainer.data_collator
    batch = collator([trainer.eval_dataset[i] for i in range(len(trainer.eval_dataset))])
    with torch.no_grad():
        rewards = comparison_rewards(trainer.model, batch)
    assert metrics["eval_accuracy"] == pytest.approx((rewards.argmax(1) == batch["best"]).float().mean().item())


def test_trainer_learns_the_rule(tmp_path, tiny_model_dir, tiny_tokenizer):
    args = config(tmp_path, max_steps=-1, num_train_epochs=3, learning_rate=3e-3, per_device_train_batch_size=8)
    trainer = BestOfKRewardTrainer(
        str(tiny_model_dir), args=args, train_dataset=comparisons(96), eval_dataset=comparisons(32, seed=1),
        processing_class=tiny_tokenizer,
    )
    before = trainer.evaluate()["eval_loss"]
    trainer.train()
    after = trainer.evaluate()
    assert after["eval_loss"] < before
    assert after["eval_accuracy"] > 0.4  # chance is 0.25


def test_ranking_loss_run(tmp_path, tiny_model_dir, tiny_tokenizer):
    trainer = BestOfKRewardTrainer(
        str(tiny_model_dir), args=config(tmp_path, loss_type="ranking"),
        train_dataset=comparisons(8, ranking=True), processing_class=tiny_tokenizer,
    )
    trainer.train()
    assert trainer.state.log_history[0]["loss"] > 0
    with pytest.raises(ValueError, match="needs a 'ranking' column"):
        BestOfKRewardTrainer(
            str(tiny_model_dir), args=config(tmp_path, loss_type="ranking"), train_dataset=comparisons(8),
            processing_class=tiny_tokenizer,
        )


def test_bad_rows_are_rejected_before_training(tmp_path, tiny_model_dir, tiny_tokenizer):
    rows = comparisons(4).to_list()
    rows[2]["best"] = 7
    with pytest.raises(ValueError, match=r"train dataset, record 2, field 'best'"):
        BestOfKRewardTrainer(
            str(tiny_model_dir), args=config(tmp_path), train_dataset=Dataset.from_list(rows),
            processing_class=tiny_tokenizer,
        )


def test_lora_reward_model(tmp_path, tiny_model_dir, tiny_tokenizer):
    from peft import LoraConfig

    trainer = BestOfKRewardTrainer(
        str(tiny_model_dir), args=config(tmp_path), train_dataset=comparisons(8), processing_class=tiny_tokenizer,
        peft_config=LoraConfig(r=4, target_modules=["q_proj", "v_proj"], modules_to_save=["score"], task_type="SEQ_CLS"),
    )
    head_before = trainer.model.base_model.model.score.modules_to_save["default"].weight.clone()
    trainer.train()
    head_after = trainer.model.base_model.model.score.modules_to_save["default"].weight
    assert not torch.equal(head_before, head_after)
    trainable = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    assert any("lora_" in n for n in trainable) and not any("mlp" in n and "lora" not in n for n in trainable)


@pytest.mark.parametrize("merged", [True, False])
def test_lora_reward_stage_saves_merged_or_adapters(tmp_path, tiny_model_dir, tiny_tokenizer, merged):
    from trl import ModelConfig

    from ziegler_trl.reward.model import load_reward_model
    from ziegler_trl.reward.pipeline import RewardScriptArguments, train_reward_model
    from ziegler_trl.reward.scoring import score_texts

    labels = comparisons(12)
    rho = (["The cat sat."] * 8, [c[0] for c in labels["completions"][:8]])
    script = RewardScriptArguments(eval_fraction=0.0, normalize_samples=8)
    lora = ModelConfig(model_name_or_path=str(tiny_model_dir), use_peft=True, lora_r=4, lora_alpha=8, lora_target_modules=["q_proj", "v_proj"])
    train_reward_model(script, config(tmp_path, save_merged_model=merged), labels=labels, rho_samples=rho,
                       model_args=lora)
    out = tmp_path / "rm"
    if not merged:
        assert (out / "adapter_config.json").is_file() and not (out / "model.safetensors").exists()
        return
    assert (out / "model.safetensors").is_file() and not (out / "adapter_config.json").exists()
    reloaded = load_reward_model(str(out), tiny_tokenizer)
    assert not any("lora" in name for name, _ in reloaded.named_parameters())
    scores = score_texts(reloaded, tiny_tokenizer, *rho)  # the merged model keeps the normalisation on ρ
    assert abs(scores.mean().item()) < 1e-4 and abs(scores.std(unbiased=False).item() - 1) < 1e-3


def _frozen_trunk_model(tokenizer, trainable_top_layers: int = 0, **overrides):
    """A tiny Llama reward model whose blocks (and embeddings) are frozen: only the final norm and head train."""
    from transformers import LlamaForSequenceClassification

    from tests.conftest import tiny_config
    from ziegler_trl.blocks import freeze_bottom_layers
    from ziegler_trl.reward.model import init_reward_head

    torch.manual_seed(0)
    model = LlamaForSequenceClassification(tiny_config(tokenizer, num_hidden_layers=3, num_labels=1, **overrides))
    init_reward_head(model.score)
    freeze_bottom_layers(model, trainable_top_layers)
    return model


def _varied_prompts(dataset: Dataset) -> Dataset:
    """Prompts of different lengths, so the shared-prompt layout left-pads them; every third comparison has an
    empty completion (a response that ended at once), scored from its prompt."""
    def vary(row, i):
        completions = [c if i % 3 or j != i % len(row["completions"]) else "" for j, c in enumerate(row["completions"])]
        return {"prompt": "The dog ran. " * (1 + i % 3) + row["prompt"], "completions": completions}

    return dataset.map(vary, with_indices=True)


def _count_calls(module: torch.nn.Module) -> list[int]:
    calls = [0]
    module.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


@pytest.mark.parametrize("top", [0, 1], ids=["head_only", "top_block"])
@pytest.mark.parametrize("share_prompt", [True, False])
def test_frozen_trunk_cache_gives_the_full_forwards_rewards_loss_and_gradients(
    tmp_path, tiny_tokenizer, share_prompt, top
):
    results = {}
    for cache in (True, False):
        model = _frozen_trunk_model(tiny_tokenizer, trainable_top_layers=top)
        trainer = BestOfKRewardTrainer(
            model, args=config(tmp_path, cache_frozen_trunk=cache, share_prompt_forward=share_prompt),
            train_dataset=_varied_prompts(comparisons(6)), processing_class=tiny_tokenizer,
        )
        assert (trainer.trunk_cache is not None) == cache
        batch = trainer.data_collator([trainer.train_dataset[i] for i in range(6)])
        block_calls, calls_after = _count_calls(model.model.layers[0]), []  # a frozen block
        for _ in range(2):  # with the cache, the first call fills it and the second only reads it
            model.zero_grad()
            loss, outputs = trainer.compute_loss(model, batch, return_outputs=True)
            loss.backward()
            calls_after.append(block_calls[0])
        assert calls_after[1] == (1 if cache else 2) * calls_after[0]
        grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.requires_grad}
        results[cache] = (outputs["rewards"].detach(), loss.detach(), grads)
    (rewards, loss, grads), (full_rewards, full_loss, full_grads) = results[True], results[False]
    top_block = [f"model.layers.2.{name}" for name, _ in model.model.layers[2].named_parameters()] if top else []
    assert sorted(grads) == sorted(["model.norm.weight", "score.weight", *top_block])
    torch.testing.assert_close(rewards, full_rewards, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(loss, full_loss, rtol=1e-5, atol=1e-6)
    for name, grad in grads.items():
        torch.testing.assert_close(grad, full_grads[name], rtol=1e-5, atol=1e-6, msg=name)


def _train_frozen_trunk(tmp_path, tokenizer, model, cache: bool, **overrides) -> tuple[BestOfKRewardTrainer, int]:
    """3 shuffled epochs of 4 batches; returns the trainer and how often the bottom block ran."""
    from ziegler_trl.blocks import transformer_layers

    args = config(tmp_path, cache_frozen_trunk=cache, max_steps=-1, num_train_epochs=3, learning_rate=1e-2, **overrides)
    trainer = BestOfKRewardTrainer(model, args=args, train_dataset=_varied_prompts(comparisons(16)),
                                   processing_class=tokenizer)
    block_calls = _count_calls(transformer_layers(model)[0])
    trainer.train()
    return trainer, block_calls[0]


@pytest.mark.parametrize("top", [0, 2], ids=["head_only", "top_blocks"])
@pytest.mark.parametrize("layout", [{"share_prompt_forward": True},
                                    {"share_prompt_forward": False, "activation_checkpointing": True}])
def test_frozen_trunk_cache_trains_like_full_forwards_with_one_trunk_forward_per_completion(
    tmp_path, tiny_tokenizer, layout, top
):
    runs = {}
    for cache in (True, False):
        model = _frozen_trunk_model(tiny_tokenizer, trainable_top_layers=top)
        trainer, block_calls = _train_frozen_trunk(tmp_path, tiny_tokenizer, model, cache, **layout)
        assert (trainer.trunk_cache is not None) == cache
        if cache:  # one entry per distinct prompt ‖ completion: a state, or with top blocks one per token
            dataset = trainer.train_dataset
            distinct = {tuple(row["prompt_ids"] + ids) for row in dataset for ids in row["completion_ids"]}
            assert len(trainer.trunk_cache.hidden) == len(distinct)
            lengths = sorted(len(trainer.trunk_cache.hidden[content_key(list(ids))]) for ids in distinct)
            assert lengths == (sorted(len(ids) for ids in distinct) if top else [32] * len(distinct))
        trained = {name: p.detach().clone() for name, p in trainer.model.named_parameters() if p.requires_grad}
        runs[cache] = (trained, block_calls)
    (weights, calls), (full_weights, full_calls) = runs[True], runs[False]
    assert calls * 3 == full_calls  # the frozen blocks ran in the first epoch only
    for name, weight in weights.items():
        torch.testing.assert_close(weight, full_weights[name], rtol=1e-5, atol=1e-5, msg=name)
    assert not torch.equal(weights["score.weight"], _frozen_trunk_model(tiny_tokenizer).score.weight)


@pytest.mark.parametrize("setting", ["every_block_trains", "attention_dropout", "off"])
def test_frozen_trunk_cache_is_off_where_the_trunk_output_could_change(tmp_path, tiny_tokenizer, setting):
    model = {
        "every_block_trains": lambda: _frozen_trunk_model(tiny_tokenizer, trainable_top_layers=3),
        "attention_dropout": lambda: _frozen_trunk_model(tiny_tokenizer, attention_dropout=0.1),
        "off": lambda: _frozen_trunk_model(tiny_tokenizer),
    }[setting]()
    trainer = BestOfKRewardTrainer(model, args=config(tmp_path, cache_frozen_trunk=setting != "off"),
                                   train_dataset=comparisons(4), processing_class=tiny_tokenizer)
    assert trainer.trunk_cache is None


def test_frozen_trunk_cache_falls_back_with_a_warning_where_the_architecture_differs(tmp_path, tiny_tokenizer, caplog):
    """GPT-2 adds its position embedding to `inputs_embeds`, so its head would score shifted states: the first
    batch's check finds it, warns, and the run trains with full forwards."""
    from transformers import GPT2Config, GPT2ForSequenceClassification

    from ziegler_trl.blocks import freeze_bottom_layers

    def gpt2():
        torch.manual_seed(0)
        model = GPT2ForSequenceClassification(GPT2Config(
            vocab_size=len(tiny_tokenizer), n_embd=32, n_layer=2, n_head=4, n_positions=128, num_labels=1,
            pad_token_id=tiny_tokenizer.pad_token_id, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        ))
        freeze_bottom_layers(model, 0)
        return model

    with caplog.at_level("WARNING"):
        trainer, calls = _train_frozen_trunk(tmp_path, tiny_tokenizer, gpt2(), cache=True)
    assert "GPT2ForSequenceClassification scored from its cached last-block states differs" in caplog.text
    assert trainer.trunk_cache.exact is False and not trainer.trunk_cache.hidden  # off, its states dropped
    full_trainer, full_calls = _train_frozen_trunk(tmp_path, tiny_tokenizer, gpt2(), cache=False)
    assert calls == full_calls + 2  # + the first batch's filling forward (prompts, then completions)
    full_weights = dict(full_trainer.model.named_parameters())
    for name, weight in trainer.model.named_parameters():
        if weight.requires_grad:
            torch.testing.assert_close(weight, full_weights[name], rtol=1e-5, atol=1e-5, msg=name)


@pytest.mark.parametrize("peft", [False, True])
def test_score_prefixes_scores_every_prefix_like_score_sequences(tiny_tokenizer, peft):
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaForSequenceClassification

    from tests.conftest import tiny_config
    from ziegler_trl.reward.scoring import score_prefixes, score_sequences

    torch.manual_seed(0)
    model = LlamaForSequenceClassification(tiny_config(tiny_tokenizer, num_hidden_layers=2, num_labels=1))
    if peft:  # active adapters must count, as in the model's own forward
        model = get_peft_model(model, LoraConfig(task_type="SEQ_CLS", r=4, target_modules=["q_proj"],
                                                 init_lora_weights=False))
    pad = tiny_tokenizer.pad_token_id
    queries, responses = [[5, 6, 7], [8, 9]], torch.tensor([[10, 11, pad], [12, 13, 14]])
    prefixes = score_prefixes(model, queries, responses, pad)
    assert prefixes.shape == (2, 4)
    by_prefix = [score_sequences(model, [q + r.tolist()[:t] for t in range(4)], pad) for q, r in zip(queries, responses)]
    torch.testing.assert_close(prefixes[1], by_prefix[1], atol=1e-5, rtol=0)
    # the first response ends after 2 tokens: its later columns hold its whole score
    torch.testing.assert_close(prefixes[0], torch.cat([by_prefix[0][:3], by_prefix[0][2:3]]), atol=1e-5, rtol=0)
    assert len(set(prefixes[1].tolist())) == 4
