"""Image loading: offline digits, image folders with class labels, any PIL mode, corrupt files skipped."""

import io

import numpy as np
import pytest
import torch
from datasets import Dataset
from PIL import Image

from hfssl.contrastive.data import ImageCollator, decode_image, digits_dataset, load_image_splits
from hfssl.data.text import DataError


def _png_bytes(image):
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def image_folder(tmp_path):
    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        for split in ("train", "val"):
            folder = tmp_path / split / cls
            folder.mkdir(parents=True)
            for i in range(3):
                Image.fromarray(rng.integers(0, 255, (12, 10, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    (tmp_path / "train" / "cat" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    return tmp_path


def test_digits_split_is_deterministic_and_stratified():
    a, b = digits_dataset(), digits_dataset()
    assert len(a["train"]) == 1437 and len(a["validation"]) == 360
    assert a["validation"]["label"] == b["validation"]["label"]
    assert sorted(set(a["validation"]["label"])) == list(range(10))


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "LA", "CMYK", "1", "I;16"])
def test_any_mode_becomes_rgb(mode):
    image = Image.new("RGB", (10, 6), (200, 30, 60)).convert(mode)
    out = decode_image({"bytes": _png_bytes(image) if mode != "CMYK" else None, "path": None}
                       if mode != "CMYK" else image, 8)
    assert out.shape == (3, 8, 8) and out.dtype == np.uint8


def test_transparent_pixels_become_white():
    image = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    out = decode_image({"bytes": _png_bytes(image), "path": None}, 4)
    assert (out == 255).all()


def test_image_folder_labels_and_corrupt_file_skipped(image_folder):
    splits, image_col, label_col = load_image_splits(dataset_name=None, train_dir=str(image_folder / "train"),
                                                     validation_dir=str(image_folder / "val"))
    assert label_col == "label" and image_col == "image"
    assert len(splits["train"]) == 7 and len(splits["validation"]) == 6
    batch = ImageCollator(image_col, label_col, 16)([splits["train"][i] for i in range(7)])
    assert batch["pixel_values"].shape == (6, 3, 16, 16) and batch["pixel_values"].dtype == torch.uint8
    assert int(batch["num_skipped"]) == 1 and batch["labels"].shape == (6,)
    # Kept images keep their place in the drawn batch (the corrupt one leaves a gap): augmentation is keyed on it.
    broken = [i for i in range(7) if splits["train"][i][image_col]["path"].endswith("broken.png")]
    assert batch["positions"].tolist() == [i for i in range(7) if i not in broken] and len(broken) == 1


def test_all_corrupt_batch_is_empty_not_a_crash():
    batch = ImageCollator("image", None, 8)([{"image": {"bytes": b"garbage", "path": None}}] * 2)
    assert batch["pixel_values"].shape == (0, 3, 8, 8) and int(batch["num_skipped"]) == 2


def test_missing_folder_and_column_errors(tmp_path, image_folder):
    with pytest.raises(DataError, match="not a folder"):
        load_image_splits(dataset_name=None, train_dir=str(tmp_path / "nope"))
    with pytest.raises(DataError, match="--image_column"):
        load_image_splits(dataset_name=None, train_dir=str(image_folder / "train"), image_column="pixels")


def test_validation_split_is_carved_from_train_when_missing(image_folder):
    splits, _, _ = load_image_splits(dataset_name=None, train_dir=str(image_folder / "train"),
                                     validation_split_percentage=30)
    assert len(splits["train"]) + len(splits["validation"]) == 7 and len(splits["validation"]) >= 2


def test_non_image_column_is_rejected(tmp_path):
    Dataset.from_dict({"image": ["a", "b", "c"], "label": [0, 1, 0]}).to_parquet(tmp_path / "train.parquet")
    with pytest.raises(DataError, match="not images"):
        load_image_splits(dataset_name=str(tmp_path))


def test_dataset_revision_is_forwarded_to_the_hub_and_refused_for_local_images(image_folder, monkeypatch):
    from hfssl.config import ConfigError

    calls = []

    def fake_load_dataset(*args, **kwargs):  # stands in for the Hub download; the rest of the loader is real
        calls.append((args, kwargs))
        return digits_dataset()

    monkeypatch.setattr("hfssl.contrastive.data.load_dataset", fake_load_dataset)
    sha = "c1a8f4e2d0b9a7c6e5f4d3c2b1a0f9e8d7c6b5a4"
    splits, image_col, label_col = load_image_splits(dataset_name="ylecun/mnist", dataset_revision=sha)
    assert calls[-1][0] == ("ylecun/mnist", None) and calls[-1][1]["revision"] == sha
    assert (image_col, label_col) == ("image", "label") and len(splits["validation"]) > 0

    with pytest.raises(ConfigError, match=r"--dataset_revision main .*image folder .*no revision"):
        load_image_splits(dataset_name=None, train_dir=str(image_folder / "train"), dataset_revision="main")
    with pytest.raises(ConfigError, match=r"--dataset_revision main .*digits.*Drop --dataset_revision"):
        load_image_splits(dataset_name=None, dataset_revision="main")
    assert len(calls) == 1


def test_a_test_split_stands_in_for_validation_and_says_so(monkeypatch, caplog):
    """CIFAR-style Hub datasets have train and test only: evaluation reads 'test', with a warning naming it."""
    import logging

    from datasets import DatasetDict

    digits = digits_dataset()
    monkeypatch.setattr("hfssl.contrastive.data.load_dataset",
                        lambda *a, **k: DatasetDict(train=digits["train"], test=digits["validation"]))
    with caplog.at_level(logging.WARNING, logger="hfssl.contrastive.data"):
        splits, _, _ = load_image_splits(dataset_name="uoft-cs/cifar10")
    assert len(splits["validation"]) == len(digits["validation"])
    assert "no 'validation' split" in caplog.text and "'test' split" in caplog.text


def test_crops_drawn_from_a_larger_decode_keep_more_of_the_photo_detail():
    """--decode_size: the same crop boxes (8% of the area), resampled to 32 px from a 32 px and from a 96 px decode."""
    from sklearn.datasets import load_sample_image

    from hfssl.contrastive.augment import ViewConfig, random_resized_crop, to_float

    photo = {"bytes": _png_bytes(Image.fromarray(load_sample_image("china.jpg"))), "path": None}  # 427x640, real
    view = ViewConfig(32, crop_scale=(0.08, 0.08), hflip_prob=0.0)
    detail = {}
    for size in (32, 96):
        decoded = torch.from_numpy(decode_image(photo, size))
        assert decoded.shape == (3, size, size)
        images = to_float(decoded[None].repeat(16, 1, 1, 1))
        crops = random_resized_crop(images, view, torch.Generator().manual_seed(0))
        assert crops.shape == (16, 3, 32, 32)
        detail[size] = float((crops[..., 1:, :] - crops[..., :-1, :]).abs().mean()
                             + (crops[..., 1:] - crops[..., :-1]).abs().mean())
    assert detail[96] > 1.5 * detail[32], detail  # the 32 px decode's crops are 9x9 px regions blown up
