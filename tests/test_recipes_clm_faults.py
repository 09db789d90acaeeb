"""Fault injection on recipes/clm.py through tests/faults.py: a crash in the middle of writing a checkpoint, and a
non-finite loss. (A SIGKILL between checkpoints is in test_recipes_clm.py.)"""

import json

import torch
from safetensors.torch import load_file

from conftest import run_recipe
from faults import checkpoint_names, launch_with_fault
from test_recipes_clm import TINY


def test_crash_while_writing_a_checkpoint_resumes_from_the_previous_one(tmp_path, docs_text_file):
    args = ["--train_file", str(docs_text_file), "--max_steps", "30", "--checkpointing_steps", "10",
            "--eval_steps", "0", *TINY]
    out = tmp_path / "crashed"
    proc = launch_with_fault(tmp_path, "clm.py", "crash_in_checkpoint", 20, "--output_dir", str(out), *args)
    assert proc.returncode == 137, proc.stderr[-3000:]
    names = checkpoint_names(out)
    assert "step_00000010" in names and "step_00000020" not in names
    assert ".tmp-step_00000020" in names  # the unpublished checkpoint is left aside, never resumed from

    run_recipe("clm.py", "--output_dir", str(tmp_path / "straight"), "--tokenizer_name",
               str(out / "checkpoints" / "tokenizer"), *args)
    run_recipe("clm.py", "--output_dir", str(out), "--resume_from_checkpoint", "latest", *args)
    straight, resumed = load_file(tmp_path / "straight" / "model.safetensors"), load_file(out / "model.safetensors")
    for name in straight:
        assert torch.equal(straight[name], resumed[name]), name
    assert ".tmp-step_00000020" not in checkpoint_names(out)


def test_non_finite_loss_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(tmp_path, docs_text_file):
    out = tmp_path / "nan"
    args = ["--train_file", str(docs_text_file), "--output_dir", str(out), "--max_steps", "30",
            "--checkpointing_steps", "5", "--eval_steps", "0", *TINY]
    proc = launch_with_fault(tmp_path, "clm.py", "nan", 8, *args, target="hfssl.clm.objective:CausalLMObjective.forward")
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Training loss is nan" in proc.stderr and "Lower --learning_rate" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (out / "model.safetensors").exists()
    last = sorted((out / "checkpoints").glob("step_*"))[-1]
    assert last.name == "step_00000005"
    assert all(torch.isfinite(t).all() for t in load_file(last / "model.safetensors").values())
    assert json.loads((last / "hfssl_progress.json").read_text())["step"] == 5
