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
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .errors import UserInputError, check_input_file
from .labeling import LabelStore

# Option names of earlier releases → today's (accepted with a warning, argv and YAML).
RENAMED = {"model": "model_name_or_path", "queries": "dataset_name"}


class Stages:
    """Named stages with timings in `stages.json`, skipped when already finished (a rerun resumes).

    A stage's `outputs` (files or folders it writes from scratch) are flushed to disk before `stages.json`, itself
    replaced atomically, marks the stage done; a rerun after a kill during the stage removes what it left half
    written and runs it again from a clean slate. (Outputs that resume on their own, like a label store, are not
    listed.)"""

    def __init__(self, root: Path):
        self.root = root
        self.file = root / "stages.json"
        self.done: dict[str, float] = json.loads(self.file.read_text()) if self.file.is_file() else {}

    def run(self, name: str, fn, *args, outputs: Sequence[Path] = ()):
        from .checkpoints import sync_tree, write_text_atomically  # not at import: `collect --help` needs no torch

        if name in self.done:
            print(f"[{self.root.name}] {name}: done in an earlier run ({self.done[name]:.0f} s), skipped")
            return None
        for path in (p for p in outputs if p.exists()):
            print(f"[{self.root.name}] {name}: removing {path}, left unfinished by a run stopped in this stage")
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        print(f"[{self.root.name}] {name} ...")
        start = time.perf_counter()
        result = fn(*args)
        missing = [str(p) for p in outputs if not p.exists()]
        if missing:
            raise RuntimeError(f"stage {name} finished without writing {missing}")
        for path in outputs:
            sync_tree(path)
        self.done[name] = time.perf_counter() - start
        write_text_atomically(self.file, json.dumps(self.done, indent=2))
        print(f"[{self.root.name}] {name}: {self.done[name]:.0f} s")
        return result


class WaitingForLabels(RuntimeError):
    """A round's comparisons are stored and assigned; people have not answered them all yet."""


@dataclass
class PipelineConfig:
    output_dir: str = field(default="runs/pipeline", metadata={"help": "Where stages, models and labels go."})
    model_name_or_path: str = field(
        default="embedded", metadata={"help": "ρ: the initial policy (path, Hub id, 'embedded')."}
    )
    task: str = field(default="sentiment", metadata={"help": "Task preset: sentiment, descriptiveness, tldr, cnndm."})
    dataset_name: str = field(
        default="",
        metadata={"help": "Raw texts for the task: 'builtin' (the package's sample), a JSONL file or a Hub source."},
    )
    dataset_train_split: str = field(default="train", metadata={"help": "Split of a Hub dataset."})
    mode: str = field(default="offline", metadata={"help": "'offline' (one round) or 'batched' (online rounds)."})
    rounds: int = field(default=4, metadata={"help": "Rounds in batched mode."})
    comparisons_per_round: int = field(default=256, metadata={"help": "Comparisons labeled per round."})
    k: int = field(default=4, metadata={"help": "Completions per comparison."})
    labeler: str = field(default="sentiment", metadata={"help": "'sentiment' (simulated, VADER) or 'human'."})
    labeler_temperature: float = field(default=0.0, metadata={"help": "Noise of the simulated labeler."})
    reward_lr: float = field(default=5e-5, metadata={"help": "Reward model learning rate."})
    reward_batch_size: int = field(default=8, metadata={"help": "Comparisons per reward model step."})
    ppo_episodes_per_round: int = field(default=512, metadata={"help": "PPO episodes after each round."})
    ppo_batch_size: int = field(default=16, metadata={"help": "Episodes per PPO update."})
    ppo_lr: float = field(default=1e-5, metadata={"help": "PPO learning rate."})
    init_kl_coef: float = field(default=0.15, metadata={"help": "Initial β."})
    kl_target: float = field(default=6.0, metadata={"help": "Adaptive KL target (nats)."})
    seed: int = field(default=0, metadata={"help": "Seed of every stage."})
    report_to: str = field(
        default="none",
        metadata={"help": "Where each stage's trainer logs, as TRL's `report_to`: 'none', 'tensorboard', 'trackio', "
                  "'wandb' or 'all'; TensorBoard and W&B files go under the stage's own output folder."},
    )

    def __post_init__(self):
        if self.mode not in ("offline", "batched"):
            raise UserInputError(f"--mode must be 'offline' or 'batched', got {self.mode!r}")
        if self.labeler not in ("sentiment", "human"):
            raise UserInputError(f"--labeler must be 'sentiment' or 'human', got {self.labeler!r}")
        if not self.dataset_name:
            raise UserInputError("--dataset_name is required: 'builtin', a JSONL file of raw texts for the task, "
                                 "or one of its Hub sources")
        from .ppo.config import MIN_WHITEN_MINIBATCH  # not at import: `collect --help` needs no torch

        if self.ppo_batch_size < MIN_WHITEN_MINIBATCH:  # refused now, not after the labels and the reward model
            raise UserInputError(f"--ppo_batch_size must be at least {MIN_WHITEN_MINIBATCH}: PPO whitens the rewards "
                                 f"of each minibatch, as the paper's code, got {self.ppo_batch_size}")


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
    from .collection import collect_round
    from .models import inference_device, load_policy, load_tokenizer
    from .tasks import build_queries

    store = LabelStore(root / "labels.sqlite")
    require_labelers(cfg, store)
    tokenizer = load_tokenizer(cfg.model_name_or_path)
    texts = _texts(cfg)["text"]
    queries = build_queries(texts, cfg.task, tokenizer)
    start = round_ * cfg.comparisons_per_round  # each round takes fresh queries, cycling through the source
    queries = [queries[(start + i) % len(queries)] for i in range(cfg.comparisons_per_round)]
    policy = load_policy(_policy_path(cfg, root, round_), tokenizer).to(inference_device())
    ids = collect_round(store, policy, tokenizer, queries, cfg.task, _labeler(cfg, store), k=cfg.k, round=round_,
                        policy_name=f"round{round_}", wait=cfg.labeler != "human")
    answered = len({a.comparison_id for a in store.answers(ids) if not a.skipped})
    store.close()
    if answered < len(ids):
        raise WaitingForLabels(
            f"round {round_}: {answered}/{len(ids)} comparisons answered; serve them with `ziegler-trl label serve "
            f"--store {root / 'labels.sqlite'}` and rerun this command to continue"
        )


def train_reward(cfg: PipelineConfig, root: Path, round_: int) -> None:
    """Retrain from ρ on all labels so far (the paper retrains rather than fine-tunes), normalised on ρ."""
    from trl import ModelConfig

    from .reward import BestOfKRewardConfig
    from .reward.pipeline import RewardScriptArguments, train_reward_model

    store = LabelStore(root / "labels.sqlite")
    labels = store.training_dataset(f"reward_round{round_}")  # from now on these answers cannot be undone
    store.close()
    script = RewardScriptArguments(task=cfg.task, eval_fraction=0.1)
    args = BestOfKRewardConfig(
        output_dir=str(root / f"reward_round{round_}"), per_device_train_batch_size=cfg.reward_batch_size,
        learning_rate=cfg.reward_lr, save_strategy="no", report_to=cfg.report_to, seed=cfg.seed, logging_steps=5,
    )
    train_reward_model(script, args, labels=labels, model_args=ModelConfig(model_name_or_path=cfg.model_name_or_path))


def train_policy(cfg: PipelineConfig, root: Path, round_: int) -> None:
    """Continue PPO from π with this round's reward model frozen; ρ stays the initial policy; β carries over."""
    from .model_cards import policy_card
    from .models import load_tokenizer
    from .ppo import ZieglerPPOConfig, ZieglerPPOTrainer
    from .reporting import log_under_output_dir

    tokenizer = load_tokenizer(cfg.model_name_or_path)
    beta = cfg.init_kl_coef
    if round_ > 0:
        previous = json.loads((root / f"policy_round{round_ - 1}" / "ppo_log.json").read_text())
        beta = [e["objective/kl_coef"] for e in previous if "objective/kl_coef" in e][-1]
    micro = min(8, cfg.ppo_batch_size)
    args = ZieglerPPOConfig(
        output_dir=str(root / f"policy_round{round_}"), task=cfg.task, per_device_train_batch_size=micro,
        gradient_accumulation_steps=cfg.ppo_batch_size // micro, total_episodes=cfg.ppo_episodes_per_round,
        learning_rate=cfg.ppo_lr, init_kl_coef=beta, kl_target=cfg.kl_target, seed=cfg.seed + round_,
        report_to=cfg.report_to, save_strategy="no",
    )
    trainer = ZieglerPPOTrainer(
        _policy_path(cfg, root, round_), args=args, train_dataset=_texts(cfg), processing_class=tokenizer,
        reward_model=str(root / f"reward_round{round_}"), ref_model=cfg.model_name_or_path,
    )
    log_under_output_dir(trainer)
    trainer.train()
    trainer.save_model(args.output_dir)
    tokenizer.save_pretrained(args.output_dir)
    policy_card(args.output_dir, cfg.model_name_or_path, cfg.task, cfg.dataset_name, len(trainer.train_dataset), args,
                trainer.state.log_history, f"the reward model `{root / f'reward_round{round_}'}` (retrained on every "
                "label so far)")
    (root / f"policy_round{round_}" / "ppo_log.json").write_text(json.dumps(trainer.state.log_history, indent=2))


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
        stages.run(f"reward_round{round_}", train_reward, cfg, root, round_, outputs=[root / f"reward_round{round_}"])
        stages.run(f"policy_round{round_}", train_policy, cfg, root, round_, outputs=[root / f"policy_round{round_}"])
    return root / f"policy_round{rounds - 1}"


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    from .config_files import parse_args_and_config

    (cfg,) = parse_args_and_config((PipelineConfig,), argv, RENAMED, prog)
    try:
        print(f"final policy: {run_pipeline(cfg)}")
    except WaitingForLabels as waiting:
        print(waiting)
        raise SystemExit(3) from None
