"""Trained word vectors: load with one call, query, and export to the formats other tools read.

A saved folder (what ``recipes/word2vec.py`` writes and pushes to the Hub) holds::

    model.safetensors   "embeddings" [vocab, dim] float32 and "counts" [vocab] int64
    tokenizer.json      the word-level tokenizer: normalisation + vocabulary (row i = id i; [UNK] last)
    vocab.txt           "word count" per line, most frequent first (for people and word2vec tools)
    config.json         vector_size, vocab_size and the training hyperparameters

``WordVectors.from_pretrained(path_or_hub_id)`` reads it back. Only safetensors is used for arrays.

With ``sentence_transformers=True`` the folder is also a sentence-transformers model (one ``StaticEmbedding``
module, the mean of the word vectors of a text), loadable with ``SentenceTransformer(path_or_hub_id)``::

    modules.json                          [{"path": "0_StaticEmbedding", "type": "...StaticEmbedding"}]
    config_sentence_transformers.json     cosine similarity
    0_StaticEmbedding/model.safetensors   "embedding.weight" [vocab + 1, dim]: the vectors, then a zero [UNK] row
    0_StaticEmbedding/tokenizer.json      the same tokenizer as above

StaticEmbedding averages over every token, and a word outside the vocabulary is an [UNK] token whose row is
zero: the sentence vector is :meth:`WordVectors.encode` scaled by (known words / all words), same direction.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable

import numpy as np
from safetensors.numpy import load_file, save_file
from tokenizers import Tokenizer

from .vocab import UNK, split_words, word_level_tokenizer

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
TOKENIZER_NAME = "tokenizer.json"
VOCAB_NAME = "vocab.txt"
ST_MODULE_DIR = "0_StaticEmbedding"
# The module path sentence-transformers 3.x-6.x all resolve (6.x re-exports it from its new location).
ST_MODULE_TYPE = "sentence_transformers.models.StaticEmbedding"


class WordVectors:
    """A vocabulary (most frequent word first) and one vector per word, gensim ``KeyedVectors``-like."""

    def __init__(self, words: list[str], vectors: np.ndarray, counts: np.ndarray | None = None,
                 tokenizer: Tokenizer | None = None, config: dict | None = None):
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(words):
            raise ValueError(f"vectors must be [len(words), dim]; got {vectors.shape} for {len(words)} words.")
        self.words = list(words)
        self.vectors = vectors
        self.counts = np.asarray(counts if counts is not None else np.zeros(len(words)), dtype=np.int64)
        self.key_to_index = {w: i for i, w in enumerate(self.words)}
        if len(self.key_to_index) != len(self.words):
            raise ValueError("words must be unique.")
        self.tokenizer = tokenizer
        self.config = dict(config or {})
        self._unit: np.ndarray | None = None

    # -- lookup -------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: str) -> bool:
        return word in self.key_to_index

    def __getitem__(self, word: str) -> np.ndarray:
        try:
            return self.vectors[self.key_to_index[word]]
        except KeyError:
            raise KeyError(f"'{word}' is not in the vocabulary ({len(self)} words).") from None

    @property
    def vector_size(self) -> int:
        return self.vectors.shape[1]

    @property
    def unit_vectors(self) -> np.ndarray:
        if self._unit is None:
            norms = np.linalg.norm(self.vectors, axis=1, keepdims=True)
            self._unit = self.vectors / np.maximum(norms, 1e-12)
        return self._unit

    def similarity(self, a: str, b: str) -> float:
        """Cosine similarity of two in-vocabulary words."""
        u = self.unit_vectors
        return float(u[self.key_to_index[a]] @ u[self.key_to_index[b]])

    def most_similar(self, positive: str | Iterable[str] = (), negative: Iterable[str] = (), topn: int = 10) -> list[tuple[str, float]]:
        """Words nearest (cosine) to the mean of ``positive`` unit vectors minus ``negative`` ones, excluding
        the query words, as gensim's ``most_similar``."""
        positive = [positive] if isinstance(positive, str) else list(positive)
        negative = list(negative)
        missing = [w for w in positive + negative if w not in self]
        if missing:
            raise KeyError(f"Not in the vocabulary: {missing}.")
        if not positive and not negative:
            raise ValueError("Give at least one word.")
        u = self.unit_vectors
        query = sum(u[self.key_to_index[w]] for w in positive) - sum((u[self.key_to_index[w]] for w in negative), np.zeros(self.vector_size))
        query = query / max(np.linalg.norm(query), 1e-12)
        sims = u @ query
        for w in positive + negative:
            sims[self.key_to_index[w]] = -np.inf
        k = min(topn, len(self) - len(positive) - len(negative))
        top = np.argpartition(-sims, k - 1)[:k] if k > 0 else np.array([], dtype=int)
        top = top[np.argsort(-sims[top])]
        return [(self.words[i], float(sims[i])) for i in top]

    def encode(self, text: str) -> np.ndarray:
        """Mean vector of the in-vocabulary words of ``text`` after the training normalisation (zeros if none)."""
        words = split_words(self.tokenizer, text) if self.tokenizer else text.split()
        rows = [self.key_to_index[w] for w in words if w in self.key_to_index]
        return self.vectors[rows].mean(0) if rows else np.zeros(self.vector_size, dtype=np.float32)

    # -- save / load ----------------------------------------------------------------------------------------
    def save_pretrained(self, folder: str | Path, sentence_transformers: bool = False) -> Path:
        """Write the Hub-ready folder described in the module docstring (with ``sentence_transformers``, also
        the files that make it a sentence-transformers ``StaticEmbedding`` model; that package is not needed
        to write them)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_file({"embeddings": np.ascontiguousarray(self.vectors), "counts": self.counts}, str(folder / WEIGHTS_NAME),
                  metadata={"format": "hfssl-word2vec"})
        tokenizer = word_level_tokenizer(self.tokenizer or _default_tokenizer(), self.words)
        tokenizer.save(str(folder / TOKENIZER_NAME))
        if sentence_transformers:
            module = folder / ST_MODULE_DIR
            module.mkdir(exist_ok=True)
            # One row per tokenizer id: the words (id = row), then [UNK] as a zero vector.
            table = np.concatenate([self.vectors, np.zeros((1, self.vector_size), dtype=np.float32)])
            save_file({"embedding.weight": table}, str(module / WEIGHTS_NAME))
            tokenizer.save(str(module / TOKENIZER_NAME))
            modules = [{"idx": 0, "name": "0", "path": ST_MODULE_DIR, "type": ST_MODULE_TYPE}]
            (folder / "modules.json").write_text(json.dumps(modules, indent=2) + "\n", encoding="utf-8")
            st_config = {"model_type": "SentenceTransformer", "prompts": {}, "default_prompt_name": None, "similarity_fn_name": "cosine"}
            (folder / "config_sentence_transformers.json").write_text(json.dumps(st_config, indent=2) + "\n", encoding="utf-8")
        with open(folder / VOCAB_NAME, "w", encoding="utf-8") as handle:
            handle.writelines(f"{w} {int(c)}\n" for w, c in zip(self.words, self.counts))
        config = {"model_type": "hfssl-word2vec", **self.config, "vector_size": self.vector_size, "vocab_size": len(self)}
        (folder / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        return folder

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, revision: str | None = None) -> "WordVectors":
        """Load a folder written by :meth:`save_pretrained`, or download it from the Hub by repo id."""
        folder = Path(name_or_path)
        if not folder.is_dir():
            from huggingface_hub import snapshot_download

            folder = Path(snapshot_download(str(name_or_path), revision=revision,
                                            allow_patterns=[WEIGHTS_NAME, CONFIG_NAME, TOKENIZER_NAME, VOCAB_NAME]))
        if not (folder / WEIGHTS_NAME).is_file():
            raise FileNotFoundError(f"{folder} has no {WEIGHTS_NAME}; is it a folder saved by hfssl's word2vec recipe?")
        arrays = load_file(str(folder / WEIGHTS_NAME))
        tokenizer = Tokenizer.from_file(str(folder / TOKENIZER_NAME))
        vocab = tokenizer.get_vocab()
        words = [""] * (len(vocab) - 1)
        for word, i in vocab.items():
            if word != UNK:
                words[i] = word
        config = json.loads((folder / CONFIG_NAME).read_text(encoding="utf-8")) if (folder / CONFIG_NAME).is_file() else {}
        return cls(words, arrays["embeddings"], arrays.get("counts"), tokenizer, config)

    def save_word2vec_format(self, path: str | Path, binary: bool = False) -> Path:
        """Export in the original word2vec text or binary format (``KeyedVectors.load_word2vec_format`` reads
        both). Header ``"<vocab> <dim>\\n"``; then per word ``word v1 v2 ...\\n`` (text) or ``word `` followed
        by ``dim`` little-endian float32 and ``\\n`` (binary)."""
        path = Path(path)
        bad = [w for w in self.words if not w or any(ch.isspace() for ch in w)]
        if bad:
            raise ValueError(f"word2vec format cannot store words containing whitespace: {bad[:5]}")
        with open(path, "wb") as handle:
            handle.write(f"{len(self)} {self.vector_size}\n".encode("utf-8"))
            vectors = self.vectors.astype("<f4")
            for word, vec in zip(self.words, vectors):
                if binary:
                    handle.write(word.encode("utf-8") + b" " + vec.tobytes() + b"\n")
                else:
                    handle.write((word + " " + " ".join(repr(float(x)) for x in vec) + "\n").encode("utf-8"))
        return path

    @classmethod
    def load_word2vec_format(cls, path: str | Path, binary: bool = False) -> "WordVectors":
        """Read a word2vec text/binary file (as written by word2vec C, gensim or :meth:`save_word2vec_format`)."""
        with open(path, "rb") as handle:
            n, dim = map(int, handle.readline().split())
            words, vectors = [], np.empty((n, dim), dtype=np.float32)
            for i in range(n):
                if binary:
                    word = b""
                    while (ch := handle.read(1)) != b" ":
                        if not ch:
                            raise ValueError(f"{path}: file ends before word {i}.")
                        if ch != b"\n":
                            word += ch
                    vectors[i] = np.frombuffer(handle.read(4 * dim), dtype="<f4")
                    words.append(word.decode("utf-8"))
                else:
                    parts = handle.readline().decode("utf-8").rstrip().split(" ")
                    words.append(parts[0])
                    vectors[i] = np.asarray(parts[1:], dtype=np.float32)
        return cls(words, vectors)


def _default_tokenizer() -> Tokenizer:
    from .vocab import make_word_tokenizer

    return make_word_tokenizer()
