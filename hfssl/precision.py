"""Which mixed precision a run uses: bf16 autocast only where the hardware computes bf16 natively.

bf16 autocast pays on GPUs (compute capability 8 and up) and on CPUs with AVX512-BF16 or AMX: there the MLM
recipe's BERT 4x256 step ran ~1.6x faster than in float32. On a CPU without native bf16 (AVX2 only, e.g. AMD
Zen 2, most laptops before 2022) oneDNN has no fast bf16 kernels and the same step ran ~28x *slower* (31 s vs
1.1 s a step, measured 2026-12-04 on a 2-core Zen 2 machine). So the text recipes default to ``auto``, which
:func:`resolve_mixed_precision` turns into ``bf16`` or ``no`` for the machine the run starts on, and an explicit
``bf16`` on such a CPU is kept but warned about.
"""

from __future__ import annotations

import warnings

import torch

CHOICES = ["auto", "no", "bf16", "fp16"]


def cpu_has_native_bf16() -> bool:
    """True when the CPU has bf16 instructions (AVX512-BF16 or AMX), which oneDNN's bf16 kernels need to be fast."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


def accelerator_has_native_bf16() -> bool | None:
    """bf16 support of the visible accelerator: True/False for CUDA/ROCm and XPU, None when there is none (CPU run).

    MPS counts as no bf16 here: its bf16 support depends on the macOS version, and float32 is the safe choice.
    """
    if torch.cuda.is_available():
        return torch.cuda.get_device_capability()[0] >= 8
    if hasattr(torch, "xpu") and torch.xpu.is_available():
        return True
    if torch.backends.mps.is_available():
        return False
    return None


def resolve_mixed_precision(requested: str) -> str:
    """``auto`` becomes ``bf16`` where bf16 is native (see module docstring), else ``no``; other values pass through.

    An explicit ``bf16`` on a CPU without native bf16 is honoured (the user may want the numerics) with a warning
    that says how much slower it is and what to pass instead.
    """
    on_device = accelerator_has_native_bf16()
    native = on_device if on_device is not None else cpu_has_native_bf16()
    if requested == "auto":
        return "bf16" if native else "no"
    if requested == "bf16" and on_device is None and not native:
        warnings.warn("--mixed_precision bf16 on a CPU without AVX512-BF16/AMX: bf16 is emulated there and training "
                      "runs many times slower than float32 (~28x for BERT on a 2-core AMD Zen 2). Pass "
                      "--mixed_precision auto (bf16 only where it is native) or no.", stacklevel=2)
    return requested
