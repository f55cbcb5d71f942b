"""Every folder a stage saves has a model card: the real base model, the task, the data size, the paper, the
stage's metrics, and a loading snippet that runs against the folder as written. The reward stage also logs to
TensorBoard under its output_dir and loads its models without a MISSING/UNEXPECTED report."""

import contextlib
import io
import json
import re
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from ziegler_trl.model_cards import EMBEDDED_BASE_MODEL, base_model_id, policy_card, sft_card

TEXT = "It was late. She smiled at the happy dog and laughed. The rain fell all night and the road was wet."


def snippet(card_path: Path) -> str:
    (code,) = re.findall(r"```python\n(.*?)```", card_path.read_text(), flags=re.S)
    return code


def run_snippet(card_path: Path) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(snippet(card_path), str(card_path), "exec"), {})
    return out.getvalue()


@pytest.fixture(scope="module")
def reward_run(tmp_path_factory, tiny_model_dir):
    """The reward stage on a tiny model with report_to=tensorboard, run from an empty working directory."""
    import os

    from ziegler_trl.reward import BestOfKRewardConfig
    from ziegler_trl.reward.pipeline import RewardScriptArguments, train_reward_model

    root = tmp_path_factory.mktemp("reward-run")
    labels = root / "labels.jsonl"
    rows = [{"prompt": "The cat sat.", "completions": ["good good", "bad", "fine day", "no"], "best": i % 4}
            for i in range(8)]
    labels.write_text("".join(json.dumps(r) + "\n" for r in rows))
    script = RewardScriptArguments(task="sentiment", dataset_name=str(labels), eval_fraction=0.25,
                                   normalize_samples=4, sampling_batch_size=4)
    args = BestOfKRewardConfig(output_dir=str(root / "rm"), per_device_train_batch_size=2,
                               per_device_eval_batch_size=2, max_steps=2, report_to="tensorboard", logging_steps=1,
                               save_strategy="no", seed=0, dataloader_pin_memory=False)
    cwd = os.getcwd()
    os.chdir(root)
    try:
        from trl import ModelConfig

        metrics = train_reward_model(script, args, model_args=ModelConfig(model_name_or_path=str(tiny_model_dir)))
    finally:
        os.chdir(cwd)
    return root, metrics


def test_reward_card_names_base_data_metrics_and_paper(reward_run, tiny_model_dir):
    root, metrics = reward_run
    card = ModelCard.load(root / "rm" / "README.md")
    assert card.data.pipeline_tag == "text-classification" and "reward-model" in card.data.tags
    assert card.data.base_model is None  # a local folder with no card of its own: no Hub id to name
    text = card.text
    assert f"Base model: the local model `{tiny_model_dir}`." in text
    assert "Task: `sentiment`" in text and "arxiv.org/abs/1909.08593" in text and "ziegler2019finetuning" in text
    assert "Data: 6 best-of-4 comparisons for training from `" in text and "Held out: 2 comparisons" in text
    assert f"| held-out accuracy | {metrics['eval_accuracy']:.3f} |" in text
    gain, bias = metrics["normalize_after"]
    assert f"gain {gain:.4f}" in text and f"bias {bias:.4f}" in text
    assert "None" not in text and "trained with Reward" not in text


def test_reward_card_snippet_runs(reward_run):
    root, _ = reward_run
    rewards = json.loads(run_snippet(root / "rm" / "README.md"))
    assert len(rewards) == 1 and isinstance(rewards[0], float)


def test_reward_stage_logs_to_tensorboard_under_output_dir(reward_run):
    """The stage evaluates before training; the events still land in output_dir/runs, none in ./runs."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    root, _ = reward_run
    assert not (root / "runs").exists()
    (run,) = (root / "rm" / "runs").iterdir()
    events = EventAccumulator(str(run))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"eval/accuracy", "train/loss"} <= tags
    assert len(events.Scalars("eval/accuracy")) == 2  # before and after training


def test_reward_models_load_without_a_load_report(reward_run, tiny_model_dir, capfd):
    from ziegler_trl import load_reward_model, load_tokenizer

    root, _ = reward_run
    tokenizer = load_tokenizer(str(tiny_model_dir), padding_side="right")
    capfd.readouterr()
    load_reward_model(str(tiny_model_dir), tokenizer)  # a fresh head on a causal LM
    normalised = load_reward_model(str(root / "rm"), tokenizer)  # the trained, normalised folder
    err = capfd.readouterr().err
    assert "LOAD REPORT" not in err and "UNEXPECTED" not in err and "MISSING" not in err
    assert normalised.score.bias.item() == pytest.approx(normalised.config.reward_bias)


def test_policy_card_from_the_policy_stage(tiny_model_dir, tmp_path):
    from trl import ModelConfig

    from ziegler_trl.ppo import ZieglerPPOConfig
    from ziegler_trl.ppo.pipeline import PolicyScriptArguments, train_policy

    data = tmp_path / "books.jsonl"
    data.write_text("".join(json.dumps({"text": f"{TEXT} Day {i}."}) + "\n" for i in range(8)))
    args = ZieglerPPOConfig(output_dir=str(tmp_path / "ppo"), task="sentiment", per_device_train_batch_size=4,
                            num_ppo_epochs=1, total_episodes=8, response_length=20, save_strategy="no",
                            report_to="none", log_completions=False, kl_control="adaptive", kl_target=3.0,
                            whiten_rewards=False)  # 4 per minibatch: below the paper's whitening minimum
    script = PolicyScriptArguments(reward_scorer="vader", dataset_name=str(data))
    trainer = train_policy(script, args, ModelConfig(model_name_or_path=str(tiny_model_dir)))
    card = ModelCard.load(tmp_path / "ppo" / "README.md")
    assert card.data.pipeline_tag == "text-generation" and "ppo" in card.data.tags
    last = [e for e in trainer.state.log_history if "objective/kl" in e][-1]
    text = card.text
    assert f"| final KL(π‖ρ) per response (nats) | {last['objective/kl']:.3f} |" in text
    assert f"| final β | {last['objective/kl_coef']:.3f} |" in text
    assert f"| final reward score | {last['objective/scores']:.3f} |" in text
    assert "Data: 8 prompts from `" in text and "Reward: the built-in scorer `vader`" in text
    assert "adaptive β from 0.15 toward a KL target of 3 nats" in text and "1909.08593" in text
    assert run_snippet(tmp_path / "ppo" / "README.md").endswith("\n")  # it ran to its print


def test_sft_card_and_the_base_model_chain(tiny_model_dir, tmp_path):
    """An SFT model of the embedded model names SmolLM2; a policy trained from that SFT folder names it too."""
    from ziegler_trl.sft import SFTScriptArguments, ZieglerSFTConfig, train_sft

    data = tmp_path / "tldr.jsonl"
    post = {"subreddit": "pets", "title": "dog", "post": "The happy dog ran in the park all day.", "summary": "dog ran"}
    data.write_text("".join(json.dumps(post) + "\n" for _ in range(4)))
    args = ZieglerSFTConfig(output_dir=str(tmp_path / "sft"), max_steps=1, per_device_train_batch_size=2,
                            report_to="none", save_strategy="no", logging_steps=1,
                            max_length=640, dataloader_pin_memory=False)
    trainer = train_sft(SFTScriptArguments(model_name_or_path=str(tiny_model_dir), task="tldr",
                                           dataset_name=str(data)), args)
    card_path = tmp_path / "sft" / "README.md"
    text = card_path.read_text()
    assert "Data: 4 demonstrations from `" in text and "Task: `tldr`" in text and "1909.08593" in text
    loss = [e["train_loss"] for e in trainer.state.log_history if "train_loss" in e][-1]
    assert f"| final training loss | {loss:.3f} |" in text
    assert run_snippet(card_path).endswith("\n")

    assert base_model_id("embedded") == EMBEDDED_BASE_MODEL
    sft_card(tmp_path / "sft", "embedded", "tldr", str(data), 4, args, trainer.state.log_history)
    card = ModelCard.load(card_path)
    assert card.data.base_model == EMBEDDED_BASE_MODEL
    assert f"Base model: [{EMBEDDED_BASE_MODEL}](https://huggingface.co/{EMBEDDED_BASE_MODEL})" in card.text
    assert base_model_id(str(tmp_path / "sft")) == EMBEDDED_BASE_MODEL

    from ziegler_trl.ppo import ZieglerPPOConfig

    policy_dir = tmp_path / "policy"
    policy_dir.mkdir()
    ppo_args = ZieglerPPOConfig(output_dir=str(policy_dir), report_to="none")
    policy_card(policy_dir, str(tmp_path / "sft"), "tldr", "webis/tldr-17", 10, ppo_args, [], "a reward model")
    card = ModelCard.load(policy_dir / "README.md")
    assert card.data.base_model == EMBEDDED_BASE_MODEL and card.data.datasets == "webis/tldr-17"
    assert f"the local model `{tmp_path / 'sft'}`, itself from [{EMBEDDED_BASE_MODEL}]" in card.text
