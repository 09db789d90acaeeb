"""End-to-end runs of recipes/contrastive.py and recipes/image_finetune.py on a tiny ResNet and offline digits."""

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoImageProcessor, AutoModel, AutoModelForImageClassification, ResNetConfig

from hfssl.config import ConfigError

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "recipes"))
import contrastive  # noqa: E402
import image_finetune  # noqa: E402


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-resnet")
    ResNetConfig(embedding_size=8, hidden_sizes=[16, 32], depths=[1, 1], layer_type="basic").save_pretrained(folder)
    return str(folder)


def _args(tiny_config, out, *extra):
    return ["--config_name", str(tiny_config), "--output_dir", str(out), "--image_size", "16",
            "--per_device_train_batch_size", "32", "--projection_hidden_dim", "64", "--projection_dim", "32",
            "--report_to", "none", "--max_eval_samples", "400", "--logging_steps", "1", *extra]


@pytest.fixture(scope="module")
def trained(tiny_config, tmp_path_factory):
    out = tmp_path_factory.mktemp("simclr")
    shutil.rmtree(out)
    results = contrastive.main(_args(tiny_config, out, "--max_steps", "40", "--learning_rate", "3e-3",
                                     "--hflip_prob", "0", "--crop_min_scale", "0.3", "--eval_steps", "20"))
    return out, results


def test_smoke_loss_falls_and_results_are_written(trained):
    out, results = trained
    saved = json.loads((out / "all_results.json").read_text())
    history = [loss for _, loss in saved["loss_history"]]
    assert len(history) == 40
    assert sum(history[-5:]) / 5 < sum(history[:5]) / 5 - 0.05
    for key in ("knn_accuracy", "linear_probe_accuracy", "random_init_knn_accuracy",
                "random_init_linear_probe_accuracy"):
        assert 0.0 <= saved[key] <= 1.0
    assert [step for step, _ in saved["online_knn_history"]] == [20, 40]
    assert saved["images_skipped"] == 0 and saved["train_steps"] == 40
    assert (out / "README.md").read_text().count("knn_accuracy") >= 1


def test_saved_encoder_loads_with_automodel(trained):
    out, _ = trained
    model = AutoModel.from_pretrained(out).eval()
    processor = AutoImageProcessor.from_pretrained(out)
    from PIL import Image

    inputs = processor(images=[Image.new("L", (8, 8), 128)] * 2, return_tensors="pt")
    assert inputs["pixel_values"].shape == (2, 3, 16, 16)
    with torch.no_grad():
        assert model(**inputs).pooler_output.flatten(1).shape == (2, 32)
    assert (out / "model.safetensors").is_file() and not list(out.glob("*.bin"))


def test_finetune_from_the_ssl_encoder(trained, tmp_path):
    out, _ = trained
    metrics = image_finetune.main(["--model_name_or_path", str(out), "--output_dir", str(tmp_path / "ft"),
                                   "--max_steps", "10", "--per_device_train_batch_size", "32",
                                   "--report_to", "none", "--logging_steps", "5"])
    assert metrics["eval_accuracy"] > 0.15  # 10 classes: chance is 0.10 (+-0.016 on 360 images); measured 0.275
    saved = json.loads((tmp_path / "ft" / "all_results.json").read_text())
    assert saved["eval_accuracy"] == metrics["eval_accuracy"]
    model = AutoModelForImageClassification.from_pretrained(tmp_path / "ft")
    assert model.config.num_labels == 10


def test_rotnet_smoke_loss_falls_and_encoder_loads(tiny_config, tmp_path):
    out = tmp_path / "rotnet"
    results = contrastive.main(_args(tiny_config, out, "--method", "rotnet", "--max_steps", "25",
                                     "--per_device_train_batch_size", "16", "--learning_rate", "3e-3",
                                     "--crop_min_scale", "0.6", "--hflip_prob", "0"))
    saved = json.loads((out / "all_results.json").read_text())
    history = [loss for _, loss in saved["loss_history"]]
    assert history[0] > 1.2  # ~ln 4 = 1.39: the classifier starts at chance over the four rotations
    assert sum(history[-5:]) / 5 < sum(history[:5]) / 5 - 0.1
    assert saved["train_images_seen"] == 25 * 16 and 0.0 <= results["knn_accuracy"] <= 1.0
    card = (out / "README.md").read_text()
    assert "rotation-prediction" in card and "RotNet" in card and "pulled together" not in card
    model = AutoModel.from_pretrained(out)
    with torch.no_grad():
        assert model(pixel_values=torch.rand(2, 3, 16, 16)).pooler_output.flatten(1).shape == (2, 32)


@pytest.mark.parametrize("method", ["byol", "dino"])
def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tiny_config, tmp_path, method):
    # BYOL and DINO exercise the EMA target too (DINO also its center, teacher temperature and local crops);
    # 64 images / 16 per batch = 4 steps per epoch, so the run crosses epochs.
    common = ["--method", method, "--max_train_samples", "64", "--per_device_train_batch_size", "16",
              "--max_steps", "6", "--checkpointing_steps", "3", "--checkpoints_total_limit", "0"]
    if method == "dino":
        common += ["--num_local_crops", "2", "--teacher_temperature_warmup", "4"]
    full, resumed = tmp_path / "full", tmp_path / "resumed"
    contrastive.main(_args(tiny_config, full, *common)[:] + [])
    (resumed / "checkpoints").mkdir(parents=True)
    shutil.copytree(full / "checkpoints" / "step_00000003", resumed / "checkpoints" / "step_00000003")
    contrastive.main(_args(tiny_config, resumed, *common, "--resume_from_checkpoint", "latest"))
    a, b = load_file(full / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
    # and the whole training state, EMA target included, matches too
    sa = load_file(full / "checkpoints" / "step_00000006" / "model.safetensors")
    sb = load_file(resumed / "checkpoints" / "step_00000006" / "model.safetensors")
    assert any("target" in k or "teacher" in k for k in sa)
    for key in sa:
        torch.testing.assert_close(sa[key], sb[key], rtol=0, atol=0, msg=key)


def test_dino_with_multi_crop_trains_and_checkpoints_its_teacher_state(tiny_config, tmp_path):
    out = tmp_path / "dino"
    results = contrastive.main(_args(tiny_config, out, "--method", "dino", "--num_local_crops", "2", "--max_steps", "8",
                                     "--teacher_temperature_warmup", "4", "--learning_rate", "3e-3"))
    saved = json.loads((out / "all_results.json").read_text())
    losses = [loss for _, loss in saved["loss_history"]]
    assert len(losses) == 8 and all(math.isfinite(loss) for loss in losses)
    # a cross-entropy over the 32 prototypes: positive, and not far above log(K) (a uniform student)
    assert all(0 < loss < math.log(32) + 0.5 for loss in losses)
    state = load_file(out / "checkpoints" / "step_00000008" / "model.safetensors")
    assert float(state["teacher_temperature"]) == pytest.approx(0.07)  # warmed up from 0.04 in 4 steps
    assert float(state["loss.center"].abs().sum()) > 0
    assert not any(k.startswith(("teacher", "head", "loss")) for k in load_file(out / "model.safetensors"))
    assert 0.0 <= results["knn_accuracy"] <= 1.0


def test_dino_freezes_its_last_layer_for_the_first_epoch_only(tiny_config, tmp_path):
    # 64 images / 16 per batch = 4 steps per epoch: 0.75 epochs freeze steps 1-3, step 4 updates the prototypes.
    out = tmp_path / "dino"
    contrastive.main(_args(tiny_config, out, "--method", "dino", "--max_train_samples", "64",
                           "--per_device_train_batch_size", "16", "--max_steps", "4", "--checkpointing_steps", "1",
                           "--checkpoints_total_limit", "0", "--freeze_last_layer_epochs", "0.75",
                           "--learning_rate", "3e-3"))
    states = [load_file(out / "checkpoints" / f"step_0000000{s}" / "model.safetensors") for s in (1, 2, 3, 4)]
    key = "head.last_layer.weight"
    assert torch.equal(states[0][key], states[1][key]) and torch.equal(states[0][key], states[2][key])
    assert not torch.equal(states[2][key], states[3][key])
    assert not torch.equal(states[0]["head.mlp.0.weight"], states[2]["head.mlp.0.weight"])  # the rest learns


def test_bad_flags_fail_before_training(tmp_path):
    with pytest.raises(ConfigError, match="crop_min_scale"):
        contrastive.main(["--crop_min_scale", "0", "--output_dir", str(tmp_path)])
    with pytest.raises(ConfigError, match="max_steps"):
        contrastive.main(["--streaming", "--output_dir", str(tmp_path)])
    with pytest.raises(ConfigError, match="num_local_crops"):
        contrastive.main(["--num_local_crops", "2", "--output_dir", str(tmp_path)])
    with pytest.raises(ConfigError, match="--decode_size 12 is below --image_size 16"):
        contrastive.main(["--image_size", "16", "--decode_size", "12", "--output_dir", str(tmp_path)])
    with pytest.raises(ConfigError, match="model_name_or_path"):
        image_finetune.main(["--output_dir", str(tmp_path)])


def test_two_processes_with_torchrun(tiny_config, tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(ROOT / "recipes" / "contrastive.py"),
           *_args(tiny_config, out, "--max_steps", "4", "--max_train_samples", "256", "--method", "simclr")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    saved = json.loads((out / "all_results.json").read_text())
    assert saved["train_steps"] == 4
    # both processes trained, on different images: 2 processes x 4 steps x 32 images
    assert saved["train_images_seen"] == 2 * 4 * 32
    assert "knn_accuracy" in saved and (out / "model.safetensors").is_file()


@pytest.mark.parametrize("path", sorted((ROOT / "recipes" / "configs" / "contrastive").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_parse(path):
    from hfssl.config import parse_config
    from hfssl.contrastive.config import ContrastiveConfig
    from hfssl.contrastive.methods import METHODS

    cfg = parse_config(ContrastiveConfig, ["--config", str(path), "--max_steps", "1"])
    assert cfg.max_steps == 1 and cfg.method in METHODS


@pytest.mark.parametrize("streaming", [False, True], ids=["map", "streaming"])
def test_image_folder_with_a_corrupt_file(tiny_config, tmp_path, streaming):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for cls in ("a", "b"):
            folder = tmp_path / split / cls
            folder.mkdir(parents=True)
            for i in range(4):
                mode = ("RGB", "L", "RGBA", "P")[i]
                Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).convert(mode).save(folder / f"{i}.png")
    (tmp_path / "train" / "a" / "zz-broken.png").write_bytes(b"not a png at all")
    out = tmp_path / "out"
    # Decoded larger than the 16 px views (the crops are drawn from 24 px images); evaluation decodes at 16.
    extra = (["--streaming"] if streaming else []) + ["--decode_size", "24"]
    results = contrastive.main(_args(tiny_config, out, "--train_dir", str(tmp_path / "train"), "--validation_dir",
                                     str(tmp_path / "val"), "--per_device_train_batch_size", "9", "--max_steps", "2",
                                     *extra))
    assert results["train_steps"] == 2
    assert results["images_skipped"] >= 1  # the broken file was met, counted and skipped
    assert 0.0 <= results["knn_accuracy"] <= 1.0
    assert AutoModel.from_pretrained(out) is not None
