"""Throughput accounting: model FLOPs per token, MFU against the card's peak, peak memory.

MFU follows the PaLM paper's definition (Chowdhery et al. 2022, appendix B): the FLOPs the model *needs* per
token (6 x parameters for forward+backward, plus attention) divided by the hardware peak, so sparse prediction's
saved head FLOPs count as model FLOPs not spent. Here we count what the dense model needs per token; a sparse
head therefore raises MFU honestly only through speed, never through the accounting.
"""

from __future__ import annotations

import resource
import sys

import torch

# Dense bf16 tensor-core peaks (no sparsity), from the vendors' datasheets, in FLOP/s.
BF16_PEAK_FLOPS = {
    "H100 SXM": 989e12,
    "H100 PCIe": 756e12,
    "H100 NVL": 835e12,
    "H200": 989e12,
    "A100": 312e12,
    "L40S": 362e12,
    "A10G": 70e12,
    "L4": 121e12,
}


def gpu_peak_flops(device_name: str) -> float | None:
    """The bf16 peak of a known card from its ``torch.cuda.get_device_name()``, else None."""
    name = device_name.upper()
    if "H100" in name:
        if "PCIE" in name:
            return BF16_PEAK_FLOPS["H100 PCIe"]
        if "NVL" in name:
            return BF16_PEAK_FLOPS["H100 NVL"]
        return BF16_PEAK_FLOPS["H100 SXM"]
    for key, flops in BF16_PEAK_FLOPS.items():
        if key.upper() in name:
            return flops
    return None


def encoder_flops_per_token(config, seq_len: int) -> float:
    """Training FLOPs per token of a BERT-style ``*ForMaskedLM`` with a dense head: 6N plus attention scores."""
    h, layers, inter, vocab = config.hidden_size, config.num_hidden_layers, config.intermediate_size, config.vocab_size
    per_layer = 4 * h * h + 2 * h * inter  # QKV + output projection, two MLP matrices
    head = h * h + h * vocab  # transform + decoder
    matmul_params = layers * per_layer + head
    attention = 2 * layers * seq_len * h  # QK^T and AV: 2 * seq * h multiply-adds per token per layer
    return 6 * matmul_params + 6 * attention


def tokens_per_second(windows: list[tuple[float, int]]) -> float:
    """Tokens per second over ``(seconds, tokens)`` logging windows (training time only: no eval or saving)."""
    return sum(n for _, n in windows) / max(sum(t for t, _ in windows), 1e-9)


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory of this process: allocator peak on GPU, max resident set size on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10
