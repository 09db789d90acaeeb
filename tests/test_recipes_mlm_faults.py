"""Fault injection on recipes/mlm.py: a crash in the middle of writing a checkpoint, and a non-finite loss.

The faults are injected by a small launcher written by the test (it patches hfssl, then runs the recipe as
__main__), so the recipe itself carries no test hooks.
"""

import json
import subprocess
import sys

import torch
from safetensors.torch import load_file

from conftest import ROOT, recipe_env, run_recipe
from test_recipes_mlm import TINY

LAUNCHER = """
import os, runpy, sys
import hfssl.checkpointing as ckpt
import hfssl.mlm.objective as objective
fault, at = sys.argv[1], int(sys.argv[2])
sys.argv = [sys.argv[3]] + sys.argv[4:]
if fault == "crash_in_checkpoint":
    real_replace = os.replace
    def replace(src, dst):
        if f"step_{at:08d}" in str(dst):
            os._exit(137)  # die after every file of the checkpoint is written, before it is published
        real_replace(src, dst)
    ckpt.os.replace = replace
elif fault == "nan_loss":
    real_forward = objective.MaskedLMObjective.forward
    calls = {"n": 0}
    def forward(self, *args, **kwargs):
        out = real_forward(self, *args, **kwargs)
        calls["n"] += 1
        return out * float("nan") if self.training and calls["n"] >= at else out
    objective.MaskedLMObjective.forward = forward
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def _launch(tmp_path, fault, at, *args):
    launcher = tmp_path / "launch.py"
    launcher.write_text(LAUNCHER)
    cmd = [sys.executable, str(launcher), fault, str(at), str(ROOT / "recipes" / "mlm.py"), *args]
    return subprocess.run(cmd, env=recipe_env(), capture_output=True, text=True, timeout=600, cwd=ROOT)


def test_crash_while_writing_a_checkpoint_resumes_from_the_previous_one(tmp_path, docs_text_file):
    args = ["--train_file", str(docs_text_file), "--max_steps", "30", "--checkpointing_steps", "10",
            "--eval_steps", "0", *TINY]
    out = tmp_path / "crashed"
    proc = _launch(tmp_path, "crash_in_checkpoint", 20, "--output_dir", str(out), *args)
    assert proc.returncode == 137, proc.stderr[-3000:]
    checkpoints = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert "step_00000010" in checkpoints and "step_00000020" not in checkpoints
    assert ".tmp-step_00000020" in checkpoints  # the half-published checkpoint is left aside, not used

    run_recipe("mlm.py", "--output_dir", str(tmp_path / "straight"), "--tokenizer_name",
               str(out / "checkpoints" / "tokenizer"), *args)
    run_recipe("mlm.py", "--output_dir", str(out), "--resume_from_checkpoint", "latest", *args)
    straight, resumed = load_file(tmp_path / "straight" / "model.safetensors"), load_file(out / "model.safetensors")
    for name in straight:
        assert torch.equal(straight[name], resumed[name]), name
    assert not (out / "checkpoints" / ".tmp-step_00000020").exists()


def test_non_finite_loss_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(tmp_path, docs_text_file):
    out = tmp_path / "nan"
    args = ["--train_file", str(docs_text_file), "--output_dir", str(out), "--max_steps", "30",
            "--checkpointing_steps", "5", "--eval_steps", "0", *TINY]
    proc = _launch(tmp_path, "nan_loss", 8, *args)
    assert proc.returncode == 1
    assert "Training loss is nan" in proc.stderr and "Lower --learning_rate" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (out / "model.safetensors").exists()
    last = sorted((out / "checkpoints").glob("step_*"))[-1]
    assert last.name == "step_00000005"
    weights = load_file(last / "model.safetensors")
    assert all(torch.isfinite(t).all() for t in weights.values())
    progress = json.loads((last / "hfssl_progress.json").read_text())
    assert progress["step"] == 5
