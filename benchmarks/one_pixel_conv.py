#!/usr/bin/env python
"""ResNet-18 forward + backward with and without one-pixel convolutions (``hfssl/contrastive/one_pixel_conv.py``).

    python benchmarks/one_pixel_conv.py --image_size 16 32

The encoder is built as the contrastive recipe builds it (``ImageEncoder``, which swaps the convolutions that meet
1x1 maps for matrix products), and again with the swap undone; both run the same batch of random images, in
alternating rounds so that load on a shared machine hits both. Reports the median step time of each.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without `pip install -e .`

from hfssl.contrastive.encoder import ImageEncoder, build_backbone  # noqa: E402
from hfssl.contrastive.one_pixel_conv import OnePixelConv2d  # noqa: E402


def plain_convs(model: nn.Module) -> nn.Module:
    """Undo the swap: every OnePixelConv2d back to an nn.Conv2d sharing its parameters."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, OnePixelConv2d):
                conv = nn.Conv2d(child.in_channels, child.out_channels, child.kernel_size, stride=child.stride,
                                 padding=child.padding, bias=False, device="meta")
                conv.weight, conv.bias = child.weight, child.bias
                setattr(parent, name, conv)
    return model


def step_seconds(encoder: nn.Module, images: torch.Tensor, steps: int) -> float:
    times = []
    for _ in range(steps + 1):  # the first step warms oneDNN's kernel caches
        start = time.perf_counter()
        encoder(images).square().mean().backward()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--image_size", type=int, nargs="+", default=[16, 32])
    p.add_argument("--batch_size", type=int, default=256, help="256 = SimCLR's two views of a batch of 128.")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    for size in a.image_size:
        torch.manual_seed(0)
        swapped = ImageEncoder(build_backbone("resnet-18", size))
        plain = plain_convs(ImageEncoder(build_backbone("resnet-18", size)))
        images = torch.randn(a.batch_size, 3, size, size)
        times: dict[str, list[float]] = {"conv": [], "one_pixel": []}
        for _ in range(a.rounds):
            times["conv"].append(step_seconds(plain, images, a.steps))
            times["one_pixel"].append(step_seconds(swapped, images, a.steps))
        conv, one = statistics.median(times["conv"]), statistics.median(times["one_pixel"])
        print(f"{size} px, batch {a.batch_size}: convolutions {conv * 1e3:.0f} ms/step, one-pixel products "
              f"{one * 1e3:.0f} ms/step -> {conv / one:.2f}x (rounds: conv "
              f"{', '.join(f'{t * 1e3:.0f}' for t in times['conv'])}; one-pixel "
              f"{', '.join(f'{t * 1e3:.0f}' for t in times['one_pixel'])} ms)", flush=True)


if __name__ == "__main__":
    main()
