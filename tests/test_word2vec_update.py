"""The hand-written SGD steps equal SGD on the negative-sampling loss computed by autograd, and that loss
matches a naive per-pair implementation of the paper's formula."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hfssl.word2vec.loss import NegativeSamplingLoss
from hfssl.word2vec.update import CbowBatch, WindowBatch, Workspace, cbow_batches, cbow_update, rows_sorted, skipgram_update


def _tables(vocab: int, dim: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    w_in = torch.randn(vocab + 1, dim, generator=gen, dtype=torch.float64) * 0.3
    w_out = torch.randn(vocab + 1, dim, generator=gen, dtype=torch.float64) * 0.3
    w_in[vocab] = 0
    w_out[vocab] = 0
    return w_in, w_out


def _batch(vocab: int, n: int, c: int, k: int, seed: int):
    gen = torch.Generator().manual_seed(seed + 1)
    centers = torch.randint(0, vocab, (n,), generator=gen)
    contexts = torch.randint(0, vocab, (n, c), generator=gen)
    contexts[0, 0] = vocab  # a padded slot
    contexts[1, -1] = vocab
    negatives = torch.randint(0, vocab, (n, k), generator=gen)
    negatives[0, 0] = centers[0]  # a negative equal to its centre word is skipped
    return centers, contexts, negatives


def _naive_sgns(w_in, w_out, centers, contexts, negatives, cbow: bool) -> float:
    """Per-pair loop over the paper's objective: -log σ(v·u_w) - Σ_k log σ(-v·u_k), skipping k == w."""
    pad = w_in.shape[0] - 1
    n = len(centers)
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    total = 0.0
    for i in range(n):
        ctx = [int(j) for j in contexts[i] if int(j) != pad]
        inputs = [sum(w_in[j] for j in ctx) / len(ctx)] if cbow else [w_in[j] for j in ctx]
        for v in inputs:
            total -= math.log(sig(float(v @ w_out[centers[i]])))
            for neg in negatives[i]:
                if int(neg) != int(centers[i]):
                    total -= math.log(sig(-float(v @ w_out[neg])))
    return total


@pytest.mark.parametrize("cbow", [False, True])
def test_update_equals_autograd_sgd_step(cbow):
    vocab, dim, n, c, k, lr = 13, 6, 6, 4, 3, 0.05
    w_in, w_out = _tables(vocab, dim, seed=1)
    centers, contexts, negatives = _batch(vocab, n, c, k, seed=1)
    pad = vocab

    # Autograd reference on the loss module.
    a_in, a_out = w_in.clone().requires_grad_(), w_out.clone().requires_grad_()
    valid = (contexts != pad).to(w_in.dtype)
    if cbow:
        v = a_in[contexts] * valid.unsqueeze(-1)
        inputs = (v.sum(1) / valid.sum(1, keepdim=True)).unsqueeze(1)
        valid_in = None
    else:
        inputs, valid_in = a_in[contexts], valid
    neg_ok = (negatives != centers[:, None]).to(w_in.dtype)
    loss = NegativeSamplingLoss()(inputs, a_out[centers], a_out[negatives], valid_in, neg_ok)
    loss.backward()
    grad_in = a_in.grad.clone()
    if cbow:
        # word2vec C / gensim give each context word the full gradient w.r.t. the mean h, not divided by the
        # number of context words: differentiate with respect to h and scatter it to every context word.
        h = inputs.detach().squeeze(1).requires_grad_()
        (dh,) = torch.autograd.grad(NegativeSamplingLoss()(h.unsqueeze(1), a_out[centers].detach(), a_out[negatives].detach(),
                                                           None, neg_ok), [h])
        grad_in = torch.zeros_like(grad_in)
        for i in range(n):
            for j in contexts[i]:
                if int(j) != pad:
                    grad_in[j] += dh[i]
    expected_in = w_in - lr * grad_in
    expected_out = w_out - lr * a_out.grad
    expected_in[pad] = 0

    got_in, got_out = w_in.clone(), w_out.clone()
    step = cbow_update if cbow else skipgram_update
    if cbow:
        batch = CbowBatch.from_padded(centers.numpy(), contexts.numpy(), negatives.numpy(), pad, torch.float64)
    else:
        batch = WindowBatch.build(centers, contexts, negatives, pad, torch.float64)
    got_loss, terms = step(got_in, got_out, batch, lr, Workspace(dtype=torch.float64), pad)

    assert torch.allclose(got_in, expected_in, atol=1e-10)
    assert torch.allclose(got_out, expected_out, atol=1e-10)
    assert float(got_loss) == pytest.approx(loss.item(), rel=1e-9)
    assert float(got_loss) == pytest.approx(_naive_sgns(w_in, w_out, centers, contexts, negatives, cbow), rel=1e-9)
    assert int(terms) == (n if cbow else int(valid.sum()))


def test_sgd_steps_lower_the_loss():
    """Repeated steps on a fixed batch (small lr) decrease the SGNS loss."""
    vocab = 20
    w_in, w_out = _tables(vocab, 8, seed=7)
    centers, contexts, negatives = _batch(vocab, 8, 4, 5, seed=7)
    ws = Workspace(dtype=torch.float64)
    batch = WindowBatch.build(centers, contexts, negatives, vocab, torch.float64)
    losses = [float(skipgram_update(w_in, w_out, batch, 0.05, ws, vocab)[0]) for _ in range(30)]
    assert losses[-1] < 0.5 * losses[0]
    assert all(b <= a + 1e-9 for a, b in zip(losses, losses[1:]))


def test_rows_sorted_groups_positions_by_row_stably_beyond_16_bit_ids():
    ids = np.array([70000, 3, 70000, 5, 3, 65536, 3])
    order, rows, starts = rows_sorted(ids)
    assert rows.tolist() == [3, 5, 65536, 70000]
    assert order.tolist() == [1, 4, 6, 3, 5, 0, 2]
    assert starts.tolist() == [0, 3, 4, 5]
    assert [len(g) for g in np.split(ids[order], starts[1:])] == [3, 1, 1, 2]


def test_cbow_batches_of_a_chunk_step_like_batches_built_one_by_one():
    """cbow_batches lays out a whole chunk at once and slices it into batches; each slice must be the batch that
    CbowBatch.build makes from that window range alone (checked by the step it takes), ids beyond 16 bits too."""
    vocab, dim, n, k, per_batch = 70010, 4, 11, 3, 4
    gen = np.random.default_rng(3)
    lengths = gen.integers(1, 7, size=n)
    contexts = gen.choice([5, 9, 65540, 70003, 12], size=int(lengths.sum()))  # repeated rows, some above 2^16
    centers = gen.choice([9, 65540, 7], size=n)
    negatives = gen.choice([5, 7, 9, 65541, 70003], size=(n, k))
    negatives[0, 0] = centers[0]
    w_in, w_out = _tables(vocab, dim, seed=4)
    ws = Workspace(dtype=torch.float64)
    chunked_in, chunked_out = w_in.clone(), w_out.clone()
    batches = cbow_batches(centers, contexts, lengths, negatives, per_batch, torch.float64)
    assert [len(b.targets) for b in batches] == [4, 4, 3]
    ends = np.cumsum(lengths)
    for i, batch in enumerate(batches):
        lo, hi = i * per_batch, min((i + 1) * per_batch, n)
        alone = CbowBatch.build(centers[lo:hi], contexts[ends[lo] - lengths[lo] : ends[hi - 1]], lengths[lo:hi], negatives[lo:hi],
                                torch.float64)
        got_loss, _ = cbow_update(chunked_in, chunked_out, batch, 0.1, ws, vocab)
        want_loss, _ = cbow_update(w_in, w_out, alone, 0.1, ws, vocab)
        assert float(got_loss) == pytest.approx(float(want_loss), rel=1e-12)
        assert torch.allclose(chunked_in, w_in, atol=1e-12) and torch.allclose(chunked_out, w_out, atol=1e-12)
    assert not torch.equal(w_in, _tables(vocab, dim, seed=4)[0])  # the steps did change the tables
