"""Deterministic worker threads (``--deterministic_workers``): each trains its chunk on its own copy of the tables
and :func:`merge_updates` adds up their updates exactly as it adds up those of processes, so the result depends
neither on thread timing nor on how the workers are split into threads and processes."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from hfssl.word2vec import Word2VecModel, fused
from hfssl.word2vec.model import (chunk_bounds, chunk_generator, chunk_windows, merge_updates, model_tables, table_copies,
                                  train_chunks, train_in_process)
from hfssl.word2vec.update import Workspace
from hfssl.word2vec.vocab import build_corpus, keep_probabilities, noise_distribution
from hfssl.word2vec.windows import AliasSampler

WORDS = ["cat", "dog", "horse", "red", "green", "blue", "one", "two", "three", "apple", "pear", "plum", "and", "the"]


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    lines = [" ".join(rng.choice(WORDS, size=8)) for _ in range(600)]
    _, words, counts, corpus = build_corpus(lambda: iter([lines]), min_count=1)
    return words, counts, corpus


def _step_chunks(data, model, sg: bool, indices: list[int], fused_kernel: bool = False):
    """The windows of chunks ``indices`` of epoch 0, as the recipe builds them (200-word chunks): batches for the
    batched PyTorch steps, or with ``fused_kernel`` one ragged set per chunk for the fused C loop."""
    _, counts, corpus = data
    bounds = chunk_bounds(corpus, 200)
    noise = AliasSampler(noise_distribution(counts, 0.75))
    return [chunk_windows(corpus, bounds[i], window=3, negative=4, keep_prob=keep_probabilities(counts, 0.0), noise=noise,
                          pad_id=model.pad_id, rng=chunk_generator(0, 0, i), max_windows=64, sg=sg,
                          fused_kernel=fused_kernel) for i in indices]


def _train(model, chunks, sg, copies, pool=None):
    snapshots = [t.clone() for t in model_tables(model)]
    loss, terms = train_chunks(model, chunks, sg=sg, lr=0.05, workspaces=[Workspace() for _ in chunks], pool=pool,
                               copies=copies)
    merge_updates(model, snapshots, copies)
    return loss, terms, snapshots


@pytest.mark.parametrize("fused_kernel", [False, pytest.param(True, marks=pytest.mark.skipif(
    fused.load() is None, reason="no working C compiler"))], ids=["batched", "fused"])
@pytest.mark.parametrize("sg", [True, False], ids=["skipgram", "cbow"])
def test_two_worker_threads_merge_bit_for_bit_like_two_processes(data, sg, fused_kernel):
    words = data[0]
    # One process, two deterministic worker threads: chunks 0 and 1 of the step.
    threads = Word2VecModel(len(words), 16, seed=3)
    chunks = _step_chunks(data, threads, sg, [0, 1], fused_kernel)
    with ThreadPoolExecutor(max_workers=2) as pool:
        loss, terms, snapshots = _train(threads, chunks, sg, table_copies(threads, 1), pool=pool)
    # Two "processes", one worker each, from the same start; the all-reduce of two tensors is one addition.
    ranks = [Word2VecModel(len(words), 16, seed=3) for _ in range(2)]
    start = [t.clone() for t in model_tables(ranks[0])]
    results = [train_chunks(rank, [chunk], sg=sg, lr=0.05, workspaces=[Workspace()]) for rank, chunk in zip(ranks, chunks)]
    deltas = [[table - s for table, s in zip(model_tables(rank), start)] for rank in ranks]
    for r, rank in enumerate(ranks):
        tables = iter(deltas[1 - r])
        merge_updates(rank, [s.clone() for s in start], [], lambda t: t + next(tables))
    for rank in ranks:
        for a, b in zip(model_tables(threads), model_tables(rank)):
            assert torch.equal(a, b)
    # The step changed the tables, every worker's copy and the snapshot now equal the result, and the loss and
    # term counts are the processes' sums (in float32, as the reduce across processes adds them).
    assert not torch.equal(model_tables(threads)[0], start[0])
    for snapshot, table in zip(snapshots, model_tables(threads)):
        assert torch.equal(snapshot, table)
    assert loss == float(torch.tensor([results[0][0], results[1][0]], dtype=torch.float32).sum())
    assert terms == results[0][1] + results[1][1]


def test_deterministic_workers_do_not_depend_on_threading_and_repeat_bit_for_bit(data):
    words = data[0]
    runs = []
    for pool in (None, ThreadPoolExecutor(max_workers=2), ThreadPoolExecutor(max_workers=2)):
        model = Word2VecModel(len(words), 16, seed=3)
        copies = table_copies(model, 1)
        snapshots = [t.clone() for t in model_tables(model)]
        for step in range(3):
            chunks = _step_chunks(data, model, True, [2 * step, 2 * step + 1])
            train_chunks(model, chunks, sg=True, lr=0.05, workspaces=[Workspace(), Workspace()], pool=pool, copies=copies)
            merge_updates(model, snapshots, copies)
        if pool is not None:
            pool.shutdown()
        runs.append(model_tables(model))
    for run in runs[1:]:
        for a, b in zip(runs[0], run):
            assert torch.equal(a, b)


def test_train_in_process_with_deterministic_workers_repeats_bit_for_bit_and_learns(data):
    words, counts, corpus = data
    models = [Word2VecModel(len(words), 16, seed=1) for _ in range(2)]
    losses = [train_in_process(m, corpus, counts, window=3, negative=4, sample=0.0, epochs=3, chunk_words=300,
                               batch_windows=128, workers=2, deterministic_workers=True) for m in models]
    assert losses[0] == losses[1] and losses[0][-1] < losses[0][0]
    assert torch.equal(models[0].input_vectors, models[1].input_vectors)
    assert torch.equal(models[0].output_vectors, models[1].output_vectors)


def test_a_step_with_more_chunks_than_table_copies_is_refused(data):
    model = Word2VecModel(len(data[0]), 16)
    chunks = _step_chunks(data, model, True, [0, 1])
    with pytest.raises(ValueError, match="2 chunks need 1 table copies, got 0"):
        train_chunks(model, chunks, sg=True, lr=0.05, workspaces=[Workspace(), Workspace()], copies=[])
