"""Windows: subsampling, dynamic window shrinking and sentence boundaries, as word2vec C builds them."""

from __future__ import annotations

import numpy as np

from hfssl.word2vec.model import chunk_bounds
from hfssl.word2vec.vocab import EncodedCorpus
from hfssl.word2vec.windows import AliasSampler, build_ragged_windows, build_windows, sentence_index

PAD = 1000


def _windows(ids, sentence, window, keep_prob=None, seed=0):
    keep_prob = np.ones(PAD) if keep_prob is None else keep_prob
    return build_windows(np.asarray(ids), np.asarray(sentence), keep_prob=keep_prob, window=window, negative=3,
                         noise=AliasSampler(np.ones(PAD)), pad_id=PAD, rng=np.random.default_rng(seed))


def test_contexts_stay_inside_the_window_and_the_sentence():
    # Token ids equal positions, so a context id minus its centre id is the offset.
    ids = np.arange(40)
    sentence = np.repeat([0, 1, 2], [15, 5, 20])
    for group in _windows(ids, sentence, window=4):
        b = group.contexts.shape[1] // 2
        for center, ctx in zip(group.centers, group.contexts):
            real = ctx[ctx != PAD]
            assert len(real) > 0
            assert np.all(np.abs(real - center) <= b) and np.all(real != center)
            assert np.all(sentence[real] == sentence[center])
            # Every same-sentence word within distance b is there.
            expected = [j for j in range(center - b, center + b + 1) if j != center and 0 <= j < 40 and sentence[j] == sentence[center]]
            assert sorted(real.tolist()) == expected


def test_window_size_is_uniform_so_near_words_are_used_more():
    ids = np.arange(PAD)
    sentence = np.zeros(PAD, dtype=np.int64)
    distance_counts = np.zeros(6)
    for seed in range(5):
        for group in _windows(ids, sentence, window=5, seed=seed):
            real = group.contexts != PAD
            offsets = np.abs(group.contexts - group.centers[:, None])[real]
            distance_counts += np.bincount(offsets, minlength=6)
    ratio = distance_counts[1:] / distance_counts[1]
    assert np.allclose(ratio, [(5 - k + 1) / 5 for k in range(1, 6)], atol=0.05)


def test_subsampling_removes_words_with_their_keep_probability():
    ids = np.array([0, 1] * 5000)
    keep = np.ones(PAD)
    keep[0] = 0.25  # word 0 kept a quarter of the time, word 1 always
    centers = np.concatenate([g.centers for g in _windows(ids, np.zeros(len(ids), dtype=np.int64), 2, keep)])
    assert np.sum(centers == 1) == 5000
    assert abs(np.sum(centers == 0) / 5000 - 0.25) < 0.03


def test_one_word_sentences_give_no_windows_and_chunks_cut_at_sentences():
    assert _windows([5, 6, 7], [0, 1, 2], window=3) == []
    corpus = EncodedCorpus(np.arange(100, dtype=np.int32), np.array([0, 30, 55, 100]), 100)
    bounds = chunk_bounds(corpus, 40)
    assert bounds[0] == (0, 30) and bounds[-1][1] == 100
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
    assert sentence_index(corpus.starts, 25, 60).tolist() == [0] * 5 + [1] * 25 + [2] * 5


def test_ragged_windows_are_the_padded_windows_without_padding():
    """CBOW's ragged builder makes the same windows as the padded one (same draws, same order, same contexts)."""
    gen = np.random.default_rng(0)
    ids = gen.integers(0, 50, size=400)
    sentence = np.sort(gen.integers(0, 60, size=400))  # many short sentences, some of one word
    keep_prob = gen.random(PAD)
    for seed in range(3):
        groups = _windows(ids, sentence, window=5, keep_prob=keep_prob, seed=seed)
        ragged = build_ragged_windows(ids, sentence, keep_prob=keep_prob, window=5, negative=3, noise=AliasSampler(np.ones(PAD)),
                                      rng=np.random.default_rng(seed))
        real = [g.contexts != PAD for g in groups]
        assert np.array_equal(ragged.centers, np.concatenate([g.centers for g in groups]))
        assert np.array_equal(ragged.lengths, np.concatenate([r.sum(1) for r in real]))
        assert np.array_equal(ragged.contexts, np.concatenate([g.contexts[r] for g, r in zip(groups, real)]))
        assert ragged.negatives.shape == (len(ragged.centers), 3)
    empty = build_ragged_windows(np.array([5, 6]), np.array([0, 1]), keep_prob=np.ones(PAD), window=3, negative=3,
                                 noise=AliasSampler(np.ones(PAD)), rng=np.random.default_rng(0))
    assert len(empty.centers) == 0 and len(empty.contexts) == 0
