"""Model cards (README.md) for the folders the stages save: reward model, policy, SFT model.

Built with huggingface_hub's `ModelCard`/`ModelCardData`, the machinery under TRL's `generate_model_card`. TRL's own
templates do not serve here: they name the base model only when it is a Hub id (ρ = "embedded" is a local folder,
so the card said "None"), call every trainer by its `_name` ("trained with Reward") and show
`pipeline(model=hub_model_id)`, which is "None" for a folder never pushed. Ours name the real base model, the task,
the data and its size, the normalisation, the stage's headline metrics, the paper, and a loading snippet that runs
against the saved folder as written (tests/test_model_cards.py executes it).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from .errors import FILE_SUFFIXES
from .models import EMBEDDED

HUB_ID = re.compile(r"[\w.-]+(/[\w.-]+)?")
EMBEDDED_BASE_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
PAPER_ID = "1909.08593"
PAPER_CITATION = """@article{ziegler2019finetuning,
  title   = {Fine-Tuning Language Models from Human Preferences},
  author  = {Daniel M. Ziegler and Nisan Stiennon and Jeffrey Wu and Tom B. Brown and Alec Radford and Dario Amodei
             and Paul Christiano and Geoffrey Irving},
  journal = {arXiv preprint arXiv:1909.08593},
  year    = {2019}
}"""
TRL_CITATION = """@software{vonwerra2020trl,
  title  = {{TRL: Transformers Reinforcement Learning}},
  author = {von Werra, Leandro and Belkada, Younes and Tunstall, Lewis and Beeching, Edward and Thrush, Tristan and
            Lambert, Nathan and Huang, Shengyi and Rasul, Kashif and Gallouédec, Quentin},
  url    = {https://github.com/huggingface/trl},
  year   = {2020}
}"""


def base_model_id(name_or_path: str) -> str | None:
    """The Hub id a model descends from: 'embedded' → SmolLM2-135M-Instruct; a folder saved by a stage → the base
    model its card names; a local folder without one → None; anything else is taken as a Hub id."""
    if name_or_path == EMBEDDED:
        return EMBEDDED_BASE_MODEL
    folder = Path(name_or_path)
    if not folder.is_dir():
        return name_or_path
    card = folder / "README.md"
    if card.is_file():
        from huggingface_hub import ModelCard

        base = ModelCard.load(card).data.to_dict().get("base_model")
        return base if isinstance(base, str) else None
    return None


def _describe_base(name_or_path: str) -> str:
    hub_id = base_model_id(name_or_path)
    link = f"[{hub_id}](https://huggingface.co/{hub_id})" if hub_id else None
    if name_or_path == EMBEDDED:
        return f"{link} (ziegler-trl's `embedded` model)"
    if Path(name_or_path).is_dir():
        return f"the local model `{name_or_path}`" + (f", itself from {link}" if link else "")
    return link


def _hub_dataset(dataset: str | None) -> str | None:
    """`dataset` when it reads as a Hub dataset id (not a file, a URL or the package's built-in sample)."""
    if not dataset or dataset == "builtin" or Path(dataset).exists() or not HUB_ID.fullmatch(dataset):
        return None
    return None if Path(dataset).suffix in FILE_SUFFIXES else dataset


def _number(value: object, digits: int = 3) -> str:
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.{digits}f}"
    return "n/a" if value is None else str(value)


def write_model_card(
    folder: str | Path,
    *,
    title: str,
    summary: str,
    base_model: str,
    task: str | None,
    dataset: str | None,
    training: Sequence[str],
    metrics: Mapping[str, object],
    usage: str,
    tags: Sequence[str],
    pipeline_tag: str,
    extra: str = "",
) -> Path:
    """Write `folder/README.md` (YAML metadata + markdown) and return its path."""
    from huggingface_hub import ModelCard, ModelCardData

    data = ModelCardData(
        base_model=base_model_id(base_model),
        datasets=_hub_dataset(dataset),
        library_name="transformers",
        model_name=Path(folder).name,
        pipeline_tag=pipeline_tag,
        tags=["trl", "ziegler-trl", "rlhf", *tags],
    )
    lines = [
        "---", data.to_yaml(), "---", "",
        f"# {title}", "",
        f"{summary} Base model: {_describe_base(base_model)}."
        f"{f' Task: `{task}`.' if task else ''} Trained with ziegler-trl on "
        f"[TRL](https://github.com/huggingface/trl), following [Fine-Tuning Language Models from Human "
        f"Preferences](https://arxiv.org/abs/{PAPER_ID}) (Ziegler et al., 2019).", "",
        "## Quick start", "", "```python", usage.strip(), "```", "",
        "## Training", "", *[f"- {item}" for item in training], "",
        "## Results", "", "| metric | value |", "|---|---|",
        *[f"| {name} | {_number(value)} |" for name, value in metrics.items()], "",
    ]
    if extra:
        lines += [extra.strip(), ""]
    lines += ["## Citation", "", "```bibtex", PAPER_CITATION, "```", "", "```bibtex", TRL_CITATION, "```", ""]
    path = Path(folder) / "README.md"
    ModelCard("\n".join(lines)).save(path)
    return path


def _data_line(dataset: str | None, what: str, count: int | None) -> str:
    size = f"{count} {what}" if count is not None else what
    return f"Data: {size} from `{dataset}`" if dataset else f"Data: {size}"


def reward_model_card(
    folder: str | Path, base_model: str, task: str, dataset: str | None, metrics: Mapping[str, object], k: int,
    epochs: float, learning_rate: float,
) -> Path:
    """The card of a reward-model folder from `reward_metrics.json`'s contents (`train_reward_model`)."""
    gain, bias = metrics.get("normalize_after") or (None, None)
    folder_text = json.dumps(str(folder))
    usage = f"""
from ziegler_trl import load_reward_model, load_tokenizer
from ziegler_trl.reward import score_texts

tokenizer = load_tokenizer({folder_text}, padding_side="right")
reward_model = load_reward_model({folder_text}, tokenizer)  # restores the normalisation bias
rewards = score_texts(reward_model, tokenizer, ["It was a quiet morning."], [" The sun rose and we laughed."])
print(rewards.tolist())  # one normalised reward per (prompt, completion)
"""
    normalisation = (
        "## Normalisation\n\n"
        + (f"Rewards are normalised to mean 0 and standard deviation 1 on samples of ρ (the paper's rule), before and "
           f"after training: gain {_number(gain, 4)} is folded into the score head's weight and bias "
           f"{_number(bias, 4)} is stored as `reward_bias` in `config.json`. `ziegler_trl.load_reward_model` restores "
           "the bias; plain `AutoModelForSequenceClassification.from_pretrained` scores the same rewards minus "
           "that bias (differences between rewards, which is all PPO and the labelers use, are the same)."
           if gain is not None else "This reward model was not normalised (`normalize_samples` was 0).")
    )
    return write_model_card(
        folder,
        title=f"{Path(folder).name}: a best-of-{k} reward model",
        summary=f"A scalar reward model r(x, y) trained on best-of-{k} human-preference style comparisons.",
        base_model=base_model,
        task=task,
        dataset=dataset,
        training=[
            _data_line(dataset, f"best-of-{k} comparisons for training", metrics.get("num_train")),
            f"Held out: {metrics.get('num_eval', 0)} comparisons",
            f"Loss: −log softmax over the {k} rewards at the chosen completion; {epochs:g} epoch(s), "
            f"learning rate {learning_rate:g}",
        ],
        metrics={
            "held-out accuracy before training": metrics.get("eval_accuracy_before"),
            "held-out accuracy": metrics.get("eval_accuracy"),
            "chance accuracy": 1 / k,
            "normalisation gain": gain,
            "normalisation bias": bias,
        },
        usage=usage,
        tags=["reward-model", "best-of-k"],
        pipeline_tag="text-classification",
        extra=normalisation,
    )


def _last_update(log_history: Sequence[Mapping[str, object]]) -> Mapping[str, object]:
    updates = [entry for entry in log_history if "objective/kl" in entry]
    return updates[-1] if updates else {}


def policy_card(
    folder: str | Path, base_model: str, task: str | None, dataset: str | None, num_prompts: int | None, args,
    log_history: Sequence[Mapping[str, object]], reward: str,
) -> Path:
    """The card of a PPO policy folder from its `ZieglerPPOConfig` and the trainer's log history."""
    from .tasks import TASKS

    last = _last_update(log_history)
    spec = TASKS.get(task) if task else None
    # the run's sampling settings: its own, else its task's (as the trainer resolves them)
    temperature = getattr(args, "temperature", None) or (spec.temperature if spec else 1.0)
    length = getattr(args, "response_length", None) or (spec.response_length if spec else 24)
    folder_text = json.dumps(str(folder))
    usage = f"""
from ziegler_trl import load_policy, load_tokenizer

tokenizer = load_tokenizer({folder_text})
policy = load_policy({folder_text}, tokenizer)
inputs = tokenizer(["It was a quiet morning."], return_tensors="pt")
output = policy.generate(**inputs, do_sample=True, temperature={temperature}, max_new_tokens={length})
print(tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True))
"""
    kl_rule = (f"adaptive β from {args.init_kl_coef:g} toward a KL target of {args.kl_target:g} nats "
               f"(horizon {args.kl_horizon} episodes)" if args.kl_control == "adaptive"
               else f"fixed β = {args.init_kl_coef:g}")
    return write_model_card(
        folder,
        title=f"{Path(folder).name}: a policy fine-tuned with PPO",
        summary="A policy π trained with PPO to maximise R(x, y) = r(x, y) − β·log(π(y|x)/ρ(y|x)), where ρ is "
                "the base model and r the reward.",
        base_model=base_model,
        task=task,
        dataset=dataset,
        training=[
            _data_line(dataset, "prompts", num_prompts),
            f"Reward: {reward}",
            f"{args.total_episodes} episodes; PPO epochs per batch: {args.num_ppo_epochs}; learning rate "
            f"{args.learning_rate:g}; KL penalty: {kl_rule}",
        ],
        metrics={
            "final KL(π‖ρ) per response (nats)": last.get("objective/kl"),
            "final β": last.get("objective/kl_coef"),
            "final reward score": last.get("objective/scores"),
            "episodes": last.get("episodes", args.total_episodes),
        },
        usage=usage,
        tags=["ppo"],
        pipeline_tag="text-generation",
    )


def sft_card(
    folder: str | Path, base_model: str, task: str, dataset: str, num_demonstrations: int, args,
    log_history: Sequence[Mapping[str, object]],
) -> Path:
    """The card of a supervised (SFT) folder, a ρ for the reward and PPO stages."""
    from .tasks import TASKS

    losses = [entry["train_loss"] for entry in log_history if "train_loss" in entry]
    spec = TASKS[task]
    folder_text = json.dumps(str(folder))
    usage = f"""
import torch
from ziegler_trl import TASKS, format_query, load_policy, load_tokenizer

tokenizer = load_tokenizer({folder_text})
model = load_policy({folder_text}, tokenizer)
query = format_query("The council voted to reopen the old bridge. Work starts in May.", TASKS[{task!r}], tokenizer)
output = model.generate(torch.tensor([query.ids]), do_sample=True, temperature={spec.temperature},
                        max_new_tokens={spec.response_length})
print(tokenizer.decode(output[0, len(query.ids):], skip_special_tokens=True))
"""
    return write_model_card(
        folder,
        title=f"{Path(folder).name}: a supervised model for {task}",
        summary=f"A causal LM fine-tuned on reference summaries in the `{task}` task's prompt format (the paper's "
                "supervised baseline; InstructGPT's stage 1), usable as ρ for the reward and PPO stages.",
        base_model=base_model,
        task=task,
        dataset=dataset,
        training=[
            _data_line(dataset, "demonstrations", num_demonstrations),
            f"{args.num_train_epochs:g} epoch(s), learning rate {args.learning_rate:g}",
        ],
        metrics={"final training loss": losses[-1] if losses else None},
        usage=usage,
        tags=["sft"],
        pipeline_tag="text-generation",
    )
