"""Convolutions on 1x1 feature maps computed as matrix products with the one kernel tap that sees the pixel.

A ResNet on small images (digits at 16 px, CIFAR at 32 px) shrinks its map to 1x1 pixel in the last stage(s).
A 3x3 convolution with padding 1 on a 1x1 map multiplies that pixel by the kernel's centre tap only: the other
eight taps see padding zeros. oneDNN, which runs PyTorch's CPU convolutions, handles these maps badly in the
backward pass: for a batch of 256, the 512-channel 3x3 convolution's backward took 206 ms against 21 ms forward
(torch 2.13 and 2.14, 2 cores, AVX2), and such convolutions took ~60% of a ResNet-18 step at 16 px. As a
matrix product with the centre tap, forward and backward cost a ninth of the FLOPs and run at GEMM speed; the
gradient of the unused taps is exactly zero, as in the convolution. The parameters stay the ``nn.Conv2d``'s own
(same names, shapes and values), so checkpoints are unchanged and load into the plain transformers model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def sees_one_tap(conv: nn.Conv2d) -> bool:
    """True when, on a 1x1 input, ``conv`` outputs a 1x1 map that depends on exactly one kernel tap."""
    if type(conv) is not nn.Conv2d or conv.groups != 1 or conv.padding_mode != "zeros":
        return False
    if isinstance(conv.padding, str) or conv.dilation != (1, 1):
        return False
    for k, p, s in zip(conv.kernel_size, conv.padding, conv.stride):
        # Output size on a 1-pixel side is (1 + 2p - k) // s + 1: exactly 1 when 0 <= 1 + 2p - k < s; the pixel
        # then sits at tap p of the kernel, which must exist.
        if not (0 <= 1 + 2 * p - k < s and p < k):
            return False
    return True


class OnePixelConv2d(nn.Conv2d):
    """An ``nn.Conv2d`` that computes 1x1 inputs with a matrix product; any other input goes to the convolution."""

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if input.shape[-2:] != (1, 1):
            return super()._conv_forward(input, weight, bias)
        tap = weight[:, :, self.padding[0], self.padding[1]]
        return F.linear(input.flatten(1), tap, bias)[:, :, None, None]


def use_one_pixel_convs(model: nn.Module) -> int:
    """Swap, in place, each ``nn.Conv2d`` of ``model`` for which it is exact for a :class:`OnePixelConv2d` that shares
    its parameters; returns how many were swapped. Harmless on larger maps: they take the normal convolution."""
    swapped = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if not sees_one_tap(child):
                continue
            new = OnePixelConv2d(child.in_channels, child.out_channels, child.kernel_size, stride=child.stride,
                                 padding=child.padding, bias=False, device="meta")
            new.weight = child.weight
            new.bias = child.bias
            new.train(child.training)
            setattr(parent, name, new)
            swapped += 1
    return swapped
