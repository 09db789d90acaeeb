"""The fused C loop (hfssl/word2vec/fused.py) against a naive Python loop of word2vec's sequential SGD, against the
batched PyTorch steps where the two must agree (one window), and its checks and fallback when no compiler works."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from hfssl.word2vec import Word2VecModel, fused
from hfssl.word2vec.model import train_in_process
from hfssl.word2vec.update import CbowBatch, WindowBatch, Workspace, cbow_update, skipgram_update
from hfssl.word2vec.vocab import build_corpus
from hfssl.word2vec.windows import RaggedWindows

pytestmark = pytest.mark.skipif(fused.load() is None, reason="no working C compiler: the fused kernel is off here")


def _windows(vocab: int, n: int, k: int, seed: int) -> RaggedWindows:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 7, size=n)
    centers = rng.integers(0, vocab, size=n)
    contexts = rng.integers(0, vocab, size=int(lengths.sum()))
    negatives = rng.integers(0, vocab, size=(n, k))
    negatives[0, 1] = centers[0]  # a negative equal to its centre word is skipped
    contexts[1] = centers[1]  # a window can hold its centre word as context (a repeated word)
    return fused.prepare(RaggedWindows(centers, contexts, lengths, negatives))


def _tables(vocab: int, dim: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(vocab, dim, generator=gen) * 0.3, torch.randn(vocab, dim, generator=gen) * 0.3


def _naive(w_in: np.ndarray, w_out: np.ndarray, win: RaggedWindows, lr: float, sg: bool) -> float:
    """Word2vec C's loop, one pair (skip-gram) or one window (CBOW) at a time, in float64: returns the loss."""
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    loss, start = 0.0, 0
    for i, length in enumerate(win.lengths):
        ctx = win.contexts[start : start + length]
        start += length
        targets = [(int(win.centers[i]), 1.0)] + [(int(w), 0.0) for w in win.negatives[i] if w != win.centers[i]]
        for inputs in ([[c] for c in ctx] if sg else [list(ctx)]):
            v = w_in[inputs].mean(0)
            e = np.zeros_like(v)
            for word, label in targets:
                f = float(v @ w_out[word])
                loss -= math.log(sig(f) if label else 1 - sig(f))
                g = lr * (label - sig(f))
                e += g * w_out[word]
                w_out[word] += g * v
            for c in inputs:
                w_in[c] += e
    return loss


@pytest.mark.parametrize("sg", [True, False])
@pytest.mark.parametrize("dim", [8, 37])  # 37: a size that is no multiple of any SIMD width
def test_kernel_equals_a_naive_loop_of_sequential_sgd(sg, dim):
    vocab, lr = 11, 0.1  # few words, so windows share rows and the order of updates matters
    win = _windows(vocab, n=40, k=3, seed=dim)
    w_in, w_out = _tables(vocab, dim, seed=dim)
    ref_in, ref_out = w_in.double().numpy().copy(), w_out.double().numpy().copy()
    ref_loss = _naive(ref_in, ref_out, win, lr, sg)
    loss, terms = fused.train_ragged(w_in, w_out, win, lr, sg)
    assert terms == (int(win.lengths.sum()) if sg else len(win.centers))
    assert not np.allclose(w_in.numpy(), _tables(vocab, dim, seed=dim)[0].numpy())  # it trained
    np.testing.assert_allclose(w_in.numpy(), ref_in, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(w_out.numpy(), ref_out, rtol=1e-4, atol=1e-5)
    assert loss == pytest.approx(ref_loss, rel=1e-5)


@pytest.mark.parametrize("sg", [True, False])
def test_one_window_is_the_same_step_as_the_batched_update(sg):
    """With one window (and, for skip-gram, one context word) sequential and batched SGD are the same step."""
    vocab, dim, lr = 9, 16, 0.2
    centers, negatives = np.array([3]), np.array([[5, 3, 7]])  # the centre word again among the negatives
    contexts = np.array([1]) if sg else np.array([1, 4, 1])
    win = fused.prepare(RaggedWindows(centers, contexts, np.array([len(contexts)]), negatives))
    w_in, w_out = _tables(vocab + 1, dim, seed=0)
    w_in[vocab], w_out[vocab] = 0, 0  # the batched steps' scratch row
    b_in, b_out = w_in.clone(), w_out.clone()
    loss, _ = fused.train_ragged(w_in, w_out, win, lr, sg)
    t = torch.from_numpy
    if sg:
        batch = WindowBatch.build(t(centers), t(contexts).view(1, 1), t(negatives), pad_id=vocab)
        batched_loss, _ = skipgram_update(b_in, b_out, batch, lr, Workspace(), vocab)
    else:
        batched_loss, _ = cbow_update(b_in, b_out, CbowBatch.build(centers, contexts, [3], negatives), lr, Workspace(), vocab)
    torch.testing.assert_close(w_in, b_in, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(w_out, b_out, rtol=1e-5, atol=1e-6)
    assert loss == pytest.approx(float(batched_loss), rel=1e-5)


def test_bad_ids_and_lengths_are_refused_before_the_c_loop():
    w_in, w_out = _tables(5, 4, seed=0)
    before = w_in.clone(), w_out.clone()
    bad_id = fused.prepare(RaggedWindows(np.array([1]), np.array([5]), np.array([1]), np.array([[2]])))
    with pytest.raises(IndexError, match="outside the tables"):
        fused.train_ragged(w_in, w_out, bad_id, 0.1, sg=True)
    bad_length = fused.prepare(RaggedWindows(np.array([1]), np.array([2]), np.array([3]), np.array([[2]])))
    with pytest.raises(ValueError, match="lengths"):
        fused.train_ragged(w_in, w_out, bad_length, 0.1, sg=False)
    with pytest.raises(ValueError, match="float32"):
        fused.train_ragged(w_in.double(), w_out.double(), bad_id, 0.1, sg=True)
    assert torch.equal(w_in, before[0]) and torch.equal(w_out, before[1])


def test_training_repeats_bit_for_bit_and_learns():
    """One worker trains deterministically; the loss falls over the epochs."""
    rng = np.random.default_rng(0)
    lines = [" ".join(rng.choice(["cat", "dog", "red", "blue", "one", "two", "and", "the"], size=8)) for _ in range(400)]
    _, _, counts, corpus = build_corpus(lambda: iter([lines]), min_count=1)
    runs = []
    for _ in range(2):
        model = Word2VecModel(len(counts), 16, seed=3)
        losses = train_in_process(model, corpus, counts, sg=False, epochs=3, chunk_words=500, fused_kernel=True, seed=3)
        runs.append((losses, model.word_vectors().clone()))
    assert runs[0][0] == runs[1][0] and torch.equal(runs[0][1], runs[1][1])
    assert runs[0][0][-1] < runs[0][0][0]


def test_without_a_compiler_training_falls_back_to_the_batched_steps(monkeypatch, tmp_path):
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    fused.load.cache_clear()
    try:
        with pytest.warns(UserWarning, match="no C compiler"):
            assert fused.load() is None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert not fused.usable("cpu", 100)
    finally:
        monkeypatch.undo()
        fused.load.cache_clear()
    assert fused.load() is not None


def test_compiled_library_is_cached_per_source_and_machine(monkeypatch, tmp_path):
    monkeypatch.setenv("HFSSL_CACHE", str(tmp_path))
    fused.load.cache_clear()
    try:
        assert fused.load() is not None
        built = list(tmp_path.glob("word2vec_fused_*.so"))
        assert len(built) == 1 and not list(tmp_path.glob("*.tmp"))
        mtime = built[0].stat().st_mtime_ns
        fused.load.cache_clear()
        assert fused.load() is not None
        assert [p.stat().st_mtime_ns for p in tmp_path.glob("word2vec_fused_*.so")] == [mtime]  # reused, not rebuilt
    finally:
        monkeypatch.undo()
        fused.load.cache_clear()
