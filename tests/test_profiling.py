"""hfssl.profiling: the busy fraction against a naive count, the step window, and what a profiled run writes."""

import json
import random
from types import SimpleNamespace

import pytest
import torch
from torch.autograd import DeviceType
from torch.autograd.profiler_util import EventList, FunctionEvent

from hfssl.config import ConfigError
from hfssl.profiling import busy_fraction, step_profiler, summarize

CPU_PROCESS = SimpleNamespace(device=torch.device("cpu"), process_index=0, is_local_main_process=True)


def naive_busy_fraction(intervals, start, end):
    """Count the unit cells of [start, end) that some interval covers (integer end points only)."""
    return sum(any(lo <= t < hi for lo, hi in intervals) for t in range(start, end)) / (end - start)


def test_busy_fraction_equals_a_naive_count():
    rng = random.Random(0)
    for _ in range(200):
        start, end = rng.randint(0, 20), rng.randint(21, 60)
        intervals = [(lo, lo + rng.randint(0, 15)) for lo in (rng.randint(-10, 70) for _ in range(rng.randint(0, 8)))]
        assert busy_fraction(intervals, start, end) == pytest.approx(naive_busy_fraction(intervals, start, end))


def test_busy_fraction_counts_overlaps_once_and_clips_to_the_window():
    assert busy_fraction([(0, 10), (5, 15), (5, 6)], 0, 20) == 0.75
    assert busy_fraction([(-5, 5), (15, 30)], 0, 20) == 0.5
    assert busy_fraction([], 0, 20) == 0.0
    with pytest.raises(ValueError):
        busy_fraction([(0, 1)], 5, 5)


def _event(i, name, start, end, device_type=DeviceType.CPU):
    return FunctionEvent(i, name, thread=0, start_us=start, end_us=end, device_type=device_type, stack=[])


def test_summarize_measures_the_device_between_the_first_and_last_step():
    # Two 100 us steps; kernels cover 30 + 50 us of them, and one kernel before the first step is not counted.
    events = EventList([
        _event(0, "ProfilerStep#4", 1000, 1100), _event(1, "ProfilerStep#5", 1100, 1200),
        _event(2, "aten::mm", 1010, 1020), _event(3, "aten::mm", 1110, 1120),
        _event(4, "gemm_kernel", 900, 1030, DeviceType.CUDA), _event(5, "gemm_kernel", 1120, 1170, DeviceType.CUDA),
    ], use_device="cuda")
    events._build_tree()  # what the profiler does to the events it returns
    summary = summarize(events, "cuda")
    assert summary["steps"] == 2
    assert summary["wall_ms_per_step"] == pytest.approx(0.1)
    assert summary["device_busy_fraction"] == pytest.approx(0.4)
    assert summarize(events, "cpu")["device_busy_fraction"] is None
    with pytest.raises(ValueError, match="ProfilerStep"):
        summarize(EventList([_event(0, "aten::mm", 0, 1)]), "cpu")  # no step range: step() was never called


@pytest.mark.parametrize("skip, active, left", [(5, 5, 10), (0, 0, 10), (-1, 2, 10)])
def test_a_window_that_cannot_be_profiled_is_refused(tmp_path, skip, active, left):
    with pytest.raises(ConfigError):
        step_profiler(CPU_PROCESS, tmp_path, skip_steps=skip, active_steps=active, steps_left=left)


def test_profiles_the_steps_after_the_skipped_and_warm_up_ones(tmp_path):
    model = torch.nn.Linear(16, 16)
    printed = []
    profiler = step_profiler(CPU_PROCESS, tmp_path / "profile", skip_steps=2, active_steps=3, steps_left=8,
                             print_fn=printed.append)
    profiler.start()
    for _ in range(8):
        model(torch.randn(4, 16)).sum().backward()
        profiler.step()
    profiler.stop()

    trace = json.loads((tmp_path / "profile" / "trace_rank0.json").read_text())
    steps = sorted(e["name"] for e in trace["traceEvents"] if str(e.get("name")).startswith("ProfilerStep#"))
    assert steps == ["ProfilerStep#3", "ProfilerStep#4", "ProfilerStep#5"]  # 0-1 skipped, 2 warm-up
    summary = json.loads((tmp_path / "profile" / "summary_rank0.json").read_text())
    assert summary["steps"] == 3 and summary["wall_ms_per_step"] > 0 and summary["device_busy_fraction"] is None
    assert "aten::addmm" in {op["name"] for op in summary["top_ops"]}
    assert "aten::addmm" in printed[0] and printed[1].startswith("profiled 3 steps")
    assert not list((tmp_path / "profile").glob("*.partial"))
