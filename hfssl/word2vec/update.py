"""Hand-written SGD steps for skip-gram and CBOW with negative sampling, batched over many windows at once.

These steps train on GPUs, and on CPUs where the fused C loop of ``fused.py`` (window after window, faster per
core) is turned off or cannot be compiled.

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
Skip-gram batches are padded (``[N, 2b]`` per window half-width b); padded slots point at a scratch row
``pad_id`` that is zero and stays zero (padded pairs get a zero coefficient). CBOW batches are ragged (no padding) and
carry their rows grouped by word, so both of CBOW's scatters become ``embedding_bag`` sums plus an
``index_add_`` of distinct rows (:class:`CbowBatch`); a CBOW step costs about half of what the padded
gather/scatter form did.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F


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
    pairs: padded pairs get coefficient 0, so they change no row, not even the scratch row (which therefore
    stays zero without a reset that concurrent worker threads could race with).
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
    if valid is not None:
        scores.mul_(valid.unsqueeze(-1) * lr)
    else:
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
    return loss, valid.sum()


def _stable_row_order(ids: np.ndarray) -> np.ndarray:
    """Stable argsort of row ids on 16-bit keys, so numpy takes its O(n) radix sort (a comparison sort of every
    batch would cost more than the update it prepares); ids of 2^16 and above take a second, stable pass on the
    high bits."""
    order = np.argsort((ids & 0xFFFF).astype(np.uint16), kind="stable")
    if len(ids) and int(ids.max()) > 0xFFFF:
        order = order[np.argsort((ids[order] >> 16).astype(np.uint32), kind="stable")]
    return order


def rows_sorted(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stable sort of row ids: ``(order, unique_rows, starts)`` with ``ids[order]`` grouped by row, row
    ``unique_rows[i]`` occupying ``ids[order][starts[i]:starts[i + 1]]``."""
    ids = np.asarray(ids, dtype=np.int64)
    order = _stable_row_order(ids)
    sorted_ids = ids[order]
    starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]]) if len(ids) else np.zeros(0, dtype=np.int64)
    return order, sorted_ids[starts], starts


class _Grouped(NamedTuple):
    """Positions of a flat id array grouped by id within each batch segment (see :func:`_group_by_row`)."""

    order: np.ndarray  # int64 [S]: positions local to their segment, grouped by row within it
    rows: np.ndarray  # int64 [G]: the distinct row of each group
    starts: np.ndarray  # int64 [G]: where each group starts, local to its segment
    group_cuts: np.ndarray  # int64 [B + 1]: segment k owns groups group_cuts[k]:group_cuts[k + 1]


def _group_by_row(ids: np.ndarray, cuts: np.ndarray) -> _Grouped:
    """Group the positions of ``ids`` by row inside each segment ``cuts[k]:cuts[k + 1]`` (one segment per batch).

    One radix sort per segment (cheap: the keys are 16 bits), everything else vectorised over the whole chunk."""
    order = np.empty(len(ids), dtype=np.int64)
    for lo, hi in zip(cuts[:-1].tolist(), cuts[1:].tolist()):
        order[lo:hi] = _stable_row_order(ids[lo:hi])
    segment_start = np.repeat(cuts[:-1], np.diff(cuts))
    sorted_ids = ids[order + segment_start]
    new_group = np.empty(len(ids), dtype=bool)
    new_group[:1] = True
    np.not_equal(sorted_ids[1:], sorted_ids[:-1], out=new_group[1:])
    new_group[cuts[:-1][cuts[:-1] < len(ids)]] = True  # a segment always starts a new group
    group_starts = np.flatnonzero(new_group)
    return _Grouped(order, sorted_ids[group_starts], group_starts - segment_start[group_starts],
                    np.searchsorted(group_starts, cuts))


class CbowBatch(NamedTuple):
    """``N`` CBOW windows with ragged contexts (no padding) plus, for each table, the rows the step writes
    grouped by row. The grouping turns the two scatters of the step into ``embedding_bag`` gathers (one
    sum per touched row) and an ``index_add_`` of distinct rows, ~2x faster on CPU than a scatter-add of
    every slot. Built by :func:`cbow_batches` for a whole chunk at once, in the window-building thread, off
    the update's critical path."""

    contexts: torch.Tensor  # int64 [S]: the context words of window 0, then window 1, ...
    offsets: torch.Tensor  # int64 [N]: where each window's contexts start in ``contexts``
    context_weight: torch.Tensor  # float [S]: 1 / (number of contexts of the slot's window): a sum is then a mean
    targets: torch.Tensor  # int64 [N, 1+K]: the centre word, then K negatives
    target_offsets: torch.Tensor  # int64 [N]: ``arange(N) * (1+K)``, each window's start in ``targets.view(-1)``
    sign: torch.Tensor  # float [N, 1+K]: -1 for the centre word, +1 for a negative, 0 for a skipped negative
    weight: torch.Tensor  # float [N, 1+K]: |sign|, the loss terms that count
    in_rows: torch.Tensor  # int64 [U]: distinct context words
    in_windows: torch.Tensor  # int64 [S]: the window of every context slot, grouped by word (as in_rows)
    in_starts: torch.Tensor  # int64 [U]
    out_rows: torch.Tensor  # int64 [U']: distinct target words
    out_slots: torch.Tensor  # int64 [N*(1+K)]: flat positions in ``targets``, grouped by word (as out_rows)
    out_windows: torch.Tensor  # int64 [N*(1+K)]: ``out_slots // (1+K)``
    out_starts: torch.Tensor  # int64 [U']

    @classmethod
    def build(cls, centers, contexts, lengths, negatives, dtype: torch.dtype = torch.float32) -> "CbowBatch":
        """One batch from numpy arrays: ``centers`` [N], ``contexts`` [S] (ragged, window after window),
        ``lengths`` [N] (each >= 1), ``negatives`` [N, K]."""
        return cbow_batches(centers, contexts, lengths, negatives, max(len(centers), 1), dtype)[0]

    @classmethod
    def from_padded(cls, centers, contexts, negatives, pad_id: int, dtype: torch.dtype = torch.float32) -> "CbowBatch":
        """From a padded ``[N, C]`` context matrix (``pad_id`` where there is no word)."""
        contexts = np.asarray(contexts)
        valid = contexts != pad_id
        return cls.build(centers, contexts[valid], valid.sum(1), negatives, dtype)

    def to(self, device: torch.device) -> "CbowBatch":
        return CbowBatch(*(x.to(device, non_blocking=True) for x in self))


def cbow_batches(centers, contexts, lengths, negatives, max_windows: int, dtype: torch.dtype = torch.float32) -> list[CbowBatch]:
    """Cut a chunk's ragged windows (as :class:`~hfssl.word2vec.windows.RaggedWindows`) into :class:`CbowBatch`
    es of at most ``max_windows`` windows. Every array is computed once for the whole chunk and each batch is a
    set of slices of it: per-batch numpy calls cost more than the arithmetic on a few thousand ids."""
    centers, contexts, lengths, negatives = (np.asarray(a, dtype=np.int64) for a in (centers, contexts, lengths, negatives))
    n, t = len(centers), negatives.shape[1] + 1
    window_cuts = np.append(np.arange(0, n, max_windows), n)
    ends = np.cumsum(lengths)
    window_starts = ends - lengths
    slot_cuts = np.append(0, ends)[window_cuts]
    targets = np.empty((n, t), dtype=np.int64)
    targets[:, 0], targets[:, 1:] = centers, negatives
    np_dtype = torch.empty(0, dtype=dtype).numpy().dtype
    # A negative equal to the centre word is skipped, as in word2vec C.
    sign = np.empty((n, t), dtype=np_dtype)
    sign[:, 0] = -1
    sign[:, 1:] = negatives != centers[:, None]
    context_weight = np.repeat((1.0 / np.maximum(lengths, 1)).astype(np_dtype), lengths)
    local_window = np.arange(n, dtype=np.int64) % max_windows
    grouped_in = _group_by_row(contexts, slot_cuts)
    in_windows = np.repeat(local_window, lengths)[grouped_in.order + np.repeat(slot_cuts[:-1], np.diff(slot_cuts))]
    grouped_out = _group_by_row(targets.reshape(-1), window_cuts * t)
    target_offsets = np.arange(0, min(max_windows, max(n, 1)) * t, t, dtype=np.int64)
    t_ = torch.from_numpy
    tensors = [t_(a) for a in (contexts, window_starts, context_weight, targets, target_offsets, sign, np.abs(sign),
                                grouped_in.rows, in_windows, grouped_in.starts, grouped_out.rows, grouped_out.order,
                                grouped_out.order // t, grouped_out.starts)]
    (contexts, window_starts, context_weight, targets, target_offsets, sign, weight, in_rows, in_windows, in_starts,
     out_rows, out_slots, out_windows, out_starts) = tensors
    batches = []
    for k in range(len(window_cuts) - 1):
        w0, w1 = int(window_cuts[k]), int(window_cuts[k + 1])
        s0, s1 = int(slot_cuts[k]), int(slot_cuts[k + 1])
        i0, i1 = int(grouped_in.group_cuts[k]), int(grouped_in.group_cuts[k + 1])
        o0, o1 = int(grouped_out.group_cuts[k]), int(grouped_out.group_cuts[k + 1])
        batches.append(CbowBatch(contexts[s0:s1], window_starts[w0:w1] - s0, context_weight[s0:s1], targets[w0:w1],
                                 target_offsets[: w1 - w0], sign[w0:w1], weight[w0:w1], in_rows[i0:i1], in_windows[s0:s1],
                                 in_starts[i0:i1], out_rows[o0:o1], out_slots[w0 * t : w1 * t], out_windows[w0 * t : w1 * t],
                                 out_starts[o0:o1]))
    return batches


@torch.no_grad()
def cbow_update(w_in: torch.Tensor, w_out: torch.Tensor, batch: CbowBatch, lr: float, ws: Workspace, pad_id: int,
                with_loss: bool = True) -> tuple[torch.Tensor | None, int]:
    """One SGD step on a batch of CBOW windows (as :func:`skipgram_update`). Returns (loss sum or None, N).

    ``h`` (the mean of each window's context vectors) is an ``embedding_bag`` gather; the updates are summed
    per distinct row with ``embedding_bag`` over the grouped layout and added with ``index_add_``. With
    ``z = sign * score`` (sign -1 for the centre word, +1 for a negative) every loss term is ``softplus(z)``
    and every coefficient ``lr * (label - σ(score)) = -lr * sign * σ(z)``, a handful of element-wise ops.
    CBOW has no padding, so ``pad_id`` is unused (kept for the common signature).
    """
    n, t = batch.targets.shape
    d = w_in.shape[1]
    h = F.embedding_bag(batch.contexts, w_in, batch.offsets, mode="sum", per_sample_weights=batch.context_weight)  # [N, d]
    u = torch.index_select(w_out, 0, batch.targets.view(-1), out=ws.get("u", n * t, d)).view(n, t, d)
    # [1, d] x [d, 1+K] per window; this orientation of bmm is ~2x faster than multiply + sum on CPU.
    z = torch.bmm(h.unsqueeze(1), u.transpose(1, 2), out=ws.get("s", n, 1, t)).view(n, t).mul_(batch.sign)
    loss = torch.dot(F.softplus(z).view(-1), batch.weight.view(-1)) if with_loss else None
    g = torch.sigmoid(z, out=z).mul_(batch.sign).mul_(-lr)  # lr * (label - σ(score)), 0 for skipped negatives
    # sum_t g_t u_t, read before w_out changes: an embedding_bag over the target rows weighted by g (~2x faster than a bmm).
    dh = F.embedding_bag(batch.targets.view(-1), w_out, batch.target_offsets, mode="sum", per_sample_weights=g.view(-1))
    # u_t += g_t h for every (window, target), summed per distinct target word.
    weights = torch.index_select(g.view(-1), 0, batch.out_slots)  # ~2x faster than g.view(-1)[out_slots]
    out_sum = F.embedding_bag(batch.out_windows, h, batch.out_starts, mode="sum", per_sample_weights=weights)
    w_out.index_add_(0, batch.out_rows, out_sum)
    # Every context word of a window gets the full dh (cbow_mean=1), summed per distinct context word.
    in_sum = F.embedding_bag(batch.in_windows, dh, batch.in_starts, mode="sum")
    w_in.index_add_(0, batch.in_rows, in_sum)
    return loss, n
