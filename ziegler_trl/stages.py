"""The paper's loop as resumable stages, shared by `ziegler-trl collect` and `ziegler-trl quickstart`.

`StageConfig` holds the knobs both commands give the stages, under one name each (the library's, prefixed with the
model it applies to where both models have one: `policy_learning_rate`, `reward_learning_rate`). The stages take
library values (a `LabelStore`, `RewardScriptArguments` + `BestOfKRewardConfig`, a `ZieglerPPOConfig`) that each
command builds from its own config:

    collect_labels   K completions of the current policy per query, picked by a labeler, into the label store
    train_reward     a reward model trained from ρ on the store's labels and normalised on ρ's samples
    train_policy     PPO against that reward model; the policy, its card and its log saved

Nothing here imports torch at import time: `collect --help` stays quick.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import UserInputError

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import PreTrainedModel, PreTrainedTokenizerBase, TrainerCallback

    from .labeling import LabelStore
    from .ppo import ZieglerPPOConfig
    from .ppo.reward_source import RewardFn
    from .reward import BestOfKRewardConfig
    from .reward.pipeline import RewardScriptArguments
    from .tasks import Query, TaskSpec


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


def keep_folder_settings(root: Path, settings: dict) -> None:
    """A study folder keeps the settings it was made with: refuse to resume it with others (its runs would not be
    comparable); else record them in `config.json`."""
    saved = root / "config.json"
    if saved.is_file():
        before = json.loads(saved.read_text())
        changed = sorted(k for k in settings.keys() | before.keys() if settings.get(k) != before.get(k))
        if changed:
            raise UserInputError(f"{root} holds a study made with other settings ({', '.join(changed)} differ): rerun "
                                 "with the same --scale and options to resume it, or choose another --output_dir")
    saved.write_text(json.dumps(settings, indent=2))


@dataclass
class StageConfig:
    """Options of the stages that both `collect` and `quickstart` take; defaults are the paper's (the quickstart's
    preset changes some)."""

    output_dir: str = field(default="runs/pipeline", metadata={"help": "Where stages, models and labels go."})
    model_name_or_path: str = field(
        default="embedded",
        metadata={"help": "ρ: the initial policy, which the reward model starts from too (a path, a Hub id, or "
                  "'embedded' = SmolLM2-135M-Instruct)."},
    )
    seed: int = field(default=0, metadata={"help": "Seed of every stage."})
    k: int = field(default=4, metadata={"help": "Completions per comparison (the paper: 4)."})
    labeler_temperature: float = field(
        default=0.0,
        metadata={"help": "Noise of the simulated labeler: 0 picks the most positive completion, T > 0 picks with "
                  "probability ∝ exp(score / T)."},
    )
    reward_learning_rate: float = field(
        default=5e-5, metadata={"help": "Learning rate of the reward model (the paper: 5e-5)."}
    )
    reward_batch_size: int = field(default=8, metadata={"help": "Comparisons per reward-model step."})
    policy_batch_size: int = field(
        default=16,
        metadata={"help": "Episodes per PPO update (rollout batch); at least 8, since PPO whitens the rewards of "
                  "each minibatch as the paper's code does."},
    )
    policy_learning_rate: float = field(
        default=1e-5, metadata={"help": "Adam learning rate of the policy in PPO (the paper: 1e-5)."}
    )
    init_kl_coef: float = field(
        default=0.15, metadata={"help": "Initial β of the adaptive KL controller (the paper: 0.15)."}
    )
    kl_target: float = field(
        default=6.0, metadata={"help": "KL(π‖ρ) per response the adaptive controller steers to, in nats (the "
                               "paper's sentiment run: 6)."}
    )
    report_to: str = field(
        default="none",
        metadata={"help": "Where each stage's trainer logs, as TRL's `report_to`: 'none', 'tensorboard', 'trackio', "
                  "'wandb' or 'all'; TensorBoard and W&B files go under the stage's own output folder."},
    )

    def __post_init__(self):
        from .ppo.config import MIN_WHITEN_MINIBATCH  # not at import: `collect --help` needs no torch

        if self.policy_batch_size < MIN_WHITEN_MINIBATCH:  # refused now, not after the labels and the reward model
            raise UserInputError(f"--policy_batch_size must be at least {MIN_WHITEN_MINIBATCH}: PPO whitens the "
                                 f"rewards of each minibatch, as the paper's code, got {self.policy_batch_size}")


def load_sampler(model: str, tokenizer: PreTrainedTokenizerBase, requested_dtype: str = "float32") -> PreTrainedModel:
    """A policy (ρ or π) to sample from, on this process's device, in the precision `sampling_dtype` picks there."""
    from .models import inference_device, load_policy, sampling_dtype

    device = inference_device()
    return load_policy(model, tokenizer, dtype=sampling_dtype(device, requested_dtype)).to(device)


def collect_labels(
    store: LabelStore, policy: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, queries: Sequence[Query],
    task: str | TaskSpec, labeler, *, k: int, round: int, policy_name: str = "rho", batch_size: int = 8,
    wait: bool = True,
) -> tuple[int, int]:
    """One collection round: `policy` (from `load_sampler`) samples `k` completions per query, `labeler` picks;
    resumable (`collect_round`). Returns (answered, stored): how many of the round's comparisons have an answer,
    and how many there are."""
    from .collection import collect_round

    ids = collect_round(store, policy, tokenizer, queries, task, labeler, k=k, round=round, policy_name=policy_name,
                        batch_size=batch_size, wait=wait)
    return len({a.comparison_id for a in store.answers(ids) if not a.skipped}), len(ids)


def train_reward(
    store_path: Path, consumer: str, rho: str, script: RewardScriptArguments, args: BestOfKRewardConfig, *,
    round: int | None = None, sampling_dtype: str | None = None, task: str | TaskSpec | None = None,
) -> dict:
    """Train a reward model from ρ on the store's labels (those of `round`, or all so far), recorded as read by
    `consumer` (no undo after), normalised on ρ's samples before and after; returns its metrics.

    With `sampling_dtype`, ρ's normalisation samples are drawn here in that precision (torch seeded with
    `args.seed`), one per stored comparison's prompt up to `script.normalize_samples`, under `task` (default
    `script.task`); without, the reward stage draws them in float32 from the labels' distinct prompts."""
    from trl import ModelConfig

    from .labeling import LabelStore
    from .reward.pipeline import train_reward_model

    store = LabelStore(store_path)
    labels = store.training_dataset(consumer, round=round)  # from now on these answers cannot be undone
    if sampling_dtype is not None:
        prompts = [c.prompt for c in store.comparisons(round=round)[: script.normalize_samples]]
    store.close()
    rho_samples = None
    if sampling_dtype is not None:
        import dataclasses

        import torch

        from .models import load_tokenizer
        from .reward.pipeline import sample_rho_for_normalization

        tokenizer = load_tokenizer(rho)
        torch.manual_seed(args.seed)
        # The paper's normalisation samples: raw, not cut at the truncate token (they still end at EOS under the
        # task's stop_at_eos); the stored completions are truncated.
        completions = sample_rho_for_normalization(load_sampler(rho, tokenizer, sampling_dtype), tokenizer, prompts,
                                                   task or script.task)
        rho_samples = (prompts, completions)
        script = dataclasses.replace(script, normalize_samples=len(prompts))
    return train_reward_model(script, args, labels=labels, rho_samples=rho_samples,
                              model_args=ModelConfig(model_name_or_path=rho))


def train_policy(
    rho: str, args: ZieglerPPOConfig, prompts: Dataset, reward_model: str | None, *, policy: str | None = None,
    trainable_top_layers: int | None = None, ref_model: str | None = None, data_source: str,
    reward_description: str, log_file: Path, reward_fn: RewardFn | None = None,
    callbacks: Sequence[TrainerCallback] = (),
) -> None:
    """PPO from `policy` (ρ when None) against the frozen `reward_model` (or `reward_fn(prompts, completions)`, given
    instead of it), KL-penalised toward `ref_model` (a frozen copy of the starting policy when None); with
    `trainable_top_layers`, only the policy's top blocks, final norm and heads train; `callbacks` join the trainer's.
    Saves the policy and ρ's tokenizer in `args.output_dir` with a model card (`data_source` and
    `reward_description` name its data and reward), and the trainer's log in `log_file`."""
    from .blocks import freeze_bottom_layers
    from .model_cards import policy_card
    from .models import load_policy, load_tokenizer
    from .ppo import ZieglerPPOTrainer
    from .reporting import log_under_output_dir

    tokenizer = load_tokenizer(rho)
    model = policy or rho
    if trainable_top_layers is not None:
        model = load_policy(model, tokenizer)
        freeze_bottom_layers(model, trainable_top_layers)
    trainer = ZieglerPPOTrainer(model, args=args, train_dataset=prompts, processing_class=tokenizer,
                                reward_model=reward_model, reward_fn=reward_fn, ref_model=ref_model,
                                callbacks=list(callbacks))
    log_under_output_dir(trainer)
    trainer.train()
    trainer.save_model(args.output_dir)
    tokenizer.save_pretrained(args.output_dir)
    policy_card(args.output_dir, rho, args.task, data_source, len(trainer.train_dataset), args,
                trainer.state.log_history, reward_description)
    Path(log_file).write_text(json.dumps(trainer.state.log_history, indent=2))
