"""Crash-safe, resumable checkpoints on top of ``Accelerator.save_state`` / ``load_state``.

A checkpoint is written into a hidden temporary folder and renamed into place only once every process has
finished writing and the training-progress file is on disk. A run killed mid-write therefore leaves at most a
``.tmp-*`` folder that is never picked up by ``--resume_from_checkpoint latest`` and is cleaned on the next save.
Weights go through safetensors (``save_state(safe_serialization=True)``); Accelerate loads optimizer and RNG
state with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import logging
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
_TRAINER_DIR = re.compile(r"^checkpoint-(\d+)$")


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
        probe = path / f".hfssl-write-test-{os.getpid()}"  # per process: ranks that probe at once never collide
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


def trainer_checkpoint_gaps(path: str | Path) -> list[str]:
    """What a ``transformers.Trainer`` ``checkpoint-N`` folder lacks to resume exactly; empty when complete.

    The Trainer writes ``checkpoint-N`` in place: weights, then optimizer, scheduler and RNG state, then
    ``trainer_state.json`` last. A run killed part-way leaves a folder that ``get_last_checkpoint`` still picks
    (it only looks at the name), and a checkpoint without ``optimizer.pt`` is silently resumed with a fresh
    optimizer. A checkpoint is complete here when its ``trainer_state.json`` parses and names step N, and the
    weights, optimizer, scheduler and RNG files are all present.
    """
    path = Path(path)
    gaps = []
    state_file = path / "trainer_state.json"
    match = _TRAINER_DIR.match(path.name)
    try:
        step = json.loads(state_file.read_text(encoding="utf-8")).get("global_step")
        if match and step != int(match.group(1)):
            gaps.append(f"trainer_state.json says step {step}")
    except (OSError, ValueError):
        gaps.append("trainer_state.json" if not state_file.exists() else "a readable trainer_state.json")
    index = path / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())
        except (ValueError, KeyError):
            shards = {"a readable model.safetensors.index.json"}
        gaps += sorted(s for s in shards if not (path / s).is_file())
    elif not (path / "model.safetensors").is_file():
        gaps.append("model.safetensors")
    gaps += [name for name in ("optimizer.pt", "scheduler.pt") if not (path / name).is_file()]
    if not list(path.glob("rng_state*.pth")):
        gaps.append("rng_state.pth")
    return gaps


def latest_trainer_checkpoint(checkpoints_dir: str | Path) -> tuple[Path | None, dict[Path, list[str]]]:
    """The newest complete Trainer ``checkpoint-N`` under ``checkpoints_dir`` (None if there is none), and the
    newer, incomplete ones it skipped with what each lacks (see :func:`trainer_checkpoint_gaps`)."""
    root = Path(checkpoints_dir)
    found = sorted(((int(m.group(1)), child) for child in (root.iterdir() if root.is_dir() else [])
                    if child.is_dir() and (m := _TRAINER_DIR.match(child.name))), reverse=True)
    skipped: dict[Path, list[str]] = {}
    for _, path in found:
        gaps = trainer_checkpoint_gaps(path)
        if not gaps:
            return path, skipped
        skipped[path] = gaps
    return None, skipped


def resolve_trainer_resume(resume_from_checkpoint: str | None, checkpoints_dir: str | Path) -> str | None:
    """Turn ``--resume_from_checkpoint`` (a folder or ``latest``) into what ``Trainer.train`` takes.

    ``latest`` is the newest complete ``checkpoint-N`` (None, a fresh start, when there is none yet); incomplete
    newer ones are named in a warning and left for the Trainer to overwrite when it reaches that step again. An
    explicit folder must be complete, or the run stops here instead of resuming without its optimizer state.
    """
    if not resume_from_checkpoint:
        return None
    if resume_from_checkpoint == "latest":
        path, skipped = latest_trainer_checkpoint(checkpoints_dir)
        for bad, gaps in skipped.items():
            # stdlib logging: this runs before or without an Accelerator (Trainer recipes), on every process.
            logging.getLogger(__name__).warning(
                f"Skipping incomplete checkpoint {bad} (missing {', '.join(gaps)}): the run that wrote it was "
                f"interrupted. Resuming from {path or 'the start'}.")
        return str(path) if path else None
    gaps = trainer_checkpoint_gaps(resume_from_checkpoint)
    if gaps:
        raise OutputDirError(f"{resume_from_checkpoint} is not a complete Trainer checkpoint (missing {', '.join(gaps)}). "
                             f"Pass another checkpoint-N folder under {checkpoints_dir}, or 'latest'.")
    return str(resume_from_checkpoint)


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
        # A checkpoint of the same step (a finished run saved again on resume) is moved aside, not deleted first:
        # deleting takes as long as its files are large, and a crash then would leave neither copy. Aside, it is
        # a ".tmp-" folder, which the next save clears if we die before removing it below.
        aside = root / f".tmp-old-step_{step:08d}"
        if final.exists():
            os.replace(final, aside)
        os.replace(tmp, final)
        _fsync_dir(root)
        shutil.rmtree(aside, ignore_errors=True)
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
