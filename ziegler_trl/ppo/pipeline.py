"""The policy stage as one call: build ZieglerPPOTrainer from parsed arguments, train, save (recipes/train_policy.py).

    ziegler-trl train-policy --model_name_or_path embedded --reward_model runs/rm --task sentiment \
        --dataset_name builtin --output_dir runs/ppo

ρ (the initial policy and the KL reference) is TRL's `--model_name_or_path` ('embedded' when unset), the data
`--dataset_name` / `--dataset_train_split`, as in TRL's scripts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UserInputError, check_input_file

if TYPE_CHECKING:
    from datasets import Dataset
    from trl import ModelConfig

    from .config import ZieglerPPOConfig
    from .trainer import ZieglerPPOTrainer

# Option names of earlier releases → today's (accepted with a warning, argv and YAML).
RENAMED = {"policy_model": "model_name_or_path", "dataset": "dataset_name", "dataset_split": "dataset_train_split"}


@dataclass
class PolicyScriptArguments:
    reward_model: str | None = field(
        default=None, metadata={"help": "Trained (normalised) reward model folder. Exactly one of this and reward_scorer."}
    )
    reward_scorer: str | None = field(
        default=None,
        metadata={"help": "A built-in scorer instead of a reward model: 'vader' (VADER compound sentiment of the "
                  "continuation, in [-1, 1]; needs `vaderSentiment`)."},
    )
    ref_model: str | None = field(default=None, metadata={"help": "Reference ρ if not the initial policy."})
    value_model: str | None = field(
        default=None, metadata={"help": "Separate value trunk (path); default: a head on the policy's trunk."}
    )
    dataset_name: str = field(
        default="bookcorpus",
        metadata={"help": "Raw texts for the task ('builtin' for the package's sample, a JSONL path or one of the "
                  "task's Hub sources), or with no task a Hub dataset / JSONL file with a `prompt` column."},
    )
    dataset_train_split: str = field(default="train", metadata={"help": "Split of a Hub dataset."})
    dataset_limit: int | None = field(default=None, metadata={"help": "Read at most this many rows."})
    eval_labels: str | None = field(
        default=None,
        metadata={"help": "JSONL of held-out comparisons (prompt, completions, best): before training the reward "
                  "must agree with them above chance."},
    )
    trainable_top_layers: int | None = field(
        default=None,
        metadata={"help": "Train only the policy's top N transformer blocks and its head (a CPU compute knob; the "
                  "PPO epochs then skip the frozen blocks, see cache_frozen_blocks; not under ZeRO-3). None: train "
                  "everything (the paper)."},
    )


# Built-in scorers usable instead of a reward model: name → (module, `reward_fn(prompts, completions) -> list[float]`).
SCORERS = {"vader": ("ziegler_trl.labeling", "sentiment_reward")}


def scorer(name: str):
    import importlib

    module, function = SCORERS[name]
    return getattr(importlib.import_module(module), function)


def load_training_data(script_args: PolicyScriptArguments, training_args: ZieglerPPOConfig) -> Dataset:
    from datasets import load_dataset

    from ..tasks import load_task_texts

    if training_args.task:
        return load_task_texts(training_args.task, script_args.dataset_name, script_args.dataset_train_split,
                               script_args.dataset_limit)
    if Path(script_args.dataset_name).is_file():
        data = load_dataset("json", data_files=script_args.dataset_name, split="train")
    else:
        data = load_dataset(script_args.dataset_name, split=script_args.dataset_train_split)
    return data.select(range(min(len(data), script_args.dataset_limit))) if script_args.dataset_limit else data


def train_policy(
    script_args: PolicyScriptArguments, training_args: ZieglerPPOConfig, model_args: ModelConfig | None = None
) -> ZieglerPPOTrainer:
    """Build the trainer from parsed arguments, train, and save the final policy + value head to output_dir.

    ρ is `model_args.model_name_or_path` ('embedded' when unset); `model_args`' LoRA options apply to the policy.
    """
    from datasets import load_dataset
    from trl.trainer.utils import get_peft_config

    from ..blocks import freeze_bottom_layers
    from ..model_cards import policy_card
    from ..models import load_policy, load_tokenizer
    from ..reporting import log_under_output_dir
    from ..tasks import get_task
    from .trainer import ZieglerPPOTrainer

    if (script_args.reward_model is None) == (script_args.reward_scorer is None):
        raise UserInputError("set exactly one of --reward_model and --reward_scorer")
    if script_args.reward_scorer is not None and script_args.reward_scorer not in SCORERS:
        raise UserInputError(f"unknown --reward_scorer {script_args.reward_scorer!r}; choose one of {sorted(SCORERS)}")
    if training_args.task:
        get_task(training_args.task)  # an unknown name fails here, before any model is loaded
    check_input_file(script_args.dataset_name, "--dataset_name")
    if script_args.eval_labels:
        check_input_file(script_args.eval_labels, "--eval_labels")
    eval_labels = load_dataset("json", data_files=script_args.eval_labels, split="train") if script_args.eval_labels else None
    policy = base_model = (model_args.model_name_or_path if model_args is not None else None) or "embedded"
    tokenizer = None
    if script_args.trainable_top_layers is not None:
        tokenizer = load_tokenizer(policy)
        policy = load_policy(policy, tokenizer)
        freeze_bottom_layers(policy, script_args.trainable_top_layers)
    train_dataset = load_training_data(script_args, training_args)
    trainer = ZieglerPPOTrainer(
        policy,
        training_args,
        processing_class=tokenizer,
        train_dataset=train_dataset,
        reward_model=script_args.reward_model,
        reward_fn=scorer(script_args.reward_scorer) if script_args.reward_scorer else None,
        ref_model=script_args.ref_model,
        value_model=script_args.value_model,
        peft_config=get_peft_config(model_args) if model_args is not None else None,
        eval_labels=eval_labels,
    )
    log_under_output_dir(trainer)
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.save_model(training_args.output_dir)
    if trainer.accelerator.is_main_process:
        reward = (f"the reward model `{script_args.reward_model}`" if script_args.reward_model
                  else f"the built-in scorer `{script_args.reward_scorer}`")
        policy_card(training_args.output_dir, base_model, training_args.task or None, script_args.dataset_name,
                    len(train_dataset), training_args, trainer.state.log_history, reward)
    return trainer


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    from trl import ModelConfig

    from ..config_files import parse_args_and_config
    from .config import ZieglerPPOConfig

    script_args, training_args, model_args = parse_args_and_config(
        (PolicyScriptArguments, ZieglerPPOConfig, ModelConfig), argv, RENAMED, prog
    )
    train_policy(script_args, training_args, model_args)
