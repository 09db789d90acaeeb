"""BYOL's loss: mean squared error between the normalized online prediction and target projection.

Grill et al. "Bootstrap Your Own Latent: A New Approach to Self-Supervised Learning", NeurIPS 2020
(arXiv:2006.07733), eq. 2: ``L = ||q/||q|| - z'/||z'|| ||^2 = 2 - 2 <q, z'> / (||q|| ||z'||)``, symmetrized by
swapping the views (eq. 3). No negatives are used, so nothing is gathered across processes; the target side
carries no gradient (the target network is an exponential moving average of the online one).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class BYOLLoss(nn.Module):
    def forward(self, p1: torch.Tensor, p2: torch.Tensor, t1: torch.Tensor, t2: torch.Tensor) -> torch.Tensor:
        """``p1, p2``: online predictions of views 1 and 2; ``t1, t2``: target projections. Returns a scalar."""
        return (self._regress(p1, t2) + self._regress(p2, t1)).mean()

    @staticmethod
    def _regress(p: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        p = F.normalize(p.float(), dim=1)
        t = F.normalize(t.detach().float(), dim=1)
        return 2 - 2 * (p * t).sum(dim=1)
