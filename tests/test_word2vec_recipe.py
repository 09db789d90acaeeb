"""recipes/word2vec.py end to end on CPU: the loss falls, related words become neighbours, the folder loads
with one call and gensim reads the export, resuming gives the same vectors as an uninterrupted run, and two
processes (torchrun) train together."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from hfssl.config import ConfigError, parse_config
from hfssl.word2vec import Word2VecConfig, WordVectors, fused

from conftest import run_recipe

GROUPS = {
    "animal": ["cat", "dog", "horse", "cow", "sheep"],
    "colour": ["red", "green", "blue", "yellow", "purple"],
    "number": ["one", "two", "three", "four", "five"],
    "fruit": ["apple", "pear", "plum", "cherry", "grape"],
}


def _structured_corpus(path, sentences: int = 1500, seed: int = 0):
    """Each sentence talks about one group: its words share contexts, so they should end up as neighbours."""
    rng = np.random.default_rng(seed)
    names = list(GROUPS)
    lines = []
    for _ in range(sentences):
        group = GROUPS[names[rng.integers(len(names))]]
        words = list(rng.choice(group, size=6)) + ["and", "the"]
        rng.shuffle(words)
        lines.append(" ".join(words))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


COMMON = ["--epochs", "4", "--vector_size", "24", "--window", "3", "--min_count", "2", "--chunk_words", "2000",
          "--batch_windows", "256", "--report_to", "none", "--logging_steps", "2", "--sample", "0.01",
          "--analogy_file", "none", "--similarity_files", "none", "--neighbour_words", "cat", "red"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return _structured_corpus(tmp_path_factory.mktemp("w2v") / "groups.txt")


@pytest.fixture(scope="module")
def full_run(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("w2v") / "full"
    proc = run_recipe("word2vec.py", "--train_file", str(corpus), "--output_dir", str(out), "--checkpointing_steps", "5",
                      "--checkpoints_total_limit", "0", "--save_word2vec_format", "both", *COMMON)
    return out, proc


def test_loss_falls_and_related_words_are_neighbours(full_run):
    out, proc = full_run
    results = json.loads((out / "all_results.json").read_text())
    wv = WordVectors.from_pretrained(out)
    history = [loss for _, loss in json.loads(next((out / "checkpoints").glob("step_*/hfssl_progress.json")).read_text())["loss_history"]]
    assert history[-1] < history[0]
    assert results["train_loss"] < history[0]
    for group in GROUPS.values():
        for word in group:
            nearest = [w for w, _ in wv.most_similar(word, topn=4)]
            assert set(nearest) <= set(group), (word, nearest)
    assert [w for w, _ in results["nearest_neighbours"]["cat"]][:4] == [w for w, _ in wv.most_similar("cat", topn=4)]
    assert "cat:" in proc.stdout
    card = (out / "README.md").read_text()
    assert "WordVectors.from_pretrained" in card and "library_name: hfssl" in card
    # The folder is also a sentence-transformers model (format checked in test_word2vec_vectors.py).
    assert (out / "modules.json").is_file() and (out / "0_StaticEmbedding" / "model.safetensors").is_file()


@pytest.mark.parametrize("fused_kernel", ["true", "false"])
def test_cbow_with_two_worker_threads_learns_the_groups(corpus, tmp_path, fused_kernel):
    """CBOW trained by two Hogwild worker threads, with the fused C loop or the batched PyTorch steps: the loss
    falls and related words become neighbours."""
    out = tmp_path / "cbow"
    run_recipe("word2vec.py", "--train_file", str(corpus), "--output_dir", str(out), "--model", "cbow", "--workers", "2",
               "--save_word2vec_format", "none", "--fused_kernel", fused_kernel, *COMMON)
    fused_here = fused_kernel == "true" and fused.load() is not None  # no C compiler: the recipe falls back
    assert ("fused C loop" if fused_here else "batched PyTorch steps") in (out / "README.md").read_text()
    progress = json.loads(next((out / "checkpoints").glob("step_*/hfssl_progress.json")).read_text())
    history = [loss for _, loss in progress["loss_history"]]
    assert history[-1] < 0.8 * history[0]
    results = json.loads((out / "all_results.json").read_text())
    # Every chunk was trained exactly once per epoch by one of the workers (all words are in the vocabulary).
    assert results["words_seen"] == results["corpus_words"] * 4
    wv = WordVectors.from_pretrained(out)
    for group in GROUPS.values():
        for word in group:
            nearest = [w for w, _ in wv.most_similar(word, topn=4)]
            assert set(nearest) <= set(group), (word, nearest)


def test_exports_are_read_by_gensim(full_run):
    from gensim.models import KeyedVectors

    out, _ = full_run
    wv = WordVectors.from_pretrained(out)
    for name, binary in (("vectors.txt", False), ("vectors.bin", True)):
        kv = KeyedVectors.load_word2vec_format(str(out / name), binary=binary)
        assert list(kv.index_to_key) == wv.words and np.array_equal(kv.vectors, wv.vectors)


def test_resume_gives_the_same_vectors(full_run, corpus, tmp_path):
    out, _ = full_run
    checkpoints = sorted((out / "checkpoints").glob("step_*"))
    assert len(checkpoints) >= 2
    middle = checkpoints[len(checkpoints) // 2 - 1]
    resumed = tmp_path / "resumed"
    run_recipe("word2vec.py", "--train_file", str(corpus), "--output_dir", str(resumed), "--checkpointing_steps", "5",
               "--resume_from_checkpoint", str(middle), "--save_word2vec_format", "none", *COMMON)
    a, b = WordVectors.from_pretrained(out), WordVectors.from_pretrained(resumed)
    assert a.words == b.words
    assert np.array_equal(a.vectors, b.vectors)


def test_streaming_reads_the_same_corpus_and_gives_the_same_vectors(full_run, corpus, tmp_path):
    """--streaming reads the file as an IterableDataset; word2vec builds its vocabulary and corpus from it in one
    pass, so the vectors are those of the non-streaming run, bit for bit."""
    out, _ = full_run
    streamed = tmp_path / "streamed"
    run_recipe("word2vec.py", "--train_file", str(corpus), "--output_dir", str(streamed), "--streaming", "true",
               "--save_word2vec_format", "none", *COMMON)
    a, b = WordVectors.from_pretrained(out), WordVectors.from_pretrained(streamed)
    assert a.words == b.words
    assert np.array_equal(a.vectors, b.vectors)


def test_two_processes_train_together(corpus, tmp_path):
    out = tmp_path / "ddp"
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    run_recipe("word2vec.py", "--train_file", str(corpus), "--output_dir", str(out), *COMMON, launcher=launcher)
    results = json.loads((out / "all_results.json").read_text())
    assert results["num_processes"] == 2
    wv = WordVectors.from_pretrained(out)
    nearest = [w for w, _ in wv.most_similar("cat", topn=4)]
    assert set(nearest) <= set(GROUPS["animal"])


def test_bad_values_fail_before_training(tmp_path):
    with pytest.raises(ConfigError, match="window"):
        parse_config(Word2VecConfig, ["--window", "0"])
    with pytest.raises(ConfigError, match="sample"):
        parse_config(Word2VecConfig, ["--sample", "-1"])
    with pytest.raises(SystemExit):  # argparse choices
        parse_config(Word2VecConfig, ["--model", "glove"])
    proc = run_recipe("word2vec.py", "--train_file", str(tmp_path / "missing.txt"), "--output_dir", str(tmp_path / "o"),
                      "--report_to", "none", expect_ok=False)
    assert proc.returncode != 0 and "does not exist" in proc.stderr


def test_config_files_parse():
    from pathlib import Path

    for path in sorted(Path(__file__).resolve().parent.parent.glob("recipes/configs/word2vec/*.yaml")):
        cfg = parse_config(Word2VecConfig, ["--config", str(path)])
        assert cfg.model in ("sg", "cbow")


def test_push_to_hub_publishes_a_folder_that_loads(corpus, tmp_path):
    """Against the offline fake Hub: the pushed files rebuild a folder that loads with one call, and the token
    appears in no output file or log."""
    from fake_hub import FakeHub

    from conftest import recipe_env

    token = "hf_w2vCanary_0f1e2d3c4b5a69788796"
    out = tmp_path / "out"
    with FakeHub(tokens={token: "write"}) as server:
        env = recipe_env(HF_ENDPOINT=server.url, HF_TOKEN=token, HF_HUB_OFFLINE="0", HF_HOME=str(tmp_path / "hf_home"),
                         HFSSL_HUB_RETRY_WAIT="0.05", HFSSL_HUB_TIMEOUT="10")
        proc = run_recipe("word2vec.py", "--train_file", str(corpus), "--output_dir", str(out), *COMMON, "--epochs", "1",
                          "--push_to_hub", "--hub_model_id", "tester/w2v", env=env)
        pushed = server.files("tester/w2v")
    assert {"model.safetensors", "tokenizer.json", "vocab.txt", "config.json", "README.md", "vectors.bin"} <= set(pushed)
    assert not any(p.startswith("checkpoints/") for p in pushed)
    clone = tmp_path / "clone"
    for path, data in pushed.items():
        (clone / path).parent.mkdir(parents=True, exist_ok=True)
        (clone / path).write_bytes(data)
    local, remote = WordVectors.from_pretrained(out), WordVectors.from_pretrained(clone)
    assert remote.words == local.words and np.array_equal(remote.vectors, local.vectors)
    assert token not in proc.stdout + proc.stderr
    assert not any(token.encode() in p.read_bytes() for p in out.rglob("*") if p.is_file())


def test_hub_dataset_revision_is_recorded_in_config_and_card(corpus, tmp_path, monkeypatch):
    """--dataset_revision reaches datasets.load_dataset (replaced here: no Hub offline), hfssl_config.yaml and the
    model card's training-data line."""
    import importlib.util

    import yaml
    from accelerate.state import AcceleratorState
    from datasets import Dataset, DatasetDict

    from conftest import ROOT

    calls = []

    def fake_load_dataset(*args, **kwargs):  # the Hub download; everything after it is the real recipe
        calls.append((args, kwargs))
        return DatasetDict(train=Dataset.from_dict({"text": corpus.read_text(encoding="utf-8").splitlines()}))

    monkeypatch.setattr("hfssl.data.text.load_dataset", fake_load_dataset)
    AcceleratorState._reset_state(reset_partial_state=True)
    spec = importlib.util.spec_from_file_location("word2vec_revision", ROOT / "recipes" / "word2vec.py")
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    sha = "4f6c2b9e1d8a7c3b5e0f9a2d4c6b8e1f3a5c7d9b"
    out = tmp_path / "out"
    recipe.main(["--dataset_name", "tester/groups", "--dataset_revision", sha, "--output_dir", str(out), *COMMON,
                 "--epochs", "1", "--save_sentence_transformers", "false"])
    assert calls and all(kwargs["revision"] == sha for _, kwargs in calls)
    assert yaml.safe_load((out / "hfssl_config.yaml").read_text())["dataset_revision"] == sha
    card = (out / "README.md").read_text(encoding="utf-8")
    assert f"revision: `{sha}`" in card and "not pinned" not in card
