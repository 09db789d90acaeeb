"""OnePixelConv2d computes exactly what nn.Conv2d computes, and the swapped backbone saves and loads as before."""

import copy

import pytest
import torch
from torch import nn
from transformers import AutoModel

from hfssl.contrastive.encoder import ImageEncoder, build_backbone
from hfssl.contrastive.one_pixel_conv import OnePixelConv2d, sees_one_tap, use_one_pixel_convs


def _grads(conv, x):
    x = x.clone().requires_grad_(True)
    y = conv(x)
    y.backward(torch.arange(y.numel(), dtype=y.dtype).reshape(y.shape).sin())
    grads = [x.grad] + [p.grad for p in conv.parameters()]
    return y, grads


@pytest.mark.parametrize("kernel, stride, padding, bias", [
    (3, 1, 1, False), (3, 2, 1, True), (1, 2, 0, False), (1, 1, 0, True), (7, 2, 3, False), ((3, 1), 1, (1, 0), True),
])
@pytest.mark.parametrize("side", [1, 3])
def test_same_output_and_gradients_as_the_convolution(kernel, stride, padding, bias, side):
    torch.manual_seed(0)
    conv = nn.Conv2d(6, 5, kernel, stride=stride, padding=padding, bias=bias)
    assert sees_one_tap(conv)
    swapped = nn.Sequential(copy.deepcopy(conv))
    assert use_one_pixel_convs(swapped) == 1 and type(swapped[0]) is OnePixelConv2d
    x = torch.randn(4, 6, side, side)
    y_ref, g_ref = _grads(conv, x)
    y, g = _grads(swapped[0], x)
    assert y.shape == y_ref.shape
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
    for a, b in zip(g, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("conv", [
    nn.Conv2d(4, 4, 3, padding=1, groups=2),             # grouped: not one matrix product
    nn.Conv2d(4, 4, 3, padding=2, dilation=2),
    nn.Conv2d(4, 4, 1, padding=1),                        # pads a 1x1 input to a 3x3 output
    nn.Conv2d(4, 4, 3, padding=2),                        # 3x3 output on a 1x1 input
    nn.Conv2d(4, 4, 3, padding="same"),
    nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect"),
])
def test_left_alone_where_not_exact(conv):
    assert not sees_one_tap(conv)
    assert use_one_pixel_convs(nn.Sequential(conv)) == 0


def test_resnet_at_16_pixels_trains_the_same_and_saves_a_plain_checkpoint(tmp_path):
    torch.manual_seed(0)
    plain = build_backbone("resnet-18", 16).double()  # float64: the two paths sum in different orders
    swapped = copy.deepcopy(plain)
    # Every ungrouped convolution qualifies; at 16 px those of stages 3 and 4 see 1x1 maps and take the product.
    assert use_one_pixel_convs(swapped) == 20
    assert list(swapped.state_dict()) == list(plain.state_dict())
    x = torch.randn(8, 3, 16, 16, dtype=torch.float64)
    plain.train(), swapped.train()
    out_ref = plain(pixel_values=x).pooler_output
    out = swapped(pixel_values=x).pooler_output
    torch.testing.assert_close(out, out_ref)
    out_ref.square().sum().backward()
    out.square().sum().backward()
    for (name, p), q in zip(plain.named_parameters(), swapped.parameters()):
        torch.testing.assert_close(q.grad, p.grad, msg=name)

    swapped.save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path, dtype=torch.float64)
    assert not any(isinstance(m, OnePixelConv2d) for m in loaded.modules())
    loaded.train()
    torch.testing.assert_close(loaded(pixel_values=x).pooler_output, out, rtol=1e-4, atol=1e-4)


def test_image_encoder_uses_them():
    encoder = ImageEncoder(build_backbone("resnet-18", 16))
    assert any(isinstance(m, OnePixelConv2d) for m in encoder.modules())
