"""The trainable word2vec tables and one training step over a chunk of the corpus.

:class:`Word2VecModel` is a plain ``nn.Module`` so that Accelerate can place it on a device, broadcast it
across processes and save it (safetensors) in checkpoints; it is trained with the fused C loop of ``fused.py``
(CPU) or the closed-form batched steps of ``update.py`` (GPU, or no C compiler), never with autograd.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from torch import nn

from . import fused
from .update import CbowBatch, WindowBatch, Workspace, cbow_batches, cbow_update, skipgram_update
from .vocab import EncodedCorpus, keep_probabilities, noise_distribution
from .windows import AliasSampler, RaggedWindows, build_ragged_windows, build_windows, sentence_index


class Word2VecModel(nn.Module):
    """Input (word) vectors and output (context) vectors, each ``[vocab_size + 1, vector_size]``.

    The extra last row is a scratch row for padded window slots (always zero after a step); it is dropped
    when the vectors are exported. Initialised as gensim does: input vectors ``U(-0.5, 0.5) / vector_size``,
    output vectors zero.
    """

    def __init__(self, vocab_size: int, vector_size: int, seed: int = 0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        w_in = (torch.rand(vocab_size + 1, vector_size, generator=gen) - 0.5) / vector_size
        w_in[vocab_size] = 0
        # requires_grad stays True only so DistributedDataParallel accepts the module; no autograd is used.
        self.input_vectors = nn.Parameter(w_in)
        self.output_vectors = nn.Parameter(torch.zeros(vocab_size + 1, vector_size))

    @property
    def pad_id(self) -> int:
        return self.input_vectors.shape[0] - 1

    def word_vectors(self) -> torch.Tensor:
        """The learned embeddings (input vectors without the scratch row), as gensim's ``wv.vectors``."""
        return self.input_vectors.detach()[:-1]


Tables = tuple[torch.Tensor, torch.Tensor]  # (input vectors, output vectors)


def model_tables(model: Word2VecModel) -> Tables:
    """The model's two tables as plain tensors (the closed-form steps write them in place)."""
    return model.input_vectors.data, model.output_vectors.data


def table_copies(model: Word2VecModel, n: int) -> list[Tables]:
    """``n`` private copies of the model's tables, one per extra deterministic worker (:func:`train_chunks`)."""
    return [tuple(t.clone() for t in model_tables(model)) for _ in range(n)]


def chunk_bounds(corpus: EncodedCorpus, chunk_words: int) -> list[tuple[int, int]]:
    """Split the corpus into chunks of about ``chunk_words`` words, cut at sentence starts when possible."""
    total = len(corpus.ids)
    bounds, lo = [], 0
    while lo < total:
        hi = min(lo + chunk_words, total)
        if hi < total:
            # Move the cut back to the last sentence start inside the chunk (if there is one after lo).
            j = int(np.searchsorted(corpus.starts, hi, side="right")) - 1
            if corpus.starts[j] > lo:
                hi = int(corpus.starts[j])
        bounds.append((lo, hi))
        lo = hi
    return bounds


def chunk_generator(seed: int, epoch: int, chunk: int) -> np.random.Generator:
    """The random stream of one chunk depends only on (seed, epoch, chunk): resuming at any chunk is exact
    and does not need saved RNG state, and each process draws its own chunks' streams."""
    return np.random.default_rng([seed, epoch, chunk])


def chunk_windows(corpus: EncodedCorpus, bounds: tuple[int, int], *, window: int, negative: int, keep_prob: np.ndarray,
                  noise: AliasSampler, pad_id: int, rng: np.random.Generator, max_windows: int = 1024,
                  sg: bool = True, fused_kernel: bool = False) -> list[WindowBatch] | list[CbowBatch] | RaggedWindows:
    """The SGD batches of ``corpus.ids[lo:hi]``: windows with negatives and masks, as CPU tensors of at most
    ``max_windows`` windows (:class:`WindowBatch` for skip-gram, :class:`CbowBatch` for CBOW), or with
    ``fused_kernel`` all the chunk's windows as one :class:`RaggedWindows` in corpus order for the fused C loop
    (``fused.py``; the same windows, drawn from ``rng`` in the same way). Pure numpy/torch without the model, so
    it runs in a helper thread while the previous chunk trains.

    ``max_windows`` bounds how many updates of one frequent word are summed in a step: 1024 is stable at
    word2vec's learning rates; 4096 diverged (NaN) on the KJV corpus in skip-gram."""
    lo, hi = bounds
    sentence = sentence_index(corpus.starts, lo, hi)
    if fused_kernel:
        return fused.prepare(build_ragged_windows(corpus.ids[lo:hi], sentence, keep_prob=keep_prob, window=window,
                                                  negative=negative, noise=noise, rng=rng, by_width=False))
    if not sg:
        # CBOW needs no padding: ragged windows for the whole chunk, cut into batches.
        ragged = build_ragged_windows(corpus.ids[lo:hi], sentence, keep_prob=keep_prob, window=window, negative=negative,
                                      noise=noise, rng=rng)
        return cbow_batches(ragged.centers, ragged.contexts, ragged.lengths, ragged.negatives, max_windows)
    groups = build_windows(corpus.ids[lo:hi], sentence, keep_prob=keep_prob, window=window,
                           negative=negative, noise=noise, pad_id=pad_id, rng=rng)
    batches = []
    for group in groups:
        centers, contexts, negatives = (torch.from_numpy(a) for a in (group.centers, group.contexts, group.negatives))
        for start in range(0, len(centers), max_windows):
            sl = slice(start, start + max_windows)
            batches.append(WindowBatch.build(centers[sl], contexts[sl], negatives[sl], pad_id))
    return batches


def train_windows(model: Word2VecModel, batches: list[WindowBatch] | list[CbowBatch] | RaggedWindows, *, sg: bool,
                  lr: float, ws: Workspace, with_loss: bool = True, tables: Tables | None = None) -> tuple[float | None, int]:
    """One SGD step per batch of :func:`chunk_windows` (one chunk) at learning rate ``lr``, or one fused-kernel
    pass over its :class:`RaggedWindows`, on the model's tables or on ``tables`` (a worker's own copy, see
    :func:`train_chunks`).

    Returns (summed loss or None, number of loss terms: pairs for skip-gram, windows for CBOW).
    """
    w_in, w_out = tables if tables is not None else model_tables(model)
    if isinstance(batches, RaggedWindows):
        return fused.train_ragged(w_in, w_out, batches, lr, sg, with_loss)
    update = skipgram_update if sg else cbow_update
    device = w_in.device
    losses, terms = [], []
    for batch in batches:
        if device.type != "cpu":
            batch = batch.to(device)
        loss, n = update(w_in, w_out, batch, lr, ws, model.pad_id, with_loss)
        losses.append(loss)
        terms.append(n)
    # One device sync per chunk, not per step.
    loss_sum = float(torch.stack(losses).sum()) if with_loss and losses else None
    return loss_sum, int(sum(terms))  # terms: tensors (skip-gram) or ints (CBOW); one sync either way


def learning_rate(alpha: float, min_alpha: float, progress: float) -> float:
    """Linear decay from ``alpha`` to ``min_alpha`` over training (``progress`` in [0, 1]), as word2vec C."""
    return alpha - (alpha - min_alpha) * min(max(progress, 0.0), 1.0)


@torch.no_grad()
def merge_updates(model: Word2VecModel, snapshots: list[torch.Tensor], copies: list[Tables] = (),
                  reduce_sum=None) -> None:
    """Add up the updates of workers that each trained their own chunk from the same start-of-step tables
    ``W_0`` (local SGD): ``W <- W_0 + sum_k (W_k - W_0)``, so every word's update counts once, as if one worker
    had trained on all the chunks with a bigger batch.

    The workers are, in this order, the model's own tables, then ``copies`` (the other deterministic worker
    threads of this process, :func:`train_chunks`); ``reduce_sum`` (``lambda t: accelerator.reduce(t, "sum")``,
    or None with one process) then adds up the processes' sums. One code path for threads and processes:
    two workers give the same float operations, ``(W_a - W_0) + (W_b - W_0) + W_0``, whether they are two
    threads of one process or two processes (float addition of two terms commutes); with more workers the
    per-process sums are grouped differently and agree within float rounding. A worker that had no chunk
    adds an exact zero. ``snapshots`` hold ``W_0`` and, like ``copies``, are advanced to the result.

    Cost: a few passes over whole tables per step, ~17 ms of CPU with 2 workers at 40k words x 100 dimensions
    (measured; merging only the rows a step touched was slower: negatives touch most output rows).
    """
    for i, (table, snapshot) in enumerate(zip(model_tables(model), snapshots)):
        delta = table.sub_(snapshot)
        for copy in copies:
            delta.add_(copy[i].sub_(snapshot))
        if reduce_sum is not None:
            table.copy_(reduce_sum(delta))
        table.add_(snapshot)
        snapshot.copy_(table)
        for copy in copies:
            copy[i].copy_(table)


def train_chunks(model: Word2VecModel, chunks: list[list], *, sg: bool, lr: float, workspaces: list[Workspace],
                 pool: ThreadPoolExecutor | None = None, copies: list[Tables] | None = None) -> tuple[float | None, int]:
    """Train several chunks' batches (from :func:`chunk_windows`) at once, one thread per chunk.

    Hogwild (``copies`` None, the default): all threads write the same tables without locks (Recht et al.
    2011, arXiv:1106.5730), the scheme word2vec C and gensim's ``workers`` use. Each step only touches a few
    rows, so colliding writes are rare and cost little; the price is that with more than one chunk the result
    depends on thread timing (not bit-reproducible).

    Deterministic (``copies`` a list, ``--deterministic_workers``): chunk 0 trains the model's tables and chunk
    ``k`` trains ``copies[k - 1]``, all equal to the same start-of-step snapshot; :func:`merge_updates` must then
    add up the workers' updates. The result does not depend on thread timing, and a process's worker threads
    are merged exactly as processes are. The price is a copy of the tables per extra worker and a few passes
    over the tables per step.

    torch ops release the GIL, so the threads use separate cores. Returns summed (loss or None, terms).
    """
    tables = [None] * len(chunks) if copies is None else [None, *copies][: len(chunks)]
    if len(tables) < len(chunks):
        raise ValueError(f"{len(chunks)} chunks need {len(chunks) - 1} table copies, got {len(copies)}.")
    if pool is None or len(chunks) <= 1:
        results = [train_windows(model, c, sg=sg, lr=lr, ws=ws, tables=t) for c, ws, t in zip(chunks, workspaces, tables)]
    else:
        futures = [pool.submit(train_windows, model, c, sg=sg, lr=lr, ws=ws, tables=t)
                   for c, ws, t in zip(chunks, workspaces, tables)]
        results = [f.result() for f in futures]
    losses = [loss for loss, _ in results if loss is not None]
    # Added in float32, as the recipe's sum across processes adds them: two threads report the loss of two processes.
    loss = float(torch.tensor(losses, dtype=torch.float32).sum()) if losses else None
    return loss, sum(terms for _, terms in results)


def train_in_process(model: Word2VecModel, corpus: EncodedCorpus, counts: np.ndarray, *, sg: bool = True, window: int = 5,
                     negative: int = 5, sample: float = 1e-3, ns_exponent: float = 0.75, epochs: int = 5,
                     alpha: float | None = None, min_alpha: float = 1e-4, chunk_words: int = 20000,
                     batch_windows: int = 1024, workers: int = 1, deterministic_workers: bool = False,
                     fused_kernel: bool | None = None, seed: int = 0) -> list[float]:
    """Single-process training with the recipe's schedule, for benchmarks and tests (the recipe adds
    Accelerate, checkpoints and multi-process merging around the same steps). Returns the mean loss per epoch.
    A helper thread builds the next step's windows while ``workers`` threads train this step's chunks
    (:func:`train_chunks`); with ``workers=1`` or ``deterministic_workers`` the result is deterministic.
    ``fused_kernel`` None uses the fused C loop where it works (a CPU with a C compiler), as the recipe does.
    """
    if fused_kernel is None:
        fused_kernel = fused.usable(model.input_vectors.device, model.input_vectors.shape[1])
    alpha = alpha if alpha is not None else (0.025 if sg else 0.05)
    keep_prob = keep_probabilities(counts, sample)
    noise = AliasSampler(noise_distribution(counts, ns_exponent))
    bounds = chunk_bounds(corpus, chunk_words)
    steps_per_epoch = math.ceil(len(bounds) / workers)
    # Step s of an epoch trains chunks s*workers ... s*workers + workers - 1, as the recipe with one process.
    steps = [[(epoch, i) for i in range(s * workers, min((s + 1) * workers, len(bounds)))]
             for epoch in range(epochs) for s in range(steps_per_epoch)]
    workspaces = [Workspace(model.input_vectors.device) for _ in range(workers)]
    per_worker_batch = math.ceil(batch_windows / workers)  # concurrent workers share the batch (see the recipe)
    deterministic = deterministic_workers and workers > 1
    snapshots = [t.clone() for t in model_tables(model)] if deterministic else []
    copies = table_copies(model, workers - 1) if deterministic else None

    def windows(step):
        return [chunk_windows(corpus, bounds[i], window=window, negative=negative, keep_prob=keep_prob, noise=noise,
                              pad_id=model.pad_id, rng=chunk_generator(seed, epoch, i), max_windows=per_worker_batch, sg=sg,
                              fused_kernel=fused_kernel)
                for epoch, i in step]

    epoch_loss = [[0.0, 0] for _ in range(epochs)]
    with ThreadPoolExecutor(max_workers=1) as builder, ThreadPoolExecutor(max_workers=workers) as trainers:
        pending = builder.submit(windows, steps[0]) if steps else None
        for k, step in enumerate(steps):
            chunks = pending.result()
            if k + 1 < len(steps):
                pending = builder.submit(windows, steps[k + 1])
            loss, terms = train_chunks(model, chunks, sg=sg, lr=learning_rate(alpha, min_alpha, k / len(steps)),
                                       workspaces=workspaces, pool=trainers, copies=copies)
            if deterministic:
                merge_updates(model, snapshots, copies)
            epoch_loss[step[0][0]][0] += loss or 0.0
            epoch_loss[step[0][0]][1] += terms
    return [total / max(n, 1) for total, n in epoch_loss]
