"""Sign checks on the real path: the KL penalty in the rewards the rollout builds, and the reward against the
held-out labels the reward stage saves, by a one-sided exact binomial test."""

import json
import logging
import random

import pytest
import torch
from datasets import Dataset

from tests.conftest import tiny_llama
from tests.test_ppo_trainer import collect, make_trainer
from ziegler_trl.errors import UserInputError
from ziegler_trl.ppo import ZieglerPPOConfig
from ziegler_trl.ppo import rollout as rollout_module
from ziegler_trl.ppo.checks import KLProbe, LabelAgreement, check_reward_on_labels
from ziegler_trl.reward.held_out import HELD_OUT_LABELS_FILE

HAPPY, SAD = "happy good great day", "sad bad terrible day"


def swapped_per_token_rewards(monkeypatch):
    """The rollout's call with π and ρ swapped, as a slip at the call site would do."""
    original = rollout_module.per_token_rewards
    monkeypatch.setattr(rollout_module, "per_token_rewards",
                        lambda scores, logprobs, ref_logprobs, *rest: original(scores, ref_logprobs, logprobs, *rest))


@pytest.mark.parametrize("ref", ["copy", "other"], ids=["rho_is_pi_copy", "separate_rho"])
def test_pi_and_rho_swapped_at_the_rollouts_call_is_caught_before_the_first_step(tiny_tokenizer, tmp_path,
                                                                                 monkeypatch, ref):
    extra = {"ref_model": tiny_llama(tiny_tokenizer, seed=1)} if ref == "other" else {}
    trainer = make_trainer(tiny_tokenizer, tmp_path, **extra)  # built with the right call: nothing checked yet
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    swapped_per_token_rewards(monkeypatch)
    with pytest.raises(RuntimeError, match=r"KL penalty sign check failed: .* moved a token's reward by \+0\.1 "
                                           r"\(expected −β = -0\.1\); are π and ρ swapped"):
        trainer.train()
    assert trainer.state.global_step == 0
    for key, value in trainer.model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_the_probe_rides_along_and_leaves_the_rollouts_rewards_as_they_were(tiny_tokenizer, tmp_path):
    from ziegler_trl.ppo.core import per_token_rewards

    scores, logprobs = torch.tensor([1.0, -2.0, 0.5]), -torch.rand(3, 5)
    ref_logprobs, potentials = logprobs - torch.rand(3, 5), torch.randn(3, 6)
    for shaping in (None, potentials):
        probe = KLProbe.around(scores, logprobs, ref_logprobs, shaping)
        built = per_token_rewards(probe.scores, probe.logprobs, probe.ref_logprobs, 0.3, probe.potentials)
        rewards, kl_penalty = probe.check(*built, 0.3)
        expected = per_token_rewards(scores, logprobs, ref_logprobs, 0.3, shaping)
        assert torch.equal(rewards, expected[0]) and torch.equal(kl_penalty, expected[1])
        flipped = per_token_rewards(probe.scores, probe.ref_logprobs, probe.logprobs, 0.3, probe.potentials)
        with pytest.raises(RuntimeError, match="KL penalty sign check failed"):
            probe.check(*flipped, 0.3)
    trainer = make_trainer(tiny_tokenizer, tmp_path)
    rollout = collect(trainer, [trainer.train_dataset[i] for i in range(4)])
    assert rollout.rewards.shape == rollout.logprobs.shape == (4, 6)


def test_exact_binomial_tails():
    assert LabelAgreement(0, 20, 4).tail_probabilities() == (pytest.approx(0.75**20, rel=1e-12), 1.0)
    worse, better = LabelAgreement(7, 20, 4).tail_probabilities()
    assert better == pytest.approx(0.2142, abs=1e-4) and worse == pytest.approx(0.8982, abs=1e-4)
    assert LabelAgreement(20, 20, 2).tail_probabilities()[1] == pytest.approx(0.5**20, rel=1e-12)
    assert sum(LabelAgreement(3, 10, 3).tail_probabilities()) > 1  # both tails hold P(X = hits)


def labels_with_accuracy(hits: int, n: int = 20, k: int = 4) -> tuple[Dataset, callable]:
    """n best-of-k comparisons and a reward_fn (completion length) that picks the labeled best in `hits` of them."""
    rows = []
    for i in range(n):
        completions = ["x" * (j + 1) for j in range(k)]  # the reward's pick: the longest, index k - 1
        rows.append({"prompt": f"p{i}", "completions": completions, "best": k - 1 if i < hits else i % (k - 1)})
    return Dataset.from_list(rows), lambda prompts, completions: [len(c) for c in completions]


def test_reward_check_refuses_only_significantly_worse_than_chance(tiny_tokenizer, tmp_path, caplog):
    labels, reward = labels_with_accuracy(0)  # 0 of 20: p = 0.75^20 = 0.0032
    with pytest.raises(UserInputError, match=r"Reward check failed: the reward picks the labeled best in 0\.0% of 20 "
                                             r"held-out comparisons \(eval_labels\); chance 25\.0%, significantly "
                                             r"worse \(one-sided exact binomial p = 0\.00317 <= reward_check_alpha "
                                             r"0\.01\)\. Is its sign or its input format wrong\?"):
        make_trainer(tiny_tokenizer, tmp_path, reward_fn=reward, eval_labels=labels)
    labels, reward = labels_with_accuracy(1)  # 1 of 20 (5%): low, but p = 0.024 is no proof at α = 0.01
    with caplog.at_level(logging.WARNING):
        make_trainer(tiny_tokenizer, tmp_path, reward_fn=reward, eval_labels=labels)
    assert "not significantly better (one-sided exact binomial p = 0.997 > 0.01)" in caplog.text
    caplog.clear()
    labels, reward = labels_with_accuracy(12)
    with caplog.at_level(logging.INFO, logger="ziegler_trl.ppo.checks"):
        make_trainer(tiny_tokenizer, tmp_path, reward_fn=reward, eval_labels=labels)
    assert "Reward check passed: the reward picks the labeled best in 60.0% of 20" in caplog.text
    caplog.clear()
    labels, reward = labels_with_accuracy(0)
    with caplog.at_level(logging.WARNING):  # switched off: said in the log
        make_trainer(tiny_tokenizer, tmp_path, reward_fn=reward, eval_labels=labels, reward_check=False)
    assert "reward_check=False: the reward is not checked against held-out labels" in caplog.text
    with pytest.raises(ValueError, match=r"reward_check_alpha must be in \(0, 1\), got 0"):
        ZieglerPPOConfig(output_dir=str(tmp_path), reward_check_alpha=0)


def test_an_honest_weak_reward_model_passes(tiny_tokenizer, tmp_path):
    """A reward that picks the labeled best 36% of the time (chance 25%) on 30 sets of 20 best-of-4 labels: the old
    `accuracy <= chance` rule refused it on sets of chance-level luck; the binomial test never does."""
    rng = random.Random(0)
    hits_per_set = [sum(rng.random() < 0.36 for _ in range(20)) for _ in range(30)]
    assert min(hits_per_set) <= 5  # some sets at or below chance (5 of 20): the old rule's refusals
    trainer = make_trainer(tiny_tokenizer, tmp_path)
    for hits in hits_per_set:
        labels, _ = labels_with_accuracy(hits)
        # raises only when significantly worse than chance
        check_reward_on_labels(labels, "set", trainer.reward_source.score_comparisons, trainer.args.reward_check_alpha)


def happy_labels(n: int, seed: int = 0) -> Dataset:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        best = rng.randrange(2)
        completions = [SAD, SAD]
        completions[best] = HAPPY
        rows.append({"prompt": f"Day {i}.", "completions": completions, "best": best})
    return Dataset.from_list(rows)


@pytest.fixture(scope="module")
def reward_folder(tmp_path_factory, tiny_model_dir):
    """A reward model trained by the reward stage (happy beats sad), with its held-out split saved beside it."""
    from trl import ModelConfig

    from tests.test_reward_trainer import config
    from ziegler_trl.reward.pipeline import RewardScriptArguments, train_reward_model

    tmp = tmp_path_factory.mktemp("reward")
    args = config(tmp, max_steps=-1, num_train_epochs=2, learning_rate=1e-2, per_device_train_batch_size=8)
    metrics = train_reward_model(RewardScriptArguments(eval_fraction=0.125, normalize_samples=0), args,
                                 labels=happy_labels(160),
                                 model_args=ModelConfig(model_name_or_path=str(tiny_model_dir)))
    assert metrics["num_eval"] == 20 and metrics["eval_accuracy"] >= 0.9
    return tmp / "rm"


def test_the_reward_stage_saves_its_held_out_split(reward_folder):
    held_out = [json.loads(line) for line in (reward_folder / HELD_OUT_LABELS_FILE).read_text().splitlines()]
    assert len(held_out) == 20 and all(set(row) == {"prompt", "completions", "best"} for row in held_out)
    trained_on = json.loads((reward_folder / "reward_metrics.json").read_text())["num_train"]
    assert trained_on == 140


def test_a_negated_reward_model_is_refused_by_its_own_held_out_labels(reward_folder, tiny_tokenizer, tmp_path,
                                                                      caplog):
    import shutil

    from ziegler_trl.reward.model import load_reward_model

    with caplog.at_level(logging.INFO, logger="ziegler_trl.ppo.checks"):
        make_trainer(tiny_tokenizer, tmp_path, reward_fn=None, reward_model=str(reward_folder))
    assert "Reward check passed: the reward picks the labeled best in" in caplog.text
    assert str(reward_folder / HELD_OUT_LABELS_FILE) in caplog.text

    negated = tmp_path / "negated"
    shutil.copytree(reward_folder, negated)
    model = load_reward_model(str(negated), tiny_tokenizer)
    with torch.no_grad():
        model.score.weight.neg_()
    model.save_pretrained(negated)
    with pytest.raises(UserInputError, match=rf"significantly worse .*{HELD_OUT_LABELS_FILE}|"
                                             rf"{HELD_OUT_LABELS_FILE}.*significantly worse"):
        make_trainer(tiny_tokenizer, tmp_path, reward_fn=None, reward_model=str(negated))
    # explicit eval_labels win over the saved ones
    agreeing = Dataset.from_list([{**row, "best": 1 - row["best"]} for row in happy_labels(20, seed=5)])
    make_trainer(tiny_tokenizer, tmp_path, reward_fn=None, reward_model=str(negated), eval_labels=agreeing)


def test_held_out_labels_round_trip_and_a_run_without_them_leaves_none(tmp_path):
    from ziegler_trl.reward.held_out import load_held_out_labels, save_held_out_labels

    rows = happy_labels(3).add_column("labeler", ["a", "b", "c"])  # provenance columns are not kept
    path = save_held_out_labels(rows, tmp_path)
    labels, source = load_held_out_labels(tmp_path)
    assert source == path and labels.to_list() == happy_labels(3).to_list()
    save_held_out_labels(None, tmp_path)  # a rerun with eval_fraction 0: the old split is not this model's
    assert not path.exists() and load_held_out_labels(tmp_path) is None
