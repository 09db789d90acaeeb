"""Profile a window of training steps: where the time goes, and whether the accelerator waits for the host.

Tokens/s and MFU say how far a run is from the hardware limit, not why. The two usual reasons are slow kernels (the
operator table ranks them) and a device that sits idle while the host loads data, waits on a host-device sync or
launches kernels one by one. The second is invisible in the operator table; the *busy fraction* shows it: the union
of the device's kernel intervals over the wall time of the profiled steps. A compute-bound step is near 100%; each
point below is time the loop, not the model, costs.

The profiler is Accelerate's (``ProfileKwargs``); a recipe calls :func:`step_profiler`, then ``start()``, ``step()``
once per optimizer step and ``stop()``. The window skips the first steps (``torch.compile``, autotuning and
allocator growth happen there) and records ``active_steps`` of them, then writes, per process:

- ``trace_rank{i}.json``: a Chrome trace (open it in https://ui.perfetto.dev or ``chrome://tracing``);
- ``summary_rank{i}.json``: milliseconds per step, the device busy fraction, the heaviest operators;
- the operator table, printed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from accelerate.utils import ProfileKwargs
from torch.autograd import DeviceType

from .config import ConfigError

STEP_PREFIX = "ProfilerStep"  # events() names the steps "ProfilerStep*"; the trace, "ProfilerStep#N"


def busy_fraction(intervals: list[tuple[float, float]], start: float, end: float) -> float:
    """The share of ``[start, end)`` covered by at least one of ``intervals`` (overlaps count once)."""
    if end <= start:
        raise ValueError(f"empty window [{start}, {end})")
    covered, reach = 0.0, start
    for lo, hi in sorted(intervals):
        lo, hi = max(lo, reach), min(hi, end)
        if hi > lo:
            covered += hi - lo
            reach = hi
    return covered / (end - start)


def summarize(events, device_type: str, top: int = 15) -> dict:
    """Per-step wall time, the device busy fraction (``None`` on CPU) and the heaviest operators of a profile.

    ``events`` is ``prof.events()`` of a finished window; the steps are its ``ProfilerStep`` ranges.
    """
    steps = [e for e in events if e.name.startswith(STEP_PREFIX)]
    if not steps:
        raise ValueError("the profile holds no ProfilerStep range: was step() called inside the window?")
    start = min(e.time_range.start for e in steps)
    end = max(e.time_range.end for e in steps)
    summary = {"steps": len(steps), "wall_ms_per_step": (end - start) / 1e3 / len(steps), "device_busy_fraction": None}
    if device_type != "cpu":
        kernels = [(e.time_range.start, e.time_range.end) for e in events if e.device_type != DeviceType.CPU]
        summary["device_busy_fraction"] = busy_fraction(kernels, start, end) if kernels else 0.0
    key = "self_cpu_time_total" if device_type == "cpu" else "self_device_time_total"
    ops = [e for e in events.key_averages() if not e.key.startswith(STEP_PREFIX)]
    ops.sort(key=lambda e: getattr(e, key), reverse=True)
    summary["top_ops"] = [{"name": e.key, "calls": e.count, "self_ms_per_step": getattr(e, key) / 1e3 / len(steps)}
                          for e in ops[:top]]
    return summary


def step_profiler(accelerator, output_dir: str | Path, *, skip_steps: int, active_steps: int, steps_left: int,
                  print_fn=print) -> torch.profiler.profile:
    """A profiler for ``accelerator``'s process that skips ``skip_steps`` optimizer steps, warms up on one (not
    recorded) and records the next ``active_steps``, then reports them as the module docstring says. Only the local
    main process prints. Raises ConfigError when the window does not fit in the ``steps_left`` to train."""
    if skip_steps < 0 or active_steps < 1:
        raise ConfigError(f"profile_skip_steps must be >= 0 and profile_steps >= 1, got {skip_steps} and {active_steps}.")
    if skip_steps + 1 + active_steps > steps_left:
        raise ConfigError(f"{skip_steps} skipped + 1 warm-up + {active_steps} profiled steps do not fit in the {steps_left} "
                          f"steps left to train: lower --profile_skip_steps or --profile_steps.")
    output_dir = Path(output_dir)
    device_type, process_index = accelerator.device.type, accelerator.process_index
    if not accelerator.is_local_main_process:
        print_fn = lambda *_: None  # noqa: E731 - every process writes its trace; one prints

    def report(prof: torch.profiler.profile) -> None:
        output_dir.mkdir(parents=True, exist_ok=True)
        trace = output_dir / f"trace_rank{process_index}.json"
        partial = trace.with_name(trace.name + ".partial")
        prof.export_chrome_trace(str(partial))
        os.replace(partial, trace)
        summary = summarize(prof.events(), device_type)
        (output_dir / f"summary_rank{process_index}.json").write_text(json.dumps(summary, indent=2))
        sort = "self_cpu_time_total" if device_type == "cpu" else "self_device_time_total"
        busy = summary["device_busy_fraction"]
        print_fn(prof.key_averages().table(sort_by=sort, row_limit=15, max_name_column_width=60))
        print_fn(f"profiled {summary['steps']} steps: {summary['wall_ms_per_step']:.1f} ms per step"
                 + (f", {device_type} busy {busy:.1%} of the time" if busy is not None else "")
                 + f"; trace in {trace}")

    activities = ["cpu"] + ([device_type] if device_type == "cuda" else [])
    kwargs = ProfileKwargs(activities=activities, on_trace_ready=report,
                           schedule_option={"skip_first": skip_steps, "wait": 0, "warmup": 1,
                                            "active": active_steps, "repeat": 1})
    return kwargs.build()
