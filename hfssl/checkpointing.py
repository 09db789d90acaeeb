"""Crash-safe, resumable checkpoints on top of ``Accelerator.save_state`` / ``load_state``.

A checkpoint is written into a hidden temporary folder and renamed into place only once every process has
finished writing and the training-progress file is on disk. A run killed mid-write therefore leaves at most a
``.tmp-*`` folder that is never picked up by ``--resume_from_checkpoint latest`` and is cleaned on the next save.
Weights go through safetensors (``save_state(safe_serialization=True)``); Accelerate loads optimizer and RNG
state with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from accelerate import Accelerator
from accelerate.logging import get_logger

logger = get_logger(__name__)

CHECKPOINTS_DIR = "checkpoints"
PROGRESS_FILE = "hfssl_progress.json"
_STEP_DIR = re.compile(r"^step_(\d+)$")


class OutputDirError(ValueError):
    """The output folder cannot be used as asked; the message says what to do."""


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss; the last good checkpoint is kept."""


def prepare_output_dir(output_dir: str | Path, *, overwrite: bool, resuming: bool) -> Path:
    """Check, before any expensive work, that ``output_dir`` can be written and won't clobber a previous run."""
    path = Path(output_dir)
    if path.exists() and not path.is_dir():
        raise OutputDirError(f"output_dir {path} exists and is a file. Choose a folder path.")
    if path.is_dir() and any(path.iterdir()) and not (overwrite or resuming):
        raise OutputDirError(
            f"output_dir {path} already exists and is not empty. Pass --overwrite_output_dir to write into it, "
            f"--resume_from_checkpoint latest to continue that run, or choose another --output_dir."
        )
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".hfssl-write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as err:
        raise OutputDirError(f"output_dir {path} is not writable ({err.strerror}). Choose a folder you can write to.") from err
    return path


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """Complete checkpoints, oldest first. Temporary (half-written) folders are ignored."""
    root = Path(output_dir) / CHECKPOINTS_DIR
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        match = _STEP_DIR.match(child.name)
        if match and (child / PROGRESS_FILE).is_file():
            found.append((int(match.group(1)), child))
    return [p for _, p in sorted(found)]


def resolve_resume_path(resume_from_checkpoint: str | None, output_dir: str | Path) -> Path | None:
    """Turn ``--resume_from_checkpoint`` (a path or ``latest``) into a checkpoint folder, or None to start fresh."""
    if not resume_from_checkpoint:
        return None
    if resume_from_checkpoint == "latest":
        checkpoints = list_checkpoints(output_dir)
        return checkpoints[-1] if checkpoints else None
    path = Path(resume_from_checkpoint)
    if not (path / PROGRESS_FILE).is_file():
        raise OutputDirError(
            f"{path} is not a complete hfssl checkpoint (no {PROGRESS_FILE}). Pass a folder under "
            f"{Path(output_dir) / CHECKPOINTS_DIR}, or 'latest'."
        )
    return path


def save_checkpoint(accelerator: Accelerator, output_dir: str | Path, step: int, progress: dict[str, Any], keep: int) -> Path:
    """Write model, optimizer, scheduler, RNG and dataloader state plus ``progress`` atomically. All ranks call this."""
    root = Path(output_dir) / CHECKPOINTS_DIR
    final = root / f"step_{step:08d}"
    tmp = root / f".tmp-step_{step:08d}"
    if accelerator.is_main_process:
        for stale in root.glob(".tmp-*") if root.is_dir() else []:
            shutil.rmtree(stale, ignore_errors=True)
        tmp.mkdir(parents=True, exist_ok=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp), safe_serialization=True)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        progress_path = tmp / PROGRESS_FILE
        with open(progress_path, "w", encoding="utf-8") as handle:
            json.dump({"step": step, **progress}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync_dir(root)
        if keep > 0:
            for old in list_checkpoints(output_dir)[:-keep]:
                shutil.rmtree(old, ignore_errors=True)
        logger.info(f"Saved checkpoint {final}")
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator: Accelerator, path: str | Path) -> dict[str, Any]:
    """Restore everything ``save_checkpoint`` wrote and return the training progress dict."""
    accelerator.load_state(str(path))
    return json.loads((Path(path) / PROGRESS_FILE).read_text(encoding="utf-8"))


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
