"""Word2vec (skip-gram and CBOW with negative sampling) on Accelerate: a fused C loop on CPU (``fused.py``),
batched PyTorch steps on GPU (``update.py``).

``recipes/word2vec.py`` is the training script; :class:`WordVectors` loads what it saves::

    from hfssl.word2vec import WordVectors
    wv = WordVectors.from_pretrained("outputs/word2vec")
    wv.most_similar("king")
"""

from .config import Word2VecConfig
from .evaluation import evaluate_analogies, evaluate_word_pairs, nearest_neighbours
from .model import Word2VecModel
from .vectors import WordVectors

__all__ = ["Word2VecConfig", "Word2VecModel", "WordVectors", "evaluate_analogies", "evaluate_word_pairs", "nearest_neighbours"]
