"""Vocabulary, corpus encoding and the two word-frequency tables word2vec samples from.

Text is normalised and split into words by a ``tokenizers`` word-level tokenizer (NFKC, optional lowercasing,
optional punctuation removal, whitespace split). Training that tokenizer's ``WordLevelTrainer`` counts words in
Rust, and the tokenizer, saved as ``tokenizer.json`` next to the vectors, is the vocabulary: the same
normalisation is applied when the vectors are used later.

Ids are ordered by falling frequency (id 0 is the most frequent word) as in word2vec C and gensim, and the
unknown-word token is not part of the vocabulary: words below ``min_count`` are dropped from the token stream
before windows are formed, exactly as gensim does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import numpy as np
from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers

from ..data.text import DataError

UNK = "[UNK]"


def make_word_tokenizer(*, lowercase: bool = True, keep_punctuation: bool = False) -> Tokenizer:
    """An untrained word-level tokenizer that normalises text and splits it into words."""
    tokenizer = Tokenizer(models.WordLevel(unk_token=UNK))
    steps = [normalizers.NFKC()]
    if lowercase:
        steps.append(normalizers.Lowercase())
    if not keep_punctuation:
        # Anything that is neither a word character nor space becomes a space, so "end." and "end" are one word.
        steps.append(normalizers.Replace(Regex(r"[^\w\s]+"), " "))
    tokenizer.normalizer = normalizers.Sequence(steps)
    # With punctuation kept, Whitespace() splits it off words ("end." -> "end", "."); otherwise a plain split.
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace() if keep_punctuation else pre_tokenizers.WhitespaceSplit()
    return tokenizer


def split_words(tokenizer: Tokenizer, text: str) -> list[str]:
    """The words of ``text`` after normalisation, as the tokenizer sees them (in or out of vocabulary)."""
    normalized = tokenizer.normalizer.normalize_str(text) if tokenizer.normalizer else text
    return [word for word, _ in tokenizer.pre_tokenizer.pre_tokenize_str(normalized)]


@dataclass
class EncodedCorpus:
    """The training corpus as one flat array of word ids plus sentence boundaries.

    ``ids[starts[i]:starts[i+1]]`` is sentence ``i`` with out-of-vocabulary words already removed;
    ``raw_words`` counts every word before that removal (what words/s and the learning-rate schedule use,
    as in gensim).
    """

    ids: np.ndarray  # int32 [n_words]
    starts: np.ndarray  # int64 [n_sentences + 1]
    raw_words: int

    @property
    def num_sentences(self) -> int:
        return len(self.starts) - 1


def train_vocabulary(tokenizer: Tokenizer, texts: Iterable[str], *, min_count: int, max_vocab_size: int | None) -> Tokenizer:
    """Count words in ``texts`` and keep those seen at least ``min_count`` times (at most ``max_vocab_size``)."""
    vocab_size = (max_vocab_size + 1) if max_vocab_size else 2**31 - 1  # +1: the unknown token is counted
    trainer = trainers.WordLevelTrainer(vocab_size=vocab_size, min_frequency=min_count, special_tokens=[UNK], show_progress=False)
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


def encode_corpus(tokenizer: Tokenizer, batches: Iterable[list[str]], max_sentence_length: int = 10000) -> tuple[EncodedCorpus, np.ndarray]:
    """Encode texts to ids in the tokenizer's numbering; returns the corpus and per-id counts.

    Sentences longer than ``max_sentence_length`` words are cut into pieces (gensim does the same at 10,000),
    so a file without line breaks still has windows that fit in memory.
    """
    unk = tokenizer.token_to_id(UNK)
    pieces: list[np.ndarray] = []
    raw = 0
    for batch in batches:
        for enc in tokenizer.encode_batch(batch, add_special_tokens=False):
            ids = np.asarray(enc.ids, dtype=np.int32)
            raw += len(ids)
            ids = ids[ids != unk]
            pieces += [ids[s : s + max_sentence_length] for s in range(0, len(ids), max_sentence_length)]
    flat = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int32)
    starts = np.zeros(len(pieces) + 1, dtype=np.int64)
    np.cumsum([len(p) for p in pieces], out=starts[1:])
    counts = np.bincount(flat, minlength=tokenizer.get_vocab_size()).astype(np.int64)
    return EncodedCorpus(flat, starts, raw), counts


def renumber_by_frequency(tokenizer: Tokenizer, corpus: EncodedCorpus, counts: np.ndarray) -> tuple[list[str], np.ndarray, EncodedCorpus]:
    """Drop the unknown token and renumber words by falling count (ties: alphabetical), as word2vec C orders them.

    Returns ``(words, counts, corpus)`` in the new numbering.
    """
    vocab = tokenizer.get_vocab()  # word -> old id
    unk = vocab[UNK]
    entries = [(-int(counts[i]), w, i) for w, i in vocab.items() if i != unk and counts[i] > 0]
    entries.sort()
    words = [w for _, w, _ in entries]
    old_ids = np.array([i for _, _, i in entries], dtype=np.int64)
    remap = np.full(len(counts), -1, dtype=np.int32)
    remap[old_ids] = np.arange(len(old_ids), dtype=np.int32)
    new_corpus = EncodedCorpus(remap[corpus.ids], corpus.starts, corpus.raw_words)
    return words, counts[old_ids], new_corpus


def word_level_tokenizer(template: Tokenizer, words: list[str]) -> Tokenizer:
    """A copy of ``template``'s normalisation with a vocabulary of exactly ``words`` (id = position) + [UNK]."""
    vocab = {w: i for i, w in enumerate(words)}
    vocab[UNK] = len(words)
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tokenizer.normalizer = template.normalizer
    tokenizer.pre_tokenizer = template.pre_tokenizer
    return tokenizer


def keep_probabilities(counts: np.ndarray, sample: float) -> np.ndarray:
    """Probability of keeping each occurrence of a word under frequent-word subsampling.

    word2vec C / gensim formula, with ``t = sample * total``: ``p(w) = (sqrt(c_w / t) + 1) * t / c_w``, capped
    at 1. ``sample = 0`` keeps everything. (Mikolov et al. 2013, "Distributed Representations of Words and
    Phrases and their Compositionality", sec. 2.3, in the form the released code uses.)
    """
    counts = np.asarray(counts, dtype=np.float64)
    if sample <= 0:
        return np.ones_like(counts)
    threshold = sample * counts.sum()
    with np.errstate(divide="ignore"):
        prob = (np.sqrt(counts / threshold) + 1.0) * threshold / counts
    return np.minimum(prob, 1.0)


def noise_distribution(counts: np.ndarray, ns_exponent: float) -> np.ndarray:
    """Negative-sampling distribution ``P(w) ∝ count(w) ** ns_exponent`` (0.75 in the paper)."""
    weights = np.asarray(counts, dtype=np.float64) ** ns_exponent
    return weights / weights.sum()


def iterate_batches(texts: Iterable[str], batch_size: int = 1000) -> Iterator[list[str]]:
    batch: list[str] = []
    for text in texts:
        batch.append(text)
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def build_corpus(batches: Callable[[], Iterable[list[str]]], *, lowercase: bool = True, keep_punctuation: bool = False,
                 min_count: int = 5, max_vocab_size: int | None = None) -> tuple[Tokenizer, list[str], np.ndarray, EncodedCorpus]:
    """Count words, keep the vocabulary and encode the corpus: ``(tokenizer, words, counts, corpus)``.

    ``batches()`` must return a fresh iterator of lists of texts each time it is called: the text is read
    twice, once to count words and once to encode them (so a streamed dataset is streamed twice).
    """
    template = make_word_tokenizer(lowercase=lowercase, keep_punctuation=keep_punctuation)
    train_vocabulary(template, (text for batch in batches() for text in batch), min_count=min_count, max_vocab_size=max_vocab_size)
    corpus, counts = encode_corpus(template, batches())
    words, counts, corpus = renumber_by_frequency(template, corpus, counts)
    if corpus.raw_words == 0:
        raise DataError("The training text has no words. Check --text_column and the data.")
    if len(words) < 2:
        raise DataError(f"Only {len(words)} word(s) occur at least min_count={min_count} times in {corpus.raw_words} words; "
                         f"lower --min_count or give more text.")
    return word_level_tokenizer(template, words), words, counts, corpus
