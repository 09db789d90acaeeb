"""End-to-end runs of recipes/mae.py on a tiny ViT and offline digits, and fine-tuning its encoder."""

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import (AutoImageProcessor, AutoModel, AutoModelForImageClassification, AutoModelForPreTraining,
                          ViTMAEForPreTraining, ViTModel)

from hfssl.config import ConfigError

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "recipes"))
import image_finetune  # noqa: E402
import mae  # noqa: E402

TINY = ["--image_size", "16", "--patch_size", "4", "--hidden_size", "32", "--num_hidden_layers", "2",
        "--num_attention_heads", "2", "--intermediate_size", "64", "--decoder_hidden_size", "32",
        "--decoder_num_hidden_layers", "1", "--decoder_num_attention_heads", "2", "--decoder_intermediate_size", "64",
        "--per_device_train_batch_size", "32", "--report_to", "none", "--max_eval_samples", "300",
        "--logging_steps", "1", "--crop_min_scale", "0.5", "--mixed_precision", "no"]


@pytest.fixture(autouse=True)
def fresh_accelerate_state():
    # main() runs in this process: forget any Accelerator state an earlier test left (e.g. another precision).
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    out = tmp_path_factory.mktemp("mae")
    shutil.rmtree(out)
    results = mae.main([*TINY, "--output_dir", str(out), "--max_steps", "30", "--learning_rate", "3e-3",
                        "--eval_steps", "15"])
    return out, results


def test_smoke_loss_falls_and_results_are_written(trained):
    out, results = trained
    saved = json.loads((out / "all_results.json").read_text())
    history = [loss for _, loss in saved["loss_history"]]
    assert len(history) == 30
    assert sum(history[-5:]) / 5 < sum(history[:5]) / 5 - 0.05
    for key in ("knn_accuracy", "linear_probe_accuracy", "random_init_knn_accuracy",
                "random_init_linear_probe_accuracy"):
        assert 0.0 <= saved[key] <= 1.0 and saved[key] == results[key]
    assert [step for step, _ in saved["online_knn_history"]] == [15, 30]
    assert saved["train_steps"] == 30 and saved["images_skipped"] == 0
    card = (out / "README.md").read_text()
    assert "masked" in card and "knn_accuracy" in card and "pulled together" not in card


def test_saved_encoder_is_a_vit_for_automodel_and_classification(trained):
    out, _ = trained
    model = AutoModel.from_pretrained(out).eval()
    assert isinstance(model, ViTModel)
    processor = AutoImageProcessor.from_pretrained(out)
    from PIL import Image

    inputs = processor(images=[Image.new("L", (8, 8), 128), Image.new("RGB", (40, 20), (9, 90, 200))],
                       return_tensors="pt")
    assert inputs["pixel_values"].shape == (2, 3, 16, 16)
    with torch.no_grad():
        outputs = model(**inputs)
    assert outputs.last_hidden_state.shape == (2, 17, 32)  # no masking: all 16 patches + [CLS]
    torch.testing.assert_close(outputs.pooler_output, outputs.last_hidden_state[:, 0])
    classifier = AutoModelForImageClassification.from_pretrained(out, num_labels=10)
    torch.testing.assert_close(classifier.vit.embeddings.cls_token, model.embeddings.cls_token)
    assert (out / "model.safetensors").is_file() and not [*out.glob("*.bin"), *(out / "pretraining").glob("*.bin")]
    # the full pretraining model (decoder included) is kept for continued pretraining
    assert isinstance(AutoModelForPreTraining.from_pretrained(out / "pretraining"), ViTMAEForPreTraining)


def test_finetune_from_the_mae_encoder(trained, tmp_path):
    out, _ = trained
    metrics = image_finetune.main(["--model_name_or_path", str(out), "--output_dir", str(tmp_path / "ft"),
                                   "--max_steps", "6", "--per_device_train_batch_size", "32",
                                   "--report_to", "none", "--logging_steps", "3"])
    assert 0.0 <= metrics["eval_accuracy"] <= 1.0
    model = AutoModelForImageClassification.from_pretrained(tmp_path / "ft")
    assert model.config.model_type == "vit" and model.config.num_labels == 10


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path):
    # 64 images / 16 per batch = 4 steps per epoch: the run crosses an epoch; crops and masks must replay exactly.
    common = [*TINY, "--max_train_samples", "64", "--per_device_train_batch_size", "16", "--max_steps", "6",
              "--checkpointing_steps", "3", "--checkpoints_total_limit", "0", "--max_eval_samples", "50"]
    full, resumed = tmp_path / "full", tmp_path / "resumed"
    mae.main([*common, "--output_dir", str(full)])
    (resumed / "checkpoints").mkdir(parents=True)
    shutil.copytree(full / "checkpoints" / "step_00000003", resumed / "checkpoints" / "step_00000003")
    mae.main([*common, "--output_dir", str(resumed), "--resume_from_checkpoint", "latest"])
    for name in ("model.safetensors", "pretraining/model.safetensors"):
        a, b = load_file(full / name), load_file(resumed / name)
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=f"{name}: {key}")


def test_bad_flags_fail_before_training(tmp_path):
    with pytest.raises(ConfigError, match="mask_ratio"):
        mae.main(["--mask_ratio", "1.0", "--output_dir", str(tmp_path / "a")])
    with pytest.raises(ConfigError, match="patch_size"):
        mae.main(["--image_size", "30", "--output_dir", str(tmp_path / "b"), "--report_to", "none"])
    with pytest.raises(ConfigError, match="decode_size"):
        mae.main([*TINY, "--decode_size", "8", "--output_dir", str(tmp_path / "c")])
    assert not (tmp_path / "a").exists()


def test_the_command_line_prints_an_error_not_a_traceback(tmp_path):
    """Bad flags and a clashing output folder end the script with "error: ..." and exit status 1, as in every recipe."""
    import subprocess

    clash = tmp_path / "a-file"
    clash.write_text("not a folder")
    for flags, message in ((["--mask_ratio", "1.5"], "mask_ratio"), (["--output_dir", str(clash)], "is a file")):
        proc = subprocess.run([sys.executable, str(ROOT / "recipes" / "mae.py"), "--report_to", "none", *flags],
                              capture_output=True, text=True, cwd=tmp_path, timeout=300)
        assert proc.returncode == 1, proc.stderr[-3000:]
        assert "error: " in proc.stderr and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-3000:]


def test_non_finite_loss_stops_before_a_checkpoint_with_a_clear_error(tmp_path):
    """NaN pixels from micro-step 5 on: the run ends with "error: Loss is nan" before step 6's checkpoint, and every
    checkpoint it left holds finite weights (the loss is checked on the host before each save, not every step)."""
    from faults import checkpoint_names, launch_with_fault

    out = tmp_path / "nan"
    proc = launch_with_fault(tmp_path, "mae.py", "nan", 5, *TINY, "--output_dir", str(out), "--max_steps", "8",
                             "--checkpointing_steps", "2", "--logging_steps", "4",
                             target="hfssl.contrastive.augment:augment")
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "error: Loss is nan before step 6" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert checkpoint_names(out) == ["step_00000002", "step_00000004"]
    assert not (out / "model.safetensors").exists()
    for name in checkpoint_names(out):
        weights = load_file(out / "checkpoints" / name / "model.safetensors")
        assert all(torch.isfinite(t).all() for t in weights.values()), name


def test_two_processes_stream_an_image_folder(tmp_path):
    """torchrun with two CPU processes reading a streamed image folder: each process reads its own files, every
    step counts both processes' images, and the encoder loads."""
    import numpy as np
    from PIL import Image

    from conftest import run_recipe
    from faults import TORCHRUN_2

    rng = np.random.default_rng(0)
    for split, count in (("train", 24), ("val", 6)):
        for cls in ("a", "b"):
            folder = tmp_path / split / cls
            folder.mkdir(parents=True)
            for i in range(count):
                Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    out = tmp_path / "out"
    run_recipe("mae.py", *TINY, "--train_dir", str(tmp_path / "train"), "--validation_dir", str(tmp_path / "val"),
               "--streaming", "true", "--max_steps", "4", "--per_device_train_batch_size", "4",
               "--decode_size", "24",  # crops drawn from images decoded larger than the model's input
               "--output_dir", str(out), launcher=TORCHRUN_2)
    results = json.loads((out / "all_results.json").read_text())
    assert results["train_steps"] == 4 and results["train_images_seen"] == 4 * 4 * 2
    assert all(np.isfinite(loss) for _, loss in results["loss_history"])
    assert AutoModel.from_pretrained(out, use_safetensors=True).config.model_type == "vit"
