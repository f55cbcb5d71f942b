"""Adam as TensorFlow 1.x computes it, with ε outside the bias correction.

    PyTorch:    θ ← θ − lr/(1−β₁ᵗ) · m / (√v/√(1−β₂ᵗ) + ε)
    TensorFlow: θ ← θ − lr·√(1−β₂ᵗ)/(1−β₁ᵗ) · m / (√v + ε)

TensorFlow's form equals PyTorch's with ε scaled by 1/√(1−β₂ᵗ), which is huge at t = 1 (×31.6 for β₂ = 0.999)
and damps the first updates. The paper's code ran on TensorFlow; the ICLR 2021 reproduction ("The N Implementation
Details of RLHF with PPO") found PyTorch's Adam makes much larger early updates with the same hyperparameters.
"""

from __future__ import annotations

import math

import torch


class TFAdam(torch.optim.Optimizer):
    def __init__(self, params, lr: float = 1e-5, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-5,
                 weight_decay: float = 0.0):
        if weight_decay != 0.0:
            raise ValueError("TFAdam implements the paper's plain Adam: weight_decay must be 0")
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                state = self.state[param]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(param)
                    state["exp_avg_sq"] = torch.zeros_like(param)
                state["step"] += 1
                m, v = state["exp_avg"], state["exp_avg_sq"]
                m.mul_(beta1).add_(param.grad, alpha=1 - beta1)
                v.mul_(beta2).addcmul_(param.grad, param.grad, value=1 - beta2)
                t = state["step"]
                step_size = group["lr"] * math.sqrt(1 - beta2**t) / (1 - beta1**t)
                param.addcdiv_(m, v.sqrt().add_(group["eps"]), value=-step_size)
        return loss


def tf_adam_for(model: torch.nn.Module, args) -> TFAdam:
    """TFAdam over `model`'s trainable parameters with a Trainer config's learning rate, betas, ε and weight decay
    (what `create_optimizer` builds when the config's `tf_adam` is on)."""
    return TFAdam(
        [p for p in model.parameters() if p.requires_grad], lr=args.learning_rate,
        betas=(args.adam_beta1, args.adam_beta2), eps=args.adam_epsilon, weight_decay=args.weight_decay,
    )
