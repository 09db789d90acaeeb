"""The batched view pipeline: shapes, value range, per-image randomness, determinism, each op's effect."""

import pytest
import torch

from hfssl.contrastive.augment import (PerImageRandom, ViewConfig, augment, color_jitter, gaussian_blur, normalize,
                                       random_grayscale, random_resized_crop, solarize, to_float, views_for_method)
from hfssl.contrastive.encoder import IMAGE_MEAN


def _images(b=8, size=24):
    g = torch.Generator().manual_seed(1)
    return torch.rand(b, 3, size, size, generator=g)


def test_views_keep_shape_and_range_and_differ():
    x = _images()
    for method in ("simclr", "byol"):
        v1_cfg, v2_cfg = views_for_method(method, 16)
        g = torch.Generator().manual_seed(0)
        v1, v2 = augment(x, v1_cfg, g), augment(x, v2_cfg, g)
        assert v1.shape == v2.shape == (8, 3, 16, 16)
        assert v1.min() >= 0 and v1.max() <= 1 and v2.min() >= 0 and v2.max() <= 1
        assert not torch.allclose(v1, v2)
        # every image gets its own transformation, not one shared by the batch
        assert not torch.allclose(v1[0], v1[1])


def test_same_seed_same_views_and_new_seed_new_views():
    x = _images()
    cfg = views_for_method("simclr", 16)[0]
    a = augment(x, cfg, torch.Generator().manual_seed(5))
    b = augment(x, cfg, torch.Generator().manual_seed(5))
    c = augment(x, cfg, torch.Generator().manual_seed(6))
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)


def test_per_image_views_do_not_depend_on_how_the_batch_is_split():
    # What makes 2 processes x 4 images train like 1 process x 8: image i gets the same view either way.
    x = _images()
    for method in ("simclr", "byol", "dino"):
        cfg = views_for_method(method, 16)[1]
        whole = augment(x, cfg, PerImageRandom(7, 3, 1, torch.arange(8)))
        halves = [augment(x[i : i + 4], cfg, PerImageRandom(7, 3, 1, torch.arange(i, i + 4))) for i in (0, 4)]
        torch.testing.assert_close(torch.cat(halves), whole, rtol=0, atol=1e-6)
        # a kept image keeps its place when another image of its batch is dropped (a corrupt file)
        kept = torch.tensor([0, 1, 3, 5])
        torch.testing.assert_close(augment(x[kept], cfg, PerImageRandom(7, 3, 1, kept)), whole[kept], rtol=0, atol=1e-6)
    # every image its own view; another step, view or seed: other views
    assert not torch.allclose(whole[0], whole[1])
    for key in ((7, 4, 1), (7, 3, 0), (8, 3, 1)):
        assert not torch.allclose(augment(x, cfg, PerImageRandom(*key, torch.arange(8))), whole)


def test_per_image_numbers_are_uniform_and_independent():
    rng = PerImageRandom(0, 0, 0, torch.arange(20_000))
    draws = torch.stack([rng.rand(20_000) for _ in range(16)])  # 16 draws (one view needs ~15) of 20k images
    assert draws.min() >= 0 and draws.max() < 1
    assert abs(draws.mean() - 0.5) < 0.005 and abs(draws.var() - 1 / 12) < 0.002
    counts = torch.histc(draws, bins=20, min=0, max=1)
    assert (counts / draws.numel() - 0.05).abs().max() < 0.002
    corr = torch.corrcoef(draws)  # between draws of the same image
    assert (corr - torch.eye(16)).abs().max() < 0.03
    neighbours = torch.corrcoef(torch.stack([draws[0, :-1], draws[0, 1:]]))[0, 1]  # images i and i + 1
    assert abs(neighbours) < 0.03
    with pytest.raises(ValueError, match="made for 20000 images"):
        rng.rand(5)


def test_full_crop_without_flip_is_identity():
    x = _images(size=16)
    cfg = ViewConfig(image_size=16, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), hflip_prob=0.0)
    torch.testing.assert_close(random_resized_crop(x, cfg, torch.Generator().manual_seed(0)), x, atol=1e-5, rtol=0)


def test_flip_mirrors_the_image():
    x = _images(size=16)
    cfg = ViewConfig(image_size=16, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), hflip_prob=1.0)
    torch.testing.assert_close(random_resized_crop(x, cfg, torch.Generator().manual_seed(0)), x.flip(-1),
                               atol=1e-5, rtol=0)


def test_crop_zooms_in():
    # A small crop of a smooth gradient covers a narrower range of values than the whole image.
    ramp = torch.linspace(0, 1, 32).view(1, 1, 1, 32).expand(4, 3, 32, 32).contiguous()
    cfg = ViewConfig(image_size=32, crop_scale=(0.1, 0.1), hflip_prob=0.0)
    out = random_resized_crop(ramp, cfg, torch.Generator().manual_seed(0))
    span = out[:, 0, 16].max(dim=1).values - out[:, 0, 16].min(dim=1).values
    assert (span < 0.6).all()


def test_grayscale_and_solarize():
    x = _images()
    g = torch.Generator().manual_seed(0)
    gray = random_grayscale(x, 1.0, g)
    torch.testing.assert_close(gray[:, 0], gray[:, 1])
    torch.testing.assert_close(gray[:, 1], gray[:, 2])
    sol = solarize(x, 1.0, g)
    torch.testing.assert_close(sol, torch.where(x >= 0.5, 1 - x, x))
    torch.testing.assert_close(solarize(x, 0.0, g), x)


def test_color_jitter_changes_colour_but_not_when_disabled():
    x = _images()
    on = ViewConfig(image_size=24, jitter_prob=1.0)
    off = ViewConfig(image_size=24, jitter_prob=0.0)
    g = torch.Generator().manual_seed(0)
    assert not torch.allclose(color_jitter(x, on, g), x)
    torch.testing.assert_close(color_jitter(x, off, g), x)


def test_blur_smooths_and_preserves_constant_images():
    x = _images(size=32)
    cfg = ViewConfig(image_size=32, blur_prob=1.0)
    blurred = gaussian_blur(x, cfg, torch.Generator().manual_seed(0))
    # high-frequency energy (neighbour differences) goes down
    assert (blurred.diff(dim=-1).abs().mean() < x.diff(dim=-1).abs().mean())
    flat = torch.full((2, 3, 32, 32), 0.3)
    torch.testing.assert_close(gaussian_blur(flat, cfg, torch.Generator().manual_seed(0)), flat)


def test_blur_reaches_the_full_sigma_range_on_small_images():
    # An impulse blurred by a Gaussian of sigma spreads with standard deviation sigma. On 32 px images a kernel of
    # 10% of the side (3 taps) caps that spread near 0.8 px; the drawn sigmas go up to 2 px.
    x = torch.zeros(64, 1, 32, 32)
    x[:, :, 16, 16] = 1.0
    blurred = gaussian_blur(x, ViewConfig(image_size=32, blur_prob=1.0), torch.Generator().manual_seed(0))
    profile = blurred.sum(dim=2)[:, 0]  # (64, 32): mass per column
    offsets = torch.arange(32.0) - 16
    spread = ((profile * offsets**2).sum(1) / profile.sum(1)).sqrt()
    assert spread.max() > 1.6 and spread.min() < 0.5
    assert spread.max() < 2.05
    torch.testing.assert_close(blurred.sum(dim=(1, 2, 3)), torch.ones(64))  # no mass lost at this size


def test_byol_views_are_asymmetric():
    v1, v2 = views_for_method("byol", 32)
    assert v1.blur_prob == 1.0 and v2.blur_prob == 0.1
    assert v1.solarize_prob == 0.0 and v2.solarize_prob == 0.2


def test_uint8_to_normalized():
    x = torch.full((1, 3, 2, 2), 255, dtype=torch.uint8)
    f = to_float(x)
    assert f.max() == 1.0
    n = normalize(torch.full((1, 3, 1, 1), IMAGE_MEAN[0]))
    assert abs(float(n[0, 0])) < 1e-6
