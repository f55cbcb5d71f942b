"""NonFiniteGuard: a NaN gradient (with a finite loss) or a NaN weight stops PPO and reward training with
NonFiniteError naming the parameter, before any optimizer step or checkpoint uses it; otherwise the numbers are the
Trainer's own."""

import math

import pytest
import torch
from safetensors.torch import load_file

from tests.test_ppo_trainer import make_trainer
from tests.test_reward_trainer import comparisons, config
from ziegler_trl import BestOfKRewardTrainer
from ziegler_trl.ppo import NonFiniteError

POLICY_PARAM = "policy.model.layers.1.mlp.up_proj.weight"


def nan_gradient_at_step(trainer, param: torch.Tensor, step: int) -> None:
    """From optimizer step `step` on (1-based), `param`'s gradient is NaN while the loss stays finite."""
    param.register_hook(lambda grad: grad * math.nan if trainer.state.global_step + 1 >= step else grad)


def nan_weight_at_step(trainer, param: torch.Tensor, step: int) -> None:
    """Optimizer step `step` leaves one element of `param` NaN."""
    trainer.create_optimizer()

    def spoil(optimizer, args, kwargs):
        if trainer.state.global_step + 1 == step:
            with torch.no_grad():
                param.view(-1)[3] = math.nan

    trainer.optimizer.register_step_post_hook(spoil)


def assert_checkpoints_finite(out, expected):
    assert sorted(p.name for p in out.glob("checkpoint-*")) == expected
    for folder in expected:
        for file in ("model.safetensors", "value_head.safetensors"):
            for name, tensor in load_file(out / folder / file).items():
                assert torch.isfinite(tensor).all(), (folder, name)


@pytest.mark.parametrize("setting", [{}, {"max_grad_norm": 0.0},
                                     {"per_device_train_batch_size": 2, "gradient_accumulation_steps": 2}],
                         ids=["clipped", "unclipped", "accumulated"])
def test_nan_gradient_with_a_finite_loss_stops_ppo_before_the_step(tiny_tokenizer, tmp_path, setting):
    trainer = make_trainer(tiny_tokenizer, tmp_path, save_strategy="steps", save_steps=2, **setting)
    param = trainer.model.policy.model.layers[1].mlp.up_proj.weight
    nan_gradient_at_step(trainer, param, step=4)
    with pytest.raises(NonFiniteError, match=rf"Non-finite values in the gradient of {POLICY_PARAM} at global step 3 "
                                             r"\(grad_norm=nan\); training stopped before any optimizer step used "
                                             r"them\. Last good checkpoint: .*checkpoint-2$"):
        trainer.train()
    assert trainer.state.global_step == 3
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())  # the step never ran
    assert_checkpoints_finite(tmp_path / "ppo", ["checkpoint-2"])  # no checkpoint-4 from the bad step


def test_nan_weight_after_a_step_stops_ppo_before_the_checkpoint(tiny_tokenizer, tmp_path):
    trainer = make_trainer(tiny_tokenizer, tmp_path, save_strategy="steps", save_steps=2)
    nan_weight_at_step(trainer, trainer.model.value_head.weight, step=4)
    with pytest.raises(NonFiniteError, match=r"Non-finite values in the weight of value_head\.weight at global step 3 "
                                             r"\(weight_norm=nan\); training stopped before any checkpoint or later "
                                             r"step used them\. Last good checkpoint: .*checkpoint-2$"):
        trainer.train()
    assert_checkpoints_finite(tmp_path / "ppo", ["checkpoint-2"])


def test_the_guard_clips_with_the_trainers_own_numbers(tiny_tokenizer, tmp_path):
    """The guard's norm and clipping are `torch.nn.utils.clip_grad_norm_`'s, bit for bit."""
    trainer = make_trainer(tiny_tokenizer, tmp_path)
    model = trainer.model
    torch.manual_seed(0)
    reference = []
    for p in model.parameters():
        p.grad = torch.randn_like(p) * 3
        reference.append(torch.nn.Parameter(p.detach().clone()))
        reference[-1].grad = p.grad.clone()
    norm = torch.nn.utils.clip_grad_norm_(reference, 1.0)
    assert trainer._computes_grad_norm_here(model)
    assert torch.equal(trainer._clip_grad_norm(model), norm) and norm > 1.0
    for expected, p in zip(reference, model.parameters()):
        assert torch.equal(expected.grad, p.grad)


def test_reward_trainer_stops_on_a_nan_gradient_and_on_a_nan_weight(tmp_path, tiny_model_dir, tiny_tokenizer):
    def trainer():
        args = config(tmp_path, max_steps=4, save_strategy="steps", save_steps=2)
        return BestOfKRewardTrainer(str(tiny_model_dir), args=args, train_dataset=comparisons(16),
                                    processing_class=tiny_tokenizer)

    grads = trainer()
    nan_gradient_at_step(grads, grads.model.score.weight, step=3)
    with pytest.raises(NonFiniteError, match=r"gradient of score\.weight at global step 2 .*checkpoint-2$"):
        grads.train()
    weights = trainer()
    nan_weight_at_step(weights, weights.model.model.layers[0].self_attn.q_proj.weight, step=4)
    with pytest.raises(NonFiniteError, match=r"weight of model\.layers\.0\.self_attn\.q_proj\.weight at global step 3"):
        weights.train()
    out = tmp_path / "rm"
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2"]
    assert all(torch.isfinite(t).all() for t in load_file(out / "checkpoint-2" / "model.safetensors").values())


def test_a_nan_loss_stops_ppo_naming_the_loss_before_the_step(tiny_tokenizer, tmp_path):
    """The loss metrics are gathered once per update, yet a non-finite loss still stops the run before the optimizer
    step its gradients reach, named as the cause."""
    trainer = make_trainer(tiny_tokenizer, tmp_path)
    weights = [p.detach().clone() for p in trainer.model.parameters()]

    def spoil(module, args, output):  # the value head's training forwards from step 2 on (not the rollout's)
        return output * math.nan if torch.is_grad_enabled() and trainer.state.global_step >= 1 else output

    trainer.model.value_head.register_forward_hook(spoil)
    with pytest.raises(NonFiniteError, match=r"Non-finite values in the PPO loss at global step 1 \(policy_loss=[-0-9.e]+"
                                             r", value_loss=nan\); training stopped before any optimizer step used"):
        trainer.train()
    assert trainer.state.global_step == 1
    assert not all(torch.equal(w, p) for w, p in zip(weights, trainer.model.parameters()))  # step 1 ran
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
