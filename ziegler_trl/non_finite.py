"""A NaN/inf anywhere it can land stops the run: gradients before the optimizer step, weights after it.

The Trainer itself clips a NaN gradient norm into all-NaN gradients, steps, and saves the result as a checkpoint;
the run then dies later, far from the cause (a `generate` that samples from NaN probabilities). `NonFiniteGuard`
checks at the two places a bad value enters the weights, each with one fused reduction and one host sync per
optimizer step (the failure path alone looks at tensors one by one, to name them):

* gradients, once accumulation and the DDP all-reduce have made them whole: their total L2 norm, the one the Trainer
  computes anyway to clip and log it, is computed here before clipping, checked, and used to clip, so the numbers
  are the Trainer's own. Under FSDP the Trainer's global (all-shard) norm is checked before the step, without naming
  the parameter; DeepSpeed applies its step inside `backward`, so its global norm is checked after it, and the weight
  check catches what landed. With fp16 loss scaling an inf gradient is the scaler's signal to skip the step, not a
  fault: only the weights are checked.
* trainable weights after every optimizer step (their total L2 norm, through which any NaN or inf propagates),
  before the Trainer can log, evaluate or save them. Under sharding every process checks its shard and the verdict is
  all-reduced.

Both reductions are `torch.nn.utils.get_total_norm`: fused per device and dtype. An L2 norm also overflows for values
beyond ~1e19, which counts as non-finite too. `benchmarks/non_finite_guard.py` measures the cost per PPO update.
"""

from __future__ import annotations

import math
import os

import torch
from accelerate.utils import DistributedType
from transformers import TrainerCallback

from .checkpoints import last_complete_checkpoint

MAX_NAMED = 5  # parameters named in the message; the count says how many more


class NonFiniteError(FloatingPointError):
    """Training produced NaN/inf; the run stopped before any optimizer step or checkpoint used the bad values."""


def _local_tensor(param: torch.Tensor) -> torch.Tensor:
    """The part of a parameter this process holds: a DeepSpeed ZeRO-3 partition, an FSDP2 DTensor's shard, or all."""
    if hasattr(param, "ds_tensor"):
        return param.ds_tensor
    to_local = getattr(param, "to_local", None)
    return to_local() if callable(to_local) else param


def _is_dtensor(tensor: torch.Tensor | None) -> bool:
    return tensor is not None and callable(getattr(tensor, "to_local", None))


class _CheckWeightsAfterStep(TrainerCallback):
    def __init__(self, trainer: NonFiniteGuard):
        self.trainer = trainer

    def on_optimizer_step(self, args, state, control, **kwargs):
        self.trainer._check_weights()


class NonFiniteGuard:
    """Mixin for a `transformers.Trainer` subclass (listed before the Trainer class): stops with `NonFiniteError`,
    naming the parameter, when a gradient is non-finite before the optimizer step or a trainable weight after it."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.add_callback(_CheckWeightsAfterStep(self))

    # ----- gradients -----

    @property
    def _sharded(self) -> bool:
        return self.is_deepspeed_enabled or self.is_fsdp_enabled

    def _computes_grad_norm_here(self, model) -> bool:
        """Whole, unscaled gradients on this process (single process or DDP): the guard computes their norm itself."""
        if self._sharded or self.accelerator.scaler is not None:
            return False
        if self.accelerator.distributed_type == DistributedType.XLA or self._has_mixed_mesh_grads(model):
            return False
        return not any(_is_dtensor(p.grad) for p in model.parameters())

    def _checked_grad_norm(self, model, max_norm: float) -> torch.Tensor:
        """The gradients' total L2 norm (as `torch.nn.utils.clip_grad_norm_` computes it), checked, then the clip."""
        params = [p for p in model.parameters() if p.grad is not None]
        total = torch.nn.utils.get_total_norm([p.grad for p in params])
        if not torch.isfinite(total):
            self._stop_on_non_finite_tensors(model, "gradient", [(p, p.grad) for p in params], grad_norm=total.item())
        if max_norm > 0:
            torch.nn.utils.clip_grads_with_norm_(params, max_norm, total)
        return total

    def _check_global_grad_norm(self, grad_norm) -> None:
        """A sharded run: the norm the Trainer got from FSDP or DeepSpeed covers every shard."""
        if grad_norm is None or self.accelerator.scaler is not None:
            return
        value = float(grad_norm.item() if hasattr(grad_norm, "item") else grad_norm)
        if math.isfinite(value):
            return
        stopped = None
        if self.is_deepspeed_enabled:  # its step already ran: name the weights it spoilt, if any
            self._check_weights()
            stopped = "after DeepSpeed's step (applied inside backward), before any checkpoint used it"
        self._stop_on_non_finite("gradients (global norm over all shards; the parameter is not named)",
                                 stopped=stopped, grad_norm=value)

    def _clip_grad_norm(self, model):
        if self._computes_grad_norm_here(model):
            return self._checked_grad_norm(model, self.args.max_grad_norm)
        grad_norm = super()._clip_grad_norm(model)
        self._check_global_grad_norm(grad_norm)
        return grad_norm

    def _get_grad_norm(self, model, grad_norm=None):
        if grad_norm is None:  # not clipped (max_grad_norm = 0): the Trainer measures the norm here instead
            if self._computes_grad_norm_here(model):
                grad_norm = self._checked_grad_norm(model, 0.0)
            else:
                grad_norm = super()._get_grad_norm(model)
                self._check_global_grad_norm(grad_norm)
        return super()._get_grad_norm(model, grad_norm=grad_norm)

    # ----- weights -----

    def _check_weights(self) -> None:
        params = [p for p in self.model_wrapped.parameters() if p.requires_grad]
        tensors = [_local_tensor(p) for p in params]
        norm = torch.nn.utils.get_total_norm(tensors)
        bad = ~torch.isfinite(norm)
        if self._sharded and self.accelerator.num_processes > 1:
            bad = self.accelerator.reduce(bad.float().to(self.accelerator.device), reduction="sum") > 0
        if bad:
            self._stop_on_non_finite_tensors(self.model_wrapped, "weight", list(zip(params, tensors)),
                                             stopped="before any checkpoint or later step used them",
                                             weight_norm=norm.item())

    # ----- stopping -----

    def _stop_on_non_finite_tensors(self, model, kind: str, pairs, stopped: str | None = None, **values: float):
        names = {id(p): name for name, p in model.named_parameters()}
        unwrapped = self.accelerator.unwrap_model(model)  # its names, without a wrapper's "module." prefix
        names.update({id(p): name for name, p in unwrapped.named_parameters()})
        bad = [names.get(id(param), f"<parameter {i}>") for i, (param, tensor) in enumerate(pairs)
               if not torch.isfinite(torch.linalg.vector_norm(tensor))]
        if bad:
            listed = ", ".join(bad[:MAX_NAMED]) + (f" and {len(bad) - MAX_NAMED} more" if len(bad) > MAX_NAMED else "")
            where = f"{kind} of {listed}"
        elif not self._sharded:
            where = f"{kind}s (each one's norm is finite, their total overflows float32)"
        else:
            where = f"{kind}s held by another process's shard"
        self._stop_on_non_finite(where, stopped=stopped, **values)

    def _stop_on_non_finite(self, where: str, stopped: str | None = None, **values: float) -> None:
        output_dir = self.args.output_dir
        last = last_complete_checkpoint(output_dir) if os.path.isdir(output_dir) else None
        details = ", ".join(f"{k}={v}" for k, v in values.items())
        raise NonFiniteError(
            f"Non-finite values in the {where} at global step {self.state.global_step} ({details}); training stopped "
            f"{stopped or 'before any optimizer step used them'}. Last good checkpoint: {last or 'none saved yet'}"
        )
