"""Process-group set-up details that Accelerate leaves to the caller."""

from __future__ import annotations

import torch

# Imported for its side effect, and it must happen before any process group exists (recipes import this module
# before they build their Accelerator). torch/distributed/nn/functional.py declares ``group=group.WORLD`` as
# default arguments; they are evaluated when the module is first imported, which DDP does lazily (through
# torch._dynamo, when a model is first wrapped). Imported after ``init_process_group`` those defaults hold the
# gloo process group for the life of the interpreter: ``destroy_process_group()`` cannot free it, its threads
# (gloo_tcp_loop, pt_gloo_runloop) outlive ``main()``, and tearing them down during interpreter finalization can
# abort the process (SIGABRT, "terminate called without an active exception"; the mechanism is described in
# https://github.com/pytorch/pytorch/pull/179291). Imported first, the defaults are None and the process group
# ends with ``accelerator.end_training()``. tests/test_distributed.py checks that no gloo thread outlives a run.
if torch.distributed.is_available():
    import torch.distributed.nn.functional  # noqa: F401


def settle_gloo_workers(seconds: float = 0.1) -> None:
    """Sleep briefly, without the GIL, after a run's last collective and before its process group is torn down.

    A gloo worker thread frees each finished collective's work after signalling completion, and freeing a work that
    holds a Python-owned tensor needs the GIL. If the main thread meanwhile frees the DDP model (when ``main()``
    returns), the reducer drops the last reference to the process group, whose destructor joins that worker while
    holding the GIL: both wait forever (seen as rare hangs of two-process test runs; py-spy showed both stacks).
    The sleep lets the worker finish first. Call it right before ``accelerator.end_training()``.
    """
    import time

    if torch.distributed.is_available() and torch.distributed.is_initialized():
        time.sleep(seconds)


def no_accelerator() -> bool:
    """True when no GPU/MPS/XPU is visible.

    Pass it as ``Accelerator(cpu=no_accelerator())``: Accelerate only turns the environment that ``torchrun`` sets
    (LOCAL_RANK, WORLD_SIZE) into a gloo process group when told it runs on CPU; otherwise two CPU processes
    silently train two independent models.
    """
    has_xpu = hasattr(torch, "xpu") and torch.xpu.is_available()
    return not (torch.cuda.is_available() or torch.backends.mps.is_available() or has_xpu)
