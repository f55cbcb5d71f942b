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

from .models import load_policy, load_tokenizer
from .precision import cuda_bf16_available, warn_if_slow_bf16
from .tasks import TaskSpec, format_query, get_task, load_task_texts


def demonstrations(
    task: str | TaskSpec, source: str, tokenizer: PreTrainedTokenizerBase, limit: int | None = None
) -> Dataset:
    """Prompt–completion rows from a summarization source (JSONL with the task's fields, or a Hub dataset)."""
    task = get_task(task)
    if not task.reference_field:
        raise ValueError(f"task {task.name!r} has no reference texts to imitate; use 'tldr' or 'cnndm'")
    rows = load_task_texts(task, source, limit=limit)
    prompts, completions = [], []
    for text, reference in zip(rows["text"], rows["reference"]):
        query = format_query(text, task, tokenizer)
        if query is not None:
            prompts.append(tokenizer.decode(query.ids))
            completions.append(" " + " ".join(reference.split()) + task.truncate_token)
    if not prompts:
        raise ValueError(f"{source}: no row formed a {task.name} query")
    return Dataset.from_dict({"prompt": prompts, "completion": completions})


@dataclass
class ZieglerSFTConfig(SFTConfig):
    """TRL's SFTConfig with the precision default of every ziegler-trl config (TRL's own turns bf16 on, which
    fails on a CPU-only machine and is 7-30x slower on CPUs without bf16 units)."""

    bf16: bool | None = field(
        default=None,
        metadata={"help": "bf16 mixed precision. None: on when a CUDA GPU supports bf16, off otherwise."},
    )

    def __post_init__(self):
        if self.bf16 is None:
            self.bf16 = cuda_bf16_available() and not self.fp16
        super().__post_init__()


@dataclass
class SFTScriptArguments:
    model_name_or_path: str = field(default="embedded", metadata={"help": "Model to fine-tune ('embedded' = SmolLM2)."})
    task: str = field(default="tldr", metadata={"help": "Summarization task whose prompt format is used: tldr, cnndm."})
    data: str = field(default="", metadata={"help": "Demonstrations: a JSONL file with the task's fields or a Hub id."})
    limit: int | None = field(default=None, metadata={"help": "Use at most this many demonstrations."})


def train_sft(script_args: SFTScriptArguments, args: SFTConfig) -> SFTTrainer:
    """Fine-tune on demonstrations and save a causal-LM folder usable as ρ (`model_name_or_path` of PPO/RM)."""
    if not script_args.data:
        raise SystemExit("--data is required: a JSONL file of demonstrations or a Hub dataset id")
    warn_if_slow_bf16(args.bf16)
    tokenizer = load_tokenizer(script_args.model_name_or_path, padding_side="right")
    dataset = demonstrations(script_args.task, script_args.data, tokenizer, script_args.limit)
    trainer = SFTTrainer(
        model=load_policy(script_args.model_name_or_path, tokenizer),
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
    trainer.save_model(args.output_dir)
    tokenizer.save_pretrained(args.output_dir)
    return trainer
