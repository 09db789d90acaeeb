"""The CPU fast path: word2vec's update loop in C (``fused_kernel.c``), window after window, as word2vec C and
gensim's Cython train.

Why: on a CPU the batched PyTorch steps of ``update.py`` spend most of their time moving intermediates
(gathered rows, scores, per-row sums) through memory; a loop that reads a row, updates it and moves on keeps
everything in registers and cache. On the KJV+docs benchmark it spends about 2.7x less CPU time per word than
the batched steps, for skip-gram and CBOW alike (benchmarks/RESULTS.md). The windows and negatives are drawn the
same way; the updates are applied one window after another (sequential SGD, as gensim) instead of summed over
mini-batches, which also brought skip-gram's analogy and simlex999 scores level with gensim's.

How: the C file is compiled on first use with the system C compiler (``$CC``, else ``cc``) for this machine's
CPU (``-march=native``), cached under ``$HFSSL_CACHE`` (default ``~/.cache/hfssl``) by a hash of the source,
the flags, the compiler and the CPU, and loaded with ctypes, which releases the GIL during the call: worker
threads then train their chunks on separate cores. A compile writes to a temporary file and renames it, so
processes starting together never load a half-written library. Without a working compiler :func:`load`
returns None (with one warning) and the recipe trains with the batched PyTorch steps; GPUs always use those.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .windows import RaggedWindows

SOURCE = Path(__file__).with_name("fused_kernel.c")
# Vectorised dot products need re-associated float sums; nothing here relies on errno, traps or signed zeros.
FLAGS = ["-O3", "-fno-math-errno", "-fassociative-math", "-fno-signed-zeros", "-fno-trapping-math", "-shared", "-fPIC"]
MAX_VECTOR_SIZE = 4096  # the kernel's stack buffers


def _cpu_id() -> str:
    """What ``-march=native`` depends on: the CPU model and its feature flags."""
    try:
        info = Path("/proc/cpuinfo").read_text(errors="replace").splitlines()
        return "|".join(next((line for line in info if line.startswith(key)), "") for key in ("model name", "flags"))
    except OSError:
        return platform.processor()


def _compile(compiler: str, cache: Path) -> Path:
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=60).stdout
    source = SOURCE.read_bytes()
    for arch in (["-march=native"], []):  # some compilers (or CPUs) have no -march=native
        key = hashlib.sha256(b"\0".join([source, " ".join(FLAGS + arch).encode(), version.encode(),
                                         _cpu_id().encode(), platform.machine().encode()])).hexdigest()[:16]
        target = cache / f"word2vec_fused_{key}.so"
        if target.exists():
            return target
        cache.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cache, suffix=".so.tmp")
        os.close(fd)
        done = subprocess.run([compiler, *FLAGS, *arch, str(SOURCE), "-o", tmp, "-lm"], capture_output=True, text=True, timeout=120)
        if done.returncode == 0:
            os.replace(tmp, target)  # atomic: a concurrent process sees no library or a whole one
            return target
        os.unlink(tmp)
        error = done.stderr.strip()
    raise RuntimeError(error)


@functools.lru_cache(maxsize=None)
def load() -> ctypes.CDLL | None:
    """The compiled kernel, compiled if needed; None (after one warning) where no C compiler works here."""
    compiler = os.environ.get("CC") or "cc"
    if shutil.which(compiler) is None:
        warnings.warn(f"word2vec: no C compiler ({compiler!r}) found, so the fused CPU kernel is off and training uses "
                      f"the slower batched PyTorch steps. Install one (e.g. apt-get install gcc) or set CC.", stacklevel=2)
        return None
    cache = Path(os.environ.get("HFSSL_CACHE") or Path.home() / ".cache" / "hfssl")
    try:
        lib = ctypes.CDLL(str(_compile(compiler, cache)))
    except (OSError, RuntimeError, subprocess.SubprocessError) as err:
        warnings.warn(f"word2vec: compiling the fused CPU kernel with {compiler!r} failed ({err}); training uses the "
                      f"slower batched PyTorch steps.", stacklevel=2)
        return None
    P, I64 = ctypes.c_void_p, ctypes.c_int64
    lib.train_windows.argtypes = [P, P, I64, P, P, P, P, I64, I64, ctypes.c_float, ctypes.c_int, P]
    lib.train_windows.restype = None
    return lib


def usable(device: torch.device | str, vector_size: int) -> bool:
    """Whether the fused kernel can train tables of ``vector_size`` on ``device`` (CPU only)."""
    return torch.device(device).type == "cpu" and vector_size <= MAX_VECTOR_SIZE and load() is not None


def prepare(windows: RaggedWindows) -> RaggedWindows:
    """The windows as C-contiguous int64 arrays, as the kernel reads them (done in the window-building thread)."""
    return RaggedWindows(*(np.ascontiguousarray(a, dtype=np.int64) for a in (windows.centers, windows.contexts,
                                                                              windows.lengths, windows.negatives)))


def train_ragged(w_in: torch.Tensor, w_out: torch.Tensor, windows: RaggedWindows, lr: float, sg: bool,
                 with_loss: bool = True) -> tuple[float | None, int]:
    """Train ``windows`` (from :func:`prepare`) in order, updating the float32 CPU tables in place.

    Returns (summed loss or None, number of loss terms): pairs for skip-gram, windows for CBOW, as the batched
    steps count them.
    """
    lib = load()
    if lib is None:
        raise RuntimeError("The fused word2vec kernel is not available here (see the warning about the C compiler).")
    for table in (w_in, w_out):
        if table.dtype != torch.float32 or table.device.type != "cpu" or not table.is_contiguous():
            raise ValueError("The fused kernel trains contiguous float32 CPU tables.")
    d = w_in.shape[1]
    if d > MAX_VECTOR_SIZE:
        raise ValueError(f"The fused kernel handles vectors of at most {MAX_VECTOR_SIZE} dimensions, got {d}.")
    n, k = windows.negatives.shape
    terms = len(windows.contexts) if sg else n
    if n == 0:
        return (0.0 if with_loss else None), 0
    # A bad id or length would make the C loop read or write outside the arrays: check before the call.
    ids = (windows.centers, windows.contexts, windows.negatives)
    rows = min(len(w_in), len(w_out))
    if max(int(a.max(initial=0)) for a in ids) >= rows or min(int(a.min(initial=0)) for a in ids) < 0:
        raise IndexError(f"A word id is outside the tables ({rows} rows).")
    if int(windows.lengths.sum()) != len(windows.contexts) or int(windows.lengths.min()) < 1:
        raise ValueError("Window lengths must be >= 1 and add up to the number of context words.")
    z = torch.empty(terms, k + 1, dtype=torch.float32)
    lib.train_windows(w_in.data_ptr(), w_out.data_ptr(), d, windows.centers.ctypes.data, windows.contexts.ctypes.data,
                      windows.lengths.ctypes.data, windows.negatives.ctypes.data, k, n, lr, int(sg), z.data_ptr())
    return (float(F.softplus(z).sum()) if with_loss else None), terms
