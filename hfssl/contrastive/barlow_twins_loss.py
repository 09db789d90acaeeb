"""Barlow Twins: push the cross-correlation matrix of the two views' embeddings towards the identity.

Zbontar, Jing, Misra, LeCun, Deny. "Barlow Twins: Self-Supervised Learning via Redundancy Reduction",
ICML 2021 (arXiv:2103.03230), eq. 1-2: ``C_ij = sum_b z^A_bi z^B_bj / (sqrt(sum_b (z^A_bi)^2) sqrt(sum_b (z^B_bj)^2))``
on batch-standardized embeddings, ``L = sum_i (1 - C_ii)^2 + lambda * sum_i sum_{j != i} C_ij^2``. The
standardization uses the global batch (gathered with gradients), as the paper's all-reduced ``c`` does.
"""

from __future__ import annotations

import torch
from torch import nn

from .distributed import gather_with_grad


class BarlowTwinsLoss(nn.Module):
    def __init__(self, lambda_offdiag: float = 5e-3, eps: float = 1e-5) -> None:
        super().__init__()
        self.lambda_offdiag, self.eps = lambda_offdiag, eps

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        a, _ = gather_with_grad(z1.float())
        b, _ = gather_with_grad(z2.float())
        n = a.shape[0]
        if n < 2:
            raise ValueError("Barlow Twins needs at least 2 samples in the global batch to standardize.")
        # BatchNorm without affine parameters, as in the paper's pseudocode.
        a = (a - a.mean(0)) / torch.sqrt(a.var(0, unbiased=False) + self.eps)
        b = (b - b.mean(0)) / torch.sqrt(b.var(0, unbiased=False) + self.eps)
        c = a.T @ b / n
        on_diag = (c.diagonal() - 1).pow(2).sum()
        off_diag = c.pow(2).sum() - c.diagonal().pow(2).sum()
        return on_diag + self.lambda_offdiag * off_diag
