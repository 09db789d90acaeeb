"""Labelled data for fine-tuning (hfssl.finetune.data, tasks, fortunes, submission, config, pretrained checks).

Every GLUE schema (single sentence, sentence pair, regression, MNLI's two validation sets) is exercised on tiny
datasets built here, both in the Hub's shape (ClassLabel features, unlabelled test splits) and as local files.
"""

import json
from pathlib import Path

import pytest
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from hfssl.config import ConfigError, parse_config
from hfssl.data.text import DataError
from hfssl.finetune.config import FinetuneConfig
from hfssl.finetune.data import (Labels, check_columns, encode_splits, load_local_splits, local_task_for,
                                 resolve_labels, select_splits)
from hfssl.finetune.fortunes import FORTUNES_DIR, build_fortunes_task, fortunes_text_corpus, read_fortunes, split_of
from hfssl.finetune.pretrained import CheckpointError, check_checkpoint
from hfssl.finetune.submission import format_predictions, write_submission
from hfssl.finetune.tasks import GLUE_TASKS

SENTENCES = [
    "The cat sat on the mat.", "A dog barked at the mailman all morning.", "Stocks fell sharply on Monday.",
    "She sells sea shells by the sea shore.", "The committee approved the budget.", "It rained all day.",
]
# Label names exactly as nyu-mll/glue declares them.
GLUE_LABEL_NAMES = {
    "cola": ["unacceptable", "acceptable"], "sst2": ["negative", "positive"], "mrpc": ["not_equivalent", "equivalent"],
    "qqp": ["not_duplicate", "duplicate"], "mnli": ["entailment", "neutral", "contradiction"],
    "qnli": ["entailment", "not_entailment"], "rte": ["entailment", "not_entailment"],
    "wnli": ["not_entailment", "entailment"], "stsb": None,
}


@pytest.fixture(scope="module")
def tokenizer():
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(SENTENCES * 3, trainers.WordPieceTrainer(vocab_size=200, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]", model_max_length=64)


def hub_shaped_glue(task_name: str, n: int = 6) -> DatasetDict:
    """A tiny DatasetDict with the columns, features and split names nyu-mll/glue has for ``task_name``."""
    spec = GLUE_TASKS[task_name]
    names = GLUE_LABEL_NAMES[task_name]
    label_feature = Value("float32") if names is None else ClassLabel(names=names)
    columns = {spec.sentence1_key: Value("string")}
    if spec.sentence2_key:
        columns[spec.sentence2_key] = Value("string")
    features = Features({**columns, "label": label_feature, "idx": Value("int32")})

    def split(labelled: bool) -> Dataset:
        rows = {key: [SENTENCES[(i + j) % len(SENTENCES)] for i in range(n)] for j, key in enumerate(columns)}
        if names is None:
            rows["label"] = [float(i % 6) * 0.8 if labelled else -1.0 for i in range(n)]
        else:
            rows["label"] = [i % len(names) if labelled else -1 for i in range(n)]
        rows["idx"] = list(range(n))
        return Dataset.from_dict(rows, features=features)

    splits = {"train": split(True)}
    splits.update({s: split(True) for s in spec.eval_splits.values()})
    splits.update({s: split(False) for s in spec.test_splits.values()})
    return DatasetDict(splits)


@pytest.mark.parametrize("task_name", sorted(GLUE_TASKS))
def test_every_glue_schema_in_hub_shape_encodes(task_name, tokenizer):
    spec = GLUE_TASKS[task_name]
    raw = hub_shaped_glue(task_name)
    check_columns(raw, spec, task_name)
    labels = resolve_labels(raw, spec.label_column, "auto", task_name)
    assert labels.is_regression == (task_name == "stsb")
    assert labels.num_labels == (1 if task_name == "stsb" else len(GLUE_LABEL_NAMES[task_name]))
    raw = select_splits(raw, spec, max_train_samples=4, max_eval_samples=3, max_predict_samples=2, do_predict=True)
    assert len(raw["train"]) == 4 and all(len(raw[s]) == 3 for s in spec.eval_splits.values())
    encoded = encode_splits(raw, spec, labels, tokenizer, max_seq_length=32, token_type_ids=True)
    first = encoded["train"][1]
    assert first["labels"] == (pytest.approx(0.8) if task_name == "stsb" else 1)
    # A pair task puts both sentences in one input: segment ids switch to 1 for the second sentence.
    assert (1 in first["token_type_ids"]) == (spec.sentence2_key is not None)
    for test_split in spec.test_splits.values():  # GLUE test labels are -1 placeholders: never fed to the loss
        assert "labels" not in encoded[test_split].column_names and len(encoded[test_split]) == 2


def test_mnli_has_matched_and_mismatched_evaluation_and_two_submission_files():
    spec = GLUE_TASKS["mnli"]
    assert set(spec.eval_splits.values()) == {"validation_matched", "validation_mismatched"}
    assert set(spec.test_splits) == {"MNLI-m", "MNLI-mm"}
    assert spec.main_metric == "matched_accuracy"


@pytest.mark.parametrize("task_name", sorted(GLUE_TASKS))
def test_every_glue_schema_as_local_jsonl_with_string_labels(task_name, tmp_path, tokenizer):
    spec = GLUE_TASKS[task_name]
    names = GLUE_LABEL_NAMES[task_name]
    keys = [spec.sentence1_key] + ([spec.sentence2_key] if spec.sentence2_key else [])
    files = {}
    for split in ("train", "validation", "test"):
        rows = []
        for i in range(8):
            row = {key: SENTENCES[(i + j) % len(SENTENCES)] for j, key in enumerate(keys)}
            if split != "test":
                row["label"] = i * 0.6 if names is None else names[i % len(names)]
            rows.append(row)
        files[split] = tmp_path / f"{split}.jsonl"
        files[split].write_text("".join(json.dumps(r) + "\n" for r in rows))
    raw = load_local_splits(str(files["train"]), str(files["validation"]), str(files["test"]))
    task, labels = local_task_for(raw, spec.sentence1_key, spec.sentence2_key, "label", "auto", "files")
    if names is None:
        assert labels.is_regression and task.main_metric == "combined_score"
    else:
        assert labels.names == sorted(names)  # string labels are mapped to ids in sorted order
        assert labels.label2id == {n: i for i, n in enumerate(sorted(names))}
    encoded = encode_splits(raw, task, labels, tokenizer, 32)
    expected = 0.6 if names is None else labels.label2id[names[1 % len(names)]]
    assert encoded["train"][1]["labels"] == pytest.approx(expected)
    assert "labels" not in encoded["test"].column_names


def test_text_columns_are_guessed_and_csv_tsv_work(tmp_path):
    (tmp_path / "a.csv").write_text("sentence1,sentence2,label\nhi there,hello,yes\nbye now,goodbye,no\n")
    (tmp_path / "b.tsv").write_text("text\tlabel\nhi there\t1\nbye now\t0\n")
    raw = load_local_splits(str(tmp_path / "a.csv"), str(tmp_path / "a.csv"), None)
    task, labels = local_task_for(raw, None, None, "label", "auto", "a.csv")
    assert (task.sentence1_key, task.sentence2_key) == ("sentence1", "sentence2") and labels.names == ["no", "yes"]
    raw = load_local_splits(str(tmp_path / "b.tsv"), str(tmp_path / "b.tsv"), None)
    task, labels = local_task_for(raw, None, None, "label", "auto", "b.tsv")
    assert (task.sentence1_key, task.sentence2_key) == ("text", None)
    assert labels.names == ["0", "1"] and task.metrics == ("accuracy", "f1", "matthews_correlation")


def test_numeric_labels_sort_as_numbers_and_can_be_regression():
    raw = DatasetDict({"train": Dataset.from_dict({"text": ["a"] * 3, "label": [10, 2, 1]})})
    assert resolve_labels(raw, "label").names == ["1", "2", "10"]
    assert resolve_labels(raw, "label", "regression").is_regression


def test_validation_is_held_out_from_train_when_not_given(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps({"text": f"row {i}", "label": i % 2}) + "\n" for i in range(40)))
    raw = load_local_splits(str(path), None, None, seed=1)
    assert len(raw["validation"]) == 4 and len(raw["train"]) == 36
    assert not set(raw["validation"]["text"]) & set(raw["train"]["text"])


def hub_dataset_folder(root: Path, splits: dict[str, int], names=("positive", "negative")) -> Path:
    """A dataset repo as the Hub serves one (parquet per split, features with a ClassLabel in the metadata)."""
    features = Features({"text": Value("string"), "label": ClassLabel(names=list(names))})
    for split, rows in splits.items():
        Dataset.from_dict({"text": [f"{split} sentence {i}: {SENTENCES[i % 6]}" for i in range(rows)],
                           "label": [i % 2 for i in range(rows)]}, features=features).to_parquet(root / f"{split}.parquet")
    return root


def test_hub_dataset_without_validation_holds_out_train_and_keeps_test(tmp_path, caplog):
    from hfssl.finetune.data import load_hub_splits

    folder = hub_dataset_folder(tmp_path, {"train": 50, "test": 12, "unsupervised": 7})
    with caplog.at_level("WARNING"):
        raw = load_hub_splits(str(folder), seed=3)
    assert set(raw) == {"train", "validation", "test"}  # 'unsupervised' (imdb's unlabelled split) is not used
    assert (len(raw["train"]), len(raw["validation"]), len(raw["test"])) == (45, 5, 12)
    assert not set(raw["validation"]["text"]) & set(raw["train"]["text"])
    assert all(t.startswith("test") for t in raw["test"]["text"])  # test is not what picks the best checkpoint
    assert "no 'validation' split" in caplog.text
    task, labels = local_task_for(raw, None, None, "label", "auto", str(folder))
    assert task.sentence1_key == "text" and labels.names == ["positive", "negative"]  # ClassLabel order, not sorted
    assert task.test_splits == {"predict_results": "test"}


def test_hub_dataset_with_validation_uses_it_and_needs_train(tmp_path):
    from hfssl.finetune.data import load_hub_splits

    raw = load_hub_splits(str(hub_dataset_folder(tmp_path / "a", {"train": 20, "validation": 6})))
    assert (len(raw["train"]), len(raw["validation"])) == (20, 6) and "test" not in raw
    with pytest.raises(DataError, match="no 'train' split"):
        load_hub_splits(str(hub_dataset_folder(tmp_path / "b", {"validation": 6, "test": 6})))


# ---- bad input: clear errors naming the problem and the fix --------------------------------------------------------

def write_csv(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def test_missing_label_column_names_the_columns_and_the_flag(tmp_path):
    train = write_csv(tmp_path / "t.csv", "text,target\nhello,1\nbye,0\n")
    raw = load_local_splits(train, train, None)
    with pytest.raises(DataError, match=r"no label column 'label'.*\['text', 'target'\].*--label_column"):
        local_task_for(raw, None, None, "label", "auto", train)


def test_missing_text_column_asks_for_sentence1_key(tmp_path):
    train = write_csv(tmp_path / "t.csv", "review,label\nhello,1\nbye,0\n")
    raw = load_local_splits(train, train, None)
    with pytest.raises(DataError, match="--sentence1_key"):
        local_task_for(raw, None, None, "label", "auto", train)
    with pytest.raises(DataError, match="no column 'body'"):
        local_task_for(raw, "body", None, "label", "auto", train)


def test_unseen_validation_label_is_an_error(tmp_path):
    train = write_csv(tmp_path / "t.csv", "text,label\nhello,pos\nbye,neg\n")
    valid = write_csv(tmp_path / "v.csv", "text,label\nhello,pos\nmeh,neutral\n")
    raw = load_local_splits(train, valid, None)
    with pytest.raises(DataError, match=r"split 'validation', has label\(s\) \['neutral'\] that never occur"):
        local_task_for(raw, None, None, "label", "auto", train)


def test_empty_and_header_only_files_are_errors(tmp_path):
    empty = write_csv(tmp_path / "empty.csv", "")
    header = write_csv(tmp_path / "header.csv", "text,label\n")
    with pytest.raises(DataError, match="empty.csv is empty"):
        load_local_splits(empty, None, None)
    with pytest.raises(DataError, match="header but no rows"):
        load_local_splits(header, header, None)


def test_unsupported_extension_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="unsupported file type '.xlsx'"):
        load_local_splits(str(tmp_path / "data.xlsx"), None, None)
    with pytest.raises(DataError, match="does not exist"):
        load_local_splits(str(tmp_path / "nope.csv"), None, None)


def test_single_class_training_labels_are_an_error():
    raw = DatasetDict({"train": Dataset.from_dict({"text": ["a", "b"], "label": ["x", "x"]})})
    with pytest.raises(DataError, match="at least two"):
        resolve_labels(raw, "label")


def test_empty_label_values_are_an_error():
    raw = DatasetDict({"train": Dataset.from_dict({"text": ["a", "b", "c"], "label": ["x", None, "y"]})})
    with pytest.raises(DataError, match="empty values"):
        resolve_labels(raw, "label")


# ---- the offline fortunes task ---------------------------------------------------------------------------------

def test_fortunes_builder_cleans_dedupes_and_splits_by_hash(tmp_path):
    src = tmp_path / "fortunes"
    src.mkdir()
    shared = "A quotation filed under both topics is ambiguous."
    (src / "cats").write_text("Cats sleep sixteen hours a day.\n%\nToo short\n%\nB\bBold  cats\n rule   the house.\n%\n" + shared + "\n%\n")
    (src / "dogs").write_text("Dogs dig holes in every garden.\n%\n" + shared + "\n")
    paths = build_fortunes_task(["cats", "dogs"], fortunes_dir=src, out_dir=tmp_path / "out")
    rows = {s: [json.loads(l) for l in p.read_text().splitlines()] for s, p in paths.items()}
    everything = [r for split_rows in rows.values() for r in split_rows]
    texts = {r["text"]: r["label"] for r in everything}
    assert texts == {"Cats sleep sixteen hours a day.": "cats", "Bold cats rule the house.": "cats",
                     "Dogs dig holes in every garden.": "dogs"}
    for split, split_rows in rows.items():
        assert all(split_of(r["text"]) == split for r in split_rows)
    assert read_fortunes(src / "cats")[1] == "Bold cats rule the house."  # overstrike and whitespace cleaned


def test_pretraining_corpus_leaves_out_every_task_entry(tmp_path):
    src = tmp_path / "fortunes"
    src.mkdir()
    (src / "cats").write_text("Cats sleep sixteen hours a day.\n%\nShared entry filed under two files.\n")
    (src / "wisdom").write_text("Look before you leap, said the cat.\n%\nShared entry filed under two files.\n")
    (src / "wisdom.dat").write_bytes(b"\x00binary index")
    corpus = fortunes_text_corpus(exclude=["cats"], fortunes_dir=src, out_path=tmp_path / "corpus.txt")
    assert corpus.read_text().splitlines() == ["Look before you leap, said the cat."]


def test_fortunes_builder_rejects_unknown_category(tmp_path):
    (tmp_path / "computers").write_text("Real programmers count from zero.\n")
    with pytest.raises(DataError, match="No fortune file for \\['nonexistent'\\]"):
        build_fortunes_task(["computers", "nonexistent"], fortunes_dir=tmp_path)
    with pytest.raises(DataError, match="at least two"):
        build_fortunes_task(["computers"], fortunes_dir=tmp_path)


@pytest.mark.skipif(not (FORTUNES_DIR / "computers").is_file(), reason="Debian fortunes package not installed")
def test_real_fortunes_task_has_all_classes_in_every_split_and_no_overlap(tmp_path):
    paths = build_fortunes_task(out_dir=tmp_path)
    rows = {s: [json.loads(l) for l in p.read_text().splitlines()] for s, p in paths.items()}
    for split_rows in rows.values():
        assert {r["label"] for r in split_rows} == {"computers", "food", "law", "politics"}
    texts = [set(r["text"] for r in split_rows) for split_rows in rows.values()]
    assert not (texts[0] & texts[1]) and not (texts[0] & texts[2]) and not (texts[1] & texts[2])
    assert len(rows["train"]) > 5 * len(rows["test"]) > 500


# ---- submission files, config, checkpoint checks ----------------------------------------------------------------

def test_submission_format(tmp_path):
    lines = format_predictions([0, 2, 1], is_regression=False, label_names=["entailment", "neutral", "contradiction"], use_names=True)
    path = write_submission(tmp_path / "MNLI-m.tsv", lines)
    assert path.read_text() == "index\tprediction\n0\tentailment\n1\tcontradiction\n2\tneutral\n"
    assert format_predictions([1, 0], is_regression=False, label_names=["a", "b"], use_names=False) == ["1", "0"]
    assert format_predictions([-0.5, 2.34567, 7.0], is_regression=True, label_names=None, use_names=False,
                              clip=(0.0, 5.0)) == ["0.000", "2.346", "5.000"]


def test_config_rejects_task_and_files_together_and_reads_yaml():
    with pytest.raises(ConfigError, match="either Hub data"):
        parse_config(FinetuneConfig, ["--task_name", "sst2", "--train_file", "x.csv"])
    with pytest.raises(ConfigError, match="either Hub data"):
        parse_config(FinetuneConfig, ["--dataset_name", "stanfordnlp/imdb", "--train_file", "x.csv"])
    with pytest.raises(ConfigError, match="already names the configuration"):
        parse_config(FinetuneConfig, ["--task_name", "sst2", "--dataset_config_name", "sst2"])
    with pytest.raises(ConfigError, match="needs --dataset_name"):
        parse_config(FinetuneConfig, ["--dataset_config_name", "plain_text"])
    assert parse_config(FinetuneConfig, ["--dataset_name", "stanfordnlp/imdb", "--dataset_revision", "v1"]).dataset_revision == "v1"
    with pytest.raises(ConfigError, match="need --train_file"):
        parse_config(FinetuneConfig, ["--validation_file", "x.csv"])
    with pytest.raises(ConfigError, match=r"--dataset_revision v1 .*local file x\.csv.*Drop --dataset_revision"):
        parse_config(FinetuneConfig, ["--train_file", "x.csv", "--dataset_revision", "v1"])
    with pytest.raises(ConfigError, match=r"--dataset_revision v1 .*fortunes"):
        parse_config(FinetuneConfig, ["--dataset_revision", "v1"])
    assert parse_config(FinetuneConfig, ["--task_name", "sst2", "--dataset_revision", "v1"]).dataset_revision == "v1"
    root = Path(__file__).resolve().parent.parent / "recipes" / "configs" / "finetune"
    for path in sorted(root.glob("*.yaml")):
        cfg = parse_config(FinetuneConfig, ["--config", str(path), "--seed", "7"])
        assert cfg.seed == 7  # CLI wins over the file
    cfg = parse_config(FinetuneConfig, ["--config", str(root / "fortunes.yaml")])
    assert cfg.fortune_categories == ["computers", "food", "law", "politics"] and cfg.early_stopping_patience == 3


def test_checkpoint_checks(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointError, match="python recipes/mlm.py"):
        check_checkpoint("outputs/mlm")
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    with pytest.raises(CheckpointError, match="no config.json"):
        check_checkpoint(str(ckpt))
    (ckpt / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match="has no tokenizer.*save_pretrained"):
        check_checkpoint(str(ckpt))
    (ckpt / "tokenizer.json").write_text("{}")
    (ckpt / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(CheckpointError, match="pickle weights"):
        check_checkpoint(str(ckpt))
    (ckpt / "model.safetensors").write_bytes(b"")
    check_checkpoint(str(ckpt))
    check_checkpoint("google-bert/bert-base-uncased")  # a Hub id is left to from_pretrained


def test_labels_dataclass():
    labels = Labels(is_regression=False, names=["neg", "pos"])
    assert labels.id2label == {0: "neg", 1: "pos"} and labels.num_labels == 2
    assert Labels(is_regression=True).num_labels == 1 and Labels(is_regression=True).label2id is None


def test_help_renders(capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_config(FinetuneConfig, ["--help"])
    assert exit_info.value.code == 0 and "--fortune_categories" in capsys.readouterr().out
