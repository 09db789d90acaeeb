import json

import pytest
import torch
from accelerate import Accelerator

from hfssl.checkpointing import (OutputDirError, list_checkpoints, load_checkpoint, prepare_output_dir,
                                 resolve_resume_path, save_checkpoint)


def test_prepare_output_dir_refuses_to_clobber(tmp_path):
    out = tmp_path / "run"
    prepare_output_dir(out, overwrite=False, resuming=False)  # new folder: fine
    (out / "model.safetensors").write_text("x")
    with pytest.raises(OutputDirError, match="overwrite_output_dir"):
        prepare_output_dir(out, overwrite=False, resuming=False)
    prepare_output_dir(out, overwrite=True, resuming=False)
    prepare_output_dir(out, overwrite=False, resuming=True)
    assert (out / "model.safetensors").read_text() == "x"  # nothing was deleted


def test_unwritable_output_dir(tmp_path):
    # A path below a regular file cannot be created, even by root (CI runs as root, so chmod can't be used).
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    with pytest.raises(OutputDirError, match="not writable"):
        prepare_output_dir(blocker / "run", overwrite=False, resuming=False)


def test_output_dir_that_is_a_file(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(OutputDirError, match="is a file"):
        prepare_output_dir(f, overwrite=True, resuming=False)


def test_checkpoints_are_atomic_and_half_written_ones_are_ignored(tmp_path):
    accelerator = Accelerator(cpu=True)
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    model, optimizer = accelerator.prepare(model, optimizer)
    save_checkpoint(accelerator, tmp_path, 10, {"epoch": 0}, keep=2)
    # A run killed while writing step 20 leaves only a temporary folder behind.
    half = tmp_path / "checkpoints" / ".tmp-step_00000020"
    half.mkdir()
    (half / "model.safetensors").write_bytes(b"partial")
    # A folder with the right name but no progress file is incomplete too.
    (tmp_path / "checkpoints" / "step_00000030").mkdir()
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_00000010"]
    assert resolve_resume_path("latest", tmp_path).name == "step_00000010"
    with torch.no_grad():
        model.weight.add_(1.0)
    progress = load_checkpoint(accelerator, resolve_resume_path("latest", tmp_path))
    assert progress == {"step": 10, "epoch": 0}
    save_checkpoint(accelerator, tmp_path, 40, {"epoch": 1}, keep=2)
    save_checkpoint(accelerator, tmp_path, 50, {"epoch": 1}, keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_00000040", "step_00000050"]
    assert not half.exists()  # stale temporary folders are cleaned on the next save
    assert (tmp_path / "checkpoints" / "step_00000050" / "model.safetensors").is_file()


def test_resume_path_errors(tmp_path):
    assert resolve_resume_path(None, tmp_path) is None
    assert resolve_resume_path("latest", tmp_path) is None  # nothing yet: start fresh
    with pytest.raises(OutputDirError, match="not a complete hfssl checkpoint"):
        resolve_resume_path(str(tmp_path), tmp_path)


def test_latest_trainer_checkpoint_skips_incomplete_ones(tmp_path):
    from hfssl.checkpointing import latest_trainer_checkpoint, resolve_trainer_resume

    def checkpoint(step, drop=(), state_step=None):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        files = {"model.safetensors": "w", "optimizer.pt": "o", "scheduler.pt": "s", "rng_state.pth": "r",
                 "trainer_state.json": json.dumps({"global_step": step if state_step is None else state_step})}
        for name, text in files.items():
            if name not in drop:
                (folder / name).write_text(text)
        return folder

    assert latest_trainer_checkpoint(tmp_path / "none") == (None, {})
    good = checkpoint(10)
    no_optimizer = checkpoint(20, drop=["optimizer.pt"])  # Trainer would resume it with a fresh optimizer
    half = checkpoint(30, drop=["trainer_state.json", "rng_state.pth"])  # killed before the last files
    stale = checkpoint(40, state_step=35)  # trainer_state.json of another step
    (tmp_path / "checkpoint-50").write_text("not a folder")
    (tmp_path / "checkpoint-60").mkdir()
    (tmp_path / "checkpoint-60" / "trainer_state.json").write_text('{"global_st')  # cut off mid-write
    path, skipped = latest_trainer_checkpoint(tmp_path)
    assert path == good
    assert skipped[no_optimizer] == ["optimizer.pt"]
    assert skipped[half] == ["trainer_state.json", "rng_state.pth"]
    assert skipped[stale] == ["trainer_state.json says step 35"]
    assert skipped[tmp_path / "checkpoint-60"][0] == "a readable trainer_state.json"
    assert list(skipped) == [tmp_path / f"checkpoint-{n}" for n in (60, 40, 30, 20)]
    assert resolve_trainer_resume("latest", tmp_path) == str(good)
    assert resolve_trainer_resume(None, tmp_path) is None
    with pytest.raises(OutputDirError, match=r"not a complete Trainer checkpoint \(missing optimizer.pt\)"):
        resolve_trainer_resume(str(no_optimizer), tmp_path)
    sharded = checkpoint(70, drop=["model.safetensors"])
    (sharded / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"a": "model-1.safetensors",
                                                                                     "b": "model-2.safetensors"}}))
    (sharded / "model-1.safetensors").write_text("w")
    assert latest_trainer_checkpoint(tmp_path)[1][sharded] == ["model-2.safetensors"]
    (sharded / "model-2.safetensors").write_text("w")
    assert latest_trainer_checkpoint(tmp_path)[0] == sharded


def test_saving_a_step_again_never_leaves_it_missing(tmp_path, monkeypatch):
    """Re-saving an existing step (a finished run resumed) replaces it; a crash while the old copy is being
    removed leaves the new checkpoint in place and only a ``.tmp-`` folder, which the next save clears."""
    import hfssl.checkpointing as checkpointing

    accelerator = Accelerator(cpu=True)
    model = accelerator.prepare(torch.nn.Linear(3, 2))
    save_checkpoint(accelerator, tmp_path, 10, {"epoch": 0}, keep=0)
    save_checkpoint(accelerator, tmp_path, 10, {"epoch": 1}, keep=0)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_00000010"]
    assert load_checkpoint(accelerator, list_checkpoints(tmp_path)[0])["epoch"] == 1

    def crash(path, *args, **kwargs):
        raise KeyboardInterrupt("killed while deleting")

    monkeypatch.setattr(checkpointing.shutil, "rmtree", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(accelerator, tmp_path, 10, {"epoch": 2}, keep=0)
    monkeypatch.undo()
    assert load_checkpoint(accelerator, resolve_resume_path("latest", tmp_path))["epoch"] == 2
    save_checkpoint(accelerator, tmp_path, 20, {"epoch": 3}, keep=0)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step_00000010", "step_00000020"]
