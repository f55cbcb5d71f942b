"""The supervised stage (InstructGPT's stage 1; the paper's "supervised" baselines): TRL's SFTTrainer on
demonstrations in the task's prompt format, so the fine-tuned model can serve as ρ and initial π of PPO.

A demonstration is `{"prompt": the policy's view of the query (task prefix/suffix, truncation rules),
"completion": " " + reference summary + "\\n"}` — the reference ends with the task's truncate token, so samples of
the SFT model end where the PPO truncation expects.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from datasets import Dataset
from transformers import PreTrainedTokenizerBase
from trl import SFTConfig, SFTTrainer

from .checkpoints import AtomicCheckpoints
from .errors import UserInputError, check_input_file
from .model_cards import sft_card
from .models import load_policy, load_tokenizer
from .non_finite import NonFiniteGuard
from .precision import cuda_bf16_available, warn_if_slow_bf16
from .reporting import log_under_output_dir
from .tasks import TaskSpec, format_query, get_task, load_task_texts


def demonstrations(
    task: str | TaskSpec,
    source: str,
    tokenizer: PreTrainedTokenizerBase,
    limit: int | None = None,
    split: str = "train",
) -> Dataset:
    """Prompt–completion rows from a summarization source (JSONL with the task's fields, or a Hub dataset)."""
    task = get_task(task)
    if not task.reference_field:
        raise UserInputError(f"task {task.name!r} has no reference texts to imitate; use 'tldr' or 'cnndm'")
    rows = load_task_texts(task, source, split=split, limit=limit)
    prompts, completions = [], []
    for text, reference in zip(rows["text"], rows["reference"]):
        query = format_query(text, task, tokenizer)
        if query is not None:
            prompts.append(tokenizer.decode(query.ids))
            completions.append(" " + " ".join(reference.split()) + task.truncate_token)
    if not prompts:
        raise UserInputError(f"{source}: no row formed a {task.name} query")
    return Dataset.from_dict({"prompt": prompts, "completion": completions})


@dataclass
class ZieglerSFTConfig(SFTConfig):
    """TRL's SFTConfig with the precision and checkpointing defaults of every ziegler-trl config (TRL's own turn bf16
    on, which fails on a CPU-only machine and is 7-30x slower on CPUs without bf16 units, and activation
    checkpointing, which costs compute a small model on a CPU does not need to save memory)."""

    bf16: bool | None = field(
        default=None,
        metadata={"help": "bf16 mixed precision. None: on when a CUDA GPU supports bf16, off otherwise."},
    )
    gradient_checkpointing: bool | None = field(
        default=None,
        metadata={"help": "Deprecated alias of transformers' `activation_checkpointing` (off by default here, where "
                  "TRL's SFTConfig turns it on: recomputing activations is 1.3-2x slower on CPU)."},
    )

    def __post_init__(self):
        if self.bf16 is None:
            self.bf16 = cuda_bf16_available() and not self.fp16
        super().__post_init__()


class ZieglerSFTTrainer(AtomicCheckpoints, NonFiniteGuard, SFTTrainer):
    """TRL's SFTTrainer whose checkpoints appear only when complete and which stops with `NonFiniteError` on a
    NaN/inf gradient or weight."""


# Option names of earlier releases → today's (accepted with a warning, argv and YAML).
RENAMED = {"data": "dataset_name"}


@dataclass
class SFTScriptArguments:
    model_name_or_path: str = field(default="embedded", metadata={"help": "Model to fine-tune ('embedded' = SmolLM2)."})
    task: str = field(default="tldr", metadata={"help": "Summarization task whose prompt format is used: tldr, cnndm."})
    dataset_name: str = field(
        default="",
        metadata={"help": "Demonstrations: 'builtin' (the package's sample), a JSONL file with the task's fields, or "
                  "a Hub id."},
    )
    dataset_train_split: str = field(default="train", metadata={"help": "Split of a Hub dataset."})
    limit: int | None = field(default=None, metadata={"help": "Use at most this many demonstrations."})


def train_sft(script_args: SFTScriptArguments, args: SFTConfig) -> ZieglerSFTTrainer:
    """Fine-tune on demonstrations and save a causal-LM folder usable as ρ (`model_name_or_path` of PPO/RM)."""
    if not script_args.dataset_name:
        raise UserInputError("--dataset_name is required: a JSONL file of demonstrations or a Hub dataset id")
    check_input_file(script_args.dataset_name, "--dataset_name")
    get_task(script_args.task)
    warn_if_slow_bf16(args.bf16)
    tokenizer = load_tokenizer(script_args.model_name_or_path, padding_side="right")
    dataset = demonstrations(script_args.task, script_args.dataset_name, tokenizer, script_args.limit,
                             script_args.dataset_train_split)
    trainer = ZieglerSFTTrainer(
        model=load_policy(script_args.model_name_or_path, tokenizer),
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    log_under_output_dir(trainer)
    trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
    trainer.save_model(args.output_dir)
    if trainer.accelerator.is_main_process:
        tokenizer.save_pretrained(args.output_dir)
        sft_card(args.output_dir, script_args.model_name_or_path, script_args.task, script_args.dataset_name,
                 len(dataset), args, trainer.state.log_history)
    return trainer


def main(argv: list[str] | None = None, prog: str | None = None) -> SFTTrainer:
    from .config_files import parse_args_and_config

    script_args, args = parse_args_and_config((SFTScriptArguments, ZieglerSFTConfig), argv, RENAMED, prog)
    return train_sft(script_args, args)
