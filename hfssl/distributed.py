"""Process-group set-up details that Accelerate leaves to the caller."""

from __future__ import annotations

import torch


def no_accelerator() -> bool:
    """True when no GPU/MPS/XPU is visible.

    Pass it as ``Accelerator(cpu=no_accelerator())``: Accelerate only turns the environment that ``torchrun`` sets
    (LOCAL_RANK, WORLD_SIZE) into a gloo process group when told it runs on CPU; otherwise two CPU processes
    silently train two independent models.
    """
    has_xpu = hasattr(torch, "xpu") and torch.xpu.is_available()
    return not (torch.cuda.is_available() or torch.backends.mps.is_available() or has_xpu)
