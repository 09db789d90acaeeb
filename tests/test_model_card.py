"""Model cards: metadata that huggingface_hub parses back, complete bodies, a loss plot, and loading snippets that
actually run against a saved folder of each kind."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from huggingface_hub import ModelCard

from hfssl.model_card import KINDS, TEMPLATES_DIR, is_hub_id, render_model_card, write_model_card

PLACEHOLDERS = ("model_name", "repo_id", "recipe", "datasets", "dataset_config", "dataset_revision", "base_model",
                "model_details", "hyperparameters", "compute", "results", "results_dataset", "loss_plot", "training_config")


def full_info(**overrides) -> dict:
    info = {
        "model_name": "tester/tiny-model",
        "datasets": ["Salesforce/wikitext", "/data/my_corpus.txt"],
        "dataset_config": "wikitext-2-raw-v1",
        "dataset_revision": "b08601e04326c79dfdd32d625aee71d232d685c3",
        "model_details": {"parameters": 1_234_567, "layers": 2},
        "hyperparameters": {"learning_rate": 5e-4, "max_steps": 600, "hub_token": "should-not-appear"},
        "compute": {"num_processes": 2, "wall_time_s": 9000.0, "tokens_seen": 12_000_000},
        "results": {"eval_loss": 2.5, "perplexity": 12.18},
        "results_dataset": "Salesforce/wikitext",
        "results_split": "validation",
    }
    info.update(overrides)
    return info


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_metadata_round_trips_through_modelcard(kind, tmp_path):
    path = write_model_card(tmp_path, kind, full_info(base_model="google-bert/bert-base-uncased"))
    card = ModelCard.load(path)
    pipeline_tag, library_name, tags, _ = KINDS[kind]

    assert card.data.pipeline_tag == pipeline_tag and card.data.library_name == library_name
    assert card.data.license == "apache-2.0" and set(tags) <= set(card.data.tags)
    assert card.data.datasets == ["Salesforce/wikitext"]  # the local file is named in the body only
    assert card.data.base_model == "google-bert/bert-base-uncased"
    assert card.data.model_name == "tester/tiny-model"
    metrics = {(r.dataset_name, r.metric_type): r for r in card.data.eval_results}
    assert metrics[("Salesforce/wikitext", "perplexity")].metric_value == pytest.approx(12.18)
    assert metrics[("Salesforce/wikitext", "eval_loss")].dataset_revision == "b08601e04326c79dfdd32d625aee71d232d685c3"
    assert metrics[("Salesforce/wikitext", "eval_loss")].dataset_split == "validation"
    assert metrics[("Salesforce/wikitext", "eval_loss")].task_type == pipeline_tag

    body = card.text
    for needle in ("## How to use", "## Training data", "## Training procedure", "### Compute", "## Evaluation",
                   "## Limitations", "my_corpus.txt", "wikitext-2-raw-v1", "b08601e", "1,234,567", "2.50 h",
                   "12,000,000", "| Salesforce/wikitext | validation | perplexity | 12.18 |", "hardware"):
        assert needle in body, (kind, needle)
    assert "should-not-appear" not in card.content and "hub_token" not in card.content
    for name in PLACEHOLDERS:
        assert "{" + name + "}" not in card.content, (kind, name)


def test_results_on_several_datasets_and_local_base_model(tmp_path):
    base = tmp_path / "pretrained"
    base.mkdir()
    info = full_info(base_model=str(base), results={"wordsim353": {"spearman": 0.61}, "simlex999": {"spearman": 0.3},
                                                    "google-analogies": {"accuracy": 0.42}})
    card = ModelCard.load(write_model_card(tmp_path / "out", "word-embeddings", info))
    found = {(r.dataset_name, r.metric_type): r.metric_value for r in card.data.eval_results}
    assert found == {("wordsim353", "spearman"): 0.61, ("simlex999", "spearman"): 0.3, ("google-analogies", "accuracy"): 0.42}
    assert card.data.base_model is None  # a local path is not a Hub id: named in the body, kept out of metadata
    assert str(base) in card.text


def test_results_keyed_by_split_belong_to_the_training_dataset(tmp_path):
    # The fine-tuning recipe's shape: {split: {metric: value}}, dataset named in ``datasets``.
    info = {"model_name": "m", "datasets": ["nyu-mll/glue"], "dataset_config": "mnli",
            "results": {"validation_matched": {"accuracy": 0.8, "runtime": None}, "validation_mismatched": {"accuracy": 0.79}}}
    card = ModelCard.load(write_model_card(tmp_path, "text-classifier", info))
    found = {(r.dataset_name, r.dataset_config, r.dataset_split, r.metric_type): r.metric_value for r in card.data.eval_results}
    assert found == {("nyu-mll/glue", "mnli", "validation_matched", "accuracy"): 0.8,
                     ("nyu-mll/glue", "mnli", "validation_mismatched", "accuracy"): 0.79}
    assert "| nyu-mll/glue | validation_mismatched | accuracy | 0.79 |" in card.text


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_training_data_names_the_dataset_revision(kind):
    def data_line(**info):
        text = render_model_card(kind, {"model_name": "m", **info})
        return next(line for line in text.splitlines() if line.startswith("Datasets:"))

    sha = "0123456789abcdef0123456789abcdef01234567"
    pinned = data_line(datasets=["ylecun/mnist"], dataset_config="mnist", dataset_revision=sha)
    assert f"(config: mnist, revision: `{sha}`)" in pinned
    assert "revision: not pinned" in data_line(datasets=["ylecun/mnist"])
    assert "revision: n/a (local data)" in data_line(datasets=["/data/corpus.txt"])


def test_minimal_info_renders_and_unknown_kind_is_rejected(tmp_path):
    card = ModelCard.load(write_model_card(tmp_path, "masked-lm", {"model_name": "m"}))
    assert card.data.eval_results is None and card.data.datasets is None
    assert "_not evaluated_" in card.text and "_no loss curve recorded_" in card.text
    with pytest.raises(ValueError, match="expected one of"):
        render_model_card("seq2seq", {"model_name": "m"})
    with pytest.raises(ValueError, match="model_name"):
        render_model_card("masked-lm", {})


def test_template_braces_and_custom_fields(tmp_path, monkeypatch):
    template = "# {model_name}\n\n```python\nd = {'a': 1}\nprint(f\"{{d}}\")\n```\n\n{unknown_field} {my_field}\n"
    (tmp_path / "masked-lm.md").write_text(template)
    monkeypatch.setattr("hfssl.model_card.TEMPLATES_DIR", tmp_path)
    text = render_model_card("masked-lm", {"model_name": "m", "extra": {"my_field": "custom value"}})
    assert "d = {'a': 1}" in text and 'print(f"{d}")' in text
    assert "{unknown_field} custom value" in text


def test_loss_plot_written_and_referenced(tmp_path):
    history = [(step, 6.0 * 0.99 ** step) for step in range(1, 120)]
    path = write_model_card(tmp_path, "causal-lm", {"model_name": "m", "loss_history": history,
                                                    "eval_history": [(50, 4.0), (100, 3.0)]})
    png = tmp_path / "training_loss.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    assert "![training loss](training_loss.png)" in path.read_text()


def test_config_file_is_linked_when_present(tmp_path):
    (tmp_path / "hfssl_config.yaml").write_text("seed: 1\n")
    text = write_model_card(tmp_path, "masked-lm", {"model_name": "m"}).read_text()
    assert "python recipes/mlm.py --config hfssl_config.yaml --output_dir NEW_DIR" in text


def test_token_is_redacted_even_if_passed_by_mistake(tmp_path, monkeypatch):
    token = "hf_card_canary_0123456789"
    monkeypatch.setenv("HF_TOKEN", token)
    text = write_model_card(tmp_path, "masked-lm", {"model_name": "m", "hyperparameters": {"note": f"pushed with {token}"}}).read_text()
    assert token not in text and "<redacted>" in text


def test_is_hub_id(tmp_path):
    assert is_hub_id("Salesforce/wikitext") and is_hub_id("imdb")
    assert not is_hub_id("train.txt") and not is_hub_id(str(tmp_path)) and not is_hub_id("a/b/c") and not is_hub_id(None)


# ---- Loading snippets: render each card with repo_id = a saved local folder, then run its python block.

def python_snippets(card_text: str) -> list[str]:
    blocks = re.findall(r"```python\n(.*?)```", card_text, flags=re.DOTALL)
    assert blocks, "the card has no python snippet"
    return blocks


def run_card_snippet(folder: Path, kind: str) -> dict:
    """Run every python block of the card (each on its own, as a reader would); returns the first one's names."""
    text = render_model_card(kind, {"model_name": "tester/tiny", "repo_id": str(folder)})
    namespaces = []
    for i, snippet in enumerate(python_snippets(text)):
        namespaces.append({})
        exec(compile(snippet, f"<{kind} card, block {i}>", "exec"), namespaces[-1])  # noqa: S102 - our own template
    return namespaces[0]


def tiny_tokenizer(folder: Path, *, bert_specials: bool = True):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    text = ["the function returns a list of strings", "this film was a delight from start to finish",
            "in the beginning god created the heaven and the earth"] * 20
    tok.train_from_iterator(text, trainers.WordPieceTrainer(vocab_size=120, special_tokens=specials))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]",
                                   **({} if bert_specials else {"eos_token": "[SEP]", "bos_token": "[CLS]"}))
    fast.save_pretrained(folder)
    return fast


def test_masked_lm_snippet_runs(tmp_path):
    from transformers import BertConfig, BertForMaskedLM

    tok = tiny_tokenizer(tmp_path)
    BertForMaskedLM(BertConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                               intermediate_size=32, max_position_embeddings=64)).save_pretrained(tmp_path)
    ns = run_card_snippet(tmp_path, "masked-lm")
    assert type(ns["model"]).__name__ == "BertForMaskedLM"


def test_text_classifier_snippet_runs(tmp_path):
    from transformers import BertConfig, BertForSequenceClassification

    tok = tiny_tokenizer(tmp_path)
    config = BertConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                        max_position_embeddings=64, num_labels=2, id2label={0: "negative", 1: "positive"},
                        label2id={"negative": 0, "positive": 1})
    BertForSequenceClassification(config).save_pretrained(tmp_path)
    ns = run_card_snippet(tmp_path, "text-classifier")
    assert ns["model"].config.id2label == {0: "negative", 1: "positive"}


def test_causal_lm_snippet_runs(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = tiny_tokenizer(tmp_path, bert_specials=False)
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_embd=16, n_layer=1, n_head=2, n_positions=64,
                               eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id)).save_pretrained(tmp_path)
    ns = run_card_snippet(tmp_path, "causal-lm")
    assert type(ns["model"]).__name__ == "GPT2LMHeadModel"


def test_image_encoder_snippet_runs(tmp_path):
    from transformers import AutoImageProcessor, ViTConfig, ViTImageProcessor, ViTModel

    ViTModel(ViTConfig(image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=32)).save_pretrained(tmp_path)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(tmp_path)
    assert AutoImageProcessor.from_pretrained(tmp_path) is not None
    ns = run_card_snippet(tmp_path, "image-encoder")
    assert tuple(ns["features"].shape) == (1, 16)


@pytest.mark.parametrize("arch", ["vit", "resnet"])
def test_image_encoder_snippet_gives_the_features_training_used(arch, tmp_path):
    """The folder recipes/contrastive.py saves (backbone + its image processor): the card's snippet must compute
    the same feature as hfssl's ImageEncoder ([CLS] for ViT, pooled map for ResNet), not e.g. an untrained pooler."""
    import torch
    from transformers import AutoModel, ResNetConfig, ViTConfig

    from hfssl.contrastive.encoder import ImageEncoder, make_image_processor

    config = (ViTConfig(image_size=16, patch_size=4, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32) if arch == "vit"
              else ResNetConfig(embedding_size=8, hidden_sizes=[16, 24], depths=[1, 1], layer_type="basic"))
    torch.manual_seed(0)
    AutoModel.from_config(config).save_pretrained(tmp_path)
    make_image_processor(16).save_pretrained(tmp_path)
    ns = run_card_snippet(tmp_path, "image-encoder")
    encoder = ImageEncoder(AutoModel.from_pretrained(tmp_path).eval())
    with torch.no_grad():
        expected = encoder(ns["processor"](images=ns["image"], return_tensors="pt")["pixel_values"])
    assert ns["features"].shape == expected.shape == (1, encoder.dim)
    assert torch.allclose(ns["features"], expected, atol=1e-5)


def test_image_classifier_snippet_runs(tmp_path):
    """The folder recipes/image_finetune.py saves: a classification model on the encoder + the image processor."""
    from transformers import AutoModelForImageClassification, ResNetConfig

    from hfssl.contrastive.encoder import make_image_processor

    labels = {0: "zero", 1: "one", 2: "two"}
    config = ResNetConfig(embedding_size=8, hidden_sizes=[16, 24], depths=[1, 1], layer_type="basic", num_labels=3,
                          id2label=labels, label2id={v: k for k, v in labels.items()})
    AutoModelForImageClassification.from_config(config).save_pretrained(tmp_path)
    make_image_processor(16).save_pretrained(tmp_path)
    ns = run_card_snippet(tmp_path, "image-classifier")
    assert ns["model"].config.id2label == labels
    predictions = ns["classify"](ns["image"])
    assert {p["label"] for p in predictions} <= set(labels.values()) and len(predictions) == 3


def test_word_embeddings_snippet_runs(tmp_path):
    from hfssl.word2vec.vectors import WordVectors  # the format recipes/word2vec.py saves

    words = ["king", "queen", "man", "woman", "apple", "pear", "car"]
    vectors = np.random.default_rng(0).normal(size=(len(words), 8))
    WordVectors(words, vectors, counts=np.arange(len(words), 0, -1)).save_pretrained(tmp_path)
    ns = run_card_snippet(tmp_path, "word-embeddings")
    loaded = [v for v in ns.values() if isinstance(v, WordVectors)]
    assert loaded and loaded[0].words[:len(words)] == words and np.allclose(loaded[0]["king"], vectors[0])


def test_every_template_has_the_required_sections():
    for kind in KINDS:
        text = (TEMPLATES_DIR / f"{kind}.md").read_text(encoding="utf-8")
        for section in ("## How to use", "```python", "## Training data", "## Training procedure", "### Compute",
                        "### Training loss", "## Evaluation", "## Limitations", "{repo_id}", "{results}", "{compute}",
                        "{loss_plot}", "{hyperparameters}", "{datasets}"):
            assert section in text, (kind, section)

