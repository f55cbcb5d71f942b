"""The quickstart's stages: its own queries stage, then the shared collect → reward → policy stages
(`ziegler_trl.stages`) with the library configs built from a `QuickstartConfig`."""

from __future__ import annotations

import dataclasses
import json
import random
import shutil
from pathlib import Path

import torch
from datasets import Dataset

from .. import stages
from ..checkpoints import INCOMPLETE_DIR, publish_folder
from ..labeling import LabelStore, SentimentLabeler
from ..models import load_tokenizer
from ..ppo import ZieglerPPOConfig
from ..reward import BestOfKRewardConfig
from ..reward.pipeline import RewardScriptArguments
from ..sampling import sample_completions
from ..tasks import TASKS, Query, TaskSpec, build_queries
from .config import QuickstartConfig

OPENINGS = Path(__file__).parents[1] / "data" / "story_openings.txt"


def smoke_model(root: Path) -> str:
    """A tiny random Llama with the embedded tokenizer (vocabulary and pad token are real), saved under `root`."""
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = root / "smoke-model"
    if not folder.is_dir():  # staged, then renamed into place: a kill while saving leaves no half folder here
        staged = root / INCOMPLETE_DIR / folder.name
        shutil.rmtree(staged, ignore_errors=True)
        tokenizer = load_tokenizer("embedded")
        torch.manual_seed(0)
        config = LlamaConfig(
            vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=4,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=True,
            pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=None,
        )
        LlamaForCausalLM(config).save_pretrained(staged)
        tokenizer.save_pretrained(staged)
        publish_folder(staged, folder)
        staged.parent.rmdir()
    return str(folder)


def task(cfg: QuickstartConfig) -> TaskSpec:
    """The paper's sentiment task with the quickstart's query length and end-of-turn rule."""
    return dataclasses.replace(TASKS["sentiment"], query_length=cfg.query_length, stop_at_eos=cfg.stop_at_eos)


def as_queries(texts: list[str], tokenizer) -> list[Query]:
    """Query texts (already cut by the task's rules) as queries whose reward-model view is the text itself."""
    ids = [tokenizer.encode(t, add_special_tokens=False) for t in texts]
    return [Query(ids=i, reward_ids=i) for i in ids]


def make_queries(cfg: QuickstartConfig, model: str, root: Path) -> None:
    """ρ continues every opening; the task's rules turn the passages into queries; split train / held-out."""
    tokenizer = load_tokenizer(model)
    openings = [line for line in OPENINGS.read_text().splitlines() if line and not line.startswith("#")]
    if cfg.smoke:  # a random model writes no sentences: chain the openings themselves into passages
        passages = [" ".join(openings[i : i + 3]) for i in range(0, 3 * cfg.held_out_queries * 2, 2)]
    else:
        policy = stages.load_sampler(model, tokenizer, cfg.sampling_dtype)
        prompts = [Query(ids=tokenizer.encode(o + " ", add_special_tokens=False), reward_ids=[]) for o in openings]
        passage_task = dataclasses.replace(task(cfg), response_length=cfg.passage_tokens, temperature=1.0)
        torch.manual_seed(cfg.seed)
        batch = sample_completions(policy, tokenizer, prompts, passage_task, k=cfg.passages_per_opening, batch_size=8)
        passages = [o + " " + text for o, texts in zip(openings, batch.texts(tokenizer)) for text in texts]
    queries = [tokenizer.decode(q.ids) for q in build_queries(passages, task(cfg), tokenizer)]
    queries = list(dict.fromkeys(queries))
    random.Random(cfg.seed).shuffle(queries)
    n_held_out = min(cfg.held_out_queries, len(queries) // 4)
    split = {"held_out": queries[:n_held_out], "train": queries[n_held_out:]}
    if len(split["train"]) < 2:
        raise RuntimeError(f"only {len(queries)} queries came out of {len(passages)} passages; raise passage_tokens")
    (root / "queries.json").write_text(json.dumps(split, indent=2, ensure_ascii=False))


def collect_labels(cfg: QuickstartConfig, model: str, root: Path) -> None:
    """`num_comparisons` comparisons of ρ on the training queries (cycled), labeled by the simulated labeler."""
    tokenizer = load_tokenizer(model)
    policy = stages.load_sampler(model, tokenizer, cfg.sampling_dtype)
    train = json.loads((root / "queries.json").read_text())["train"]
    texts = [train[i % len(train)] for i in range(cfg.num_comparisons)]
    torch.manual_seed(cfg.seed)
    store = LabelStore(root / "labels.sqlite")
    labeler = SentimentLabeler(temperature=cfg.labeler_temperature, seed=cfg.seed, name="vader",
                               skip_ties=cfg.labeler_skip_ties)
    stages.collect_labels(store, policy, tokenizer, as_queries(texts, tokenizer), task(cfg), labeler, k=cfg.k,
                          round=0, batch_size=8 if cfg.smoke else 16)
    store.close()


def reward_settings(cfg: QuickstartConfig, output_dir: Path) -> tuple[RewardScriptArguments, BestOfKRewardConfig]:
    """The reward stage's settings: its top `reward_trainable_top_layers` blocks trained, saved in `output_dir`."""
    script = RewardScriptArguments(task="sentiment", eval_fraction=0.125,
                                   normalize_samples=cfg.reward_normalize_samples,
                                   trainable_top_layers=cfg.reward_trainable_top_layers)
    args = BestOfKRewardConfig(
        output_dir=str(output_dir), per_device_train_batch_size=cfg.reward_batch_size,
        per_device_eval_batch_size=16, learning_rate=cfg.reward_learning_rate,
        num_train_epochs=cfg.reward_num_train_epochs, logging_steps=2, save_strategy="no", report_to=cfg.report_to,
        seed=cfg.seed, dataloader_pin_memory=False,
    )
    return script, args


def train_reward(cfg: QuickstartConfig, model: str, root: Path) -> None:
    """The reward model on round 0's labels."""
    script, args = reward_settings(cfg, root / "reward_model")
    stages.train_reward(root / "labels.sqlite", "quickstart reward_model", model, script, args, round=0,
                        sampling_dtype=cfg.sampling_dtype, task=task(cfg))


def ppo_settings(cfg: QuickstartConfig, root: Path) -> dict:
    """The `ZieglerPPOConfig` values of the quickstart's PPO stage (the adaptive KL controller)."""
    micro = min(8, cfg.policy_batch_size)
    return dict(
        output_dir=str(root / "policy"), task="sentiment", per_device_train_batch_size=micro,
        gradient_accumulation_steps=cfg.policy_batch_size // micro, total_episodes=cfg.total_episodes,
        learning_rate=cfg.policy_learning_rate, lr_scheduler_type=cfg.policy_lr_scheduler_type,
        kl_control="adaptive", init_kl_coef=cfg.init_kl_coef, kl_target=cfg.kl_target, kl_horizon=cfg.kl_horizon,
        lam=cfg.lam, reward_shaping=cfg.reward_shaping, penalize_invalid=cfg.penalize_invalid,
        stop_at_eos=cfg.stop_at_eos, sampling_dtype=cfg.sampling_dtype, seed=cfg.seed, report_to=cfg.report_to,
        save_strategy="no", logging_steps=4, num_completions_to_print=2, dataloader_pin_memory=False,
    )


def train_policy(cfg: QuickstartConfig, model: str, root: Path) -> None:
    """PPO from ρ on the training queries against the trained reward model."""
    train = json.loads((root / "queries.json").read_text())["train"]
    reward_model = str(root / "reward_model")
    stages.train_policy(model, ZieglerPPOConfig(**ppo_settings(cfg, root)), Dataset.from_dict({"prompt": train}),
                        reward_model, trainable_top_layers=cfg.policy_trainable_top_layers,
                        data_source=str(root / "queries.json"), reward_description=f"the reward model `{reward_model}`",
                        log_file=root / "ppo_log.json")
