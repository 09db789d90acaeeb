"""The MAE model (He et al., "Masked Autoencoders Are Scalable Vision Learners", CVPR 2022) and its export.

Pretraining uses transformers' ``ViTMAEForPreTraining`` as is: the encoder sees only the ``1 - mask_ratio``
visible patches, a light decoder reconstructs the pixels of the masked ones, and the loss is the mean squared
error on masked patches only, optionally against per-patch normalized pixels (``norm_pix_loss``, the paper's
better-performing target, sec. 4.1 / table 1e). The recipe passes the masking noise itself, drawn from its own
generator, so the masks of a resumed run are exactly those of an uninterrupted one.

What users want after pretraining is the *encoder*. ``ViTMAEModel`` has no image-classification head in
transformers, so :func:`encoder_as_vit` converts it into a plain ``ViTModel`` (identical parameter names; the
fixed sin-cos position embeddings become ordinary, fine-tunable ones). With no masking the two compute the same
function, which the tests check. That model loads with ``AutoModel`` and with ``AutoModelForImageClassification``
(``recipes/image_finetune.py``), and its pooler is set to the identity, so ``pooler_output`` is exactly the
[CLS] feature that the kNN / linear-probe evaluation measures (ViT's default pooler is an untrained tanh layer).
"""

from __future__ import annotations

import torch
from transformers import AutoConfig, ViTConfig, ViTMAEConfig, ViTMAEForPreTraining, ViTModel

from ..config import ConfigError

# Fields ViTConfig shares with ViTMAEConfig (the encoder's architecture).
_SHARED_FIELDS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_act",
                  "hidden_dropout_prob", "attention_probs_dropout_prob", "initializer_range", "layer_norm_eps",
                  "image_size", "patch_size", "num_channels", "qkv_bias")

# Model-card text (the image-encoder template's {objective} and {limitations}).
CARD_TEXT = {
    "objective": "a large random subset of each image's patches was hidden and a light decoder reconstructed "
                 "their pixels from the encoder's view of the visible ones (masked autoencoder, He et al. 2021); "
                 "this folder holds the encoder only, converted to a ViT that sees the whole image",
    "limitations": "MAE features are known to be weaker under frozen-feature evaluation (kNN, linear probe) than "
                   "contrastive ones and to shine after fine-tuning; the [CLS] feature was not trained by any loss "
                   "directly (mean-pooled patch tokens are an alternative). Pixel reconstruction favours "
                   "low-level detail.",
}


def build_mae(*, image_size: int, patch_size: int, hidden_size: int, num_hidden_layers: int, num_attention_heads: int,
              intermediate_size: int, decoder_hidden_size: int, decoder_num_hidden_layers: int,
              decoder_num_attention_heads: int, decoder_intermediate_size: int, mask_ratio: float,
              norm_pix_loss: bool, config_name: str | None = None,
              model_name_or_path: str | None = None) -> ViTMAEForPreTraining:
    """``ViTMAEForPreTraining``: pretrained weights, a config file, or the architecture given by the size flags.

    ``mask_ratio`` and ``norm_pix_loss`` always come from the arguments (they are training choices).
    """
    training = dict(mask_ratio=mask_ratio, norm_pix_loss=norm_pix_loss)
    if model_name_or_path:
        # trust_remote_code stays off: only the transformers ViTMAE implementation is used.
        model = ViTMAEForPreTraining.from_pretrained(model_name_or_path, use_safetensors=True, trust_remote_code=False,
                                                     **training)
    else:
        if config_name:
            config = AutoConfig.from_pretrained(config_name, **training)
            if not isinstance(config, ViTMAEConfig):
                raise ConfigError(f"--config_name {config_name} is a {config.model_type} config; MAE needs a vit_mae "
                                  f"config (e.g. the config.json of facebook/vit-mae-base).")
        else:
            if image_size % patch_size:
                raise ConfigError(f"--image_size {image_size} must be a multiple of --patch_size {patch_size}.")
            if hidden_size % num_attention_heads or decoder_hidden_size % decoder_num_attention_heads:
                raise ConfigError("--hidden_size / --decoder_hidden_size must be multiples of their attention heads.")
            config = ViTMAEConfig(
                image_size=image_size, patch_size=patch_size, hidden_size=hidden_size,
                num_hidden_layers=num_hidden_layers, num_attention_heads=num_attention_heads,
                intermediate_size=intermediate_size, decoder_hidden_size=decoder_hidden_size,
                decoder_num_hidden_layers=decoder_num_hidden_layers,
                decoder_num_attention_heads=decoder_num_attention_heads,
                decoder_intermediate_size=decoder_intermediate_size, **training)
        model = ViTMAEForPreTraining(config)
    if model.config.image_size != image_size:
        raise ConfigError(f"The model was made for {model.config.image_size} px images but --image_size is "
                          f"{image_size}; pass --image_size {model.config.image_size}.")
    return model


def num_patches(model: ViTMAEForPreTraining) -> int:
    return (model.config.image_size // model.config.patch_size) ** 2


def masking_noise(model: ViTMAEForPreTraining, batch_size: int, generator: torch.Generator,
                  device: torch.device) -> torch.Tensor:
    """Per-patch uniform noise; ViTMAE keeps the patches with the lowest noise (a uniformly random subset)."""
    return torch.rand(batch_size, num_patches(model), generator=generator, device=device)


@torch.no_grad()
def encoder_as_vit(model: ViTMAEForPreTraining) -> ViTModel:
    """The MAE encoder as a ``ViTModel`` with the same weights, no masking, and an identity pooler."""
    mae_config = model.config
    config = ViTConfig(**{name: getattr(mae_config, name) for name in _SHARED_FIELDS},
                       pooler_act="linear")  # identity pooler: pooler_output == [CLS] feature
    vit = ViTModel(config).to(model.device)
    state = {k: v.detach().clone() for k, v in model.vit.state_dict().items()}
    missing, unexpected = vit.load_state_dict(state, strict=False)
    if unexpected or set(missing) != {"pooler.dense.weight", "pooler.dense.bias"}:
        raise RuntimeError(f"ViTMAE -> ViT conversion mismatch: missing {missing}, unexpected {unexpected}.")
    vit.pooler.dense.weight.copy_(torch.eye(config.hidden_size))
    vit.pooler.dense.bias.zero_()
    return vit.eval()


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups as in the MAE code: no weight decay on biases, norm weights and the cls / mask tokens.

    The frozen sin-cos position embeddings (``requires_grad=False``) are left out.
    """
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if param.ndim <= 1 or name.endswith("token") else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
