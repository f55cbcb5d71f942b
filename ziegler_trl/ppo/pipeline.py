"""The policy stage as one call: build ZieglerPPOTrainer from parsed arguments, train, save (recipes/train_policy.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from datasets import Dataset, load_dataset
from trl import ModelConfig, TrlParser
from trl.trainer.utils import get_peft_config

from ..labeling import sentiment_reward
from ..models import freeze_bottom_layers, load_policy, load_tokenizer
from ..tasks import load_task_texts
from .config import ZieglerPPOConfig
from .trainer import ZieglerPPOTrainer


@dataclass
class PolicyScriptArguments:
    policy_model: str = field(default="embedded", metadata={"help": "Initial policy ρ: path, Hub id or 'embedded'."})
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
    dataset: str = field(
        default="bookcorpus",
        metadata={"help": "Raw texts for the task (JSONL path or one of the task's Hub sources), or with no task a "
                  "Hub dataset / JSONL file with a `prompt` column."},
    )
    dataset_split: str = field(default="train", metadata={"help": "Split of a Hub dataset."})
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


# Built-in scorers usable instead of a reward model (`reward_fn(prompts, completions) -> list[float]`).
SCORERS = {"vader": sentiment_reward}


def load_training_data(script_args: PolicyScriptArguments, training_args: ZieglerPPOConfig) -> Dataset:
    if training_args.task:
        return load_task_texts(training_args.task, script_args.dataset, script_args.dataset_split, script_args.dataset_limit)
    if Path(script_args.dataset).is_file():
        data = load_dataset("json", data_files=script_args.dataset, split="train")
    else:
        data = load_dataset(script_args.dataset, split=script_args.dataset_split)
    return data.select(range(min(len(data), script_args.dataset_limit))) if script_args.dataset_limit else data


def train_policy(
    script_args: PolicyScriptArguments, training_args: ZieglerPPOConfig, model_args: ModelConfig | None = None
) -> ZieglerPPOTrainer:
    """Build the trainer from parsed arguments, train, and save the final policy + value head to output_dir."""
    if (script_args.reward_model is None) == (script_args.reward_scorer is None):
        raise ValueError("Set exactly one of --reward_model and --reward_scorer")
    if model_args is not None and model_args.model_name_or_path is not None:
        # ModelConfig is parsed for its LoRA options; its model field would otherwise be silently ignored.
        raise ValueError(
            f"--model_name_or_path {model_args.model_name_or_path!r} is not read by the policy stage: pass the "
            "initial policy ρ as --policy_model"
        )
    if script_args.reward_scorer is not None and script_args.reward_scorer not in SCORERS:
        raise ValueError(f"Unknown reward_scorer {script_args.reward_scorer!r}; choose one of {sorted(SCORERS)}")
    eval_labels = load_dataset("json", data_files=script_args.eval_labels, split="train") if script_args.eval_labels else None
    policy, tokenizer = script_args.policy_model, None
    if script_args.trainable_top_layers is not None:
        tokenizer = load_tokenizer(policy)
        policy = load_policy(policy, tokenizer)
        freeze_bottom_layers(policy, script_args.trainable_top_layers)
    trainer = ZieglerPPOTrainer(
        policy,
        training_args,
        processing_class=tokenizer,
        train_dataset=load_training_data(script_args, training_args),
        reward_model=script_args.reward_model,
        reward_fn=SCORERS[script_args.reward_scorer] if script_args.reward_scorer else None,
        ref_model=script_args.ref_model,
        value_model=script_args.value_model,
        peft_config=get_peft_config(model_args) if model_args is not None else None,
        eval_labels=eval_labels,
    )
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.save_model(training_args.output_dir)
    return trainer


def main(argv: list[str] | None = None) -> None:
    parser = TrlParser((PolicyScriptArguments, ZieglerPPOConfig, ModelConfig))
    script_args, training_args, model_args = parser.parse_args_and_config(args=argv)
    train_policy(script_args, training_args, model_args)
