import json

import pytest

from hfssl.config import ConfigError
from hfssl.data.offline_corpus import python_docs_corpus
from hfssl.data.text import DataError, check_text_file, load_text_splits


def test_python_docs_corpus_is_real_prose():
    lines = python_docs_corpus().read_text(encoding="utf-8").splitlines()
    words = sum(len(line.split()) for line in lines)
    assert words > 200_000
    assert any("Return" in line for line in lines[:5000])


def test_local_formats_give_the_same_text(tmp_path, docs_text_file):
    lines = docs_text_file.read_text().splitlines()[:40]
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps({"body": t, "id": i}) for i, t in enumerate(lines)))
    (tmp_path / "a.csv").write_text("body,id\n" + "\n".join(f'"{t.replace(chr(34), chr(34) * 2)}",{i}' for i, t in enumerate(lines)))
    for name in ("a.jsonl", "a.csv"):
        splits, column = load_text_splits(dataset_name=None, train_file=str(tmp_path / name), text_column="body",
                                          validation_split_percentage=10)
        assert column == "body"
        assert list(splits["train"][column]) + list(splits["validation"][column]) == lines
        assert len(splits["validation"]) == 4


def test_streaming_local_file(docs_text_file):
    splits, column = load_text_splits(dataset_name=None, train_file=str(docs_text_file), streaming=True,
                                      validation_split_percentage=1)
    first = next(iter(splits["train"]))
    assert column == "text" and isinstance(first["text"], str)
    assert sum(1 for _ in splits["validation"]) == 100


def test_missing_column_lists_the_columns(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text('{"body": "hello there world"}\n{"body": "more words here"}\n')
    with pytest.raises(DataError, match=r"no column 'text'.*\['body'\].*--text_column"):
        load_text_splits(dataset_name=None, train_file=str(path), text_column="text")


@pytest.mark.parametrize("streaming", [False, True])
def test_validation_file_without_the_text_column_fails_before_training(tmp_path, streaming):
    train, validation = tmp_path / "train.jsonl", tmp_path / "val.jsonl"
    train.write_text('{"text": "hello there world"}\n{"text": "more words here"}\n')
    validation.write_text('{"body": "held out words"}\n')
    # Read eagerly, datasets itself refuses files whose columns differ; streamed, the check here catches it.
    with pytest.raises(DataError, match=r"val.jsonl.*(no column 'text'.*\['body'\]|column names don't match).*same"):
        load_text_splits(dataset_name=None, train_file=str(train), validation_file=str(validation), streaming=streaming)
    validation.write_text('{"text": "held out words"}\n')  # the same files with matching columns load
    splits, column = load_text_splits(dataset_name=None, train_file=str(train), validation_file=str(validation),
                                      streaming=streaming)
    assert column == "text" and [row["text"] for row in splits["validation"]] == ["held out words"]


def test_non_utf8_names_the_line(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"fine line\nanother fine line\ncaf\xe9 au lait\n")
    with pytest.raises(DataError, match="line 3 is not valid UTF-8"):
        check_text_file(path)
    with pytest.raises(DataError, match="line 3"):
        load_text_splits(dataset_name=None, train_file=str(path))


def test_empty_file_and_no_source(tmp_path):
    path = tmp_path / "empty.txt"
    path.write_text("")
    with pytest.raises(DataError, match="empty"):
        load_text_splits(dataset_name=None, train_file=str(path))
    path.write_text("\n   \n\t\n")
    with pytest.raises(DataError, match="only whitespace"):
        load_text_splits(dataset_name=None, train_file=str(path))
    with pytest.raises(ConfigError, match="--dataset_name"):
        load_text_splits(dataset_name=None, train_file=None)
    with pytest.raises(ConfigError, match="unsupported file type"):
        load_text_splits(dataset_name=None, train_file=str(tmp_path / "x.docx"))


SHA = "b08601e04326c79dfdd32d625aee71d232d685c3"


def test_dataset_revision_is_forwarded_to_the_hub_and_refused_for_local_files(tmp_path, monkeypatch):
    from datasets import Dataset, DatasetDict

    calls = []

    def fake_load_dataset(*args, **kwargs):  # stands in for the Hub download; the rest of the loader is real
        calls.append((args, kwargs))
        return DatasetDict(train=Dataset.from_dict({"text": [f"line {i}" for i in range(40)]}))

    monkeypatch.setattr("hfssl.data.text.load_dataset", fake_load_dataset)
    splits, column = load_text_splits(dataset_name="Salesforce/wikitext", dataset_config_name="wikitext-2-raw-v1",
                                      dataset_revision=SHA)
    assert calls[-1][0] == ("Salesforce/wikitext", "wikitext-2-raw-v1") and calls[-1][1]["revision"] == SHA
    assert column == "text" and len(splits["train"]) + len(splits["validation"]) == 40
    load_text_splits(dataset_name="Salesforce/wikitext")
    assert calls[-1][1]["revision"] is None  # unpinned: the Hub's default branch

    path = tmp_path / "a.txt"
    path.write_text("hello world\n" * 10)
    with pytest.raises(ConfigError, match=r"--dataset_revision v1\.0 .*local file .*a\.txt.*Drop --dataset_revision"):
        load_text_splits(dataset_name=None, train_file=str(path), dataset_revision="v1.0")
    assert len(calls) == 2  # refused before anything was loaded
