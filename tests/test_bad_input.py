"""Bad-input catalogue, table-driven, run in-process: each case must raise a clear error naming the problem and
the fix, before the model is built (the model builder, and for the text recipes the tokenizer trainer, is replaced
by one that fails the test), leaving nothing behind in the output folder. Input that is odd but valid (extremely
long lines, blank lines among the text) must just work: those runs are at the end. tests/BAD_INPUT.md lists these
cases and the ones tested elsewhere."""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest

from conftest import ROOT
from hfssl.checkpointing import OutputDirError
from test_finetune_recipe import REVIEWS, tiny_bert, write_reviews  # noqa: F401  (tiny_bert is a fixture)
from hfssl.config import ConfigError
from hfssl.data.text import DataError

TEXT = "the cat sat on the mat\nthe dog sat on the log\n" * 50
TINY_LM = ["--vocab_size", "300", "--hidden_size", "32", "--num_hidden_layers", "1", "--num_attention_heads", "2",
           "--intermediate_size", "64", "--max_seq_length", "32", "--per_device_train_batch_size", "16",
           "--eval_steps", "0", "--logging_steps", "5"]


def _recipe(name):
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    spec = importlib.util.spec_from_file_location(f"{name}_bad_input", ROOT / "recipes" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _file(tmp, name, data):
    path = tmp / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return str(path)


def _output_cases(tmp):
    blocker = tmp / "a-file"
    blocker.write_text("x")
    taken = tmp / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("keep me")
    return {"unwritable": str(blocker / "out"), "non_empty": str(taken)}


# (case, argv builder (tmp -> extra flags), error type, message that names problem and fix)
# The cases every recipe reading text files shares (mlm, clm, word2vec), with the messages of hfssl.data.text.
TEXT_FILE_CASES = [
    ("missing column", lambda t: ["--train_file", _file(t, "a.csv", "body\nhello world\n" * 20), "--text_column", "text"],
     DataError, r"no column 'text'.*Pass --text_column"),
    ("misnamed columns", lambda t: ["--train_file", _file(t, "a.csv", "body,title\nhello,world\n" * 20)],
     DataError, r"none is called 'text'. Pass --text_column"),
    ("empty file", lambda t: ["--train_file", _file(t, "a.txt", "")], DataError, "empty"),
    ("whitespace-only lines", lambda t: ["--train_file", _file(t, "a.txt", "\n  \n\t\n")], DataError,
     "only whitespace"),
    ("non-UTF-8 bytes", lambda t: ["--train_file", _file(t, "a.txt", TEXT.encode() + b"caf\xe9\n")], DataError,
     r"line 101 is not valid UTF-8.*iconv"),
    ("truncated UTF-8", lambda t: ["--train_file", _file(t, "a.txt", TEXT.encode() + "é".encode()[:1])], DataError,
     "ends inside a UTF-8 character"),
    ("missing file", lambda t: ["--train_file", str(t / "nope.txt")], DataError, "does not exist"),
]
OUTPUT_CASES = [
    ("unwritable output folder", lambda t: ["--output_dir", _output_cases(t)["unwritable"]], OutputDirError,
     "not writable"),
    ("non-empty output folder", lambda t: ["--output_dir", _output_cases(t)["non_empty"]], OutputDirError,
     "--overwrite_output_dir"),
]
WORD2VEC = TEXT_FILE_CASES + [
    ("window 0", lambda t: ["--window", "0"], ConfigError, "--window must be >= 1"),
    ("negative learning rate", lambda t: ["--alpha", "-0.1"], ConfigError, "--alpha must be > 0"),
    ("negative subsampling", lambda t: ["--sample", "-1"], ConfigError, "--sample must be >= 0"),
    ("vocabulary empty after min_count", lambda t: ["--train_file", _file(t, "a.txt", TEXT), "--min_count", "10000"],
     DataError, "lower --min_count"),
] + OUTPUT_CASES
MLM = TEXT_FILE_CASES + [
    ("masking rate above 1", lambda t: ["--mlm_probability", "1.5"], ConfigError, r"mlm_probability must be in \(0, 1\)"),
    ("masking rate 0", lambda t: ["--mlm_probability", "0"], ConfigError, r"mlm_probability must be in \(0, 1\)"),
    ("negative learning rate", lambda t: ["--learning_rate", "-1"], ConfigError, "learning_rate must be positive"),
    ("heads do not divide hidden size", lambda t: ["--num_attention_heads", "3"], ConfigError, r"must be divisible by num_attention_heads.*--num_attention_heads"),
    ("streaming without max_steps", lambda t: ["--streaming", "--max_steps", "0"], ConfigError, "pass --max_steps"),
] + OUTPUT_CASES
CLM = TEXT_FILE_CASES + [
    ("negative learning rate", lambda t: ["--learning_rate", "-1"], ConfigError, "learning_rate must be positive"),
    ("sequence of 1 token", lambda t: ["--max_seq_length", "1"], ConfigError, "at least 2"),
    ("dropout 1", lambda t: ["--dropout", "1"], ConfigError, r"dropout must be in \[0, 1\)"),
    ("streaming without max_steps", lambda t: ["--streaming", "--max_steps", "0"], ConfigError, "pass --max_steps"),
] + OUTPUT_CASES


def _csv(tmp, name, rows, header="review,sentiment"):
    return _file(tmp, name, header + "\n" + "".join(f"{r}\n" for r in rows))


_REVIEW_ROWS = [f'"{t}",{l}' for t, l in REVIEWS]
FINETUNE = [
    ("missing label column", lambda t: ["--label_column", "label"], DataError,
     r"no label column 'label'.*Pass --label_column"),
    ("misnamed text columns", lambda t: ["--train_file", _csv(t, "a.csv", _REVIEW_ROWS, "body,sentiment"),
                                         "--sentence1_key", "review"], DataError, r"no column 'review'"),
    ("no known text column", lambda t: ["--train_file", _csv(t, "a.csv", _REVIEW_ROWS, "body,sentiment"),
                                        "--validation_file", _csv(t, "v.csv", _REVIEW_ROWS, "body,sentiment"),
                                        "--sentence1_key", ""], DataError, "none is a known text column"),
    ("empty file", lambda t: ["--train_file", _file(t, "a.csv", "")], DataError, "is empty"),
    ("header only", lambda t: ["--train_file", _file(t, "a.csv", "review,sentiment\n")], DataError, "no rows|is empty"),
    ("non-UTF-8 bytes", lambda t: ["--train_file", _file(t, "a.csv", ("review,sentiment\n" + "".join(
        r + "\n" for r in _REVIEW_ROWS)).encode() + b'"caf\xe9 au lait",positive\n')], DataError,
     r"line 14 is not valid UTF-8.*iconv"),
    ("truncated UTF-8", lambda t: ["--train_file", _file(t, "a.csv", ("review,sentiment\n" + "".join(
        r + "\n" for r in _REVIEW_ROWS)).encode() + '"café'.encode()[:-1])], DataError, "ends inside a UTF-8 character"),
    ("empty text cell", lambda t: ["--train_file", _csv(t, "a.csv", _REVIEW_ROWS[:2] + [",positive"] + _REVIEW_ROWS[2:])],
     DataError, r"split 'train', row 3: the text column 'review' is empty. Fill or drop"),
    ("whitespace-only text cell", lambda t: ["--validation_file", _csv(t, "v.csv", _REVIEW_ROWS[:3] + ['"   ",negative'])],
     DataError, r"split 'validation', row 4: the text column 'review' is empty"),
    ("unknown validation label", lambda t: ["--validation_file", _csv(t, "v.csv", _REVIEW_ROWS[:3] + ['"meh",neutral'])],
     DataError, r"label\(s\) \['neutral'\] that never occur in the training"),
    ("one label only", lambda t: ["--train_file", _csv(t, "a.csv", [f'"{x}",positive' for x, _ in REVIEWS])],
     DataError, "take only the value"),
    ("missing file", lambda t: ["--train_file", str(t / "nope.csv")], DataError, "does not exist"),
    ("unsupported file type", lambda t: ["--train_file", _file(t, "a.xlsx", "x")], ConfigError, "unsupported file type"),
    ("negative learning rate", lambda t: ["--learning_rate", "-1"], ConfigError, "learning_rate must be > 0"),
    ("max_steps 0", lambda t: ["--max_steps", "0"], ConfigError, "max_steps must be -1"),
] + OUTPUT_CASES


def _png(path, mode="RGB", size=(12, 12)):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color=128 if mode == "L" else (200, 30, 30)).save(path)
    return path


def _image_folder(tmp, kind):
    """An image folder for the image cases: empty, only corrupt files, or valid images without class folders."""
    folder = tmp / kind
    folder.mkdir()
    if kind == "corrupt":
        for label in ("cat", "dog"):
            (folder / label).mkdir()
            for i in range(3):
                (folder / label / f"{i}.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(40))  # header, then nothing
                (folder / label / f"{i}.jpg").write_bytes(b"not a jpeg at all")
    elif kind == "unlabelled":
        for i in range(10):
            _png(folder / f"{i}.png")
    elif kind == "only_text":
        (folder / "cat").mkdir()
        (folder / "cat" / "notes.txt").write_text("no images here")
    return str(folder)


IMAGE_FOLDER_CASES = [
    ("empty image folder", lambda t: ["--train_dir", _image_folder(t, "empty")], DataError,
     "holds no image files.*Pass the folder that holds the images"),
    ("folder of non-image files", lambda t: ["--train_dir", _image_folder(t, "only_text")], DataError,
     "holds no image files"),
    ("only corrupt images", lambda t: ["--train_dir", _image_folder(t, "corrupt")], DataError,
     r"None of \d+ images sampled .* could be decoded.*corrupt, truncated or not images"),
    ("train_dir not a folder", lambda t: ["--train_dir", str(t / "nope")], DataError, "is not a folder"),
]

CONTRASTIVE = [
    ("missing image column", lambda t: ["--image_column", "photo"], DataError, r"no image column 'photo'.*--image_column"),
    ("missing label column", lambda t: ["--label_column", "klass"], DataError, r"no label column 'klass'.*--label_column"),
    ("train_dir not a folder", lambda t: ["--train_dir", str(t / "nope")], DataError, "is not a folder"),
    ("negative learning rate", lambda t: ["--learning_rate", "-1"], ConfigError, "--learning_rate must be > 0"),
    ("crop scale outside (0, 1]", lambda t: ["--crop_min_scale", "0"], ConfigError, "crop_min_scale must be in"),
    ("temperature 0", lambda t: ["--temperature", "0"], ConfigError, "--temperature must be > 0"),
    ("batch of 1 for SimCLR", lambda t: ["--per_device_train_batch_size", "1"], ConfigError, ">= 2"),
    ("streaming without max_steps", lambda t: ["--streaming"], ConfigError, "--max_steps"),
    *IMAGE_FOLDER_CASES[:3],
] + OUTPUT_CASES

IMAGE_FINETUNE = [
    ("missing label column", lambda t: ["--label_column", "klass"], DataError, r"no label column 'klass'.*--label_column"),
    ("missing image column", lambda t: ["--image_column", "photo"], DataError, r"no image column 'photo'.*--image_column"),
    ("no label column at all", lambda t: ["--train_dir", _image_folder(t, "unlabelled")], ConfigError,
     "needs a label column.*--label_column"),
    *IMAGE_FOLDER_CASES,
    ("negative learning rate", lambda t: ["--learning_rate", "-1"], ConfigError, "--learning_rate must be > 0"),
    ("batch of 0", lambda t: ["--per_device_train_batch_size", "0"], ConfigError, "must be >= 1"),
    ("no epochs", lambda t: ["--num_train_epochs", "0"], ConfigError, "--num_train_epochs > 0"),
    ("validation split 100%", lambda t: ["--validation_split_percentage", "100"], ConfigError, r"in \[0, 100\)"),
    ("dataset and train_dir together", lambda t: ["--dataset_name", "cifar10", "--train_dir", str(t)], ConfigError,
     "not both"),
] + OUTPUT_CASES

# mae builds its model before reading data (recipes/mae.py, "model first"), so only its config and output-folder
# cases are rejected before the model here; see tests/BAD_INPUT.md.
MAE = [
    ("masking ratio 1", lambda t: ["--mask_ratio", "1"], ConfigError, r"--mask_ratio must be in \[0, 1\)"),
    ("negative learning rate", lambda t: ["--learning_rate", "-1"], ConfigError, "--learning_rate must be > 0"),
    ("image size not a multiple of the patch", lambda t: ["--image_size", "30", "--patch_size", "4"], ConfigError,
     "must be a multiple of --patch_size"),
    ("crop scale outside (0, 1]", lambda t: ["--crop_min_scale", "0"], ConfigError, "crop_min_scale must be in"),
] + OUTPUT_CASES


def _never(*args, **kwargs):
    raise AssertionError("expensive work (model building) started before the bad input was rejected")


class _NeverModel:
    """Stands in for an Auto* model class: loading or building it fails the test."""
    from_pretrained = from_config = staticmethod(_never)


def _check(recipe, builders, base, case_args, error, message, tmp_path, monkeypatch):
    for name in [builders] if isinstance(builders, str) else builders:
        monkeypatch.setattr(recipe, name, _NeverModel if name.startswith("Auto") else _never)
    out = tmp_path / "out"
    argv = ["--output_dir", str(out), "--report_to", "none", *base, *case_args]
    with pytest.raises(error, match=message):
        recipe.main(argv)
    assert not out.exists() or not any(out.iterdir()), f"left behind: {list(out.iterdir())}"
    taken = tmp_path / "taken"
    if taken.exists():
        assert [p.name for p in taken.iterdir()] == ["notes.txt"] and (taken / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize("case, build, error, message", WORD2VEC, ids=[c[0] for c in WORD2VEC])
def test_word2vec(case, build, error, message, tmp_path, monkeypatch):
    recipe = _recipe("word2vec")
    base = ["--train_file", _file(tmp_path, "good.txt", TEXT), "--analogy_file", "none", "--similarity_files", "none"]
    _check(recipe, "Word2VecModel", base, build(tmp_path), error, message, tmp_path, monkeypatch)


@pytest.mark.parametrize("case, build, error, message", CONTRASTIVE, ids=[c[0] for c in CONTRASTIVE])
def test_contrastive(case, build, error, message, tmp_path, monkeypatch):
    recipe = _recipe("contrastive")
    _check(recipe, "build_backbone", ["--max_train_samples", "64"], build(tmp_path), error, message, tmp_path,
           monkeypatch)


def _image_processor(tmp):
    from transformers import ViTImageProcessor

    ViTImageProcessor(size={"height": 16, "width": 16}).save_pretrained(tmp / "encoder")
    return str(tmp / "encoder")


# recipe -> (what builds its model, flags that make it read local data: its own default or a --train_file)
REVISION_WITH_LOCAL_DATA = {
    "mlm": ("build_model", lambda t: ["--train_file", _file(t, "good.txt", TEXT)]),
    "clm": ("build_model", lambda t: []),  # the offline default corpus
    "word2vec": ("Word2VecModel", lambda t: ["--train_file", _file(t, "good.txt", TEXT)]),
    "contrastive": ("build_backbone", lambda t: []),  # scikit-learn digits
    "mae": ("build_mae", lambda t: []),
    "image_finetune": ("AutoModelForImageClassification", lambda t: ["--model_name_or_path", _image_processor(t)]),
}


@pytest.mark.parametrize("name", sorted(REVISION_WITH_LOCAL_DATA))
def test_dataset_revision_with_local_data_is_refused(name, tmp_path, monkeypatch):
    # Every recipe takes --dataset_revision; a local file, folder or built-in dataset has none to pin.
    builder, base = REVISION_WITH_LOCAL_DATA[name]
    _check(_recipe(name), builder, base(tmp_path), ["--dataset_revision", "v1.0"], ConfigError,
           r"--dataset_revision v1\.0 pins a version of a Hub dataset.*Drop --dataset_revision", tmp_path, monkeypatch)


@pytest.mark.parametrize("case, build, error, message", MLM, ids=[c[0] for c in MLM])
def test_mlm(case, build, error, message, tmp_path, monkeypatch):
    base = ["--train_file", _file(tmp_path, "good.txt", TEXT), *TINY_LM]
    _check(_recipe("mlm"), ["build_model", "load_or_train_tokenizer"], base, build(tmp_path), error, message, tmp_path,
           monkeypatch)


@pytest.mark.parametrize("case, build, error, message", CLM, ids=[c[0] for c in CLM])
def test_clm(case, build, error, message, tmp_path, monkeypatch):
    base = ["--train_file", _file(tmp_path, "good.txt", TEXT), *TINY_LM, "--sample_max_new_tokens", "0"]
    _check(_recipe("clm"), ["build_model", "load_or_train_tokenizer"], base, build(tmp_path), error, message, tmp_path,
           monkeypatch)


@pytest.mark.parametrize("case, build, error, message", FINETUNE, ids=[c[0] for c in FINETUNE])
def test_finetune(case, build, error, message, tiny_bert, tmp_path, monkeypatch):
    monkeypatch.setenv("HFSSL_CACHE", str(tmp_path / "cache"))
    files = write_reviews(tmp_path)
    base = ["--model_name_or_path", str(tiny_bert), "--train_file", files["train"], "--validation_file",
            files["validation"], "--sentence1_key", "review", "--label_column", "sentiment"]
    _check(_recipe("finetune"), "load_classifier", base, build(tmp_path), error, message, tmp_path, monkeypatch)


@pytest.fixture(scope="module")
def tiny_image_model(tmp_path_factory):
    """What image_finetune loads first: an encoder config and its image processor (weights are never reached)."""
    from transformers import ResNetConfig, ViTImageProcessor

    folder = tmp_path_factory.mktemp("tiny-image-model")
    ResNetConfig(embedding_size=8, hidden_sizes=[16], depths=[1], layer_type="basic").save_pretrained(folder)
    ViTImageProcessor(size={"height": 16, "width": 16}).save_pretrained(folder)
    return str(folder)


@pytest.mark.parametrize("case, build, error, message", IMAGE_FINETUNE, ids=[c[0] for c in IMAGE_FINETUNE])
def test_image_finetune(case, build, error, message, tiny_image_model, tmp_path, monkeypatch):
    base = ["--model_name_or_path", tiny_image_model, "--max_train_samples", "64"]
    _check(_recipe("image_finetune"), "AutoModelForImageClassification", base, build(tmp_path), error, message,
           tmp_path, monkeypatch)


@pytest.mark.parametrize("case, build, error, message", MAE, ids=[c[0] for c in MAE])
def test_mae(case, build, error, message, tmp_path, monkeypatch):
    _check(_recipe("mae"), "build_mae", ["--max_train_samples", "64"], build(tmp_path), error, message, tmp_path,
           monkeypatch)


# ---- Odd but valid input: must just work --------------------------------------------------------------------------

LONG_WORDS = 6000  # one line of 6,000 words: many blocks/chunks, never one giant sequence


def _long_and_blank_lines(tmp):
    """A few hundred short lines with empty and whitespace-only lines among them, and one 6,000-word line."""
    words = TEXT.split()
    long_line = " ".join(words[i % len(words)] for i in range(LONG_WORDS))
    lines = []
    for i, line in enumerate(TEXT.splitlines()):
        lines += [line, "", "   ", "\t"] if i % 10 == 0 else [line]
    lines.insert(len(lines) // 2, long_line)
    short_words = len(TEXT.split())
    return _file(tmp, "odd.txt", "\n".join(lines) + "\n"), short_words


@pytest.mark.parametrize("name", ["mlm", "clm"])
def test_language_models_chunk_long_lines_and_skip_blank_ones(name, tmp_path):
    """The long line is packed into many full blocks (not truncated to one): one epoch trains on more tokens than
    the short lines hold in all. Blank lines add nothing and break nothing."""
    path, short_words = _long_and_blank_lines(tmp_path)
    out = tmp_path / "out"
    extra = ["--sample_max_new_tokens", "0"] if name == "clm" else []
    results = _recipe(name).main(["--train_file", path, "--output_dir", str(out), "--report_to", "none",
                                  "--validation_split_percentage", "0", "--num_train_epochs", "1", "--max_steps", "0",
                                  *TINY_LM, *extra])
    assert results["train_tokens"] > short_words + LONG_WORDS * 0.9, results
    assert (out / "model.safetensors").is_file()


def test_word2vec_chunks_long_lines_and_skips_blank_ones(tmp_path):
    path, short_words = _long_and_blank_lines(tmp_path)
    out = tmp_path / "out"
    _recipe("word2vec").main(["--train_file", path, "--output_dir", str(out), "--report_to", "none", "--epochs", "1",
                              "--min_count", "1", "--vector_size", "8", "--chunk_words", "1000",
                              "--analogy_file", "none", "--similarity_files", "none", "--save_word2vec_format", "none"])
    results = json.loads((out / "all_results.json").read_text())
    assert results["corpus_words"] == short_words + LONG_WORDS  # every word of the long line, none from blank lines
    assert results["words_seen"] == results["corpus_words"]


def test_finetune_truncates_long_texts_and_skips_blank_lines(tiny_bert, tmp_path, monkeypatch):
    """A 20,000-word review is truncated to --max_seq_length; blank lines between CSV rows are not rows."""
    monkeypatch.setenv("HFSSL_CACHE", str(tmp_path / "cache"))
    long_review = " ".join(["wonderful"] * 20000)
    rows = [f'"{t}",{l}' for t, l in REVIEWS] + [f'"{long_review}",positive']
    train = _file(tmp_path, "train.csv", "review,sentiment\n" + "\n\n".join(rows) + "\n\n")
    out = tmp_path / "out"
    results = _recipe("finetune").main([
        "--model_name_or_path", str(tiny_bert), "--output_dir", str(out), "--train_file", train, "--validation_file",
        train, "--sentence1_key", "review", "--label_column", "sentiment", "--max_steps", "2", "--report_to", "none",
        "--max_seq_length", "48", "--per_device_train_batch_size", "13", "--do_predict", "false"])
    assert results["eval_accuracy"] >= 0 and (out / "model.safetensors").is_file()
    state = json.loads(sorted((out / "checkpoints").glob("checkpoint-*"))[-1].joinpath("trainer_state.json").read_text())
    assert state["global_step"] == 2 and state["epoch"] == 2.0  # one batch of 13 per epoch: blank lines are not rows
