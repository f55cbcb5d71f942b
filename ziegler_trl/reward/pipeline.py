"""The reward-model stage as one call: labels → normalise on ρ → train one epoch → normalise → save.

Steps follow lm-human-preferences' train_reward: sample `normalize_samples` responses from ρ at the task temperature
(or take given ρ samples); normalise the fresh reward model on them (mean 0, std 1); train on the labels; normalise
again on the same ρ samples; save a folder that `ziegler_trl.load_reward_model` loads as a normalised model.

The ρ samples are raw: the whole fixed-length response, not cut at the task's truncate token, because the paper's
code (and its PyTorch port) normalises on ρ's untruncated responses while PPO scores truncated ones.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from accelerate.utils import DistributedType
from datasets import Dataset
from transformers import PreTrainedModel, PreTrainedTokenizerBase, set_seed
from trl import ModelConfig
from trl.trainer.utils import get_peft_config

from ..blocks import freeze_bottom_layers
from ..config_files import parse_args_and_config
from ..errors import UserInputError, check_input_file
from ..model_cards import reward_model_card
from ..models import inference_device, load_policy, load_tokenizer
from ..reporting import log_under_output_dir
from ..sampling import RANK_SEED_STRIDE, sample_completions
from ..tasks import TaskSpec, get_task, query_from_content
from .held_out import save_held_out_labels
from .labels import load_label_dataset
from .model import load_reward_model
from .normalization import normalize_reward_model
from .trainer import BestOfKRewardConfig, BestOfKRewardTrainer

# Option names of earlier releases → today's (accepted with a warning, argv and YAML).
RENAMED = {"labels": "dataset_name"}


@dataclass
class RewardScriptArguments:
    """The stage's own options; the model (ρ, `--model_name_or_path`) and LoRA options are TRL's `ModelConfig`."""

    task: str = field(default="sentiment", metadata={"help": "Task preset (sentiment, descriptiveness, tldr, cnndm)."})
    dataset_name: str = field(
        default="",
        metadata={"help": "Best-of-K labels: a JSON/JSONL file (ours or an OpenAI label file), URL or Hub id."},
    )
    dataset_train_split: str = field(default="train", metadata={"help": "Split of a Hub dataset."})
    num_train: int | None = field(default=None, metadata={"help": "Use at most this many labels for training."})
    eval_fraction: float = field(default=0.1, metadata={"help": "Fraction of labels held out for evaluation."})
    normalize_samples: int = field(
        default=256,
        metadata={"help": "Samples from ρ used to normalise the reward, raw (not cut at the truncate token) as in the "
                  "paper's code (0 disables normalisation)."},
    )
    sampling_batch_size: int = field(default=16, metadata={"help": "Queries per generate call for ρ samples."})
    trainable_top_layers: int | None = field(
        default=None,
        metadata={"help": "Train only the top N transformer blocks and the head (a CPU compute knob; the paper "
                  "trains all weights). None: train everything."},
    )


def sample_rho_for_normalization(
    policy: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    task: str | TaskSpec,
    batch_size: int = 16,
) -> list[str]:
    """One raw sample of ρ (`policy`) per prompt, the reward model's view of a query that ρ reads inside the task's
    prefix/suffix, at the task temperature: the whole response, not cut at the truncate token (the paper's
    normalisation samples). Under the task's `stop_at_eos` it still ends at EOS: what follows is no response."""
    raw = dataclasses.replace(get_task(task), truncate_token="")
    queries = [query_from_content(tokenizer.encode(p, add_special_tokens=False), raw, tokenizer) for p in prompts]
    samples = sample_completions(policy, tokenizer, queries, raw, k=1, batch_size=batch_size)
    return [texts[0] for texts in samples.texts(tokenizer)]


def train_reward_model(
    script_args: RewardScriptArguments,
    training_args: BestOfKRewardConfig,
    labels: Dataset | None = None,
    rho_samples: tuple[list[str], list[str]] | None = None,
    model_args: ModelConfig | None = None,
) -> dict:
    """Run the stage; returns its metrics (also written to `reward_metrics.json` in the output folder). The held-out
    labels are saved in the output folder too (`held_out_labels.jsonl`), where ZieglerPPOTrainer finds them.

    `labels` overrides `script_args.dataset_name`; `rho_samples` = (prompts, completions) already sampled from ρ, raw
    as `sample_rho_for_normalization` draws them, replaces fresh sampling for normalisation. `model_args` with
    `use_peft`:
    LoRA adapters (a sequence-classification task, so the head trains with them); saved merged by default.
    The reward model starts from ρ = `model_args.model_name_or_path` ('embedded', SmolLM2, when unset).
    """
    model_name = (model_args.model_name_or_path if model_args is not None else None) or "embedded"
    if labels is None and not script_args.dataset_name:
        raise UserInputError("--dataset_name is required: a best-of-K label file (JSON/JSONL), URL or Hub dataset id")
    if labels is None:
        check_input_file(script_args.dataset_name, "--dataset_name")
    task = get_task(script_args.task)
    tokenizer = load_tokenizer(model_name, padding_side="right")
    if labels is None:
        labels = load_label_dataset(script_args.dataset_name, tokenizer=tokenizer,
                                    split=script_args.dataset_train_split)
    labels = labels.shuffle(seed=training_args.seed)
    n_eval = int(len(labels) * script_args.eval_fraction)
    splits = labels.train_test_split(test_size=n_eval, shuffle=False) if n_eval else {"train": labels, "test": None}
    train, held_out = splits["train"], splits["test"]
    if script_args.num_train is not None:
        train = train.select(range(min(script_args.num_train, len(train))))

    model = load_reward_model(model_name, tokenizer)
    if script_args.trainable_top_layers is not None:
        freeze_bottom_layers(model, script_args.trainable_top_layers)
    metrics: dict = {"task": task.name, "num_train": len(train), "num_eval": len(held_out) if held_out else 0}

    # Under `accelerate launch` every rank samples its share of ρ's samples; normalisation fits on all of them.
    state = training_args.distributed_state
    # On this rank's GPU, unless DeepSpeed / FSDP shard the model because a whole copy may not fit there.
    sharded = state.distributed_type in (DistributedType.DEEPSPEED, DistributedType.FSDP)
    device = "cpu" if sharded else inference_device()
    rho_prompts, rho_completions = rho_samples or ([], [])
    if script_args.normalize_samples and not rho_prompts:
        # ρ answers the label prompts (the reward model's view of a query), wrapped in the task's prefix/suffix.
        prompts = list(dict.fromkeys(labels["prompt"]))[: script_args.normalize_samples]
        prompts = (prompts * (script_args.normalize_samples // len(prompts) + 1))[: script_args.normalize_samples]
        prompts = prompts[state.process_index :: state.num_processes]
        policy = load_policy(model_name, tokenizer).to(device)
        set_seed(training_args.seed + state.process_index * RANK_SEED_STRIDE)
        rho_prompts = prompts
        rho_completions = sample_rho_for_normalization(policy, tokenizer, prompts, task, script_args.sampling_batch_size)
        del policy
    if script_args.normalize_samples:
        metrics["normalize_before"] = normalize_reward_model(model.to(device), tokenizer, rho_prompts, rho_completions)

    peft_config = get_peft_config(model_args) if model_args is not None else None
    if peft_config is not None:
        peft_config.task_type = "SEQ_CLS"  # PEFT then trains the score head (modules_to_save) with the adapters
    trainer = BestOfKRewardTrainer(
        model, args=training_args, train_dataset=train, eval_dataset=held_out, processing_class=tokenizer,
        peft_config=peft_config,
    )
    log_under_output_dir(trainer)
    if held_out is not None:
        metrics.update({f"{k}_before": v for k, v in trainer.evaluate().items() if k.startswith("eval_")})
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    if held_out is not None:
        metrics.update(trainer.evaluate())

    if script_args.normalize_samples:
        metrics["normalize_after"] = normalize_reward_model(trainer.model, tokenizer, rho_prompts, rho_completions)

    trainer.save_model(training_args.output_dir)  # every rank: ZeRO-3 gathers the shards collectively
    if trainer.accelerator.is_main_process:
        tokenizer.save_pretrained(training_args.output_dir)
        reward_model_card(
            training_args.output_dir, model_name, task.name, script_args.dataset_name or None, metrics,
            k=len(labels[0]["completions"]), epochs=training_args.num_train_epochs,
            learning_rate=training_args.learning_rate,
        )
        Path(training_args.output_dir, "reward_metrics.json").write_text(json.dumps(metrics, indent=2))
        Path(training_args.output_dir, "trainer_log.json").write_text(json.dumps(trainer.state.log_history, indent=2))
        save_held_out_labels(held_out, training_args.output_dir)  # PPO checks the reward against them
        print(json.dumps(metrics, indent=2))
    return metrics


def main(argv: list[str] | None = None, prog: str | None = None) -> dict:
    script_args, training_args, model_args = parse_args_and_config(
        (RewardScriptArguments, BestOfKRewardConfig, ModelConfig), argv, RENAMED, prog
    )
    return train_reward_model(script_args, training_args, model_args=model_args)
