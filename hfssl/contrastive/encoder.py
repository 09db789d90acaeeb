"""The backbone: any transformers vision model (ResNet, ViT, ConvNeXt, ...) as an image -> vector encoder.

A backbone is built from scratch from a named preset (``resnet-18``, ``vit-small`` ...) or a config
(``--config_name``), or loaded from a checkpoint (``--model_name_or_path``, local or Hub). The feature of an
image is the pooled output for convolutional models and the [CLS] token of the last hidden state for
transformers, the representations the papers evaluate. What is saved at the end is the bare backbone, so
``AutoModel.from_pretrained`` gives the encoder and ``AutoModelForImageClassification`` fine-tunes it.
"""

from __future__ import annotations

from typing import Any

from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel, ViTImageProcessorPil

import torch
from torch import nn

from ..config import ConfigError
from .one_pixel_conv import use_one_pixel_convs

# Normalization applied after augmentation and written into the saved image processor.
IMAGE_MEAN = (0.485, 0.456, 0.406)
IMAGE_STD = (0.229, 0.224, 0.225)


def preset_config(name: str, image_size: int) -> PretrainedConfig:
    """Architecture presets matching the papers' backbones (torchvision ResNets, DeiT/ViT sizes, ConvNeXt-T)."""
    if name == "resnet-18":
        return AutoConfig.for_model("resnet", embedding_size=64, hidden_sizes=[64, 128, 256, 512],
                                    depths=[2, 2, 2, 2], layer_type="basic")
    if name == "resnet-50":
        return AutoConfig.for_model("resnet", embedding_size=64, hidden_sizes=[256, 512, 1024, 2048],
                                    depths=[3, 4, 6, 3], layer_type="bottleneck")
    vit = {"vit-tiny": (192, 3), "vit-small": (384, 6), "vit-base": (768, 12)}
    if name in vit:
        hidden, heads = vit[name]
        # 16-pixel patches leave too few tokens on small images (CIFAR, digits): use 4-pixel patches there.
        patch = 16 if image_size >= 96 else 4
        if image_size % patch:
            raise ConfigError(f"--image_size {image_size} must be a multiple of the ViT patch size {patch}.")
        return AutoConfig.for_model("vit", hidden_size=hidden, num_hidden_layers=12, num_attention_heads=heads,
                                    intermediate_size=4 * hidden, image_size=image_size, patch_size=patch)
    if name == "convnext-tiny":
        return AutoConfig.for_model("convnext", depths=[3, 3, 9, 3], hidden_sizes=[96, 192, 384, 768])
    raise ConfigError(f"Unknown --backbone {name!r}. Use one of {sorted(BACKBONES)}, or --config_name / "
                      f"--model_name_or_path for any transformers vision model.")


BACKBONES = ("resnet-18", "resnet-50", "vit-tiny", "vit-small", "vit-base", "convnext-tiny")


def build_backbone(backbone: str, image_size: int, *, config_name: str | None = None,
                   model_name_or_path: str | None = None) -> PreTrainedModel:
    """A transformers vision model: pretrained weights if ``model_name_or_path``, else randomly initialized."""
    if model_name_or_path:
        # trust_remote_code stays off: only architectures shipped with transformers are loaded.
        return AutoModel.from_pretrained(model_name_or_path, use_safetensors=True, trust_remote_code=False)
    config = AutoConfig.from_pretrained(config_name) if config_name else preset_config(backbone, image_size)
    if hasattr(config, "image_size") and hasattr(config, "patch_size"):
        config.image_size = image_size  # ViT-style position embeddings are sized for the training resolution
    return AutoModel.from_config(config)


class ImageEncoder(nn.Module):
    """Wraps a transformers backbone so that ``encoder(pixel_values)`` is a (batch, dim) feature matrix.

    Convolutions that meet 1x1 maps on small images become matrix products (:mod:`.one_pixel_conv`): same
    parameters and results, several times faster on CPU.
    """

    def __init__(self, backbone: PreTrainedModel) -> None:
        super().__init__()
        use_one_pixel_convs(backbone)
        self.backbone = backbone
        config = backbone.config
        # Token models whose position embeddings were made for another size interpolate them (pretrained ViTs).
        self._interpolate = hasattr(config, "patch_size") and hasattr(config, "image_size")
        self.dim = feature_dim(config)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        kwargs = {}
        if self._interpolate and pixel_values.shape[-1] != self.backbone.config.image_size:
            kwargs["interpolate_pos_encoding"] = True
        out = self.backbone(pixel_values=pixel_values, **kwargs)
        hidden = out.last_hidden_state
        if hidden.ndim == 3:  # (batch, tokens, dim): the [CLS] token
            return hidden[:, 0]
        pooled = getattr(out, "pooler_output", None)
        if pooled is None:
            pooled = hidden.mean(dim=(2, 3))
        return pooled.flatten(1)


def feature_dim(config: PretrainedConfig) -> int:
    if getattr(config, "hidden_sizes", None):
        return int(config.hidden_sizes[-1])
    if getattr(config, "hidden_size", None):
        return int(config.hidden_size)
    raise ConfigError(f"Cannot tell the feature size of a {config.model_type} backbone (no hidden_size(s) in its config).")


def make_image_processor(image_size: int) -> ViTImageProcessorPil:
    """The preprocessing used in training and evaluation: RGB, resize to a square, scale to [0, 1], normalize."""
    return ViTImageProcessorPil(size={"height": image_size, "width": image_size}, image_mean=list(IMAGE_MEAN),
                                image_std=list(IMAGE_STD), do_resize=True, do_rescale=True, do_normalize=True,
                                do_convert_rgb=True)


def processor_geometry(processor: Any) -> tuple[int, tuple[float, ...], tuple[float, ...]]:
    """Side of the square input, mean and std that ``processor`` (any transformers image processor) feeds its model.

    Fine-tuning a Hub encoder must use the normalization it was trained with (ImageNet statistics, or 0.5/0.5 for
    many ViTs), not hfssl's. The side is the centre crop if the processor crops, else ``height`` or, for processors
    that resize the shortest edge (ResNet, ConvNeXt), ``shortest_edge``.
    """
    def get(obj: Any, key: str) -> Any:
        return obj.get(key) if isinstance(obj, dict) else getattr(obj, key, None)

    crop = getattr(processor, "crop_size", None) if getattr(processor, "do_center_crop", False) else None
    size = getattr(processor, "size", None) or {}
    side = (crop and get(crop, "height")) or get(size, "height") or get(size, "shortest_edge")
    if not side:
        raise ConfigError(f"Cannot tell the input size of {type(processor).__name__} (size={size}); its processor "
                          f"needs size.height or size.shortest_edge.")
    if getattr(processor, "do_normalize", True) and getattr(processor, "image_mean", None) is not None:
        mean, std = processor.image_mean, processor.image_std
        mean = (mean,) * 3 if isinstance(mean, (int, float)) else tuple(mean)
        std = (std,) * 3 if isinstance(std, (int, float)) else tuple(std)
    else:
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    return int(side), tuple(map(float, mean)), tuple(map(float, std))
