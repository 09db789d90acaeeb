"""``ContrastiveConfig``: every flag of ``recipes/contrastive.py``, its default and its checks (the image-data
flags, shared with MAE, come from :class:`hfssl.contrastive.data.ImageDataArguments`)."""

from __future__ import annotations

import dataclasses

from ..config import ConfigError, RunConfig
from .data import ImageDataArguments
from .encoder import BACKBONES
from .heads import PAPER_DIMS


def _f(default, help: str, **extra):  # noqa: A002 - "help" mirrors argparse
    return dataclasses.field(default=default, metadata={"help": help, **extra})


@dataclasses.dataclass
class ContrastiveConfig(ImageDataArguments, RunConfig):
    output_dir: str = _f("outputs/contrastive", "Where checkpoints and the final encoder go.")
    method: str = _f("simclr", "Self-supervised method.", choices=list(PAPER_DIMS))
    # data (where the images come from: the flags of ImageDataArguments)
    image_size: int = _f(16, "Side of the square training views, in pixels (16 suits the 8x8 offline digits; use 32 "
                             "for CIFAR, 224 for ImageNet-style data).")
    # model
    backbone: str = _f("resnet-18", "Architecture built from scratch.", choices=list(BACKBONES))
    config_name: str | None = _f(None, "A transformers config (folder, file or Hub id) to build the backbone "
                                       "from scratch instead of --backbone.")
    model_name_or_path: str | None = _f(None, "Start from this pretrained transformers vision model (folder or Hub id).")
    projection_hidden_dim: int | None = _f(None, "Hidden size of the projector/predictor (default: the paper's).")
    projection_dim: int | None = _f(None, "Output size of the projector (default: the paper's).")
    temperature: float | None = _f(None, "Softmax temperature of SimCLR (paper 0.1) / MoCo v3 (paper 0.2) / the "
                                         "DINO student (paper 0.1).")
    teacher_temperature: float = _f(0.07, "DINO: teacher temperature after its warmup (paper 0.04-0.07).")
    teacher_temperature_warmup: float = _f(0.3, "DINO: the teacher temperature rises linearly from 0.04 to "
                                                "--teacher_temperature over this many steps if >= 1, else this "
                                                "fraction of training (paper: 30 epochs).")
    num_local_crops: int = _f(0, "DINO multi-crop: small views per image seen only by the student (paper 6-10).")
    local_crop_size: int | None = _f(None, "DINO: side of the local crops (default 3/7 of --image_size, the "
                                           "paper's 96 of 224).")
    dino_head_batch_norm: bool = _f(False, "DINO: BatchNorm in the hidden layers of the head (solo-learn's default "
                                           "for ResNets; the paper's ViT head has none).")
    freeze_last_layer_epochs: float = _f(1.0, "DINO: the head's last (prototype) layer is not updated during this "
                                              "many epochs at the start (paper and released code: 1).")
    base_momentum: float = _f(0.99, "Starting EMA momentum of the target network (BYOL, MoCo v3); rises to 1 "
                                    "on a cosine schedule.")
    # augmentation
    crop_min_scale: float = _f(0.2, "Smallest crop area as a fraction of the image (random resized crop; the "
                                    "papers use 0.08 on ImageNet, 0.08 crops of 8x8 digits are blobs).")
    hflip_prob: float = _f(0.0, "Probability of a horizontal flip (papers: 0.5; the default suits the offline "
                                "digits, which are not mirror-symmetric).")
    color_jitter_strength: float = _f(1.0, "Colour jitter strength s (0 disables it).")
    blur: bool = _f(True, "Use the Gaussian blur of the view pipeline.")
    # optimization
    per_device_train_batch_size: int = _f(128, "Images per process per step (each gives two views).")
    per_device_eval_batch_size: int = _f(256, "Images per batch when extracting features for evaluation.")
    gradient_accumulation_steps: int = _f(1, "Micro-batches per optimizer step. Contrastive negatives come "
                                             "from one micro-batch only.")
    num_train_epochs: float = _f(40, "Passes over the training data (ignored when --max_steps > 0).")
    max_steps: int = _f(0, "Optimizer steps to train for; overrides --num_train_epochs when > 0.")
    optimizer: str = _f("adamw", "adamw, or lars (the papers' large-batch optimizer).", choices=["adamw", "lars"])
    learning_rate: float = _f(1e-3, "Peak learning rate (after warmup), then cosine decay to 0.")
    predictor_lr_scale: float = _f(1.0, "BYOL / MoCo v3: the predictor's learning rate is this times "
                                        "--learning_rate (SimSiam and DirectPred: a predictor that adapts faster "
                                        "than the encoder helps non-contrastive learning).")
    weight_decay: float = _f(1e-5, "Weight decay of weight matrices (not of biases and norm layers).")
    warmup_steps: float = _f(0.05, "Linear warmup: steps if >= 1, else a fraction of the total steps.")
    max_grad_norm: float = _f(0.0, "Clip gradients to this norm (0: no clipping).")
    # evaluation
    eval_steps: int = _f(0, "Online kNN accuracy every N optimizer steps (0: at the end of each epoch).")
    knn_k: int = _f(20, "Neighbours in the kNN classifier.")
    knn_temperature: float = _f(0.07, "Temperature of the kNN vote weights.")

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check_image_data(self.max_steps, self.image_size)
        if self.config_name and self.model_name_or_path:
            raise ConfigError("--config_name builds from scratch and --model_name_or_path loads weights; pass one.")
        for name in ("image_size", "per_device_train_batch_size", "per_device_eval_batch_size",
                     "gradient_accumulation_steps", "knn_k"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name} must be >= 1, got {getattr(self, name)}.")
        if self.per_device_train_batch_size < 2 and self.method in ("simclr", "mocov3", "vicreg", "barlowtwins"):
            raise ConfigError(f"--method {self.method} needs --per_device_train_batch_size >= 2 (batch statistics "
                              f"or negatives).")
        if self.max_steps <= 0 and self.num_train_epochs <= 0:
            raise ConfigError("Set --num_train_epochs > 0 or --max_steps > 0.")
        if not 0 < self.crop_min_scale <= 1:
            raise ConfigError(f"--crop_min_scale must be in (0, 1], got {self.crop_min_scale}.")
        if not 0 <= self.hflip_prob <= 1:
            raise ConfigError(f"--hflip_prob must be in [0, 1], got {self.hflip_prob}.")
        if not 0 <= self.base_momentum < 1:
            raise ConfigError(f"--base_momentum must be in [0, 1), got {self.base_momentum}.")
        if self.predictor_lr_scale <= 0:
            raise ConfigError(f"--predictor_lr_scale must be > 0, got {self.predictor_lr_scale}.")
        if self.learning_rate <= 0 or self.warmup_steps < 0 or self.weight_decay < 0:
            raise ConfigError("--learning_rate must be > 0 and --warmup_steps, --weight_decay >= 0.")
        if self.teacher_temperature <= 0 or self.teacher_temperature_warmup < 0:
            raise ConfigError("--teacher_temperature must be > 0 and --teacher_temperature_warmup >= 0.")
        if self.freeze_last_layer_epochs < 0:
            raise ConfigError(f"--freeze_last_layer_epochs must be >= 0, got {self.freeze_last_layer_epochs}.")
        if self.num_local_crops < 0 or (self.local_crop_size is not None and self.local_crop_size < 1):
            raise ConfigError("--num_local_crops must be >= 0 and --local_crop_size >= 1.")
        if self.num_local_crops and self.method != "dino":
            raise ConfigError(f"--num_local_crops is DINO's multi-crop; --method {self.method} uses two views. "
                              f"Drop the flag or use --method dino.")
        if self.temperature is not None and self.temperature <= 0:
            raise ConfigError(f"--temperature must be > 0, got {self.temperature}.")
