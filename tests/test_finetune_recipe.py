"""recipes/finetune.py end to end on a tiny BERT: training, the saved folder, resume, GLUE paths, bad input, torchrun."""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value
from safetensors.torch import load_file

from hfssl.finetune.fortunes import FORTUNES_DIR

ROOT = Path(__file__).resolve().parent.parent
RECIPE = ROOT / "recipes" / "finetune.py"
FAST = ["--report_to", "none", "--max_seq_length", "48", "--per_device_eval_batch_size", "32", "--logging_steps", "2"]
needs_fortunes = pytest.mark.skipif(not (FORTUNES_DIR / "computers").is_file(), reason="needs Debian's fortunes package")

# Hand-labelled review snippets (not generated): enough for the loss to fall, small enough to run in seconds.
REVIEWS = [
    ("a wonderful, moving film with superb acting", "positive"), ("dull plot and wooden dialogue", "negative"),
    ("i loved every minute of it", "positive"), ("a boring mess that goes nowhere", "negative"),
    ("funny, warm and beautifully shot", "positive"), ("the worst film i have seen this year", "negative"),
    ("a delightful surprise from start to finish", "positive"), ("painfully slow and badly written", "negative"),
    ("great performances and a clever script", "positive"), ("an awful waste of a good cast", "negative"),
    ("charming and full of heart", "positive"), ("tedious, predictable and far too long", "negative"),
]


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory):
    """A 2-layer BERT (random weights) with a WordPiece tokenizer trained on real text, saved with save_pretrained."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertForMaskedLM, PreTrainedTokenizerFast

    from hfssl.data.offline_corpus import python_docs_corpus

    lines = python_docs_corpus().read_text(encoding="utf-8").splitlines()[:3000] + [t for t, _ in REVIEWS]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(lines, trainers.WordPieceTrainer(vocab_size=1000, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                        sep_token="[SEP]", mask_token="[MASK]", model_max_length=512)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    path = tmp_path_factory.mktemp("tiny-bert")
    BertForMaskedLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("HFSSL_CACHE", str(tmp_path / "hfssl-cache"))


def load_recipe():
    spec = importlib.util.spec_from_file_location("finetune_recipe", RECIPE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_reviews(folder: Path) -> dict[str, str]:
    files = {}
    for split, rows in {"train": REVIEWS, "validation": REVIEWS[:6], "test": REVIEWS[6:]}.items():
        files[split] = str(folder / f"{split}.csv")
        Path(files[split]).write_text("review,sentiment\n" + "".join(f'"{t}",{l}\n' for t, l in rows))
    return files


def logged_losses(output_dir: Path) -> list[float]:
    last = sorted((output_dir / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))[-1]
    history = json.loads((last / "trainer_state.json").read_text())["log_history"]
    return [entry["loss"] for entry in history if "loss" in entry]


@needs_fortunes
def test_default_fortunes_task_trains_and_saves_a_pipeline_ready_model(tiny_bert, tmp_path, offline):
    from transformers import pipeline

    out = tmp_path / "out"
    results = load_recipe().main([
        "--model_name_or_path", str(tiny_bert), "--output_dir", str(out), "--fortune_categories", "computers", "food",
        "--max_train_samples", "128", "--max_eval_samples", "32", "--max_predict_samples", "20", "--num_train_epochs", "3",
        "--learning_rate", "3e-3", "--per_device_train_batch_size", "16", *FAST])
    losses = logged_losses(out)
    assert losses[-1] < losses[0] * 0.8, losses  # the loss falls
    saved = json.loads((out / "all_results.json").read_text())
    assert saved["eval_accuracy"] == results["eval_accuracy"] and 0 <= saved["eval_accuracy"] <= 1
    assert {"eval_f1", "eval_matthews_correlation", "predict_test_accuracy", "train_loss"} <= set(saved)
    assert (out / "model.safetensors").is_file() and not list(out.glob("*.bin"))
    card = (out / "README.md").read_text()
    assert "pipeline_tag: text-classification" in card and "computers, food" in card and "accuracy" in card
    predictions = (out / "predict_results.tsv").read_text().splitlines()
    assert predictions[0] == "index\tprediction" and len(predictions) == 21
    assert {line.split("\t")[1] for line in predictions[1:]} <= {"computers", "food"}

    classify = pipeline("text-classification", model=str(out))  # the folder loads with one call
    assert classify.model.config.id2label == {0: "computers", 1: "food"}
    prediction = classify("The compiler crashed while linking the kernel.")[0]
    assert prediction["label"] in {"computers", "food"} and 0 <= prediction["score"] <= 1


def test_local_csv_with_string_labels_and_exact_resume(tiny_bert, tmp_path, offline):
    files = write_reviews(tmp_path)
    out = tmp_path / "out"
    argv = ["--model_name_or_path", str(tiny_bert), "--output_dir", str(out), "--train_file", files["train"],
            "--validation_file", files["validation"], "--test_file", files["test"], "--sentence1_key", "review",
            "--label_column", "sentiment", "--max_steps", "8", "--checkpointing_steps", "4", "--learning_rate", "3e-3",
            "--per_device_train_batch_size", "4", "--warmup_steps", "0", *FAST]
    recipe = load_recipe()
    recipe.main(argv)
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {"0": "negative", "1": "positive"} and config["label2id"]["positive"] == 1
    uninterrupted = load_file(out / "checkpoints" / "checkpoint-8" / "model.safetensors")

    # Pretend the run died after step 4: drop the later checkpoint and resume from the latest one left.
    shutil.rmtree(out / "checkpoints" / "checkpoint-8")
    recipe.main(argv + ["--resume_from_checkpoint", "latest"])
    resumed = load_file(out / "checkpoints" / "checkpoint-8" / "model.safetensors")
    assert uninterrupted.keys() == resumed.keys()
    for name, tensor in uninterrupted.items():
        torch.testing.assert_close(resumed[name], tensor, rtol=0, atol=0, msg=name)  # bit-equal


def hub_shaped(task: str) -> DatasetDict:
    """What load_dataset("nyu-mll/glue", task) returns, in miniature: ClassLabel/float labels, -1 on test."""
    texts = [t for t, _ in REVIEWS]
    if task == "mnli":
        names = ["entailment", "neutral", "contradiction"]
        features = Features({"premise": Value("string"), "hypothesis": Value("string"), "label": ClassLabel(names=names), "idx": Value("int32")})
        make = lambda labelled: Dataset.from_dict({"premise": texts, "hypothesis": texts[::-1], "idx": list(range(12)),
                                                   "label": [i % 3 if labelled else -1 for i in range(12)]}, features=features)
        return DatasetDict({"train": make(True), "validation_matched": make(True), "validation_mismatched": make(True),
                            "test_matched": make(False), "test_mismatched": make(False)})
    features = Features({"sentence1": Value("string"), "sentence2": Value("string"), "label": Value("float32"), "idx": Value("int32")})
    make = lambda labelled: Dataset.from_dict({"sentence1": texts, "sentence2": texts[::-1], "idx": list(range(12)),
                                               "label": [i * 0.4 if labelled else -1.0 for i in range(12)]}, features=features)
    return DatasetDict({"train": make(True), "validation": make(True), "test": make(False)})


@pytest.mark.parametrize("task", ["mnli", "stsb"])
def test_glue_task_path_writes_submission_files(task, tiny_bert, tmp_path, offline, monkeypatch):
    recipe = load_recipe()
    asked = {}

    def fake_hub(spec, dataset_name, revision):  # stands in for the Hub download; the rest of the path is real
        asked.update(name=dataset_name, config=spec.name)
        return hub_shaped(spec.name)

    monkeypatch.setattr(recipe, "load_glue_splits", fake_hub)
    out = tmp_path / "out"
    results = recipe.main(["--model_name_or_path", str(tiny_bert), "--output_dir", str(out), "--task_name", task,
                           "--max_steps", "2", "--per_device_train_batch_size", "4", *FAST])
    assert asked == {"name": "nyu-mll/glue", "config": task}
    if task == "mnli":
        assert {"eval_matched_accuracy", "eval_mismatched_accuracy"} <= set(results)
        for stem in ("MNLI-m", "MNLI-mm"):
            rows = (out / f"{stem}.tsv").read_text().splitlines()
            assert rows[0] == "index\tprediction" and len(rows) == 13
            assert {r.split("\t")[1] for r in rows[1:]} <= {"entailment", "neutral", "contradiction"}
    else:
        assert {"eval_pearson", "eval_spearmanr", "eval_combined_score"} <= set(results)
        rows = (out / "STS-B.tsv").read_text().splitlines()[1:]
        assert len(rows) == 12 and all(0.0 <= float(r.split("\t")[1]) <= 5.0 for r in rows)
        assert json.loads((out / "config.json").read_text())["problem_type"] == "regression"


def test_any_labelled_hub_dataset_trains_scores_its_test_split_and_pins_the_revision(tiny_bert, tmp_path, offline,
                                                                                     monkeypatch):
    import datasets

    import hfssl.finetune.data as finetune_data

    # A dataset repo in the Hub's layout (parquet per split, ClassLabel in the metadata), as imdb: train and a labelled
    # test, no validation. load_dataset reads it for real; only the revision, which a local folder has none of, is
    # taken off after being recorded.
    repo = tmp_path / "reviews-repo"
    repo.mkdir()
    features = Features({"review": Value("string"), "label": ClassLabel(names=["positive", "negative"])})
    texts = [t for t, _ in REVIEWS] * 4
    labels = [0 if sentiment == "positive" else 1 for _, sentiment in REVIEWS] * 4
    Dataset.from_dict({"review": texts, "label": labels}, features=features).to_parquet(repo / "train.parquet")
    Dataset.from_dict({"review": texts[:10], "label": labels[:10]}, features=features).to_parquet(repo / "test.parquet")
    asked = []

    def hub(name, config=None, revision=None, **kwargs):
        asked.append((name, config, revision))
        return datasets.load_dataset(name, config, **kwargs)

    monkeypatch.setattr(finetune_data, "load_dataset", hub)
    out = tmp_path / "out"
    sha = "0123456789abcdef0123456789abcdef01234567"
    results = load_recipe().main(["--model_name_or_path", str(tiny_bert), "--output_dir", str(out), "--dataset_name",
                                  str(repo), "--dataset_revision", sha, "--sentence1_key", "review", "--num_train_epochs",
                                  "2", "--per_device_train_batch_size", "8", "--learning_rate", "1e-3", *FAST])
    assert asked == [(str(repo), None, sha)]
    assert {"eval_accuracy", "predict_test_accuracy", "predict_test_f1"} <= set(results)  # labelled test: scored
    rows = (out / "predict_results.tsv").read_text().splitlines()
    assert rows[0] == "index\tprediction" and len(rows) == 11 and {r.split("\t")[1] for r in rows[1:]} <= {"positive", "negative"}
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {"0": "positive", "1": "negative"}  # the ClassLabel's own order
    card = (out / "README.md").read_text(encoding="utf-8")
    assert str(repo) in card and sha in card


def run_recipe(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, str(RECIPE), *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


def test_bad_input_fails_before_training_with_a_fix(tiny_bert, tmp_path, offline, monkeypatch):
    from hfssl.data.text import DataError
    from hfssl.finetune.pretrained import CheckpointError

    files = write_reviews(tmp_path)
    out = tmp_path / "out"
    # From the command line: one line naming the problem and the flag that fixes it, no traceback, nothing trained.
    result = run_recipe("--model_name_or_path", str(tiny_bert), "--output_dir", str(out), "--train_file", files["train"],
                        "--validation_file", files["validation"], "--report_to", "none", cwd=tmp_path)
    assert result.returncode != 0
    assert "error:" in result.stderr and "no label column 'label'" in result.stderr and "--label_column" in result.stderr
    assert "Traceback" not in result.stderr and not (out / "checkpoints").exists()

    recipe = load_recipe()
    no_tokenizer = tmp_path / "no-tokenizer"
    no_tokenizer.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(tiny_bert / name, no_tokenizer / name)
    with pytest.raises(CheckpointError, match="has no tokenizer"):
        recipe.main(["--model_name_or_path", str(no_tokenizer), "--output_dir", str(out), "--report_to", "none"])
    monkeypatch.chdir(tmp_path)  # no outputs/mlm here
    with pytest.raises(CheckpointError, match="python recipes/mlm.py"):
        recipe.main(["--output_dir", str(out), "--report_to", "none"])
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataError, match="empty.csv is empty"):
        recipe.main(["--model_name_or_path", str(tiny_bert), "--output_dir", str(out), "--train_file", str(empty),
                     "--report_to", "none"])
    assert not (out / "checkpoints").exists()


def test_torchrun_two_processes(tiny_bert, tmp_path):
    files = write_reviews(tmp_path)
    out = tmp_path / "out"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", str(RECIPE),
         "--model_name_or_path", str(tiny_bert), "--output_dir", str(out), "--train_file", files["train"],
         "--validation_file", files["validation"], "--test_file", files["test"], "--label_column", "sentiment",
         "--sentence1_key", "review",
         "--max_steps", "3", "--per_device_train_batch_size", "2", *FAST],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    state = json.loads((out / "checkpoints" / "checkpoint-3" / "trainer_state.json").read_text())
    assert state["train_batch_size"] == 2 and state["global_step"] == 3
    # Data parallel, not two independent runs: 3 steps x 2 processes x 2 examples cover the 12 training rows once.
    assert state["epoch"] == pytest.approx(1.0)
    assert len((out / "predict_results.tsv").read_text().splitlines()) == 7  # header + 6 test rows, once
    assert json.loads((out / "all_results.json").read_text())["eval_accuracy"] >= 0


def test_two_processes_follow_the_loss_curve_of_one_with_the_same_global_batch(tiny_bert, tmp_path):
    """2 processes x 2 reviews against 1 process x 4 reviews per step: Accelerate shards each global batch of the
    same shuffled order between the processes, and DDP averages the two half-batch gradients, so with dropout off
    the logged losses agree to float precision (padding each half to its own longest review changes only rounding)."""
    from transformers import AutoConfig, AutoModelForMaskedLM

    model_dir = tmp_path / "no-dropout"
    config = AutoConfig.from_pretrained(tiny_bert, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    AutoModelForMaskedLM.from_pretrained(tiny_bert, config=config).save_pretrained(model_dir)
    shutil.copytree(tiny_bert, model_dir, dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.safetensors", "config.json"))
    files = write_reviews(tmp_path)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    common = ["--model_name_or_path", str(model_dir), "--train_file", files["train"], "--validation_file",
              files["validation"], "--label_column", "sentiment", "--sentence1_key", "review", "--max_steps", "6",
              "--learning_rate", "1e-3", *FAST, "--logging_steps", "1"]
    curves = {}
    for name, launcher, batch in (("two", ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"], "2"),
                                  ("one", [], "4")):
        out = tmp_path / name
        result = subprocess.run([sys.executable, *launcher, str(RECIPE), *common, "--output_dir", str(out),
                                 "--per_device_train_batch_size", batch],
                                capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        state = json.loads((out / "checkpoints" / "checkpoint-6" / "trainer_state.json").read_text())
        curves[name] = [(e["step"], e["loss"]) for e in state["log_history"] if "loss" in e]
    assert [s for s, _ in curves["two"]] == [s for s, _ in curves["one"]] == list(range(1, 7))
    one, two = [l for _, l in curves["one"]], [l for _, l in curves["two"]]
    assert one[-1] < one[0]  # it learns, so later steps compare updated weights, not only the start
    assert two == pytest.approx(one, rel=1e-4), (one, two)


def test_push_to_hub_publishes_model_card_with_results(tiny_bert, tmp_path, offline, monkeypatch):
    from huggingface_hub import ModelCard, constants

    from fake_hub import FakeHub

    token = "hf_finetune_test_0b7d3c9e"
    files = write_reviews(tmp_path)
    out = tmp_path / "out"
    with FakeHub(tokens={token: "write"}) as server:
        monkeypatch.setattr(constants, "ENDPOINT", server.url)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-stored-token"))
        monkeypatch.setenv("HF_TOKEN", token)
        load_recipe().main([
            "--model_name_or_path", str(tiny_bert), "--output_dir", str(out), "--train_file", files["train"],
            "--validation_file", files["validation"], "--sentence1_key", "review", "--label_column", "sentiment",
            "--max_steps", "2", "--push_to_hub", "--hub_model_id", "tester/tiny-classifier", *FAST])
        pushed = server.files("tester/tiny-classifier")
    assert {"model.safetensors", "config.json", "tokenizer.json", "README.md", "all_results.json"} <= set(pushed)
    assert not any(p.startswith("checkpoints/") or p.endswith(".bin") for p in pushed)
    assert all(token.encode() not in data for data in pushed.values())
    card = ModelCard.load(out / "README.md")
    assert card.data.pipeline_tag == "text-classification"
    assert "accuracy" in {result.metric_type for result in card.data.eval_results}  # model-index lists the results
    assert 'pipeline("text-classification", model="tester/tiny-classifier")' in card.text
