"""NT-Xent, the normalized temperature-scaled cross-entropy loss of SimCLR.

Chen, Kornblith, Norouzi, Hinton. "A Simple Framework for Contrastive Learning of Visual Representations",
ICML 2020 (arXiv:2002.05709), Algorithm 1.

For a global batch of N images seen as 2N views, the loss of the positive pair (i, j) is
``-log exp(sim(z_i, z_j)/t) / sum_{k != i} exp(sim(z_i, z_k)/t)`` with cosine similarity, averaged over all 2N
ordered pairs. With several processes every process scores its own views against the views of *all*
processes (gathered with gradients), so the negatives are the global batch as in the paper.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .distributed import gather_with_grad


class NTXentLoss(nn.Module):
    def __init__(self, temperature: float = 0.1) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}.")
        self.temperature = temperature

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        """``z1[i]`` and ``z2[i]`` are projections of two views of image i on this process; returns a scalar."""
        z1 = F.normalize(z1.float(), dim=1)
        z2 = F.normalize(z2.float(), dim=1)
        n = z1.shape[0]
        all1, offset = gather_with_grad(z1)
        all2, _ = gather_with_grad(z2)
        total = all1.shape[0]
        anchors = torch.cat([z1, z2])  # 2n local views
        candidates = torch.cat([all1, all2])  # 2N global views
        logits = anchors @ candidates.T / self.temperature
        own = torch.arange(n, device=z1.device) + offset
        # A view is never its own negative: drop the similarity with itself.
        self_index = torch.cat([own, own + total])
        logits[torch.arange(2 * n, device=z1.device), self_index] = float("-inf")
        positives = torch.cat([own + total, own])  # view 1 of i <-> view 2 of i
        return F.cross_entropy(logits, positives)
