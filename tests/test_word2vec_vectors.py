"""WordVectors: save/load round trip, word2vec text/binary exports that gensim reads, and evaluation that
agrees with gensim's own evaluators on the same vectors."""

from __future__ import annotations

import numpy as np
import pytest
from gensim.models import KeyedVectors

from hfssl.word2vec import WordVectors
from hfssl.word2vec.evaluation import evaluate_analogies, evaluate_word_pairs, gensim_test_file, nearest_neighbours
from hfssl.word2vec.vocab import make_word_tokenizer


@pytest.fixture()
def wv() -> WordVectors:
    rng = np.random.default_rng(0)
    words = ["the", "king", "queen", "man", "woman", "paris", "france", "rome", "italy", "café", "x"]
    return WordVectors(words, rng.normal(size=(len(words), 8)).astype(np.float32), np.arange(len(words), 0, -1),
                       make_word_tokenizer(), {"architecture": "sg"})


def _as_gensim(wv: WordVectors) -> KeyedVectors:
    kv = KeyedVectors(wv.vector_size)
    kv.add_vectors(wv.words, wv.vectors)
    return kv


def test_save_and_load_round_trip(tmp_path, wv):
    wv.save_pretrained(tmp_path)
    assert {p.name for p in tmp_path.iterdir()} >= {"model.safetensors", "tokenizer.json", "vocab.txt", "config.json"}
    back = WordVectors.from_pretrained(tmp_path)
    assert back.words == wv.words
    assert np.array_equal(back.vectors, wv.vectors) and np.array_equal(back.counts, wv.counts)
    assert back.config["architecture"] == "sg" and back.config["vector_size"] == 8
    # The saved tokenizer applies the training normalisation: "The CAFÉ!" -> the, café.
    assert np.allclose(back.encode("The CAFÉ!"), (wv["the"] + wv["café"]) / 2)
    assert np.array_equal(back.encode("unknown words only"), np.zeros(8, dtype=np.float32))


def test_folder_loads_as_a_sentence_transformers_static_embedding(tmp_path, wv, monkeypatch):
    """SentenceTransformer loads the folder offline; a sentence's embedding is the mean of its word vectors
    (an unknown word counts as a zero vector: same direction, scaled by known/all words)."""
    pytest.importorskip("sentence_transformers")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    wv.save_pretrained(tmp_path, sentence_transformers=True)
    assert WordVectors.from_pretrained(tmp_path).words == wv.words  # still our folder too
    model = SentenceTransformer(str(tmp_path), device="cpu")
    known, with_unknown = model.encode(["The king, the QUEEN; Paris!", "king zebra queen"])
    assert np.allclose(known, wv.encode("The king, the QUEEN; Paris!"), atol=1e-6)
    assert np.allclose(known, (2 * wv["the"] + wv["king"] + wv["queen"] + wv["paris"]) / 5, atol=1e-6)
    assert np.allclose(with_unknown, wv.encode("king zebra queen") * 2 / 3, atol=1e-6)


@pytest.mark.parametrize("binary", [False, True])
def test_word2vec_format_export_is_read_by_gensim_and_back(tmp_path, wv, binary):
    path = wv.save_word2vec_format(tmp_path / ("v.bin" if binary else "v.txt"), binary=binary)
    kv = KeyedVectors.load_word2vec_format(str(path), binary=binary)
    assert list(kv.index_to_key) == wv.words
    assert np.array_equal(kv.vectors, wv.vectors)  # exact: float32 round-trips in both formats
    # and our reader reads what gensim writes
    kv.save_word2vec_format(str(tmp_path / "g"), binary=binary)
    back = WordVectors.load_word2vec_format(tmp_path / "g", binary=binary)
    assert back.words == wv.words and np.array_equal(back.vectors, wv.vectors)


def test_most_similar_matches_gensim(wv):
    kv = _as_gensim(wv)
    ours = wv.most_similar(["king", "woman"], negative=["man"], topn=4)
    theirs = kv.most_similar(positive=["king", "woman"], negative=["man"], topn=4)
    assert [w for w, _ in ours] == [w for w, _ in theirs]
    assert np.allclose([s for _, s in ours], [s for _, s in theirs], atol=1e-5)
    assert nearest_neighbours(wv, ["king", "absent"], topn=3).keys() == {"king"}
    with pytest.raises(KeyError, match="absent"):
        wv.most_similar("absent")


def test_evaluation_agrees_with_gensim():
    """Same vectors, same files: our analogy accuracy and Spearman equal gensim's evaluators'."""
    rng = np.random.default_rng(1)
    questions = gensim_test_file("questions-words.txt")
    words = sorted({w.lower() for line in questions.read_text().splitlines()[:2000] if not line.startswith(":") for w in line.split()})
    words += sorted({w.lower() for line in gensim_test_file("wordsim353.tsv").read_text().splitlines()
                     if not line.startswith("#") for w in line.split("\t")[:2]} - set(words))
    vectors = rng.normal(size=(len(words), 16)).astype(np.float32)
    # Give capital -> country a shared offset so that a good share of analogies is answered right.
    index = {w: i for i, w in enumerate(words)}
    offset = rng.normal(size=16) * 2
    for line in questions.read_text().splitlines()[1:200]:
        capital, country = line.lower().split()[:2]
        vectors[index[country]] = vectors[index[capital]] + offset + rng.normal(size=16) * 0.3
    ours = WordVectors(words, vectors)
    kv = _as_gensim(ours)
    theirs_score, sections = kv.evaluate_word_analogies(str(questions), restrict_vocab=len(words), case_insensitive=True)
    mine = evaluate_analogies(ours, questions)
    assert mine["answered"] == len(sections[-1]["correct"]) + len(sections[-1]["incorrect"]) > 1000
    assert mine["correct"] > 100
    assert mine["accuracy"] == pytest.approx(theirs_score)
    (pearson, (spearman, _), oov) = kv.evaluate_word_pairs(str(gensim_test_file("wordsim353.tsv")), case_insensitive=True)
    pairs = evaluate_word_pairs(ours, gensim_test_file("wordsim353.tsv"))
    assert pairs["spearman"] == pytest.approx(spearman, abs=1e-6)
    assert pairs["oov_ratio"] * 100 == pytest.approx(oov)
