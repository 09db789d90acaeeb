"""Hand-written SGD steps for skip-gram and CBOW with negative sampling, batched over many windows at once.

Why by hand: autograd on embedding tables builds dense ``[vocab, dim]`` gradients (or slow sparse ones) and
an optimizer pass per step; word2vec only touches a few rows per step, so we compute the gradient of
:class:`~hfssl.word2vec.loss.NegativeSamplingLoss` in closed form and scatter it into those rows with
``scatter_add_``. ``tests/test_word2vec_update.py`` checks the result against autograd.

The math, for one window with input vectors ``v_1..v_C`` (skip-gram: the context words; CBOW: one vector,
the mean of the context words' vectors), the centre word's output vector ``u_0`` (label 1) and negatives'
output vectors ``u_1..u_K`` (label 0), scores ``s_ct = v_c · u_t`` and loss
``L = -sum_c [log σ(s_c0) + sum_k log σ(-s_ck)]``::

    g_ct   = lr * (label_t - σ(s_ct))          # = -lr * dL/ds_ct
    v_c   += sum_t g_ct u_t
    u_t   += sum_c g_ct v_c

Batching. The ``K`` negatives are drawn once per window and shared by its ``C`` skip-gram pairs (Ji et al.
2016, "Parallelizing Word2Vec in Shared and Distributed Memory", arXiv:1604.04661): every pair still sees
``K`` independent draws from the noise distribution, so the expected gradient is unchanged, and a window's
scores are one ``[C, d] x [d, 1+K]`` product with 1+K output rows gathered instead of C*(1+K). (Sharing one
draw across several windows, as GPU implementations do, made the matmuls bigger but cut analogy accuracy on
the KJV+docs benchmark from 4% to 0.2%, so it is not done.) All rows are read before any is written and
repeated rows get the sum of their updates: mini-batch SGD on the summed loss, where gensim applies pair
after pair (Hogwild). Moderate batches at word2vec's learning rates keep the two close; the benchmark checks
quality against gensim.

Skip-gram follows gensim's orientation (a context word's input vector predicts the centre word's output
vector). CBOW's context vectors each receive the full ``sum_t g_t u_t`` (not divided by C), as word2vec C and
gensim (``cbow_mean=1``) do. A negative that equals its window's centre word is skipped, as in word2vec C.
Padded context slots point at a scratch row ``pad_id`` that is zero on read and reset to zero after the step.
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class Workspace:
    """Reused scratch buffers. Allocating fresh multi-MB tensors every step costs page faults that make the
    gathers ~10x slower on CPU, so every large intermediate is written into these with ``out=``."""

    def __init__(self, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
        self.device, self.dtype = torch.device(device), dtype
        self._buffers: dict[str, torch.Tensor] = {}

    def get(self, name: str, *shape: int) -> torch.Tensor:
        numel = 1
        for s in shape:
            numel *= s
        buf = self._buffers.get(name)
        if buf is None or buf.numel() < numel:
            buf = torch.empty(max(numel, int(numel * 1.25)), device=self.device, dtype=self.dtype)
            self._buffers[name] = buf
        return buf[:numel].view(*shape)


def _scatter_add(table: torch.Tensor, rows: torch.Tensor, updates: torch.Tensor) -> None:
    """``table[rows[i]] += updates[i]`` (repeated rows add up). ``scatter_add_`` with a broadcast index takes
    PyTorch's sorted fast path, ~1.6x faster on CPU than ``index_add_``, which adds row by row."""
    table.scatter_add_(0, rows.unsqueeze(1).expand(-1, table.shape[1]), updates)


class WindowBatch(NamedTuple):
    """``N`` windows ready for one update. The training loop builds these in its window-building thread, so
    the masks and index layouts are off the update's critical path."""

    contexts: torch.Tensor  # int64 [N, C], pad_id where there is no word
    targets: torch.Tensor  # int64 [N, 1+K]: the centre word, then K negatives
    valid: torch.Tensor  # float [N, C]: 1 for real context slots
    negative_ok: torch.Tensor  # float [N, K]: 0 for a negative equal to the centre word (skipped)

    @classmethod
    def build(cls, centers: torch.Tensor, contexts: torch.Tensor, negatives: torch.Tensor, pad_id: int,
              dtype: torch.dtype = torch.float32) -> "WindowBatch":
        targets = torch.cat([centers.unsqueeze(1), negatives], dim=1)
        return cls(contexts.contiguous(), targets, (contexts != pad_id).to(dtype), (negatives != centers.unsqueeze(1)).to(dtype))

    def to(self, device: torch.device) -> "WindowBatch":
        return WindowBatch(*(x.to(device, non_blocking=True) for x in self))


def _coefficients(scores: torch.Tensor, negative_ok: torch.Tensor, valid: torch.Tensor | None, lr: float,
                  with_loss: bool) -> torch.Tensor | None:
    """In place: scores [..., 1+K] -> ``lr * (label - σ(score))``, label 1 for column 0; returns the loss sum.

    ``negative_ok`` [N, K] drops negatives equal to the centre word; ``valid`` [N, C] marks real skip-gram
    pairs, for the loss only (padding rows have zero vectors and only ever update the scratch row).
    """
    torch.sigmoid(scores, out=scores)
    ok = negative_ok.unsqueeze(1) if scores.dim() == 3 else negative_ok
    loss = None
    if with_loss:
        per_input = -torch.log(scores[..., 0].clamp_min(1e-7)) - (torch.log1p(-scores[..., 1:].clamp_max(1 - 1e-7)) * ok).sum(-1)
        loss = (per_input * valid).sum() if valid is not None else per_input.sum()
    scores.neg_()
    scores[..., 0] += 1.0
    scores[..., 1:] *= ok
    scores.mul_(lr)
    return loss


@torch.no_grad()
def skipgram_update(w_in: torch.Tensor, w_out: torch.Tensor, batch: WindowBatch, lr: float, ws: Workspace, pad_id: int,
                    with_loss: bool = True) -> tuple[torch.Tensor | None, torch.Tensor]:
    """One SGD step on a batch of skip-gram windows; updates ``w_in``/``w_out`` in place.

    Returns (loss sum or None, number of real pairs).
    """
    contexts, targets, valid, negative_ok = batch
    (n, c), t, d = contexts.shape, targets.shape[1], w_in.shape[1]
    ctx, tgt = contexts.view(-1), targets.view(-1)
    v = torch.index_select(w_in, 0, ctx, out=ws.get("v", n * c, d)).view(n, c, d)
    u = torch.index_select(w_out, 0, tgt, out=ws.get("u", n * t, d)).view(n, t, d)
    scores = torch.bmm(v, u.transpose(1, 2), out=ws.get("s", n, c, t))
    loss = _coefficients(scores, negative_ok, valid, lr, with_loss)
    dv = torch.bmm(scores, u, out=ws.get("dv", n, c, d))  # v_c += sum_t g_ct u_t
    du = torch.bmm(scores.transpose(1, 2), v, out=ws.get("du", n, t, d))  # u_t += sum_c g_ct v_c
    _scatter_add(w_in, ctx, dv.view(n * c, d))
    _scatter_add(w_out, tgt, du.view(n * t, d))
    w_in[pad_id].zero_()
    return loss, valid.sum()


@torch.no_grad()
def cbow_update(w_in: torch.Tensor, w_out: torch.Tensor, batch: WindowBatch, lr: float, ws: Workspace, pad_id: int,
                with_loss: bool = True) -> tuple[torch.Tensor | None, torch.Tensor]:
    """One SGD step on a batch of CBOW windows (as :func:`skipgram_update`). Returns (loss sum or None, N)."""
    contexts, targets, valid, negative_ok = batch
    (n, c), t, d = contexts.shape, targets.shape[1], w_in.shape[1]
    ctx, tgt = contexts.view(-1), targets.view(-1)
    v = torch.index_select(w_in, 0, ctx, out=ws.get("v", n * c, d)).view(n, c, d)
    h = torch.sum(v, dim=1, out=ws.get("h", n, d)).div_(valid.sum(1, keepdim=True))
    u = torch.index_select(w_out, 0, tgt, out=ws.get("u", n * t, d)).view(n, t, d)
    # Row-wise dot products: one [1, d] x [d, 1+K] matmul per window is slower as bmm than as multiply + sum.
    du = torch.mul(u, h.unsqueeze(1), out=ws.get("du", n, t, d))
    scores = torch.sum(du, dim=-1, out=ws.get("s", n, t))
    loss = _coefficients(scores, negative_ok, None, lr, with_loss)
    dh = torch.bmm(scores.unsqueeze(1), u, out=ws.get("dh", n, 1, d))  # sum_t g_t u_t
    torch.mul(scores.unsqueeze(2), h.unsqueeze(1), out=du)  # u_t += g_t h
    dv = ws.get("dv", n, c, d)
    dv.copy_(dh.expand(n, c, d))
    _scatter_add(w_in, ctx, dv.view(n * c, d))
    _scatter_add(w_out, tgt, du.view(n * t, d))
    w_in[pad_id].zero_()
    return loss, torch.tensor(n)
