"""``MAEConfig``: every flag of ``recipes/mae.py``, its default and its checks (the image-data flags, shared with
the contrastive recipe, come from :class:`hfssl.contrastive.data.ImageDataArguments`).

The defaults are the offline default run (``recipes/configs/mae/digits.yaml``): scikit-learn's digits upscaled to
32 px, a tiny ViT (4-px patches, 64 tokens) that trains on two CPU cores in minutes.
"""

from __future__ import annotations

import dataclasses

from ..config import ConfigError, RunConfig
from ..contrastive.data import ImageDataArguments
from ..precision import CHOICES as PRECISION_CHOICES


def _f(default, help: str, **extra):  # noqa: A002 - "help" mirrors argparse
    return dataclasses.field(default=default, metadata={"help": help, **extra})


@dataclasses.dataclass
class MAEConfig(ImageDataArguments, RunConfig):
    output_dir: str = _f("outputs/mae", "Where checkpoints and the final encoder go.")
    mixed_precision: str = _f("auto", "auto (default: bf16 on GPUs and on CPUs with AVX512-BF16 or AMX, float32 on "
                                      "other CPUs, where bf16 is many times slower), bf16, fp16 (GPU) or no.",
                              choices=PRECISION_CHOICES)
    # data (where the images come from: the flags of ImageDataArguments)
    image_size: int = _f(32, "Side of the square training images in pixels (the paper: 224).")
    # augmentation (the paper: random resized crop, scale 0.2-1, and horizontal flip; nothing else)
    crop_min_scale: float = _f(0.2, "Smallest crop area as a fraction of the image (random resized crop).")
    hflip_prob: float = _f(0.0, "Probability of a horizontal flip (paper 0.5; 0 suits the offline digits, which are "
                                "not mirror-symmetric).")
    # model
    config_name: str | None = _f(None, "A vit_mae config (folder, file or Hub id) to build from scratch instead of "
                                       "the size flags below.")
    model_name_or_path: str | None = _f(None, "Continue pretraining a ViTMAEForPreTraining (folder or Hub id, e.g. "
                                              "facebook/vit-mae-base).")
    patch_size: int = _f(4, "Patch side in pixels (paper 16 at 224 px; 4 at 32 px keeps 64 tokens).")
    hidden_size: int = _f(192, "Encoder width (ViT-Tiny: 192, ViT-Base: 768).")
    num_hidden_layers: int = _f(6, "Encoder depth (ViT-Base: 12).")
    num_attention_heads: int = _f(3, "Encoder attention heads (ViT-Tiny: 3, ViT-Base: 12).")
    intermediate_size: int = _f(768, "Encoder MLP width (4 x hidden).")
    decoder_hidden_size: int = _f(128, "Decoder width (paper 512).")
    decoder_num_hidden_layers: int = _f(2, "Decoder depth (paper 8; the paper's table 1a: 1 block already works).")
    decoder_num_attention_heads: int = _f(4, "Decoder attention heads (paper 16).")
    decoder_intermediate_size: int = _f(512, "Decoder MLP width (4 x decoder hidden).")
    mask_ratio: float = _f(0.75, "Fraction of patches hidden from the encoder (paper 0.75).")
    norm_pix_loss: bool = _f(True, "Reconstruct per-patch normalized pixels (the paper's better target).")
    # optimization (the paper's pretraining recipe: AdamW, betas (0.9, 0.95), wd 0.05, warmup then cosine)
    per_device_train_batch_size: int = _f(128, "Images per process per step.")
    per_device_eval_batch_size: int = _f(256, "Images per batch when extracting features for evaluation.")
    gradient_accumulation_steps: int = _f(1, "Micro-batches per optimizer step.")
    num_train_epochs: float = _f(100, "Passes over the training data (ignored when --max_steps > 0).")
    max_steps: int = _f(0, "Optimizer steps to train for; overrides --num_train_epochs when > 0.")
    # 1.5e-3 (10x) left the digits encoder worse than random init (kNN 0.19 vs 0.56 after 1,100 steps, the loss flat
    # from step 90); 1.5e-4 beat it (kNN 0.65 vs 0.56 after 300 steps). benchmarks/RESULTS.md has the numbers.
    learning_rate: float = _f(1.5e-4, "Peak learning rate after warmup, then cosine decay to 0 (paper: 1.5e-4 x "
                                      "batch / 256).")
    weight_decay: float = _f(0.05, "AdamW weight decay of weight matrices (not of biases, norms, tokens).")
    adam_beta2: float = _f(0.95, "AdamW beta2 (paper 0.95).")
    warmup_steps: float = _f(0.05, "Linear warmup: steps if >= 1, else a fraction of the total steps.")
    max_grad_norm: float = _f(0.0, "Clip gradients to this norm (0: no clipping).")
    # evaluation
    eval_steps: int = _f(0, "kNN accuracy of the encoder every N optimizer steps (0: only at the end).")
    knn_k: int = _f(20, "Neighbours in the kNN classifier.")
    knn_temperature: float = _f(0.07, "Temperature of the kNN vote weights.")

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check_image_data(self.max_steps, self.image_size)
        if self.dataset_revision and not self.dataset_name:  # checked here too: the recipe builds its model first
            raise ConfigError(f"--dataset_revision {self.dataset_revision} pins a version of a Hub dataset, but the "
                              f"data here is local images, which have no revision. Drop --dataset_revision, or pass "
                              f"--dataset_name with it.")
        if self.config_name and self.model_name_or_path:
            raise ConfigError("--config_name builds from scratch and --model_name_or_path loads weights; pass one.")
        for name in ("image_size", "patch_size", "per_device_train_batch_size", "per_device_eval_batch_size",
                     "gradient_accumulation_steps", "knn_k", "hidden_size", "num_hidden_layers",
                     "num_attention_heads", "intermediate_size", "decoder_hidden_size", "decoder_num_hidden_layers",
                     "decoder_num_attention_heads", "decoder_intermediate_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name} must be >= 1, got {getattr(self, name)}.")
        if not (self.config_name or self.model_name_or_path):  # the size flags build the model
            if self.image_size % self.patch_size:
                raise ConfigError(f"--image_size {self.image_size} must be a multiple of --patch_size {self.patch_size}.")
            if self.hidden_size % self.num_attention_heads or self.decoder_hidden_size % self.decoder_num_attention_heads:
                raise ConfigError("--hidden_size / --decoder_hidden_size must be multiples of their attention heads.")
        if not 0 <= self.mask_ratio < 1:
            raise ConfigError(f"--mask_ratio must be in [0, 1) (the encoder needs at least one visible patch), got "
                              f"{self.mask_ratio}.")
        if self.max_steps <= 0 and self.num_train_epochs <= 0:
            raise ConfigError("Set --num_train_epochs > 0 or --max_steps > 0.")
        if not 0 < self.crop_min_scale <= 1:
            raise ConfigError(f"--crop_min_scale must be in (0, 1], got {self.crop_min_scale}.")
        if not 0 <= self.hflip_prob <= 1:
            raise ConfigError(f"--hflip_prob must be in [0, 1], got {self.hflip_prob}.")
        if self.learning_rate <= 0 or self.warmup_steps < 0 or self.weight_decay < 0:
            raise ConfigError("--learning_rate must be > 0 and --warmup_steps, --weight_decay >= 0.")
        if not 0 <= self.adam_beta2 < 1:
            raise ConfigError(f"--adam_beta2 must be in [0, 1), got {self.adam_beta2}.")
