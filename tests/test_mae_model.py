"""hfssl/mae/model.py: the MAE model, its masking noise, the loss it trains, and the ViT export of its encoder."""

import pytest
import torch
from transformers import ViTMAEForPreTraining, ViTModel

from hfssl.config import ConfigError
from hfssl.mae.model import build_mae, encoder_as_vit, masking_noise, num_patches, param_groups

SIZES = dict(image_size=16, patch_size=4, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
             intermediate_size=64, decoder_hidden_size=16, decoder_num_hidden_layers=1, decoder_num_attention_heads=2,
             decoder_intermediate_size=32)


def tiny_mae(mask_ratio=0.75, norm_pix_loss=True) -> ViTMAEForPreTraining:
    torch.manual_seed(0)
    model = build_mae(**SIZES, mask_ratio=mask_ratio, norm_pix_loss=norm_pix_loss)
    with torch.no_grad():  # make the [CLS] token and biases non-trivial so the comparisons below mean something
        for name, p in model.named_parameters():
            if p.requires_grad and (name.endswith("token") or name.endswith("bias")):
                p.normal_(0, 0.5)
    return model.eval()


def test_exported_vit_computes_what_the_unmasked_mae_encoder_computes():
    model = tiny_mae(mask_ratio=0.0)
    vit = encoder_as_vit(model)
    assert isinstance(vit, ViTModel) and vit.config.image_size == 16 and vit.config.patch_size == 4
    x = torch.randn(3, 3, 16, 16)
    n = num_patches(model)
    ascending = torch.arange(n, dtype=torch.float32).expand(3, n)  # keeps every patch in its original order
    with torch.no_grad():
        mae_out = model.vit(pixel_values=x, noise=ascending).last_hidden_state
        vit_out = vit(pixel_values=x)
        torch.testing.assert_close(vit_out.last_hidden_state, mae_out, rtol=1e-4, atol=1e-5)
        # the pooler is the identity: pooler_output is the [CLS] feature that kNN / linear probes measure
        torch.testing.assert_close(vit_out.pooler_output, vit_out.last_hidden_state[:, 0])
        # with shuffled (random) noise the patch tokens are permuted but the [CLS] output is the same
        shuffled = model.vit(pixel_values=x, noise=torch.rand(3, n)).last_hidden_state
        torch.testing.assert_close(shuffled[:, 0], vit_out.last_hidden_state[:, 0], rtol=1e-4, atol=1e-5)


def test_exported_vit_is_a_copy():
    model = tiny_mae()
    vit = encoder_as_vit(model)
    with torch.no_grad():
        model.vit.embeddings.cls_token.add_(1.0)
    assert not torch.equal(vit.embeddings.cls_token, model.vit.embeddings.cls_token)


def test_masking_noise_is_reproducible_and_masks_the_ratio():
    model = tiny_mae(mask_ratio=0.75)
    gen = torch.Generator()
    gen.manual_seed(7)
    a = masking_noise(model, 4, gen, torch.device("cpu"))
    gen.manual_seed(7)
    b = masking_noise(model, 4, gen, torch.device("cpu"))
    torch.testing.assert_close(a, b)
    with torch.no_grad():
        out = model(pixel_values=torch.randn(4, 3, 16, 16), noise=a)
    assert out.mask.shape == (4, 16) and out.mask.sum(1).tolist() == [12.0] * 4
    # the hidden patches are those with the highest noise
    assert torch.equal(out.mask.bool(), a >= a.sort(1).values[:, 4:5])


def naive_mae_loss(pixels, pred, mask, patch, norm_pix):
    """The paper's loss written out: MSE per masked patch (against per-patch normalized pixels), averaged."""
    b, c, h, w = pixels.shape
    total, count = 0.0, 0
    for i in range(b):
        index = 0
        for r in range(0, h, patch):
            for col in range(0, w, patch):
                if mask[i, index] == 1:
                    # transformers' patch layout: (row in patch, column in patch, channel)
                    target = pixels[i, :, r:r + patch, col:col + patch].permute(1, 2, 0).reshape(-1)
                    if norm_pix:
                        target = (target - target.mean()) / (target.var() + 1e-6) ** 0.5
                    total = total + ((pred[i, index] - target) ** 2).mean()
                    count += 1
                index += 1
    return total / count


@pytest.mark.parametrize("norm_pix", [True, False], ids=["norm_pix", "raw_pix"])
def test_training_loss_equals_naive_implementation(norm_pix):
    model = tiny_mae(norm_pix_loss=norm_pix)
    pixels = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        out = model(pixel_values=pixels, noise=torch.rand(2, 16))
    naive = naive_mae_loss(pixels, out.logits, out.mask, 4, norm_pix)
    torch.testing.assert_close(out.loss, torch.as_tensor(naive, dtype=out.loss.dtype), rtol=1e-4, atol=1e-5)


def test_param_groups_skip_decay_on_tokens_biases_norms_and_leave_out_frozen_position_embeddings():
    model = tiny_mae()
    decay, no_decay = param_groups(model, 0.05)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    not_decayed = {names[id(p)] for p in no_decay["params"]}
    assert "vit.embeddings.cls_token" in not_decayed and "decoder.mask_token" in not_decayed
    assert "vit.embeddings.patch_embeddings.projection.weight" in decayed
    assert all(not n.endswith("bias") for n in decayed)
    assert not any("position_embeddings" in n or "pos_embed" in n for n in decayed | not_decayed)
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0


def test_bad_sizes_fail_clearly():
    with pytest.raises(ConfigError, match="multiple of --patch_size"):
        build_mae(**{**SIZES, "image_size": 18}, mask_ratio=0.75, norm_pix_loss=True)
    with pytest.raises(ConfigError, match="attention heads"):
        build_mae(**{**SIZES, "num_attention_heads": 3}, mask_ratio=0.75, norm_pix_loss=True)
