"""The paper's loop as one resumable command: offline or batched-online collection (§4.1).

    ziegler-trl collect --mode offline --task sentiment --dataset_name builtin --output_dir runs/loop
    ziegler-trl collect --mode batched --rounds 4 --labeler human ...     # rerun the same command to resume

offline:  label `comparisons_per_round` comparisons sampled from ρ, train the reward model once, run PPO.
batched:  `rounds` rounds of {sample from the current π → label → retrain the reward model from ρ on all labels so
          far → normalise on ρ → continue PPO from π with the reward model frozen}; β carries over between rounds.

Every stage writes its output under `output_dir` and is skipped on a rerun; labels live in a SQLite LabelStore
(`labels.sqlite`), so a kill at any point loses no answered label. With `labeler: human` a round waits for people
(`ziegler-trl label serve`): the command stores and assigns the round's comparisons, reports progress and exits;
rerun it once they are answered.

The stages themselves are `ziegler_trl.stages`' (shared with `ziegler-trl quickstart`, a preset of them); this
module builds their library configs from a `PipelineConfig`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .config_files import override_default
from .errors import UserInputError, check_input_file
from .labeling import LabelStore
from .stages import StageConfig, Stages, collect_labels, load_sampler, train_policy, train_reward

# Option names of earlier releases → today's (accepted with a warning, argv and YAML).
RENAMED = {
    "model": "model_name_or_path",
    "queries": "dataset_name",
    "reward_lr": "reward_learning_rate",
    "ppo_lr": "policy_learning_rate",
    "ppo_batch_size": "policy_batch_size",
    "ppo_episodes_per_round": "total_episodes_per_round",
}


class WaitingForLabels(RuntimeError):
    """A round's comparisons are stored and assigned; people have not answered them all yet."""


@dataclass
class PipelineConfig(StageConfig):
    output_dir: str = override_default(StageConfig, "output_dir", "runs/pipeline")
    task: str = field(default="sentiment", metadata={"help": "Task preset: sentiment, descriptiveness, tldr, cnndm."})
    dataset_name: str = field(
        default="",
        metadata={"help": "Raw texts for the task: 'builtin' (the package's sample), a JSONL file or a Hub source."},
    )
    dataset_train_split: str = field(default="train", metadata={"help": "Split of a Hub dataset."})
    mode: str = field(default="offline", metadata={"help": "'offline' (one round) or 'batched' (online rounds)."})
    rounds: int = field(default=4, metadata={"help": "Rounds in batched mode."})
    comparisons_per_round: int = field(default=256, metadata={"help": "Comparisons labeled per round."})
    labeler: str = field(default="sentiment", metadata={"help": "'sentiment' (simulated, VADER) or 'human'."})
    total_episodes_per_round: int = field(default=512, metadata={"help": "PPO episodes after each round."})

    def __post_init__(self):
        if self.mode not in ("offline", "batched"):
            raise UserInputError(f"--mode must be 'offline' or 'batched', got {self.mode!r}")
        if self.labeler not in ("sentiment", "human"):
            raise UserInputError(f"--labeler must be 'sentiment' or 'human', got {self.labeler!r}")
        if not self.dataset_name:
            raise UserInputError("--dataset_name is required: 'builtin', a JSONL file of raw texts for the task, "
                                 "or one of its Hub sources")
        super().__post_init__()


def _labeler(cfg: PipelineConfig, store: LabelStore):
    from .labeling import HumanLabeler, SentimentLabeler

    if cfg.labeler == "human":
        return HumanLabeler(store)
    return SentimentLabeler(temperature=cfg.labeler_temperature, seed=cfg.seed, name="vader")


def _policy_path(cfg: PipelineConfig, root: Path, round_: int) -> str:
    """π at the start of a round: ρ for the first, the previous round's PPO output after."""
    return cfg.model_name_or_path if round_ == 0 else str(root / f"policy_round{round_ - 1}")


def _texts(cfg: PipelineConfig):
    from .tasks import load_task_texts

    return load_task_texts(cfg.task, cfg.dataset_name, split=cfg.dataset_train_split)


def require_labelers(cfg: PipelineConfig, store: LabelStore) -> None:
    """With `labeler: human`, stop before any sampling when nobody could answer: say what to run first."""
    if cfg.labeler == "human" and not store.active_labelers():
        state = "every labeler's link was revoked" if store.labelers() else "no labeler is registered"
        raise UserInputError(
            f"--labeler human: {state} in {store.path}; run `ziegler-trl label add-labeler --store {store.path} "
            f"NAME` for each person, then `ziegler-trl label serve --store {store.path}`, and rerun this command"
        )


def collect(cfg: PipelineConfig, root: Path, round_: int) -> None:
    from .models import load_tokenizer
    from .tasks import build_queries

    store = LabelStore(root / "labels.sqlite")
    require_labelers(cfg, store)
    tokenizer = load_tokenizer(cfg.model_name_or_path)
    texts = _texts(cfg)["text"]
    queries = build_queries(texts, cfg.task, tokenizer)
    start = round_ * cfg.comparisons_per_round  # each round takes fresh queries, cycling through the source
    queries = [queries[(start + i) % len(queries)] for i in range(cfg.comparisons_per_round)]
    policy = load_sampler(_policy_path(cfg, root, round_), tokenizer)
    answered, stored = collect_labels(store, policy, tokenizer, queries, cfg.task, _labeler(cfg, store), k=cfg.k,
                                      round=round_, policy_name=f"round{round_}", wait=cfg.labeler != "human")
    store.close()
    if answered < stored:
        raise WaitingForLabels(
            f"round {round_}: {answered}/{stored} comparisons answered; serve them with `ziegler-trl label serve "
            f"--store {root / 'labels.sqlite'}` and rerun this command to continue"
        )


def reward_stage(cfg: PipelineConfig, root: Path, round_: int) -> None:
    """Retrain from ρ on all labels so far (the paper retrains rather than fine-tunes), normalised on ρ."""
    from .reward import BestOfKRewardConfig
    from .reward.pipeline import RewardScriptArguments

    script = RewardScriptArguments(task=cfg.task, eval_fraction=0.1)
    args = BestOfKRewardConfig(
        output_dir=str(root / f"reward_round{round_}"), per_device_train_batch_size=cfg.reward_batch_size,
        learning_rate=cfg.reward_learning_rate, save_strategy="no", report_to=cfg.report_to, seed=cfg.seed,
        logging_steps=5,
    )
    train_reward(root / "labels.sqlite", f"reward_round{round_}", cfg.model_name_or_path, script, args)


def policy_stage(cfg: PipelineConfig, root: Path, round_: int) -> None:
    """Continue PPO from π with this round's reward model frozen; ρ stays the initial policy; β carries over."""
    from .ppo import ZieglerPPOConfig

    beta = cfg.init_kl_coef
    if round_ > 0:
        previous = json.loads((root / f"policy_round{round_ - 1}" / "ppo_log.json").read_text())
        beta = [e["objective/kl_coef"] for e in previous if "objective/kl_coef" in e][-1]
    micro = min(8, cfg.policy_batch_size)
    args = ZieglerPPOConfig(
        output_dir=str(root / f"policy_round{round_}"), task=cfg.task, per_device_train_batch_size=micro,
        gradient_accumulation_steps=cfg.policy_batch_size // micro, total_episodes=cfg.total_episodes_per_round,
        learning_rate=cfg.policy_learning_rate, init_kl_coef=beta, kl_target=cfg.kl_target, seed=cfg.seed + round_,
        report_to=cfg.report_to, save_strategy="no",
    )
    reward_model = str(root / f"reward_round{round_}")
    train_policy(cfg.model_name_or_path, args, _texts(cfg), reward_model, policy=_policy_path(cfg, root, round_),
                 ref_model=cfg.model_name_or_path, data_source=cfg.dataset_name,
                 reward_description=f"the reward model `{reward_model}` (retrained on every label so far)",
                 log_file=root / f"policy_round{round_}" / "ppo_log.json")


def run_pipeline(cfg: PipelineConfig) -> Path:
    """Run (or resume) every round; returns the folder of the final policy."""
    from .tasks import get_task

    get_task(cfg.task)
    check_input_file(cfg.dataset_name, "--dataset_name")
    root = Path(cfg.output_dir)
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text(json.dumps(cfg.__dict__, indent=2))
    stages = Stages(root)
    rounds = 1 if cfg.mode == "offline" else cfg.rounds
    for round_ in range(rounds):
        stages.run(f"collect_round{round_}", collect, cfg, root, round_)
        stages.run(f"reward_round{round_}", reward_stage, cfg, root, round_, outputs=[root / f"reward_round{round_}"])
        stages.run(f"policy_round{round_}", policy_stage, cfg, root, round_, outputs=[root / f"policy_round{round_}"])
    return root / f"policy_round{rounds - 1}"


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    from .config_files import parse_args_and_config

    (cfg,) = parse_args_and_config((PipelineConfig,), argv, RENAMED, prog)
    try:
        print(f"final policy: {run_pipeline(cfg)}")
    except WaitingForLabels as waiting:
        print(waiting)
        raise SystemExit(3) from None
