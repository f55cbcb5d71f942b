"""bf16 where the hardware has it, fp32 elsewhere: bf16 on a CPU without bf16 units is 7-30x slower."""

from __future__ import annotations

import warnings

import torch


def cuda_bf16_available() -> bool:
    """The default of every ziegler-trl config's `bf16`: on with a bf16-capable CUDA GPU, off otherwise."""
    return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())


def warn_if_slow_bf16(bf16: bool) -> None:
    """Warn when bf16 is asked for on a machine that will run it on the CPU."""
    if bf16 and not torch.cuda.is_available():
        warnings.warn(
            "bf16=True without a CUDA GPU runs bf16 on the CPU, which is 7-30x slower than fp32 on CPUs without "
            "bf16 units; pass --bf16 false (or bf16: false in the YAML).",
            stacklevel=2,
        )
