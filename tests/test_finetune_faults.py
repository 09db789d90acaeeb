"""recipes/finetune.py (transformers Trainer) under faults: SIGKILL after a checkpoint, a kill while a checkpoint is
being written, a NaN loss. The Trainer writes ``checkpoint-N`` in place, so 'latest' must skip a half-written one
(hfssl.checkpointing.latest_trainer_checkpoint); a NaN loss must stop the run (hfssl.finetune.non_finite)."""

from __future__ import annotations

import json
import signal

import pytest
import torch
from safetensors.torch import load_file

from conftest import run_recipe
from faults import launch_with_fault
from test_finetune_recipe import tiny_bert, write_reviews  # noqa: F401  (tiny_bert is a fixture)

STEP_FN = "transformers.trainer:Trainer.training_step"  # once per batch; evaluation never calls it
SAVE_STATE_FN = "transformers.trainer_callback:TrainerState.save_to_json"  # the last file of each checkpoint-N
LOSS_FN = "transformers.trainer:Trainer.compute_loss"  # training and evaluation batches


def _args(tiny_bert, files, out, *extra):
    return ["--model_name_or_path", str(tiny_bert), "--output_dir", str(out), "--train_file", files["train"],
            "--validation_file", files["validation"], "--sentence1_key", "review", "--label_column", "sentiment",
            "--do_predict", "false", "--max_steps", "8", "--checkpointing_steps", "4", "--checkpoints_total_limit", "0",
            "--learning_rate", "3e-3", "--per_device_train_batch_size", "4", "--warmup_steps", "0",
            "--report_to", "none", "--max_seq_length", "48", "--logging_steps", "2", *extra]


@pytest.fixture(scope="module")
def reviews(tmp_path_factory):
    return write_reviews(tmp_path_factory.mktemp("reviews"))


@pytest.fixture(scope="module")
def straight(tiny_bert, reviews, tmp_path_factory):
    out = tmp_path_factory.mktemp("finetune-faults") / "straight"
    run_recipe("finetune.py", *_args(tiny_bert, reviews, out))
    return out


def _checkpoints(out):
    root = out / "checkpoints"
    return sorted(p.name for p in root.iterdir()) if root.is_dir() else []


def _assert_same_training(a, b):
    """Bit-equal weights at the last step, and the same logged loss curve. 12 rows in batches of 4 over 8 steps:
    checkpoint-4 sits one batch into the second epoch, so resuming replays the sampler's order, skips that batch
    and restores the dropout RNG; any slip there changes the weights."""
    wa = load_file(a / "checkpoints" / "checkpoint-8" / "model.safetensors")
    wb = load_file(b / "checkpoints" / "checkpoint-8" / "model.safetensors")
    assert wa.keys() == wb.keys()
    for name in wa:
        assert torch.equal(wa[name], wb[name]), name
    curve = lambda d: [(e["step"], e["loss"]) for e in json.loads(
        (d / "checkpoints" / "checkpoint-8" / "trainer_state.json").read_text())["log_history"] if "loss" in e]
    assert curve(a) == curve(b) and len(curve(a)) == 4


def test_sigkill_after_a_checkpoint_then_resume_latest_equals_uninterrupted(tiny_bert, reviews, straight, tmp_path):
    out = tmp_path / "killed"
    proc = launch_with_fault(tmp_path, "finetune.py", "kill", 6, *_args(tiny_bert, reviews, out), target=STEP_FN)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    assert _checkpoints(out) == ["checkpoint-4"] and not (out / "model.safetensors").exists()
    run_recipe("finetune.py", *_args(tiny_bert, reviews, out, "--resume_from_checkpoint", "latest"))
    _assert_same_training(straight, out)


def test_kill_while_writing_a_checkpoint_resumes_from_the_previous_complete_one(tiny_bert, reviews, straight, tmp_path):
    out = tmp_path / "half"
    # Killed just before trainer_state.json of checkpoint-8 (the Trainer's last file): weights, optimizer,
    # scheduler and RNG state are on disk, so transformers' get_last_checkpoint would pick this folder.
    proc = launch_with_fault(tmp_path, "finetune.py", "kill", 2, *_args(tiny_bert, reviews, out), target=SAVE_STATE_FN)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    half = out / "checkpoints" / "checkpoint-8"
    assert (half / "optimizer.pt").is_file() and not (half / "trainer_state.json").exists()
    resumed = run_recipe("finetune.py", *_args(tiny_bert, reviews, out, "--resume_from_checkpoint", "latest"))
    assert "Skipping incomplete checkpoint" in resumed.stderr and "missing trainer_state.json" in resumed.stderr
    assert "checkpoint-4" in resumed.stderr.split("Skipping incomplete checkpoint")[1].splitlines()[0]
    _assert_same_training(straight, out)  # checkpoint-8 was rewritten by the resumed run


def test_non_finite_loss_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(tiny_bert, reviews, tmp_path):
    out = tmp_path / "nan"
    # compute_loss calls: steps 1-4, one evaluation batch at step 4, then step 5 (call 6) goes NaN. Logging is every
    # 2 steps, so the Trainer's own next move would be to log nan at step 6 and go on to save checkpoint-8.
    proc = launch_with_fault(tmp_path, "finetune.py", "nan", 6, *_args(tiny_bert, reviews, out), target=LOSS_FN)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "error: Training loss became non-finite" in proc.stderr and "at step 6" in proc.stderr
    assert "Lower --learning_rate" in proc.stderr and "--resume_from_checkpoint latest" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert _checkpoints(out) == ["checkpoint-4"] and not (out / "model.safetensors").exists()
    last = out / "checkpoints" / "checkpoint-4"
    assert all(torch.isfinite(t).all() for t in load_file(last / "model.safetensors").values())
