"""Shared test fixtures: real offline text, and a way to run a recipe as a user would (a fresh process)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def recipe_env(**extra: str) -> dict[str, str]:
    """Environment for recipe subprocesses: offline, one thread each (tests run beside each other on 2 cores)."""
    env = dict(os.environ)
    env.update({"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
                "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)})
    env.update(extra)
    return env


def run_recipe(script: str, *args: str, env: dict | None = None, expect_ok: bool = True, timeout: int = 600,
               launcher: list[str] | None = None) -> subprocess.CompletedProcess:
    """Run ``recipes/<script>`` in a subprocess; on unexpected failure show its output in the assertion."""
    cmd = (launcher or [sys.executable]) + [str(ROOT / "recipes" / script), *args]
    proc = subprocess.run(cmd, env=env or recipe_env(), capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    if expect_ok:
        assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return proc


def run_gloo_workers(worker, out: Path, world: int) -> list:
    """Spawn ``worker(rank, port, out_dir)`` on ``world`` processes that meet on a free local port; return what each
    rank saved to ``out_dir/rank{r}.pt`` (the workers form a gloo process group with MASTER_PORT=port)."""
    import socket

    import torch
    import torch.multiprocessing as mp

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    mp.spawn(worker, args=(port, str(out)), nprocs=world, join=True)
    return [torch.load(out / f"rank{r}.pt") for r in range(world)]


@pytest.fixture(scope="session")
def docs_text_file(tmp_path_factory) -> Path:
    """About 1,500 paragraphs of Python's own documentation: real English prose, available offline."""
    from hfssl.data.offline_corpus import python_docs_corpus

    lines = python_docs_corpus().read_text(encoding="utf-8").splitlines()
    path = tmp_path_factory.mktemp("text") / "docs.txt"
    path.write_text("\n".join(lines[:1500]) + "\n", encoding="utf-8")
    return path
