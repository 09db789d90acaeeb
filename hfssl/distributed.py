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


def settle_gloo_workers(timeout: float = 5.0) -> None:
    """Wait, without the GIL, until the gloo worker threads are idle; call it right before ``end_training()``.

    A gloo worker frees each finished collective's work after signalling completion. A work launched during
    backward captures the thread-local state, which holds Python objects, so freeing it needs the GIL. If the main
    thread meanwhile frees the DDP model (when ``main()`` returns), the reducer drops the last reference to the
    process group, whose destructor joins that worker while holding the GIL: both wait forever. py-spy on a hung
    rank showed the worker in ``~AsyncBarrierWork`` -> ``~ThreadLocalState`` -> ``gil_scoped_acquire`` and the
    main thread in ``~ProcessGroupGloo`` -> ``std::thread::join``; a two-process run without this wait hung about
    once in ten. A fixed sleep only makes the race rarer, so this polls ``/proc`` until every ``pt_gloo_runloop``
    thread has been asleep with no context switch for a whole polling interval: parked on its empty work queue.
    A thread waiting for the GIL wakes every few milliseconds and a runnable one is not asleep, so neither
    passes. Where ``/proc`` or the named threads do not exist the wait is a fixed 0.1 s.
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        _wait_until_gloo_workers_park(timeout)


def _wait_until_gloo_workers_park(timeout: float) -> None:
    import time

    deadline = time.monotonic() + timeout
    previous = _gloo_worker_states()
    if not previous:  # no /proc, or a torch that does not name its gloo threads: the old fixed wait
        time.sleep(0.1)
        return
    while time.monotonic() < deadline:
        time.sleep(0.02)
        current = _gloo_worker_states()
        if current == previous and all(state == "S" for state, _ in current.values()):
            return
        previous = current


def _gloo_worker_states() -> dict[str, tuple[str, str]] | None:
    """{thread id: (scheduler state, voluntary context switches)} of this process's gloo workers; None without /proc."""
    import os

    tasks = "/proc/self/task"
    if not os.path.isdir(tasks):
        return None
    states = {}
    for tid in os.listdir(tasks):
        try:
            with open(f"{tasks}/{tid}/comm") as f:
                if f.read().strip() != "pt_gloo_runloop":
                    continue
            with open(f"{tasks}/{tid}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
        except OSError:  # the thread ended while we looked
            continue
        states[tid] = (fields["State"].split()[0], fields["voluntary_ctxt_switches"].strip())
    return states


def no_accelerator() -> bool:
    """True when no GPU/MPS/XPU is visible.

    Pass it as ``Accelerator(cpu=no_accelerator())``: Accelerate only turns the environment that ``torchrun`` sets
    (LOCAL_RANK, WORLD_SIZE) into a gloo process group when told it runs on CPU; otherwise two CPU processes
    silently train two independent models.
    """
    has_xpu = hasattr(torch, "xpu") and torch.xpu.is_available()
    return not (torch.cuda.is_available() or torch.backends.mps.is_available() or has_xpu)
