"""The study's stages: shared ones (queries, a label pool per N, ρ's held-out samples, the direct reward's scale) and,
per run (reward, N, seed), the reward model and PPO with the labeler's score r_s measured on held-out queries as
training goes.

A run's PPO keeps no policy weights: r_s is measured inside training (`LabelerScoreCallback`), and the last
measurement's samples are what the report compares with ρ's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from datasets import Dataset
from transformers import PreTrainedModel, PreTrainedTokenizerBase, TrainerCallback

from .. import stages
from ..labeling import LabelStore, sentiment_score
from ..models import inference_device, load_policy, load_tokenizer, sampling_dtype
from ..ppo import ZieglerPPOConfig
from ..quickstart import stages as quickstart_stages
from ..quickstart.config import QuickstartConfig
from ..quickstart.stages import as_queries, ppo_settings, reward_settings, task
from ..sampling import sample_completions
from ..tasks import Query
from .config import Figure2Config

QUERIES = "queries.json"
RHO_SAMPLES = "rho_samples.json"
DIRECT_REWARD = "direct_reward.json"
CURVE = "curve.json"
PPO_LOG = "ppo_log.json"
REWARD_MODEL = "reward_model"


@dataclass(frozen=True)
class Run:
    """One PPO run: `reward` "direct" (r_s itself) or "rm" (a reward model trained on `labels` comparisons)."""

    reward: str
    labels: int | None
    seed: int

    @property
    def setting(self) -> str:
        return "direct" if self.reward == "direct" else f"rm-{self.labels}"

    @property
    def name(self) -> str:
        return f"{self.setting}-seed{self.seed}"


def study_runs(cfg: Figure2Config) -> list[Run]:
    """The direct reward, then each N, each over every seed."""
    settings = [("direct", None)] + [("rm", n) for n in cfg.label_counts]
    return [Run(reward, n, seed) for reward, n in settings for seed in cfg.seeds]


def run_dir(root: Path, run: Run) -> Path:
    return root / "runs" / run.name


def pool_dir(root: Path, labels: int) -> Path:
    return root / "labels" / f"N{labels}"


def seeded(cfg: QuickstartConfig, seed: int) -> QuickstartConfig:
    return dataclasses.replace(cfg, seed=seed)


# ----- shared stages -----


def collect_pool(cfg: QuickstartConfig, model: str, root: Path, labels: int) -> None:
    """The label pool of N = `labels` comparisons of ρ on the training queries, labeled by the quickstart's simulated
    labeler; its own sampling seed (the study's + N), so pools are independent; shared by every seed's reward model.
    A pool folder is a quickstart folder's queries and label store (the quickstart's labels stage fills it)."""
    folder = pool_dir(root, labels)
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(root / QUERIES, folder / QUERIES)
    quickstart_stages.collect_labels(dataclasses.replace(cfg, num_comparisons=labels, seed=cfg.seed + labels),
                                     model, folder)


@contextlib.contextmanager
def _sampling_precision(device: torch.device, dtype: torch.dtype):
    """Autocast around `generate`, as PPO's rollouts sample (float32 weights, `dtype` matmuls)."""
    with contextlib.nullcontext() if dtype == torch.float32 else torch.autocast(device.type, dtype=dtype):
        yield


def sample_held_out(policy: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, queries: Sequence[Query],
                    cfg: Figure2Config) -> list[list[str]]:
    """`eval_samples_per_query` samples of `policy` per held-out query, drawn under one fixed seed (the same at every
    measurement and in every run: common random numbers) without touching the caller's random state."""
    device = next(policy.parameters()).device
    dtype = sampling_dtype(device, cfg.quickstart.sampling_dtype)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(cfg.quickstart.seed + 1)
        with _sampling_precision(device, dtype):
            batch = sample_completions(policy, tokenizer, queries, task(cfg.quickstart),
                                       k=cfg.eval_samples_per_query, batch_size=16, progress=False)
    return batch.texts(tokenizer)


def mean_score(samples: Sequence[Sequence[str]]) -> float:
    """r_s of a policy: the labeler's mean score (VADER compound, in [-1, 1]) over all its samples."""
    return statistics.fmean(sentiment_score([text for texts in samples for text in texts]))


def sample_rho(cfg: Figure2Config, model: str, root: Path) -> None:
    """ρ's samples on the held-out queries, as every run's measurements draw π's: r_s at episode 0 and the baseline
    of the preference test."""
    tokenizer = load_tokenizer(model)
    held_out = json.loads((root / QUERIES).read_text())["held_out"]
    policy = load_policy(model, tokenizer).to(inference_device())
    samples = sample_held_out(policy, tokenizer, as_queries(held_out, tokenizer), cfg)
    (root / RHO_SAMPLES).write_text(json.dumps({"queries": held_out, "samples": samples, "r_s": mean_score(samples)},
                                               indent=2, ensure_ascii=False))


def fit_direct_reward(cfg: Figure2Config, root: Path) -> None:
    """The direct reward's scale: mean and (population) std of r_s over every ρ sample of the largest label pool, so
    that it is standardised like a normalised reward model (mean 0, std 1 on ρ)."""
    labels = max(cfg.label_counts)
    store = LabelStore(pool_dir(root, labels) / "labels.sqlite")
    scores = sentiment_score([text for c in store.comparisons(round=0) for text in c.completions])
    store.close()
    scale = {"mean": statistics.fmean(scores), "std": statistics.pstdev(scores), "samples": len(scores),
             "pool": labels}
    (root / DIRECT_REWARD).write_text(json.dumps(scale, indent=2))


@dataclass
class StandardizedSentiment:
    """The direct reward: r_s(y) standardised on ρ's samples, (VADER(y) − mean) / std."""

    mean: float
    std: float

    def __call__(self, prompts: Sequence[str], completions: Sequence[str], **kwargs) -> list[float]:
        return [(score - self.mean) / self.std for score in sentiment_score(completions)]


# ----- per-run stages -----


class LabelerScoreCallback(TrainerCallback):
    """Measures r_s of the policy in training every `every` episodes (at the end of a PPO update) and after the last
    update: `points` holds (episodes, r_s), `samples` the last measurement's samples. Single-process runs."""

    def __init__(self, sample: Callable[[PreTrainedModel], list[list[str]]], every: int):
        self.sample = sample
        self.every = every
        self.points: list[dict] = []
        self.samples: list[list[str]] = []

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step % args.steps_per_update:
            return
        episodes = state.global_step // args.steps_per_update * args.rollout_batch_size
        if episodes % self.every and state.global_step < state.max_steps:
            return
        self.samples = self.sample(model.policy)
        self.points.append({"episodes": episodes, "r_s": mean_score(self.samples)})


def train_reward_model(cfg: Figure2Config, model: str, root: Path, run: Run) -> None:
    """The run's reward model: the quickstart's reward stage under the run's seed (fresh head, data order,
    normalisation samples) on the pool of N labels."""
    qcfg = seeded(cfg.quickstart, run.seed)
    script, args = reward_settings(qcfg, run_dir(root, run) / REWARD_MODEL)
    stages.train_reward(pool_dir(root, run.labels) / "labels.sqlite", f"figure2 {run.name}", model, script, args,
                        round=0, sampling_dtype=qcfg.sampling_dtype, task=task(qcfg))


def train_policy(cfg: Figure2Config, model: str, root: Path, run: Run) -> None:
    """The quickstart's PPO stage for `total_episodes` under the run's seed, against the run's reward model or r_s
    directly; writes `ppo_log.json` and `curve.json` (r_s measured as it trains), then drops the policy's weights."""
    qcfg = seeded(cfg.quickstart, run.seed)
    folder = run_dir(root, run)
    micro = min(cfg.policy_micro_batch, qcfg.policy_batch_size)
    args = ZieglerPPOConfig(**{**ppo_settings(qcfg, folder), "total_episodes": cfg.total_episodes,
                               "per_device_train_batch_size": micro,
                               "gradient_accumulation_steps": qcfg.policy_batch_size // micro})
    tokenizer = load_tokenizer(model)
    queries = json.loads((root / QUERIES).read_text())
    held_out = as_queries(queries["held_out"], tokenizer)
    callback = LabelerScoreCallback(lambda policy: sample_held_out(policy, tokenizer, held_out, cfg), cfg.eval_every)
    if run.reward == "direct":
        scale = json.loads((root / DIRECT_REWARD).read_text())
        reward = dict(reward_model=None, reward_fn=StandardizedSentiment(scale["mean"], scale["std"]),
                      reward_description=f"r_s (VADER) standardised on ρ's samples: mean {scale['mean']:.4f}, "
                      f"std {scale['std']:.4f}")
    else:
        path = str(folder / REWARD_MODEL)
        reward = dict(reward_model=path, reward_description=f"the reward model `{path}` ({run.labels} comparisons)")
    stages.train_policy(model, args, Dataset.from_dict({"prompt": queries["train"]}), **reward,
                        trainable_top_layers=qcfg.policy_trainable_top_layers, data_source=str(root / QUERIES),
                        log_file=folder / PPO_LOG, callbacks=[callback])
    (folder / CURVE).write_text(json.dumps({"points": callback.points, "samples": callback.samples}, indent=2,
                                           ensure_ascii=False))
    shutil.rmtree(args.output_dir)
