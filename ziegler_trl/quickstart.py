"""The quickstart: the paper's mock-sentiment experiment (§3.1.1) in miniature, offline, on the embedded model.

    ziegler-trl quickstart                 # ρ = SmolLM2-135M-Instruct, about 15 minutes on 2 CPU cores
    ziegler-trl quickstart --smoke         # a tiny random model, a couple of minutes: checks the plumbing

Stages (each saved under the output folder; rerunning the same command resumes after the last finished stage):
1. queries   ρ continues project-written story openings; the continuations, cut by the sentiment task's rules
             (start after the first ".", end at the last "." within the query budget), are the queries.
2. labels    K = 4 continuations per query from ρ; the simulated labeler (VADER sentiment, the paper's mock
             human) picks the most positive, and skips a comparison without a unique most positive one;
             comparisons and answers live in a SQLite LabelStore.
3. reward    BestOfKRewardTrainer training the top 2 blocks, final norm and head of ρ's copy (lr 2e-3, two epochs),
             normalised to mean 0 / std 1 on raw samples of ρ (not cut at the ".") before and after.
4. policy    ZieglerPPOTrainer with the adaptive KL controller, reward = the trained reward model, 448 episodes.
5. report    held-out queries: labeler score of π vs ρ (with 95% CIs), 2-way preference of π over ρ, final KL vs
             target; report.md and PNG plots.

Miniature vs the paper: queries of 32 tokens instead of 64; the reward model trains its top 2 blocks on ~370 labels
(two epochs, instead of every weight on 5k labels once) and the policy its top 2 (`trainable_top_layers`); the
paper's KL target of 6 nats over 448 episodes instead of 1M, so that a 2-core CPU finishes, with the controller's
horizon cut to match (64 episodes instead of 10,000). Three PPO settings differ because the run is short (each
measured: docs/quickstart.md): a constant learning rate instead of the paper's linear decay (in 28 updates β cannot
bring the KL back, so the rate decides where it ends, and a decayed one left it anywhere in 5-10 nats); GAE λ = 1
instead of 0.95 (the zero-initialised value head has learned nothing yet, so λ < 1 mostly discounts the reward for
early tokens); and no −1 penalty for a response without "." in tokens 16-24
(ρ meets that rule in 44 of 100 samples, and with the penalty PPO spends the run's KL on the rule instead of on
sentiment; the truncation itself is kept). One rule is added because ρ is an instruct model: a response ends at its
end-of-turn token, `<|im_end|>` (`stop_at_eos`); with the paper's fixed length PPO learned to end the story and
open a chat turn, which VADER scores as positive. Every other rule is the paper's.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from datasets import Dataset
from transformers import SchedulerType
from trl import ModelConfig

from .blocks import freeze_bottom_layers
from .checkpoints import INCOMPLETE_DIR, publish_folder
from .collection import collect_round
from .config_files import with_current_names
from .errors import UserInputError
from .evaluation import preference_win_rate
from .labeling import LabelStore, SentimentLabeler, sentiment_score
from .model_cards import policy_card
from .models import SAMPLING_DTYPES, inference_device, load_policy, load_tokenizer, sampling_dtype
from .pipeline import Stages
from .ppo import ZieglerPPOConfig, ZieglerPPOTrainer
from .ppo.config import MIN_WHITEN_MINIBATCH
from .reporting import log_under_output_dir
from .reward import BestOfKRewardConfig
from .reward.pipeline import RewardScriptArguments, sample_rho_for_normalization, train_reward_model
from .sampling import sample_completions
from .tasks import TASKS, Query, build_queries

OPENINGS = Path(__file__).with_name("data") / "story_openings.txt"
# Option names of earlier releases → today's (accepted with a warning, argv and YAML).
RENAMED = {"model": "model_name_or_path"}
# Settings a rerun may change and still resume: a moved folder, another logger.
RESUMABLE_CHANGES = ("output_dir", "report_to")


@dataclass
class QuickstartConfig:
    output_dir: str = field(default="runs/quickstart", metadata={"help": "Where every stage writes its outputs."})
    model_name_or_path: str = field(
        default="embedded", metadata={"help": "ρ, the initial policy ('embedded' = SmolLM2-135M)."}
    )
    smoke: bool = field(default=False, metadata={"help": "Tiny random model and tiny sizes: a plumbing check."})
    seed: int = field(default=0, metadata={"help": "Seed of every stage."})
    query_length: int = field(default=32, metadata={"help": "Query tokens (the paper: 64)."})
    passages_per_opening: int = field(
        default=3, metadata={"help": "Continuations of each opening sampled by ρ; each one cut by the task's rules "
                             "becomes a query (3 per opening: about 110 distinct queries)."}
    )
    passage_tokens: int = field(default=56, metadata={"help": "Length of each sampled passage."})
    held_out_queries: int = field(default=40, metadata={"help": "Queries kept out of labeling and PPO."})
    num_comparisons: int = field(
        default=576,
        metadata={"help": "Best-of-K comparisons sampled from ρ and labeled (the labeler skips ties, so about 3 in 4 "
                  "are answered). More labels make a stronger reward model and a slower run (the paper: 5k labels)."},
    )
    k: int = field(default=4, metadata={"help": "Completions per comparison."})
    labeler_temperature: float = field(default=0.0, metadata={"help": "0: the labeler picks the argmax."})
    labeler_skip_ties: bool = field(
        default=True,
        metadata={"help": "The labeler skips comparisons whose top VADER score is shared (often all four neutral at "
                  "0.0), as a person would; a pick by index there is noise for the reward model."},
    )
    trainable_top_layers: int = field(
        default=2,
        metadata={"help": "Top blocks of the policy that PPO trains, with its final norm and heads (a CPU knob; the "
                  "paper trains every weight)."},
    )
    reward_top_layers: int = field(
        default=2,
        metadata={"help": "Top blocks of the reward model that train, with its final norm and head (0: those two "
                  "only, which needs a learning rate near 1e-2; the paper trains every weight)."},
    )
    reward_lr: float = field(
        default=2e-3,
        metadata={"help": "Reward model learning rate (the paper: 5e-5 on every weight)."},
    )
    reward_normalize_samples: int = field(
        default=256,
        metadata={"help": "Raw ρ samples (drawn afresh, one per comparison's prompt, not cut at the '.') the reward is "
                  "normalised on (the paper: 256)."},
    )
    reward_batch_size: int = field(default=8, metadata={"help": "Comparisons per reward model step."})
    reward_epochs: float = field(
        default=2.0, metadata={"help": "Passes over the labels in reward training (the paper: 1 epoch of 5k labels)."}
    )
    ppo_episodes: int = field(default=448, metadata={"help": "PPO episodes (the paper: 1M)."})
    ppo_batch_size: int = field(default=16, metadata={"help": "Episodes per PPO update (rollout batch)."})
    ppo_lr: float = field(
        default=1.3e-4,
        metadata={"help": "PPO learning rate (the paper: 1e-5 over 1M episodes). In a run this short it, more than "
                  "β, sets where the final KL ends."},
    )
    ppo_lr_scheduler: str = field(
        default="constant",
        metadata={"help": "Learning-rate schedule of PPO: 'constant', or any transformers scheduler name such as "
                  "'linear' (decay to 0, the paper's)."},
    )
    init_kl_coef: float = field(
        default=0.15,
        metadata={"help": "Initial β of the adaptive KL controller (the paper's 0.15). The KL starts at 0, below "
                  "the target, so β first shrinks."},
    )
    kl_target: float = field(default=6.0, metadata={"help": "KL target in nats (the paper's sentiment run: 6)."})
    kl_horizon: int = field(
        default=64,
        metadata={"help": "Adaptive controller horizon in episodes (the paper: 10,000 over 1M), cut to the run's "
                  "length: one update moves β by a factor of at most 1 ± 0.2 × its episodes / horizon."},
    )
    reward_shaping: str = field(
        default="none",
        metadata={"help": "'none' (the paper): the reward model's score at the last token. 'potential': each token "
                  "earns the change it made to the score of the response so far (use with gae_lambda 0.95)."},
    )
    gae_lambda: float = field(
        default=1.0,
        metadata={"help": "GAE λ (the paper: 0.95). 1 is the Monte-Carlo return, which needs nothing of the "
                  "value head; a zero-initialised head has learned little in a few hundred episodes."},
    )
    validity_penalty: bool = field(
        default=False,
        metadata={"help": "Score a response without '.' in tokens 16-24 with -1 (the paper's sentiment rule; on by "
                  "default in the library). Responses are truncated at the '.' either way."},
    )
    stop_at_eos: bool = field(
        default=True,
        metadata={"help": "End every response (and query passage) before ρ's EOS, <|im_end|>, the instruct "
                  "model's end of turn, and count it as valid (not the paper's: GPT-2 samples a fixed length). "
                  "Without it PPO can end the story and open a new chat turn."},
    )
    sampling_dtype: str = field(
        default="auto",
        metadata={"help": "Precision of every sampling: ρ's query passages, comparisons and normalisation samples, "
                  "PPO's rollouts (autocast around generate) and the evaluation's samples of ρ and π. 'auto': "
                  "bfloat16 where the CPU/GPU computes it natively, else float32; or 'float32' / 'bfloat16'. "
                  "Log-probs, KL, rewards, the labeler and training stay float32."},
    )
    eval_samples_per_query: int = field(
        default=8,
        metadata={"help": "Samples per held-out query from π and ρ for the report's 2-way comparisons."},
    )
    report_to: str = field(
        default="none",
        metadata={"help": "Where each stage's trainer logs, as TRL's `report_to`: 'none', 'tensorboard', 'trackio', "
                  "'wandb' or 'all'; TensorBoard and W&B files go under the stage's own output folder."},
    )

    def __post_init__(self):
        if self.sampling_dtype not in SAMPLING_DTYPES:
            raise ValueError(f"sampling_dtype must be one of {SAMPLING_DTYPES}, got {self.sampling_dtype!r}")
        # Checked here, not when the PPO stage builds its config after minutes of labeling and reward training.
        schedulers = [s.value for s in SchedulerType]
        if self.ppo_lr_scheduler not in schedulers:
            raise ValueError(f"ppo_lr_scheduler must be one of {schedulers}, got {self.ppo_lr_scheduler!r}")
        if self.smoke:
            for name, value in SMOKE.items():
                setattr(self, name, value)
        if self.ppo_batch_size < MIN_WHITEN_MINIBATCH:
            raise UserInputError(f"--ppo_batch_size must be at least {MIN_WHITEN_MINIBATCH}: PPO whitens the rewards "
                                 f"of each minibatch, as the paper's code, got {self.ppo_batch_size}")


# A random model's gibberish is mostly VADER-neutral: skipping ties would leave the smoke run almost no labels.
SMOKE = dict(
    passages_per_opening=1, passage_tokens=40, held_out_queries=6, num_comparisons=16, trainable_top_layers=2,
    reward_top_layers=2, reward_batch_size=4, ppo_episodes=16, ppo_batch_size=8, eval_samples_per_query=1,
    kl_horizon=100, labeler_skip_ties=False,
)


def _smoke_model(root: Path) -> str:
    """A tiny random Llama with the embedded tokenizer (vocabulary and pad token are real)."""
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


def _task(cfg: QuickstartConfig):
    return dataclasses.replace(TASKS["sentiment"], query_length=cfg.query_length, stop_at_eos=cfg.stop_at_eos)


def _sampler(cfg: QuickstartConfig, model: str, tokenizer) -> torch.nn.Module:
    """A policy (ρ or π) to sample from, on this process's device in the dtype it samples in there (`sampling_dtype`)."""
    device = inference_device()
    return load_policy(model, tokenizer, dtype=sampling_dtype(device, cfg.sampling_dtype)).to(device)


def make_queries(cfg: QuickstartConfig, model: str, root: Path) -> None:
    """ρ continues every opening; the task's rules turn the passages into queries; split train / held-out."""
    tokenizer = load_tokenizer(model)
    openings = [line for line in OPENINGS.read_text().splitlines() if line and not line.startswith("#")]
    if cfg.smoke:  # a random model writes no sentences: chain the openings themselves into passages
        passages = [" ".join(openings[i : i + 3]) for i in range(0, 3 * cfg.held_out_queries * 2, 2)]
    else:
        policy = _sampler(cfg, model, tokenizer)
        prompts = [Query(ids=tokenizer.encode(o + " ", add_special_tokens=False), reward_ids=[]) for o in openings]
        passage_task = dataclasses.replace(_task(cfg), response_length=cfg.passage_tokens, temperature=1.0)
        torch.manual_seed(cfg.seed)
        batch = sample_completions(policy, tokenizer, prompts, passage_task, k=cfg.passages_per_opening, batch_size=8)
        passages = [o + " " + text for o, texts in zip(openings, batch.texts(tokenizer)) for text in texts]
    queries = [tokenizer.decode(q.ids) for q in build_queries(passages, _task(cfg), tokenizer)]
    queries = list(dict.fromkeys(queries))
    random.Random(cfg.seed).shuffle(queries)
    n_held_out = min(cfg.held_out_queries, len(queries) // 4)
    split = {"held_out": queries[:n_held_out], "train": queries[n_held_out:]}
    if len(split["train"]) < 2:
        raise RuntimeError(f"only {len(queries)} queries came out of {len(passages)} passages; raise passage_tokens")
    (root / "queries.json").write_text(json.dumps(split, indent=2, ensure_ascii=False))


def _queries(texts: list[str], tokenizer) -> list[Query]:
    ids = [tokenizer.encode(t, add_special_tokens=False) for t in texts]
    return [Query(ids=i, reward_ids=i) for i in ids]


def collect_labels(cfg: QuickstartConfig, model: str, root: Path) -> None:
    tokenizer = load_tokenizer(model)
    policy = _sampler(cfg, model, tokenizer)
    train = json.loads((root / "queries.json").read_text())["train"]
    texts = [train[i % len(train)] for i in range(cfg.num_comparisons)]
    torch.manual_seed(cfg.seed)
    store = LabelStore(root / "labels.sqlite")
    labeler = SentimentLabeler(temperature=cfg.labeler_temperature, seed=cfg.seed, name="vader",
                               skip_ties=cfg.labeler_skip_ties)
    collect_round(store, policy, tokenizer, _queries(texts, tokenizer), _task(cfg), labeler, k=cfg.k, round=0,
                  batch_size=8 if cfg.smoke else 16)
    store.close()


def train_reward(cfg: QuickstartConfig, model: str, root: Path) -> None:
    store = LabelStore(root / "labels.sqlite")
    labels = store.training_dataset("quickstart reward_model", round=0)  # from now on no undo in round 0
    # Normalise on fresh raw samples of ρ (the paper's: not cut at the "."; they still end at <|im_end|> under
    # stop_at_eos), one per comparison's prompt: the stored completions are truncated.
    prompts = [c.prompt for c in store.comparisons(round=0)[: cfg.reward_normalize_samples]]
    store.close()
    tokenizer = load_tokenizer(model)
    torch.manual_seed(cfg.seed)
    rho = (prompts, sample_rho_for_normalization(_sampler(cfg, model, tokenizer), tokenizer, prompts, _task(cfg)))
    script = RewardScriptArguments(task="sentiment", eval_fraction=0.125,
                                   normalize_samples=len(rho[0]), trainable_top_layers=cfg.reward_top_layers)
    args = BestOfKRewardConfig(
        output_dir=str(root / "reward_model"), per_device_train_batch_size=cfg.reward_batch_size,
        per_device_eval_batch_size=16, learning_rate=cfg.reward_lr, num_train_epochs=cfg.reward_epochs,
        logging_steps=2, save_strategy="no",
        report_to=cfg.report_to, seed=cfg.seed, dataloader_pin_memory=False,
    )
    train_reward_model(script, args, labels=labels, rho_samples=rho, model_args=ModelConfig(model_name_or_path=model))


def train_policy(
    cfg: QuickstartConfig, model: str, root: Path, reward_fn=None, ppo_overrides: dict | None = None
) -> None:
    """PPO against the trained reward model, or against `reward_fn(prompts, completions)` when given; with
    `ppo_overrides`, other ZieglerPPOConfig values (both for `benchmarks/ppo_sample_efficiency.py`)."""
    tokenizer = load_tokenizer(model)
    policy = load_policy(model, tokenizer)
    freeze_bottom_layers(policy, cfg.trainable_top_layers)
    train = json.loads((root / "queries.json").read_text())["train"]
    micro = min(8, cfg.ppo_batch_size)
    settings = dict(
        output_dir=str(root / "policy"), task="sentiment", per_device_train_batch_size=micro,
        gradient_accumulation_steps=cfg.ppo_batch_size // micro, total_episodes=cfg.ppo_episodes,
        learning_rate=cfg.ppo_lr, lr_scheduler_type=cfg.ppo_lr_scheduler, kl_control="adaptive",
        init_kl_coef=cfg.init_kl_coef, kl_target=cfg.kl_target,
        kl_horizon=cfg.kl_horizon, lam=cfg.gae_lambda, reward_shaping=cfg.reward_shaping,
        penalize_invalid=cfg.validity_penalty,
        stop_at_eos=cfg.stop_at_eos, sampling_dtype=cfg.sampling_dtype, seed=cfg.seed,
        report_to=cfg.report_to, save_strategy="no", logging_steps=4,
        num_completions_to_print=2, dataloader_pin_memory=False,
    )
    args = ZieglerPPOConfig(**{**settings, **(ppo_overrides or {})})
    trainer = ZieglerPPOTrainer(policy, args=args, train_dataset=Dataset.from_dict({"prompt": train}),
                                processing_class=tokenizer,
                                **({"reward_fn": reward_fn} if reward_fn else {"reward_model": str(root / "reward_model")}))
    log_under_output_dir(trainer)
    trainer.train()
    trainer.save_model(str(root / "policy"))
    tokenizer.save_pretrained(root / "policy")
    reward = "the simulated labeler's reward function" if reward_fn else f"the reward model `{root / 'reward_model'}`"
    policy_card(root / "policy", model, "sentiment", str(root / "queries.json"), len(train), args,
                trainer.state.log_history, reward)
    (root / "ppo_log.json").write_text(json.dumps(trainer.state.log_history, indent=2))


def _mean_ci(values: list[float]) -> tuple[float, float]:
    t = torch.tensor(values, dtype=torch.float64)
    return t.mean().item(), 1.96 * t.std().item() / math.sqrt(len(values))


# One update's KL is a 16-episode estimate that moves by ±1.5 nats between consecutive updates (5.75 → 9.03 at the
# end of a 512-label run): the final KL is the mean of the updates over the last 64 episodes.
FINAL_KL_EPISODES = 64


def final_kl_window(updates: list[dict], episodes_per_update: int) -> list[dict]:
    """The logged updates covering the run's last FINAL_KL_EPISODES (all of them in a shorter run)."""
    return updates[-math.ceil(FINAL_KL_EPISODES / episodes_per_update) :]


def final_kl(updates: list[dict], episodes_per_update: int) -> float:
    """Mean `objective/kl` (KL(π‖ρ) per response, nats) over `final_kl_window`; NaN when nothing was logged."""
    window = final_kl_window(updates, episodes_per_update)
    return sum(u["objective/kl"] for u in window) / len(window) if window else float("nan")


def evaluate(cfg: QuickstartConfig, model: str, root: Path) -> dict:
    tokenizer = load_tokenizer(model)
    held_out = json.loads((root / "queries.json").read_text())["held_out"]
    queries = _queries(held_out, tokenizer)
    samples = {}
    for name, path in (("rho", model), ("pi", str(root / "policy"))):
        policy = _sampler(cfg, path, tokenizer)
        torch.manual_seed(cfg.seed + 1)
        samples[name] = sample_completions(policy, tokenizer, queries, _task(cfg), k=cfg.eval_samples_per_query,
                                           batch_size=16).texts(tokenizer)
    flat = {name: [t for texts in s for t in texts] for name, s in samples.items()}
    scores = {name: sentiment_score(texts) for name, texts in flat.items()}
    diffs = [a - b for a, b in zip(scores["pi"], scores["rho"])]
    # 2-way protocol, one item per (query, sample index): π's j-th sample against ρ's j-th sample.
    prompts = [q for q in held_out for _ in range(cfg.eval_samples_per_query)]
    preference = preference_win_rate([[t] for t in flat["pi"]], [[t] for t in flat["rho"]], prompts,
                                     SentimentLabeler(name="vader-eval"), protocol="2way", n_labelers=1,
                                     names=("pi", "rho"), seed=cfg.seed)
    log = json.loads((root / "ppo_log.json").read_text())
    updates = [e for e in log if "objective/kl" in e]
    reward_metrics = json.loads((root / "reward_model" / "reward_metrics.json").read_text())
    examples = [
        {"query": q, "rho": samples["rho"][i][0], "pi": samples["pi"][i][0]} for i, q in enumerate(held_out[:5])
    ]
    results = {
        "held_out_queries": len(held_out),
        "samples_per_policy": len(flat["pi"]),
        "score_rho": _mean_ci(scores["rho"]),
        "score_pi": _mean_ci(scores["pi"]),
        "score_gain": _mean_ci(diffs),
        "win_rate_pi_over_rho": [preference.win_rate, preference.ci_low, preference.ci_high, preference.n],
        # equal VADER scores (mostly both neutral, 0.0): the argmax labeler then picks by the shuffled order
        "tie_fraction": sum(a == b for a, b in zip(scores["pi"], scores["rho"])) / len(diffs),
        "final_kl": final_kl(updates, cfg.ppo_batch_size),
        "final_kl_updates": len(final_kl_window(updates, cfg.ppo_batch_size)),
        "last_update_kl": updates[-1]["objective/kl"] if updates else float("nan"),
        "kl_target": cfg.kl_target,
        "final_kl_coef": updates[-1].get("objective/kl_coef") if updates else float("nan"),
        "sampling_dtype": str(sampling_dtype(inference_device(), cfg.sampling_dtype)).removeprefix("torch."),
        "rm_accuracy_before": reward_metrics.get("eval_accuracy_before"),
        "rm_accuracy": reward_metrics.get("eval_accuracy"),
        "rm_num_train": reward_metrics.get("num_train"),
        "rm_num_eval": reward_metrics.get("num_eval"),
        "examples": examples,
    }
    (root / "results.json").write_text(json.dumps(results, indent=2, ensure_ascii=False))
    return results


def plot(root: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    log = json.loads((root / "ppo_log.json").read_text())
    updates = [e for e in log if "objective/kl" in e]
    episodes = [e.get("episodes", i + 1) for i, e in enumerate(updates)]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for ax, key, title in zip(axes, ("objective/scores", "objective/kl", "objective/kl_coef"),
                              ("reward-model score", "KL(π‖ρ) per response (nats)", "β")):
        ax.plot(episodes, [e.get(key, float("nan")) for e in updates], marker="o")
        ax.set_title(title)
        ax.set_xlabel("episodes")
    results = json.loads((root / "results.json").read_text())
    axes[1].axhline(results["kl_target"], color="gray", linestyle="--", label="target")
    axes[1].legend()
    fig.tight_layout()
    fig.savefig(root / "ppo.png", dpi=110)
    plt.close(fig)

    rm_log = json.loads((root / "reward_model" / "trainer_log.json").read_text())
    steps = [e["step"] for e in rm_log if "accuracy" in e and "loss" in e]
    fig, ax = plt.subplots(figsize=(5, 3.6))
    ax.plot(steps, [e["accuracy"] for e in rm_log if "accuracy" in e and "loss" in e], marker="o", label="train")
    ax.axhline(results["rm_accuracy"], color="C1", label="held-out (final)")
    ax.axhline(0.25, color="gray", linestyle="--", label="chance (1/4)")
    ax.set_title("reward model accuracy (best of 4)")
    ax.set_xlabel("step")
    ax.legend()
    fig.tight_layout()
    fig.savefig(root / "reward_accuracy.png", dpi=110)
    plt.close(fig)


# The bar for the full run (not the smoke run): time on 2 CPU cores, effect size, KL on target.
MAX_SECONDS = 15 * 60
MIN_WIN_RATE = 0.65
KL_TOLERANCE = 0.3


def target_checks(results: dict, seconds: float) -> list[tuple[str, str, bool]]:
    """(target, measured, met) for each of the quickstart's targets, from `evaluate`'s results."""
    gain, half = results["score_gain"]
    win = results["win_rate_pi_over_rho"][0]
    kl, target = results["final_kl"], results["kl_target"]
    return [
        (f"total time ≤ {MAX_SECONDS // 60} min (2 CPU cores)", f"{seconds / 60:.1f} min", seconds <= MAX_SECONDS),
        ("labeler score gain π − ρ > 0 (95% CI above 0)", f"{gain:+.3f} ± {half:.3f}", gain - half > 0),
        (f"π preferred over ρ in ≥ {MIN_WIN_RATE:.0%} of 2-way comparisons", f"{win:.1%}", win >= MIN_WIN_RATE),
        (f"final KL within ±{KL_TOLERANCE:.0%} of target", f"{kl:.2f} vs {target:.2f} nats",
         abs(kl - target) <= KL_TOLERANCE * target),
    ]


def write_report(cfg: QuickstartConfig, root: Path, results: dict, timings: dict) -> Path:
    def ci(pair):
        return f"{pair[0]:+.3f} ± {pair[1]:.3f}"

    win, low, high, n = results["win_rate_pi_over_rho"]
    kl, target = results["final_kl"], results["kl_target"]
    lines = [
        "# ziegler-trl quickstart" + (" (smoke)" if cfg.smoke else ""),
        "",
        "The paper's mock-sentiment experiment in miniature: ρ = "
        f"`{cfg.model_name_or_path}`, a simulated labeler (VADER) picks the most positive of {cfg.k} continuations, "
        "a reward model learns its choices, PPO with an adaptive KL penalty optimises the policy against it.",
        "",
        "## What ran",
        "",
        "| stage | seconds |",
        "|---|---|",
        *[f"| {name} | {seconds:.0f} |" for name, seconds in timings.items()],
        f"| **total** | **{sum(timings.values()):.0f}** |",
        "",
        f"Settings: {json.dumps(dataclasses.asdict(cfg))}; sampling (ρ's queries and comparisons, PPO's rollouts, "
        f"the evaluation's samples) ran in {results['sampling_dtype']}.",
        "",
        "## Results on held-out queries",
        "",
        f"- Labeler score (VADER compound, mean ± 95% CI over {results['samples_per_policy']} samples from "
        f"{results['held_out_queries']} held-out queries): ρ {ci(results['score_rho'])}, π {ci(results['score_pi'])}; "
        f"gain π − ρ {ci(results['score_gain'])}.",
        f"- 2-way preference of the simulated labeler for π over ρ: {win:.1%} (95% Wilson CI {low:.1%}–{high:.1%}, "
        f"n = {n}); {results['tie_fraction']:.0%} of the pairs score the same (mostly both neutral), which the "
        "labeler decides by their shuffled order.",
        f"- Final KL(π‖ρ) {kl:.2f} nats vs target {target:.2f} ({(kl - target) / target:+.0%}): the mean of the last "
        f"{results['final_kl_updates']} updates ({FINAL_KL_EPISODES} episodes); the last update alone "
        f"{results['last_update_kl']:.2f}. Final β {results['final_kl_coef']:.4f}.",
        f"- Reward model: held-out accuracy {results['rm_accuracy']:.1%} on {results['rm_num_eval']} comparisons "
        f"(chance 25%), trained on {results['rm_num_train']}.",
        "",
        "## Targets",
        "",
        *(["A smoke run checks the plumbing on a random model: these targets apply to the full run.", ""]
          if cfg.smoke else []),
        "| target | measured | met |",
        "|---|---|---|",
        *[f"| {name} | {measured} | {'yes' if met else '**no**'} |"
          for name, measured, met in target_checks(results, sum(timings.values()))],
        "",
        "![PPO](ppo.png)",
        "",
        "![Reward model accuracy](reward_accuracy.png)",
        "",
        "## Sample continuations (held-out queries)",
        "",
    ]
    for example in results["examples"]:
        lines += [f"**Query:** {example['query']!r}", "", f"- ρ: {example['rho']!r}", f"- π: {example['pi']!r}", ""]
    path = root / "report.md"
    path.write_text("\n".join(lines))
    return path


def run_quickstart(cfg: QuickstartConfig) -> Path:
    root = Path(cfg.output_dir)
    root.mkdir(parents=True, exist_ok=True)
    settings = dataclasses.asdict(cfg)
    saved = root / "config.json"
    if saved.is_file() and (root / "stages.json").is_file():  # resuming: finished stages must match these settings
        before = with_current_names(json.loads(saved.read_text()), RENAMED)  # saved before a rename
        changed = [f"{k}: {before.get(k)!r} → {v!r}" for k, v in settings.items()
                   if before.get(k) != v and k not in RESUMABLE_CHANGES]
        if changed:
            raise UserInputError(
                f"{root} holds a run made with other settings ({'; '.join(changed)}): rerun with the same settings "
                "to resume it, or choose another --output_dir"
            )
    saved.write_text(json.dumps(settings, indent=2))
    model = _smoke_model(root) if cfg.smoke else cfg.model_name_or_path
    stages = Stages(root)
    stages.run("queries", make_queries, cfg, model, root, outputs=[root / "queries.json"])
    stages.run("labels", collect_labels, cfg, model, root)  # the label store resumes by itself
    stages.run("reward", train_reward, cfg, model, root, outputs=[root / "reward_model"])
    stages.run("policy", train_policy, cfg, model, root, outputs=[root / "policy", root / "ppo_log.json"])
    start = time.perf_counter()
    results = evaluate(cfg, model, root)
    plot(root)
    timings = {**stages.done, "evaluate": time.perf_counter() - start}
    path = write_report(cfg, root, results, timings)
    print(path.read_text())
    return path


def main(argv: list[str] | None = None, prog: str | None = None) -> Path:
    from .config_files import parse_args_and_config

    (config,) = parse_args_and_config((QuickstartConfig,), argv, RENAMED, prog)
    return run_quickstart(config)
