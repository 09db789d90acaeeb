"""Image datasets for self-supervised training: Hub datasets, image folders, streaming, or offline digits.

Every source ends up as ``{"train": ..., "validation": ...}`` with an image column (and a label column when
there is one, used only for evaluation). The image column is read *undecoded* and decoded in
:class:`ImageCollator`, so a corrupt or truncated file is skipped and counted instead of crashing the run, and
any PIL mode (L, RGBA, P, CMYK, I;16 ...) is converted to RGB. The loader only decodes and resizes to a square
``image_size`` uint8 tensor; augmentation happens in batches on the training device (see ``augment.py``).

Training images can be decoded larger than the views (``--decode_size``): the crops are then resampled from more of
the source's pixels. Decoding at the view size is enough for small sources (digits, CIFAR) but, on large ones, a
random crop of 8% of the area upsamples a 63 px region to 224 px.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import ClassLabel, Dataset, DatasetDict, Features, IterableDataset, load_dataset
from datasets import Image as ImageFeature
from PIL import Image

from ..config import ConfigError
from ..data.text import DataError

LABEL_CANDIDATES = ("label", "labels", "fine_label", "class", "target")
IMAGE_CANDIDATES = ("image", "img", "pixel_values", "picture")
logger = logging.getLogger(__name__)
# A file PIL cannot open, a truncated file, or an absurdly large one: skipped and counted.
DECODE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


def digits_dataset(seed: int = 0) -> DatasetDict:
    """scikit-learn's bundled handwritten digits (1,797 8x8 grayscale images, 10 classes) as an image dataset.

    The split is stratified 80/20 with a fixed seed, so every run and every process sees the same split.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images * (255.0 / 16.0)).round().astype(np.uint8)
    train_idx, val_idx = train_test_split(np.arange(len(images)), test_size=0.2, random_state=seed,
                                          stratify=digits.target)
    features = Features({"image": ImageFeature(), "label": ClassLabel(names=[str(i) for i in range(10)])})

    def make(idx: np.ndarray) -> Dataset:
        return Dataset.from_dict({"image": [Image.fromarray(images[i], mode="L") for i in idx],
                                  "label": [int(digits.target[i]) for i in idx]}, features=features)

    return DatasetDict(train=make(train_idx), validation=make(val_idx))


def _imagefolder(train_dir: str | None, validation_dir: str | None, streaming: bool) -> DatasetDict:
    files = {}
    for split, folder in (("train", train_dir), ("validation", validation_dir)):
        if folder is None:
            continue
        flag = f"--{split if split == 'train' else 'validation'}_dir"
        if not Path(folder).is_dir():
            raise DataError(f"{flag} {folder} is not a folder. Pass a folder of images (optionally one subfolder per "
                            f"class).")
        extensions = _image_extensions()
        if not any(p.suffix.lower() in extensions for p in Path(folder).rglob("*") if p.is_file()):
            raise DataError(f"{flag} {folder} holds no image files (.jpg, .png, .webp... in it or its subfolders). "
                            f"Pass the folder that holds the images.")
        files[split] = os.path.join(folder, "**")
    return load_dataset("imagefolder", data_files=files, streaming=streaming)


def _image_extensions() -> set[str]:
    """File suffixes the ``imagefolder`` builder loads (lower case, with the dot)."""
    from datasets.packaged_modules.imagefolder.imagefolder import ImageFolder

    return {e.lower() for e in ImageFolder.EXTENSIONS}


def check_decodable(dataset: Dataset, image_column: str, source: str, sample: int = 32, seed: int = 0) -> None:
    """Raise :class:`DataError` when none of ``sample`` randomly chosen images decodes.

    The collator skips a corrupt file and counts it, which is right for a few bad files among many; a dataset of
    (almost) only unreadable files would instead train on empty batches. Checked before any model is built.
    """
    count = min(sample, len(dataset))
    rows = np.random.default_rng(seed).choice(len(dataset), size=count, replace=False)
    for row in rows:
        try:
            decode_image(dataset[int(row)][image_column], 8)
            return
        except DECODE_ERRORS:
            continue
    example = dataset[int(rows[0])][image_column]
    name = example.get("path") if isinstance(example, dict) else None
    raise DataError(f"None of {count} images sampled from {source} could be decoded (e.g. {name or f'row {rows[0]}'}): "
                    f"the files are corrupt, truncated or not images. Check or re-download them.")


def resolve_column(names: list[str] | None, wanted: str | None, candidates: tuple[str, ...], what: str, flag: str,
                   features: Any = None, required: bool = True) -> str | None:
    """The column to use: the one asked for (must exist), else a typical name, else one of the right type."""
    if names is None:
        return wanted or (candidates[0] if required else None)
    if wanted:
        if wanted not in names:
            raise DataError(f"The dataset has no {what} column '{wanted}'; its columns are {names}. Pass {flag} NAME.")
        return wanted
    for name in candidates:
        if name in names:
            return name
    if features is not None:
        kind = ImageFeature if what == "image" else ClassLabel
        typed = [n for n in names if isinstance(features.get(n), kind)]
        if typed:
            return typed[0]
    if required:
        raise DataError(f"Cannot tell which column holds the {what}s among {names}. Pass {flag} NAME.")
    return None


def _f(default, help: str):  # noqa: A002 - "help" mirrors argparse
    return dataclasses.field(default=default, metadata={"help": help})


@dataclasses.dataclass
class ImageDataArguments:
    """The image-data flags of the image pretraining recipes (contrastive, MAE): where the images come from.

    Recipe configs inherit them next to :class:`hfssl.config.RunConfig` (``class MAEConfig(ImageDataArguments,
    RunConfig)``), so every recipe gives the same flags, defaults and help, defined only here. Most of them go
    straight to :func:`load_image_splits`; :meth:`check_image_data` rejects impossible combinations before any work.
    """

    dataset_name: str | None = _f(None, "Hub dataset with an image column (e.g. cifar10). Neither this nor "
                                        "--train_dir: scikit-learn's bundled digits (offline).")
    dataset_config_name: str | None = _f(None, "Configuration of --dataset_name.")
    dataset_revision: str | None = _f(None, "Git revision of --dataset_name to pin: a branch, tag or commit sha of "
                                            "the Hub dataset repo (default: the latest).")
    train_dir: str | None = _f(None, "Folder of training images; class subfolders become labels for evaluation.")
    validation_dir: str | None = _f(None, "Folder of labelled validation images for kNN / linear-probe evaluation.")
    image_column: str | None = _f(None, "Column holding the images (default: image/img or the image-typed column).")
    label_column: str | None = _f(None, "Column holding class labels, used only for evaluation (default: label).")
    streaming: bool = _f(False, "Stream the dataset instead of downloading it (needs --max_steps).")
    validation_split_percentage: int = _f(10, "Percent of train held out for evaluation when there is no "
                                              "validation split.")
    max_train_samples: int | None = _f(None, "Use only the first N training images (quick runs).")
    max_eval_samples: int = _f(10000, "Images used as kNN memory bank / probe training set, and as queries.")
    dataloader_num_workers: int = _f(0, "Worker processes decoding images.")
    decode_size: int | None = _f(None, "Side of the square the loader decodes training images to; the random crops "
                                       "are drawn from it (default: --image_size). For large images (ImageNet at "
                                       "224) 256-320 keeps the small crops sharp, at 1.3-2x the bytes per image.")

    def check_image_data(self, max_steps: int, image_size: int) -> None:
        """Raise :class:`ConfigError` for data flags that cannot work together (the run's ``max_steps`` and
        ``image_size``)."""
        if self.decode_size is not None and self.decode_size < image_size:
            raise ConfigError(f"--decode_size {self.decode_size} is below --image_size {image_size}: every crop would "
                              f"be upsampled from fewer pixels than it has. Pass --decode_size >= {image_size}, or leave "
                              f"it unset.")
        if self.dataset_name and self.train_dir:
            raise ConfigError("Pass either --dataset_name or --train_dir, not both.")
        if self.validation_dir and not self.train_dir:
            raise ConfigError("--validation_dir needs --train_dir.")
        if self.streaming and max_steps <= 0:
            raise ConfigError("--streaming datasets have no length: pass --max_steps N.")
        if not 0 <= self.validation_split_percentage < 100:
            raise ConfigError("--validation_split_percentage must be in [0, 100).")


def load_image_splits(*, dataset_name: str | None, dataset_config_name: str | None = None,
                      dataset_revision: str | None = None, train_dir: str | None = None,
                      validation_dir: str | None = None,
                      image_column: str | None = None, label_column: str | None = None, streaming: bool = False,
                      validation_split_percentage: int = 10, seed: int = 42
                      ) -> tuple[dict[str, Dataset | IterableDataset], str, str | None]:
    """Load train (and validation, when there is one) splits; returns (splits, image column, label column or None).

    With neither ``dataset_name`` nor ``train_dir`` the offline digits dataset is used. ``dataset_revision`` (a
    branch, tag or commit sha of the Hub dataset repo) pins ``dataset_name`` to one version; local images have none.
    """
    if dataset_name and train_dir:
        raise ConfigError("Pass either --dataset_name or --train_dir, not both.")
    if dataset_revision and not dataset_name:
        local = f"the image folder {train_dir}" if train_dir else "scikit-learn's bundled digits"
        raise ConfigError(f"--dataset_revision {dataset_revision} pins a version of a Hub dataset, but the data here "
                          f"is {local}, which has no revision. Drop --dataset_revision, or pass --dataset_name with it.")
    if dataset_name:
        raw = load_dataset(dataset_name, dataset_config_name, revision=dataset_revision,
                           streaming=streaming)
        source = dataset_name
    elif train_dir:
        raw = _imagefolder(train_dir, validation_dir, streaming)
        source = train_dir
    else:
        raw = digits_dataset()
        source = "digits"
    if "train" not in raw:
        raise DataError(f"{source} has no 'train' split (it has {list(raw)}).")
    train = raw["train"]
    validation = raw.get("validation", raw.get("test"))
    if "validation" not in raw and "test" in raw:
        # As lightly and solo-learn do on CIFAR and ImageNet (no labelled validation split), evaluation reads 'test'.
        logger.warning(f"{source} has no 'validation' split: kNN and linear-probe accuracy are measured on its "
                       f"'test' split.")
    if validation is None and not streaming and validation_split_percentage > 0:
        parts = train.train_test_split(test_size=validation_split_percentage / 100, seed=seed)
        train, validation = parts["train"], parts["test"]
    names = train.column_names
    features = train.features
    image_col = resolve_column(names, image_column, IMAGE_CANDIDATES, "image", "--image_column", features)
    label_col = resolve_column(names, label_column, LABEL_CANDIDATES, "label", "--label_column", features,
                               required=False)
    if features is not None and image_col in features and not isinstance(features[image_col], ImageFeature):
        raise DataError(f"Column '{image_col}' of {source} holds {features[image_col]}, not images. "
                        f"Pass --image_column NAME of an image column.")
    splits = {"train": train}
    if validation is not None:
        splits["validation"] = validation
    keep = [c for c in (image_col, label_col) if c]
    for split, ds in splits.items():
        if ds.column_names is not None:
            ds = ds.select_columns(keep)
        # Decode in the collator, where a broken file can be skipped instead of raising inside datasets.
        splits[split] = ds.cast_column(image_col, ImageFeature(decode=False))
    if not streaming and len(splits["train"]) == 0:
        raise DataError(f"The train split of {source} is empty.")
    if not streaming:
        check_decodable(splits["train"], image_col, source)
    return splits, image_col, label_col


def decode_image(value: Any, size: int) -> np.ndarray:
    """An undecoded datasets image (``{"bytes", "path"}``) or a PIL image -> (3, size, size) uint8 RGB array."""
    if isinstance(value, Image.Image):
        image = value
    else:
        data, path = value.get("bytes"), value.get("path")
        image = Image.open(io.BytesIO(data) if data is not None else path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PIL warns about palette transparency; we handle it below
        if image.format == "JPEG":
            image.draft("RGB", (size, size))  # decode a large JPEG directly at reduced scale (much faster)
        image.load()
        if image.mode == "P" or image.mode == "LA" or image.mode == "RGBA":
            # Transparent pixels become white rather than whatever colour the hidden RGB values hold.
            rgba = image.convert("RGBA")
            canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            image = Image.alpha_composite(canvas, rgba)
        if image.mode != "RGB":
            image = image.convert("RGB")
    image = image.resize((size, size), Image.BILINEAR)
    return np.asarray(image, dtype=np.uint8).transpose(2, 0, 1)


class ImageCollator:
    """Decode, convert and resize a list of examples into a uint8 batch; corrupt images are skipped and counted.

    ``positions`` holds each kept image's position in the list the loader drew (gaps where an image was skipped),
    so the training loop can key each image's augmentation on its place in the global batch.
    """

    def __init__(self, image_column: str, label_column: str | None, image_size: int) -> None:
        self.image_column, self.label_column, self.image_size = image_column, label_column, image_size

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        pixels, labels, positions, skipped = [], [], [], 0
        for position, example in enumerate(examples):
            try:
                pixels.append(decode_image(example[self.image_column], self.image_size))
            except DECODE_ERRORS:
                skipped += 1
                continue
            positions.append(position)
            if self.label_column:
                labels.append(int(example[self.label_column]))
        batch = {
            "pixel_values": torch.from_numpy(np.stack(pixels)) if pixels
            else torch.zeros(0, 3, self.image_size, self.image_size, dtype=torch.uint8),
            "positions": torch.tensor(positions, dtype=torch.long),
            "num_skipped": torch.tensor(skipped),
        }
        if self.label_column:
            batch["labels"] = torch.tensor(labels, dtype=torch.long)
        return batch
