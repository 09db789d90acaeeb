"""recipes/image_finetune.py (transformers Trainer) under faults: a kill while a checkpoint is being written, a NaN
loss, and two processes. The same guards as recipes/finetune.py (tests/test_finetune_faults.py): 'latest' skips a
half-written checkpoint-N, a non-finite loss stops the run before it is saved, and torchrun on CPU trains one
data-parallel model rather than two independent ones."""

from __future__ import annotations

import json
import signal
import sys

import pytest
import torch
from safetensors.torch import load_file

from conftest import recipe_env, run_recipe
from faults import launch_with_fault

SAVE_STATE_FN = "transformers.trainer_callback:TrainerState.save_to_json"  # the last file of each checkpoint-N
LOSS_FN = "transformers.trainer:Trainer.compute_loss"


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    """A tiny ResNet config and its image processor; --from_scratch builds the classifier from them."""
    from transformers import ResNetConfig, ViTImageProcessor

    folder = tmp_path_factory.mktemp("tiny-image-model")
    ResNetConfig(embedding_size=8, hidden_sizes=[16, 32], depths=[1, 1], layer_type="basic").save_pretrained(folder)
    ViTImageProcessor(size={"height": 16, "width": 16}).save_pretrained(folder)
    return str(folder)


def _args(encoder, out, *extra):
    # Offline digits: 64 training images in batches of 16 = 4 steps per epoch, a checkpoint after each epoch.
    return ["--model_name_or_path", encoder, "--from_scratch", "--output_dir", str(out), "--max_train_samples", "64",
            "--per_device_train_batch_size", "16", "--num_train_epochs", "2", "--checkpoints_total_limit", "0",
            "--logging_steps", "1", "--report_to", "none", "--learning_rate", "1e-2", *extra]


def test_kill_while_writing_a_checkpoint_resumes_from_the_previous_complete_one(encoder, tmp_path):
    straight = tmp_path / "straight"
    run_recipe("image_finetune.py", *_args(encoder, straight))
    out = tmp_path / "half"
    proc = launch_with_fault(tmp_path, "image_finetune.py", "kill", 2, *_args(encoder, out), target=SAVE_STATE_FN)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    assert not (out / "checkpoints" / "checkpoint-8" / "trainer_state.json").exists()
    resumed = run_recipe("image_finetune.py", *_args(encoder, out, "--resume_from_checkpoint", "latest"))
    assert "Skipping incomplete checkpoint" in resumed.stderr
    wa = load_file(straight / "checkpoints" / "checkpoint-8" / "model.safetensors")
    wb = load_file(out / "checkpoints" / "checkpoint-8" / "model.safetensors")
    for name in wa:
        assert torch.equal(wa[name], wb[name]), name  # bit-equal: no dropout, deterministic collator and sampler


def test_non_finite_loss_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(encoder, tmp_path):
    out = tmp_path / "nan"
    # compute_loss: steps 1-4, then the epoch-1 evaluation (360 validation images / 256 = 2 batches), then step 5.
    proc = launch_with_fault(tmp_path, "image_finetune.py", "nan", 7, *_args(encoder, out), target=LOSS_FN)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "error: Training loss" in proc.stderr and "at step 5" in proc.stderr and "Traceback" not in proc.stderr
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["checkpoint-4"]
    assert json.loads((out / "checkpoints" / "checkpoint-4" / "trainer_state.json").read_text())["global_step"] == 4
    assert not (out / "model.safetensors").exists()


def test_torchrun_two_processes_split_the_data(encoder, tmp_path):
    out = tmp_path / "ddp"
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    run_recipe("image_finetune.py", *_args(encoder, out, "--num_train_epochs", "1"), launcher=launcher, timeout=300)
    state = json.loads((out / "checkpoints" / "checkpoint-2" / "trainer_state.json").read_text())
    # 64 images, 16 per process per step, 2 processes: one epoch is 2 steps (a lone process would need 4).
    assert state["global_step"] == 2 and state["epoch"] == pytest.approx(1.0)
    assert (out / "model.safetensors").is_file() and 0 <= json.loads((out / "all_results.json").read_text())["eval_accuracy"] <= 1


def test_checkpointing_steps_sets_the_save_and_eval_schedule_and_the_loss_falls(encoder, tmp_path):
    out = tmp_path / "steps"
    run_recipe("image_finetune.py", *_args(encoder, out, "--checkpointing_steps", "5", "--max_steps", "15"))
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["checkpoint-10", "checkpoint-15", "checkpoint-5"]
    history = json.loads((out / "checkpoints" / "checkpoint-15" / "trainer_state.json").read_text())["log_history"]
    assert [h["step"] for h in history if "eval_accuracy" in h] == [5, 10, 15]
    losses = [h["loss"] for h in history if "loss" in h]
    assert len(losses) == 15 and sum(losses[-3:]) / 3 < sum(losses[:3]) / 3
    # The saved model is the best evaluation's, not the last one's (as in recipes/finetune.py).
    best = max(h["eval_accuracy"] for h in history if "eval_accuracy" in h)
    state = json.loads((out / "checkpoints" / "checkpoint-15" / "trainer_state.json").read_text())
    assert state["best_metric"] == best
    assert json.loads((out / "all_results.json").read_text())["eval_accuracy"] == pytest.approx(best, abs=1e-9)
