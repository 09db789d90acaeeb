"""MoCo v3's symmetrized InfoNCE between online queries and momentum-encoder keys.

Chen, Xie, He. "An Empirical Study of Training Self-Supervised Vision Transformers", ICCV 2021
(arXiv:2104.02057), Algorithm 1: ``ctr(q, k) = CrossEntropy(q @ k.T / t, labels=arange(N)) * 2t`` and
``loss = ctr(q1, k2) + ctr(q2, k1)``. Keys come from the momentum encoder (no gradient) and are gathered from
all processes, so the negatives are the other images of the global batch (there is no queue in v3).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .distributed import gather_no_grad


class MoCoV3Loss(nn.Module):
    def __init__(self, temperature: float = 0.2) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}.")
        self.temperature = temperature

    def forward(self, q1: torch.Tensor, q2: torch.Tensor, k1: torch.Tensor, k2: torch.Tensor) -> torch.Tensor:
        return self._contrast(q1, k2) + self._contrast(q2, k1)

    def _contrast(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        q = F.normalize(q.float(), dim=1)
        k = F.normalize(k.detach().float(), dim=1)
        keys, offset = gather_no_grad(k)
        logits = q @ keys.T / self.temperature
        labels = torch.arange(q.shape[0], device=q.device) + offset
        # The 2t factor keeps the gradient scale independent of the temperature (paper, Algorithm 1).
        return F.cross_entropy(logits, labels) * (2 * self.temperature)
