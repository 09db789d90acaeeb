"""Bad-input catalogue, table-driven, run in-process: each case must raise a clear error naming the problem and
the fix, before the model is built (the model builder is replaced by one that fails the test), leaving nothing
behind in the output folder. tests/BAD_INPUT.md lists these cases and the ones tested elsewhere."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from conftest import ROOT
from hfssl.checkpointing import OutputDirError
from hfssl.config import ConfigError
from hfssl.data.text import DataError

TEXT = "the cat sat on the mat\nthe dog sat on the log\n" * 50


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
WORD2VEC = [
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
    ("window 0", lambda t: ["--window", "0"], ConfigError, "--window must be >= 1"),
    ("negative learning rate", lambda t: ["--alpha", "-0.1"], ConfigError, "--alpha must be > 0"),
    ("negative subsampling", lambda t: ["--sample", "-1"], ConfigError, "--sample must be >= 0"),
    ("vocabulary empty after min_count", lambda t: ["--train_file", _file(t, "a.txt", TEXT), "--min_count", "10000"],
     DataError, "lower --min_count"),
    ("unwritable output folder", lambda t: ["--output_dir", _output_cases(t)["unwritable"]], OutputDirError,
     "not writable"),
    ("non-empty output folder", lambda t: ["--output_dir", _output_cases(t)["non_empty"]], OutputDirError,
     "--overwrite_output_dir"),
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
    ("unwritable output folder", lambda t: ["--output_dir", _output_cases(t)["unwritable"]], OutputDirError,
     "not writable"),
    ("non-empty output folder", lambda t: ["--output_dir", _output_cases(t)["non_empty"]], OutputDirError,
     "--overwrite_output_dir"),
]


def _never(*args, **kwargs):
    raise AssertionError("expensive work (model building) started before the bad input was rejected")


def _check(recipe, builder_name, base, case_args, error, message, tmp_path, monkeypatch):
    monkeypatch.setattr(recipe, builder_name, _never)
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
