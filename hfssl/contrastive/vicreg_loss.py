"""VICReg: variance-invariance-covariance regularization.

Bardes, Ponce, LeCun. "VICReg: Variance-Invariance-Covariance Regularization for Self-Supervised Learning",
ICLR 2022 (arXiv:2105.04906), eqs. 1-6: ``l = lambda * s(Z, Z') + mu * [v(Z) + v(Z')] + nu * [c(Z) + c(Z')]`` with
invariance ``s`` the mean squared distance, variance ``v(Z) = mean_j max(0, gamma - sqrt(Var(z_j) + eps))`` and
covariance ``c(Z) = sum_{i != j} C(Z)_{ij}^2 / d``. Following the paper's pseudocode the variance term of the
two branches is averaged (``/2``), and variance and covariance are estimated on the global batch (gathered with
gradients across processes).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .distributed import gather_with_grad


class VICRegLoss(nn.Module):
    def __init__(self, sim_coeff: float = 25.0, std_coeff: float = 25.0, cov_coeff: float = 1.0,
                 gamma: float = 1.0, eps: float = 1e-4) -> None:
        super().__init__()
        self.sim_coeff, self.std_coeff, self.cov_coeff = sim_coeff, std_coeff, cov_coeff
        self.gamma, self.eps = gamma, eps

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        z1, z2 = z1.float(), z2.float()
        invariance = F.mse_loss(z1, z2)
        a, _ = gather_with_grad(z1)
        b, _ = gather_with_grad(z2)
        if a.shape[0] < 2:
            raise ValueError("VICReg needs at least 2 samples in the global batch to estimate a variance.")
        a = a - a.mean(dim=0)
        b = b - b.mean(dim=0)
        variance = (self._hinge_std(a) + self._hinge_std(b)) / 2
        covariance = self._off_diagonal_cov(a) + self._off_diagonal_cov(b)
        return self.sim_coeff * invariance + self.std_coeff * variance + self.cov_coeff * covariance

    def _hinge_std(self, z: torch.Tensor) -> torch.Tensor:
        return F.relu(self.gamma - torch.sqrt(z.var(dim=0) + self.eps)).mean()

    @staticmethod
    def _off_diagonal_cov(z: torch.Tensor) -> torch.Tensor:
        n, d = z.shape
        cov = z.T @ z / (n - 1)
        return (cov.pow(2).sum() - cov.diagonal().pow(2).sum()) / d
