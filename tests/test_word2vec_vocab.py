"""Vocabulary, subsampling and negative-sampling tables follow word2vec C / gensim."""

from __future__ import annotations

import numpy as np
import pytest

from hfssl.word2vec.vocab import (build_corpus, iterate_batches, keep_probabilities, make_word_tokenizer, noise_distribution,
                                  split_words)
from hfssl.word2vec.windows import AliasSampler

TEXTS = ["The cat sat on the mat.", "The dog, the cat and THE bird!", "a rare word", "", "cat dog cat dog the end"]


def test_tokenizer_normalises_and_splits_words():
    tok = make_word_tokenizer()
    assert split_words(tok, "The CAT, sat... on the ﬁeld!") == ["the", "cat", "sat", "on", "the", "field"]  # NFKC: ﬁ -> fi
    keep = make_word_tokenizer(lowercase=False, keep_punctuation=True)
    assert split_words(keep, "The CAT, sat.") == ["The", "CAT", ",", "sat", "."]


def test_build_corpus_counts_orders_and_drops_rare_words():
    tok, words, counts, corpus = build_corpus(lambda: iterate_batches(TEXTS, 2), min_count=2)
    raw = [w for t in TEXTS for w in split_words(make_word_tokenizer(), t)]
    expected = {w: raw.count(w) for w in set(raw) if raw.count(w) >= 2}
    assert dict(zip(words, counts.tolist())) == expected
    assert list(counts) == sorted(counts, reverse=True)  # most frequent first, as word2vec C
    assert corpus.raw_words == len(raw)
    # Sentences keep their order; out-of-vocabulary words are removed before windows are formed.
    first = [words[i] for i in corpus.ids[corpus.starts[0]:corpus.starts[1]]]
    assert first == [w for w in split_words(tok, TEXTS[0]) if w in expected]
    assert tok.encode("cat the", add_special_tokens=False).ids == [words.index("cat"), words.index("the")]


def test_max_vocab_size_keeps_the_most_frequent_words():
    _, words, counts, _ = build_corpus(lambda: iterate_batches(TEXTS), min_count=1, max_vocab_size=2)
    assert words == ["the", "cat"]


def test_build_corpus_rejects_text_without_frequent_words():
    with pytest.raises(ValueError, match="min_count"):
        build_corpus(lambda: iterate_batches(["one two three"]), min_count=5)


def test_keep_probability_matches_word2vec_formula_and_gensim():
    counts = np.array([50000, 7000, 1200, 300, 40, 5])
    sample = 1e-3
    t = sample * counts.sum()
    formula = np.minimum((np.sqrt(counts / t) + 1) * t / counts, 1.0)
    assert np.allclose(keep_probabilities(counts, sample), formula)
    assert np.all(keep_probabilities(counts, 0) == 1)

    # gensim stores round(p * 2**32) per word; compare on a real vocabulary.
    from gensim.models import Word2Vec

    sentences = [["w%d" % i] * int(c) for i, c in enumerate(counts)]
    model = Word2Vec(vector_size=4, min_count=1, sample=sample)
    model.build_vocab(sentences)
    ours = keep_probabilities(counts, sample)
    for i, c in enumerate(counts):
        assert model.wv.get_vecattr("w%d" % i, "sample_int") / 2**32 == pytest.approx(ours[i], abs=1e-6)


def test_negative_sampling_distribution_is_unigram_to_the_075():
    counts = np.array([900, 300, 120, 40, 9, 1])
    probs = noise_distribution(counts, 0.75)
    assert np.allclose(probs, counts**0.75 / (counts**0.75).sum())
    # The alias sampler draws from exactly that distribution (5-sigma binomial bounds).
    draws = AliasSampler(probs).sample(np.random.default_rng(0), (400_000,))
    freq = np.bincount(draws, minlength=len(counts)) / len(draws)
    assert np.all(np.abs(freq - probs) < 5 * np.sqrt(probs * (1 - probs) / len(draws)))
    # ns_exponent 0 is uniform, 1 is the unigram distribution.
    assert np.allclose(noise_distribution(counts, 0.0), 1 / len(counts))
    assert np.allclose(noise_distribution(counts, 1.0), counts / counts.sum())
