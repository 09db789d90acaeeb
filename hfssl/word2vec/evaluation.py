"""Intrinsic evaluation of word vectors: analogies, word-pair similarity and nearest neighbours.

The file formats and the rules are gensim's (``KeyedVectors.evaluate_word_analogies`` /
``evaluate_word_pairs``) so numbers are comparable: a question or pair with a word outside the vocabulary
(or, for analogies, outside the ``restrict_vocab`` most frequent words) is skipped and counted; an analogy
``a : b :: c : ?`` is answered by 3CosAdd, the nearest word to ``b - a + c`` other than ``a``, ``b``, ``c``;
similarity is the Spearman correlation between cosine similarity and the human score. Words are compared
lowercased, as the default tokenizer lowercases.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .vectors import WordVectors


def _normalized(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def read_analogies(path: str | Path) -> list[tuple[str, list[tuple[str, str, str, str]]]]:
    """Sections of a questions-words file: ``: section`` headers followed by ``a b c d`` lines."""
    sections: list[tuple[str, list[tuple[str, str, str, str]]]] = []
    for lineno, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        if line.startswith(":"):
            sections.append((line[1:].strip(), []))
            continue
        parts = line.lower().split()
        if len(parts) != 4:
            raise ValueError(f"{path}:{lineno}: expected 4 words per analogy line, got {line!r}.")
        if not sections:
            sections.append(("default", []))
        sections[-1][1].append(tuple(parts))  # type: ignore[arg-type]
    return sections


def evaluate_analogies(wv: "WordVectors", path: str | Path, restrict_vocab: int = 300000, batch_size: int = 512) -> dict:
    """Analogy accuracy (3CosAdd) over the questions whose four words are in the ``restrict_vocab`` most
    frequent words. Returns ``{"accuracy", "correct", "answered", "skipped", "sections": {name: accuracy}}``."""
    n = min(restrict_vocab, len(wv))
    index = {w: i for i, w in enumerate(wv.words[:n])}
    unit = _normalized(wv.vectors[:n].astype(np.float32))
    correct = answered = skipped = 0
    per_section = {}
    for name, questions in read_analogies(path):
        ids = [tuple(index.get(w, -1) for w in q) for q in questions]
        known = np.array([q for q in ids if min(q) >= 0], dtype=np.int64).reshape(-1, 4)
        skipped += len(ids) - len(known)
        sec_correct = 0
        for start in range(0, len(known), batch_size):
            q = known[start : start + batch_size]
            query = unit[q[:, 1]] - unit[q[:, 0]] + unit[q[:, 2]]
            sims = query @ unit.T
            rows = np.arange(len(q))
            for col in range(3):  # the question words themselves are not allowed as answers
                sims[rows, q[:, col]] = -np.inf
            sec_correct += int((sims.argmax(1) == q[:, 3]).sum())
        if len(known):
            per_section[name] = sec_correct / len(known)
        correct += sec_correct
        answered += len(known)
    return {"accuracy": correct / answered if answered else 0.0, "correct": correct, "answered": answered,
            "skipped": skipped, "sections": per_section}


def read_word_pairs(path: str | Path, delimiter: str = "\t") -> list[tuple[str, str, float]]:
    """``word1 word2 score`` lines (``#`` comments skipped), as wordsim353.tsv and simlex999.txt."""
    pairs = []
    for lineno, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split(delimiter)
        if len(parts) < 3:
            raise ValueError(f"{path}:{lineno}: expected 'word1{delimiter}word2{delimiter}score', got {line!r}.")
        pairs.append((parts[0].strip().lower(), parts[1].strip().lower(), float(parts[2])))
    return pairs


def evaluate_word_pairs(wv: "WordVectors", path: str | Path, delimiter: str = "\t") -> dict:
    """Spearman (and Pearson) correlation of cosine similarity with human scores over in-vocabulary pairs.

    Returns ``{"spearman", "pearson", "pairs", "oov_pairs", "oov_ratio"}``; correlations are NaN when fewer
    than two pairs are in the vocabulary.
    """
    from scipy.stats import pearsonr, spearmanr

    pairs = read_word_pairs(path, delimiter)
    model, human = [], []
    for a, b, score in pairs:
        if a in wv and b in wv:
            model.append(wv.similarity(a, b))
            human.append(score)
    oov = len(pairs) - len(model)
    if len(model) >= 2:
        spearman, pearson = float(spearmanr(model, human)[0]), float(pearsonr(model, human)[0])
    else:
        spearman = pearson = float("nan")
    return {"spearman": spearman, "pearson": pearson, "pairs": len(model), "oov_pairs": oov,
            "oov_ratio": oov / len(pairs) if pairs else 0.0}


def nearest_neighbours(wv: "WordVectors", words: list[str], topn: int = 5) -> dict[str, list[tuple[str, float]]]:
    """The ``topn`` most similar words of each in-vocabulary word in ``words``."""
    return {w: wv.most_similar(w, topn=topn) for w in words if w in wv}


def gensim_test_file(name: str) -> Path | None:
    """Path of an evaluation file shipped with gensim (questions-words.txt, wordsim353.tsv, simlex999.txt)."""
    try:
        import gensim
    except ImportError:
        return None
    path = Path(gensim.__file__).parent / "test" / "test_data" / name
    return path if path.is_file() else None
