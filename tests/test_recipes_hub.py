"""Every recipe's Hub flags, run as a user would (a fresh process) against the offline fake Hub of fake_hub.py.

- ``--push_to_hub`` without a token stops before any work, with the fix in one line and nothing written;
- with ``--hub_push_checkpoints``, a Hub that refuses every upload costs nothing: training finishes, the failed
  checkpoint uploads are reported at the end, the final push fails with a clean message (no traceback), the local
  output is complete, and ``recipes/push.py`` later publishes it byte for byte;
- with a working Hub, checkpoints arrive in the background under ``last-checkpoint/`` (Trainer recipes too);
- the token appears in no output file, log or upload;
- each recipe's model card parses back with its metadata, shows its loss plot, and its code runs on the folder.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from fake_hub import FakeHub
from hfssl.hub import files_to_push

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "hf_RecipeHubCanary_93a7c1d2e4f5"
FINAL_COMMIT = "Upload model trained with hfssl"


def hub_env(tmp_path: Path, hub_url: str, token: str | None) -> dict[str, str]:
    """No HF_* from the caller (no real token, no offline switch); a fresh HF_HOME, so no stored login either."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
    env.update(HF_HOME=str(tmp_path / "hf_home"), HF_ENDPOINT=hub_url, HF_DATASETS_OFFLINE="1", OMP_NUM_THREADS="1",
               TOKENIZERS_PARALLELISM="false", PYTHONPATH=str(ROOT), HFSSL_HUB_RETRIES="0", HFSSL_HUB_TIMEOUT="10",
               HFSSL_HUB_RETRY_WAIT="0.05", HFSSL_CACHE=str(tmp_path / "hfssl-cache"))
    if token:
        env["HF_TOKEN"] = token
    return env


def run(script: str, args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "recipes" / script), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


# ---- Tiny but real inputs for each recipe ----------------------------------------------------------------------

REVIEWS = [("a wonderful, moving film", "positive"), ("dull plot and wooden dialogue", "negative"),
           ("i loved every minute of it", "positive"), ("a boring mess that goes nowhere", "negative"),
           ("funny, warm and beautifully shot", "positive"), ("the worst film i have seen", "negative"),
           ("a delightful surprise", "positive"), ("painfully slow and badly written", "negative")]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    """A text corpus, labelled reviews, a tiny BERT with its tokenizer, a tiny ResNet config and encoder folder."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import (AutoModel, BertConfig, BertForMaskedLM, PreTrainedTokenizerFast, ResNetConfig)

    from hfssl.contrastive.encoder import make_image_processor
    from hfssl.data.offline_corpus import bible_corpus

    root = tmp_path_factory.mktemp("hub-inputs")
    lines = bible_corpus().read_text(encoding="utf-8").splitlines()[:1500]
    (root / "corpus.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (root / "reviews.csv").write_text("review,sentiment\n" + "".join(f'"{t}",{l}\n' for t, l in REVIEWS * 3))

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(lines + [t for t, _ in REVIEWS], trainers.WordPieceTrainer(
        vocab_size=400, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]))
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
                                                       special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                        sep_token="[SEP]", mask_token="[MASK]", model_max_length=64)
    bert = root / "tiny-bert"
    BertForMaskedLM(BertConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                               intermediate_size=32, max_position_embeddings=64)).save_pretrained(bert)
    tokenizer.save_pretrained(bert)

    resnet = ResNetConfig(embedding_size=8, hidden_sizes=[16, 32], depths=[1, 1], layer_type="basic")
    resnet.save_pretrained(root / "tiny-resnet")
    encoder = root / "tiny-encoder"  # the folder recipes/contrastive.py writes: backbone + image processor
    AutoModel.from_config(resnet).save_pretrained(encoder)
    make_image_processor(16).save_pretrained(encoder)
    return {"root": root, "corpus": root / "corpus.txt", "reviews": root / "reviews.csv", "bert": bert,
            "resnet": root / "tiny-resnet", "encoder": encoder}


def recipe_args(recipe: str, inputs: dict[str, Path]) -> list[str]:
    """A complete tiny run of ``recipe`` (a few optimizer steps, at least two checkpoints)."""
    if recipe == "mlm.py":
        return ["--train_file", str(inputs["corpus"]), "--max_steps", "4", "--checkpointing_steps", "2",
                "--hidden_size", "32", "--num_hidden_layers", "1", "--num_attention_heads", "2", "--intermediate_size",
                "64", "--max_seq_length", "32", "--vocab_size", "300", "--per_device_train_batch_size", "8",
                "--logging_steps", "2", "--eval_steps", "0", "--max_eval_samples", "20", "--report_to", "tensorboard"]
    if recipe == "clm.py":
        return ["--train_file", str(inputs["corpus"]), "--max_steps", "4", "--checkpointing_steps", "2",
                "--hidden_size", "32", "--num_hidden_layers", "1", "--num_attention_heads", "2", "--intermediate_size",
                "64", "--max_seq_length", "32", "--vocab_size", "300", "--per_device_train_batch_size", "8",
                "--logging_steps", "2", "--eval_steps", "0", "--max_eval_samples", "20", "--sample_max_new_tokens", "4",
                "--report_to", "none"]
    if recipe == "word2vec.py":
        return ["--train_file", str(inputs["corpus"]), "--epochs", "1", "--checkpointing_steps", "2",
                "--vector_size", "16", "--chunk_words", "4000", "--batch_windows", "256", "--report_to", "none",
                "--analogy_file", "none", "--similarity_files", "none", "--neighbour_words", "god"]
    if recipe == "contrastive.py":
        return ["--config_name", str(inputs["resnet"]), "--image_size", "16", "--per_device_train_batch_size", "32",
                "--projection_hidden_dim", "32", "--projection_dim", "16", "--max_steps", "4", "--checkpointing_steps",
                "2", "--max_train_samples", "256", "--max_eval_samples", "64", "--report_to", "none", "--logging_steps", "2"]
    if recipe == "mae.py":
        return ["--image_size", "16", "--patch_size", "4", "--hidden_size", "32", "--num_hidden_layers", "1",
                "--num_attention_heads", "2", "--intermediate_size", "64", "--decoder_hidden_size", "32",
                "--decoder_num_hidden_layers", "1", "--decoder_num_attention_heads", "2", "--decoder_intermediate_size",
                "64", "--per_device_train_batch_size", "32", "--max_steps", "4", "--checkpointing_steps", "2",
                "--max_train_samples", "256", "--max_eval_samples", "64", "--mixed_precision", "no",
                "--report_to", "none", "--logging_steps", "2"]
    if recipe == "finetune.py":
        return ["--model_name_or_path", str(inputs["bert"]), "--train_file", str(inputs["reviews"]), "--sentence1_key",
                "review", "--label_column", "sentiment", "--max_steps", "4", "--checkpointing_steps", "2",
                "--per_device_train_batch_size", "4", "--max_seq_length", "32", "--report_to", "none", "--logging_steps", "2"]
    if recipe == "image_finetune.py":
        return ["--model_name_or_path", str(inputs["encoder"]), "--max_train_samples", "128", "--max_steps", "4",
                "--per_device_train_batch_size", "32", "--per_device_eval_batch_size", "64", "--report_to", "none",
                "--logging_steps", "2"]
    raise AssertionError(f"no tiny arguments for {recipe}")


RECIPES = ["mlm.py", "clm.py", "word2vec.py", "contrastive.py", "mae.py", "finetune.py", "image_finetune.py"]
# What each recipe's saved folder must hold besides README.md (the model card).
MODEL_FILES = {"mlm.py": ["model.safetensors", "config.json", "tokenizer.json"],
               "clm.py": ["model.safetensors", "config.json", "tokenizer.json"],
               "word2vec.py": ["model.safetensors", "vocab.txt", "tokenizer.json"],
               "contrastive.py": ["model.safetensors", "config.json", "preprocessor_config.json"],
               "mae.py": ["model.safetensors", "config.json", "preprocessor_config.json"],
               "finetune.py": ["model.safetensors", "config.json", "tokenizer.json"],
               "image_finetune.py": ["model.safetensors", "config.json", "preprocessor_config.json"]}
PIPELINE_TAG = {"mlm.py": "fill-mask", "clm.py": "text-generation", "word2vec.py": "feature-extraction",
                "contrastive.py": "image-feature-extraction", "mae.py": "image-feature-extraction",
                "finetune.py": "text-classification", "image_finetune.py": "image-classification"}


def test_every_training_recipe_is_covered():
    """A recipe committed without an entry here fails this test: every recipe must take the Hub flags."""
    try:  # committed recipes only: one still being written in a working tree is checked once it lands
        listed = subprocess.run(["git", "ls-files", "recipes/*.py"], cwd=ROOT, capture_output=True, text=True, check=True)
        names = [Path(line).name for line in listed.stdout.split()]
    except (OSError, subprocess.CalledProcessError):  # not a git checkout
        names = []
    trainers = set(names or [p.name for p in (ROOT / "recipes").glob("*.py")]) - {"push.py"}
    assert trainers <= set(RECIPES), f"add {sorted(trainers - set(RECIPES))} to the Hub tests of this file"


def check_model_card(out: Path, recipe: str, repo_id: str) -> None:
    """Metadata round-trips through ModelCard, the loss plot is there, and every code block runs on ``out``."""
    card = ModelCard.load(out / "README.md")
    assert card.data.pipeline_tag == PIPELINE_TAG[recipe] and card.data.model_name == repo_id
    assert "![training loss](training_loss.png)" in card.text and (out / "training_loss.png").is_file()
    blocks = re.findall(r"```python\n(.*?)```", card.text, flags=re.DOTALL)
    assert blocks
    for i, block in enumerate(blocks):  # as a reader would run them, with the Hub id pointing at the local folder
        assert f'"{repo_id}"' in block, block
        exec(compile(block.replace(f'"{repo_id}"', repr(str(out))), f"<{recipe} card, block {i}>", "exec"), {})  # noqa: S102


def scan_for_token(out: Path, proc: subprocess.CompletedProcess) -> None:
    for path in out.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path
    assert TOKEN not in proc.stdout and TOKEN not in proc.stderr


@pytest.mark.parametrize("recipe", RECIPES)
def test_push_without_token_fails_before_any_work(recipe, inputs, tmp_path):
    out = tmp_path / "out"
    # All the Hub flags are accepted (an unknown one would fail in argparse, without the token message).
    proc = run(recipe, [*recipe_args(recipe, inputs), "--output_dir", str(out), "--push_to_hub", "--hub_model_id",
                        "tester/model", "--hub_private_repo", "--hub_revision", "run-1", "--hub_push_checkpoints"],
               hub_env(tmp_path, "http://127.0.0.1:9", token=None))
    assert proc.returncode != 0
    assert "HF_TOKEN" in proc.stderr and "hf auth login" in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert not out.exists()  # stopped before the output folder, the data or the model


@pytest.mark.parametrize("recipe", RECIPES)
def test_hub_failures_never_cost_the_run_or_the_local_output(recipe, inputs, tmp_path):
    out = tmp_path / "out"
    with FakeHub(tokens={TOKEN: "write"}) as hub:
        hub.fail("commit", status=500, times=1000)  # the token check passes, every upload fails
        proc = run(recipe, [*recipe_args(recipe, inputs), "--output_dir", str(out), "--push_to_hub", "--hub_model_id",
                            "tester/model", "--hub_push_checkpoints"], hub_env(tmp_path, hub.url, TOKEN))
        stderr = proc.stderr
        # Training finished; the checkpoint uploads failed in the background and are reported at the end...
        assert proc.returncode == 1, stderr[-4000:]
        assert "checkpoint uploads to tester/model failed" in stderr and "Training was not affected" in stderr, stderr[-4000:]
        # ...then the final push fails with one clean message saying how to push again.
        assert "error: Pushing" in stderr and "HTTP 500" in stderr and "recipes/push.py" in stderr, stderr[-4000:]
        assert "Traceback" not in stderr, stderr[-4000:]
        assert hub.commits == [] and hub.count("commit") >= 2  # at least one checkpoint, then the final push

        # The local output is complete: model, card, checkpoints; no staging copies left behind.
        for name in ["README.md", *MODEL_FILES[recipe]]:
            assert (out / name).is_file(), name
        assert any((out / "checkpoints").iterdir())
        assert not [p for p in out.rglob(".hub-staging-*")]
        scan_for_token(out, proc)

        # So pushing it later works, and every file arrives byte-identical.
        hub.clear_faults()
        again = run("push.py", [str(out), "--hub_model_id", "tester/model"], hub_env(tmp_path, hub.url, TOKEN))
        assert again.returncode == 0, again.stderr[-3000:]
        pushed = hub.files("tester/model")
    expected = {rel.as_posix() for rel in files_to_push(out)}
    assert set(pushed) == expected and {"README.md", *MODEL_FILES[recipe]} <= expected
    for path, data in pushed.items():
        assert data == (out / path).read_bytes(), path
    assert TOKEN not in again.stdout + again.stderr
    check_model_card(out, recipe, "tester/model")


@pytest.mark.parametrize("recipe", ["word2vec.py", "finetune.py"])  # recipes/mlm.py: tests/test_hub.py
def test_checkpoints_are_pushed_in_the_background(recipe, inputs, tmp_path):
    out = tmp_path / "out"
    with FakeHub(tokens={TOKEN: "write"}) as hub:
        proc = run(recipe, [*recipe_args(recipe, inputs), "--output_dir", str(out), "--push_to_hub", "--hub_model_id",
                            "tester/model", "--hub_private_repo", "--hub_revision", "run-1", "--hub_push_checkpoints"],
                   hub_env(tmp_path, hub.url, TOKEN))
        assert proc.returncode == 0, proc.stderr[-4000:]
        commits, pushed = list(hub.commits), hub.files("tester/model", branch="run-1")
        assert hub.repos["tester/model"].private and hub.files("tester/model", branch="main") == {}
        wire = b"".join(hub.bodies)
    assert {c.branch for c in commits} == {"run-1"}
    messages = [c.message for c in commits]
    assert messages[-1] == FINAL_COMMIT and len(messages) >= 2
    assert all(m.startswith("Checkpoint ") for m in messages[:-1]), messages
    # The newest checkpoint (never replaced by a later one) is what last-checkpoint/ holds, byte for byte.
    newest = max((p for p in (out / "checkpoints").iterdir() if p.is_dir() and not p.name.startswith(".")),
                 key=lambda p: int(p.name.replace("-", "_").rsplit("_", 1)[-1]))
    local = {f"last-checkpoint/{p.relative_to(newest).as_posix()}": p.read_bytes() for p in newest.rglob("*") if p.is_file()}
    assert {k: v for k, v in pushed.items() if k.startswith("last-checkpoint/")} == local
    assert commits[-2].message.startswith(f"Checkpoint {newest.name}")
    # The final folder is published as usual, checkpoints/ itself stays local.
    for path in files_to_push(out):
        assert pushed[path.as_posix()] == (out / path).read_bytes()
    assert not any(p.startswith("checkpoints/") for p in pushed)
    scan_for_token(out, proc)
    assert TOKEN.encode() not in wire


def test_hub_push_checkpoints_needs_push_to_hub():
    from hfssl.config import ConfigError, RunConfig

    with pytest.raises(ConfigError, match="--push_to_hub"):
        RunConfig(hub_push_checkpoints=True)
    assert RunConfig(push_to_hub=True, hub_model_id="me/m", hub_push_checkpoints=True).hub_push_checkpoints
