"""The study's stages: posts → labels → reward model → PPO against it, and PPO against the labeler's own score →
samples of ρ and of each π on the held-out posts.

Each stage reads what the ones before it wrote in the study folder, so a rerun resumes at the first unfinished one
(`ziegler_trl.stages.Stages`).
"""

from __future__ import annotations

import json
import random
import statistics
from pathlib import Path

import torch
from datasets import Dataset

from .. import stages
from ..evaluation.summaries import Summaries
from ..jsonl import jsonl_line
from ..labeling import LabelStore
from ..models import load_tokenizer
from ..ppo import ZieglerPPOConfig
from ..reward import BestOfKRewardConfig
from ..reward.pipeline import RewardScriptArguments
from ..sampling import sample_completions
from ..tasks import Query, format_query, load_task_texts
from .config import SummarizationStudyConfig
from .labeler import ReferenceRougeLabeler, StandardizedLabelerScore

POSTS = "posts.json"
HELD_OUT = "held_out.jsonl"
LABELS = "labels.sqlite"
REWARD_MODEL = "reward_model"
DIRECT_REWARD = "direct_reward.json"
# Each PPO arm's policy folder, log and samples file, by the reward it trains on.
POLICY = {"rm": "policy", "direct": "policy_direct"}
PPO_LOG = {"rm": "ppo_log.json", "direct": "ppo_log_direct.json"}
SAMPLES = {"rm": "samples.jsonl", "direct": "samples_direct.jsonl"}
ROWS = {"rho": "zero-shot", "rm": "RL", "direct": "RL-direct"}  # the Table 4 row of each policy's samples


def stable_content(text: str, cfg: SummarizationStudyConfig, tokenizer) -> str | None:
    """The post as the query's content: cut to `query_length` tokens and decoded, so that formatting the text again
    (as labeling and PPO do) gives the same tokens; None when the task rejects it, or when the decoded cut still
    re-encodes differently after 3 rounds (labeling and PPO would then read different queries)."""
    for _ in range(3):
        query = format_query(text, cfg.task, tokenizer)
        if query is None:
            return None
        content = tokenizer.decode(query.reward_ids)
        if content == text:
            return content
        text = content
    return None


def query(text: str, cfg: SummarizationStudyConfig, tokenizer) -> Query:
    formatted = format_query(text, cfg.task, tokenizer)
    if formatted is None:
        raise ValueError(f"post no longer makes a query: {text[:80]!r}")
    return formatted


def make_posts(cfg: SummarizationStudyConfig, model: str, root: Path) -> None:
    """Read `posts` posts, cut each to the query budget, drop duplicates, shuffle under the seed, and split off the
    held-out posts; `held_out.jsonl` (post as the policies read it, author's TL;DR) feeds the eval commands."""
    tokenizer = load_tokenizer(model)
    data = load_task_texts("tldr", cfg.dataset_name, split=cfg.dataset_split, limit=cfg.posts)
    pairs = {}
    for text, reference in zip(data["text"], data["reference"]):
        content = stable_content(text, cfg, tokenizer)
        if content is not None:
            pairs.setdefault(content, reference)
    posts = [{"post": post, "summary": summary} for post, summary in pairs.items()]
    random.Random(cfg.seed).shuffle(posts)
    if len(posts) < cfg.held_out_posts + 2:
        raise ValueError(f"only {len(posts)} usable posts in {cfg.dataset_name}; --held_out_posts is "
                         f"{cfg.held_out_posts}")
    split = {"held_out": posts[: cfg.held_out_posts], "train": posts[cfg.held_out_posts :]}
    (root / POSTS).write_text(json.dumps(split, indent=2, ensure_ascii=False), encoding="utf-8")
    (root / HELD_OUT).write_text("".join(jsonl_line(p) for p in split["held_out"]), encoding="utf-8")


def rouge_labeler(cfg: SummarizationStudyConfig, posts: list[dict], tokenizer) -> ReferenceRougeLabeler:
    """The labeler of `posts`, keyed by the reward model's view of each query (its decoded content), which is what
    the label store and PPO's `reward_fn` see as the prompt."""
    references = {tokenizer.decode(query(p["post"], cfg, tokenizer).reward_ids): p["summary"] for p in posts}
    return ReferenceRougeLabeler(references, seed=cfg.seed)


def collect_labels(cfg: SummarizationStudyConfig, model: str, root: Path) -> None:
    """`num_comparisons` best-of-k comparisons of ρ on the training posts (cycled), picked by the ROUGE labeler."""
    tokenizer = load_tokenizer(model)
    train = json.loads((root / POSTS).read_text(encoding="utf-8"))["train"]
    queries = [query(train[i % len(train)]["post"], cfg, tokenizer) for i in range(cfg.num_comparisons)]
    labeler = rouge_labeler(cfg, train, tokenizer)
    policy = stages.load_sampler(model, tokenizer, cfg.sampling_dtype)
    torch.manual_seed(cfg.seed)
    store = LabelStore(root / LABELS)
    stages.collect_labels(store, policy, tokenizer, queries, cfg.task, labeler, k=cfg.k, round=0, batch_size=8)
    store.close()


def train_reward(cfg: SummarizationStudyConfig, model: str, root: Path) -> None:
    """The reward model from ρ on the labels (its top blocks trained), normalised on ρ's samples of the posts."""
    script = RewardScriptArguments(task="tldr", eval_fraction=0.125, normalize_samples=cfg.reward_normalize_samples,
                                   trainable_top_layers=cfg.reward_trainable_top_layers, sampling_batch_size=8)
    args = BestOfKRewardConfig(
        output_dir=str(root / REWARD_MODEL), per_device_train_batch_size=cfg.reward_batch_size,
        per_device_eval_batch_size=8, learning_rate=cfg.reward_learning_rate,
        num_train_epochs=cfg.reward_num_train_epochs, logging_steps=4, save_strategy="no", report_to="none",
        seed=cfg.seed, dataloader_pin_memory=False,
    )
    stages.train_reward(root / LABELS, "summarization reward_model", model, script, args, round=0,
                        sampling_dtype=cfg.sampling_dtype, task=cfg.task)


def fit_direct_reward(cfg: SummarizationStudyConfig, root: Path, labeler: ReferenceRougeLabeler) -> dict:
    """Mean and (population) std of the labeler's score over every sample of ρ in the label store."""
    store = LabelStore(root / LABELS)
    comparisons = store.comparisons(round=0)
    store.close()
    scores = labeler.score([c.prompt for c in comparisons for _ in c.completions],
                           [text for c in comparisons for text in c.completions])
    scale = {"mean": statistics.fmean(scores), "std": statistics.pstdev(scores), "samples": len(scores)}
    (root / DIRECT_REWARD).write_text(json.dumps(scale, indent=2))
    return scale


def train_policy(cfg: SummarizationStudyConfig, model: str, root: Path, reward: str) -> None:
    """PPO from ρ on the training posts against the reward model (`reward` "rm") or the labeler's own score
    standardised on ρ's samples ("direct"): the paper's TL;DR settings (fixed β, no reward whitening, the −1 penalty
    for a response without a newline after token 55) at this study's sizes."""
    micro = min(8, cfg.policy_batch_size)
    args = ZieglerPPOConfig(
        output_dir=str(root / POLICY[reward]), task="tldr", stop_at_eos=True, per_device_train_batch_size=micro,
        gradient_accumulation_steps=cfg.policy_batch_size // micro, total_episodes=cfg.total_episodes,
        learning_rate=cfg.policy_learning_rate, lr_scheduler_type="constant", kl_control="fixed",
        init_kl_coef=cfg.kl_coef, whiten_rewards=False, lam=cfg.lam, sampling_dtype=cfg.sampling_dtype,
        rollout_forward_batch_size=8, seed=cfg.seed, report_to="none", save_strategy="no", logging_steps=1,
        num_completions_to_print=1, dataloader_pin_memory=False,
    )
    train = json.loads((root / POSTS).read_text(encoding="utf-8"))["train"]
    if reward == "rm":
        path = str(root / REWARD_MODEL)
        source = {"reward_model": path, "reward_description": f"the reward model `{path}` (ROUGE labeler)"}
    else:
        labeler = rouge_labeler(cfg, train, load_tokenizer(model))
        scale = fit_direct_reward(cfg, root, labeler)
        source = {"reward_model": None, "reward_fn": StandardizedLabelerScore(labeler, scale["mean"], scale["std"]),
                  "reward_description": f"the labeler's score (R-AVG vs the author's TL;DR) standardised on ρ's "
                  f"samples: mean {scale['mean']:.3f}, std {scale['std']:.3f}"}
    stages.train_policy(model, args, Dataset.from_dict({"text": [p["post"] for p in train]}), **source,
                        trainable_top_layers=cfg.policy_trainable_top_layers, data_source=str(root / POSTS),
                        log_file=root / PPO_LOG[reward])


def sample_policies(cfg: SummarizationStudyConfig, model: str, root: Path, reward: str) -> None:
    """One summary per held-out post from π of the `reward` arm (its Table 4 row) and, for the reward-model arm, from
    ρ (the zero-shot row), each under the same seed, written as the eval commands' saved-summaries rows."""
    tokenizer = load_tokenizer(model)
    held_out = [p["post"] for p in json.loads((root / POSTS).read_text(encoding="utf-8"))["held_out"]]
    queries = [query(post, cfg, tokenizer) for post in held_out]
    out = root / SAMPLES[reward]
    out.write_text("")
    policies = ([("rho", model)] if reward == "rm" else []) + [(reward, str(root / POLICY[reward]))]
    for name, path in policies:
        policy = stages.load_sampler(path, tokenizer, cfg.sampling_dtype)
        torch.manual_seed(cfg.seed + 1)
        batch = sample_completions(policy, tokenizer, queries, cfg.task, k=1, batch_size=8)
        texts = [group[0].strip() for group in batch.texts(tokenizer)]
        Summaries(ROWS[name], list(range(len(queries))), texts, batch.valid.tolist()).to_jsonl(out)
