"""Run a recipe in a fresh process with a fault injected: a SIGKILL at a given step, a crash while a checkpoint is
being written, or a NaN loss.

The fault is injected by a small launcher (written by :func:`launch_with_fault`) that patches one function, then
runs the recipe as ``__main__``, so the recipes carry no test hooks. The patched function is named as
``module:Qualified.name``; it is counted on every call and the fault fires on call number ``at``:

- ``kill``: the process SIGKILLs itself at the start of that call (a pre-empted job: nothing is flushed);
- ``nan``: that call and every later one return NaN for the loss (a tensor is multiplied by NaN, a tuple's
  first element is replaced);
- ``crash_in_checkpoint``: ``os.replace`` dies when it is about to publish the checkpoint of step ``at``, after
  every file of that checkpoint has been written (the latest possible moment; any earlier crash leaves less);
- ``threads_at_exit``: no fault; once the recipe returns, the names of the threads still alive are printed to
  stderr as ``THREADS_AT_EXIT [...]`` (threads alive at interpreter exit can abort it).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import ROOT, recipe_env

LAUNCHER = r'''
import importlib, json, os, runpy, signal, sys
spec = json.loads(sys.argv[1])
sys.argv = sys.argv[2:]
fault, at = spec["fault"], int(spec["at"])
if fault == "threads_at_exit":
    pass  # no fault: report below which threads outlive the recipe's main()
elif fault == "crash_in_checkpoint":
    real_replace = os.replace
    def replace(src, dst):
        if os.path.basename(str(dst)) == f"step_{at:08d}":
            os._exit(137)  # every file of the checkpoint is on disk; it has not been published yet
        real_replace(src, dst)
    os.replace = replace
else:
    module_name, qualname = spec["target"].split(":")
    owner = importlib.import_module(module_name)
    *path, attr = qualname.split(".")
    for part in path:
        owner = getattr(owner, part)
    real = getattr(owner, attr)
    calls = {"n": 0}
    def patched(*args, **kwargs):
        calls["n"] += 1
        if fault == "kill" and calls["n"] == at:
            os.kill(os.getpid(), signal.SIGKILL)
        out = real(*args, **kwargs)
        if fault == "nan" and calls["n"] >= at:
            if isinstance(out, tuple):
                return (float("nan"), *out[1:])
            return out * float("nan")
        return out
    setattr(owner, attr, patched)
runpy.run_path(sys.argv[0], run_name="__main__")
if fault == "threads_at_exit":
    names = sorted(open(f"/proc/self/task/{t}/comm").read().strip() for t in os.listdir("/proc/self/task"))
    print("THREADS_AT_EXIT " + json.dumps(names), file=sys.stderr, flush=True)
'''


TORCHRUN_2 = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]


def launch_with_fault(tmp_path: Path, script: str, fault: str, at: int, *args: str, target: str | None = None,
                      timeout: int = 600, launcher: list[str] | None = None) -> subprocess.CompletedProcess:
    """Run ``recipes/<script> args`` with ``fault`` injected at call/step ``at`` (see the module docstring);
    ``launcher`` replaces ``python`` (e.g. ``TORCHRUN_2``)."""
    path = tmp_path / "fault_launcher.py"
    path.write_text(LAUNCHER)
    spec = json.dumps({"fault": fault, "at": at, "target": target})
    cmd = [*(launcher or [sys.executable]), str(path), spec, str(ROOT / "recipes" / script), *args]
    return subprocess.run(cmd, env=recipe_env(), capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def checkpoint_names(output_dir: Path) -> list[str]:
    root = Path(output_dir) / "checkpoints"
    return sorted(p.name for p in root.iterdir()) if root.is_dir() else []
