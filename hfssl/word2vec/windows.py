"""Turn a chunk of the encoded corpus into training windows with vectorised numpy, not per-word Python.

For one chunk this does, in order and in the same way as word2vec C and gensim:

1. frequent-word subsampling: each occurrence of word ``w`` is kept with probability ``keep_prob[w]``;
2. dynamic window shrinking: each kept word draws its own window ``b ~ Uniform{1..window}``, so nearer words
   are used more often (a word at distance ``k`` is in the window with probability ``(window - k + 1) / window``);
3. the context of a kept word is the kept words at distance ``1..b`` on either side within the same sentence.

Skip-gram (:func:`build_windows`) groups windows by ``b`` so each group is a dense ``[n, 2b]`` matrix of context
ids (``pad_id`` where a window runs past a sentence edge) that the update step can gather and multiply without
per-word loops. CBOW (:func:`build_ragged_windows`) needs no padding: the same windows, in the same order, come
as one flat array of context ids plus a length per window, built with ``np.repeat``/``cumsum`` arithmetic.
Each window's ``negative`` noise words are drawn here too, shared by the pairs of that window (see ``update.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class WindowGroup:
    """All windows of one half-width ``b`` in a chunk."""

    centers: np.ndarray  # int64 [n]
    contexts: np.ndarray  # int64 [n, 2b], pad_id where there is no word
    negatives: np.ndarray  # int64 [n, negative]


@dataclass
class RaggedWindows:
    """The windows of a chunk without padding: window ``i`` has context words
    ``contexts[ends[i] - lengths[i]:ends[i]]`` with ``ends = cumsum(lengths)``."""

    centers: np.ndarray  # int64 [n]
    contexts: np.ndarray  # int64 [sum(lengths)]
    lengths: np.ndarray  # int64 [n], each >= 1
    negatives: np.ndarray  # int64 [n, negative]


class AliasSampler:
    """Draw word ids from a discrete distribution in O(1) per draw (Walker's alias method, Vose's build).

    word2vec C samples negatives from a 10^8-entry table and gensim bisects a cumulative table; the alias
    method is exact like bisection and, vectorised, three numpy ops per batch of draws.
    """

    def __init__(self, probs: np.ndarray):
        probs = np.asarray(probs, dtype=np.float64)
        n = len(probs)
        scaled = probs * n / probs.sum()
        self.accept = np.ones(n, dtype=np.float64)
        self.alias = np.arange(n, dtype=np.int64)
        small = [i for i in range(n) if scaled[i] < 1.0]
        large = [i for i in range(n) if scaled[i] >= 1.0]
        while small and large:
            s, l = small.pop(), large.pop()
            self.accept[s], self.alias[s] = scaled[s], l
            scaled[l] -= 1.0 - scaled[s]
            (small if scaled[l] < 1.0 else large).append(l)
        # Whatever is left is 1 up to rounding: accept always (already set).

    def sample(self, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        idx = rng.integers(0, len(self.accept), size=shape)
        return np.where(rng.random(shape) < self.accept[idx], idx, self.alias[idx])


def sentence_index(starts: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Sentence number of each token in ``ids[lo:hi]`` given sentence start offsets."""
    first = np.searchsorted(starts, lo, side="right") - 1
    last = np.searchsorted(starts, hi, side="left")
    bounds = np.clip(starts[first : last + 1], lo, hi) - lo
    return np.repeat(np.arange(first, first + len(bounds) - 1, dtype=np.int64), np.diff(bounds))


def build_windows(
    ids: np.ndarray,
    sentence: np.ndarray,
    *,
    keep_prob: np.ndarray,
    window: int,
    negative: int,
    noise: "AliasSampler",
    pad_id: int,
    rng: np.random.Generator,
) -> list[WindowGroup]:
    """Subsample ``ids`` (one chunk), draw window sizes and negatives, and group windows by size."""
    keep = rng.random(len(ids)) < keep_prob[ids]
    kept = ids[keep].astype(np.int64)
    sent = sentence[keep]
    n = len(kept)
    half = rng.integers(1, window + 1, size=n)
    groups = []
    for b in range(1, window + 1):
        rows = np.flatnonzero(half == b)
        if len(rows) == 0:
            continue
        offsets = np.concatenate([np.arange(-b, 0), np.arange(1, b + 1)])
        pos = rows[:, None] + offsets[None, :]
        inside = (pos >= 0) & (pos < n)
        pos = np.clip(pos, 0, max(n - 1, 0))
        valid = inside & (sent[pos] == sent[rows][:, None])
        has_context = valid.any(axis=1)  # a one-word sentence gives no pairs: skip it as gensim does
        rows, pos, valid = rows[has_context], pos[has_context], valid[has_context]
        if len(rows) == 0:
            continue
        contexts = np.where(valid, kept[pos], pad_id)
        negatives = noise.sample(rng, (len(rows), negative))
        groups.append(WindowGroup(kept[rows], contexts, negatives))
    return groups


def build_ragged_windows(
    ids: np.ndarray,
    sentence: np.ndarray,
    *,
    keep_prob: np.ndarray,
    window: int,
    negative: int,
    noise: "AliasSampler",
    rng: np.random.Generator,
    by_width: bool = True,
) -> RaggedWindows:
    """:func:`build_windows` without padding, for CBOW: the same subsampling and window draws, the same windows
    in the same order (grouped by half-width ``b``, then by position; each window's contexts left to right), but
    every window's context words are one contiguous run of the kept words (the centre excluded), so the whole
    chunk is built with a handful of vectorised ops instead of a dense matrix per ``b`` that is then stripped.
    The negatives are drawn in one call for the whole chunk.

    ``by_width=False`` keeps the windows in corpus order instead (the same windows; negatives drawn in the same
    call, so the window each goes to differs): the order of the fused kernel, which trains window after window
    as gensim does and gains nothing from grouping.
    """
    keep = rng.random(len(ids)) < keep_prob[ids]
    kept = ids[keep].astype(np.int64)
    sent = sentence[keep]
    n = len(kept)
    half = rng.integers(1, window + 1, size=n)
    # First and last kept position of each word's sentence (sentences are consecutive runs of ``sent``).
    new_sentence = np.empty(n, dtype=bool)
    new_sentence[:1] = True
    np.not_equal(sent[1:], sent[:-1], out=new_sentence[1:])
    run_starts = np.flatnonzero(new_sentence)
    run = np.cumsum(new_sentence) - 1
    position = np.arange(n)
    first = np.maximum(position - half, run_starts[run])
    last = np.minimum(position + half, np.append(run_starts[1:], n)[run] - 1)
    # Windows grouped by b (a stable counting sort on the small ints), skipping windows with no context word
    # (a one-word sentence), as build_windows does.
    if by_width:
        order = np.argsort(half.astype(np.uint8 if window < 256 else np.int64), kind="stable")
        order = order[last[order] > first[order]]
    else:
        order = np.flatnonzero(last > first)
    lengths = last[order] - first[order]
    # Slot j of window i reads kept position first_i + j, stepping over the centre.
    ends = np.cumsum(lengths)
    shift = np.repeat(first[order] - (ends - lengths), lengths)
    pos = np.arange(ends[-1] if len(ends) else 0) + shift
    pos += pos >= np.repeat(order, lengths)
    return RaggedWindows(kept[order], kept[pos], lengths, noise.sample(rng, (len(order), negative)))
