"""Projection and prediction heads (MLPs with BatchNorm) as specified by each method's paper.

A single :class:`MLPHead` covers them all; :func:`paper_head_dims` holds the sizes each paper uses, so a user can
shrink them with flags for small data without touching code.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# method -> (projector hidden, projector out, projector layers, predictor hidden or None)
PAPER_DIMS = {
    "simclr": (2048, 128, 2, None),  # SimCLR sec. 2.1 / released code: Linear-BN-ReLU-Linear-BN
    "byol": (4096, 256, 2, 4096),  # BYOL sec. 3.3: MLP 4096 -> 256, predictor the same shape
    "mocov3": (4096, 256, 3, 4096),  # MoCo v3 sec. 4 (ResNet): 3-layer projector, 2-layer predictor
    "vicreg": (8192, 8192, 3, None),  # VICReg sec. 4.1: expander 8192-8192-8192
    "barlowtwins": (8192, 8192, 3, None),  # Barlow Twins sec. 4: projector 8192-8192-8192
    "dino": (2048, 65536, 3, None),  # DINO sec. 3.1 / appendix: MLP 2048-2048-256, weight-normalized 65536 outputs
    "rotnet": (None, 4, 1, None),  # RotNet (rotation.py): a linear 4-way rotation classifier
}


class MLPHead(nn.Sequential):
    """``num_layers`` Linear layers; BatchNorm + ReLU after every hidden layer.

    ``last_bn`` adds a BatchNorm without affine parameters after the output layer (SimCLR's and MoCo v3's
    projectors).
    """

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, num_layers: int = 2, last_bn: bool = False) -> None:
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}.")
        layers: list[nn.Module] = []
        dim = in_dim
        for _ in range(num_layers - 1):
            layers += [nn.Linear(dim, hidden_dim, bias=False), nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True)]
            dim = hidden_dim
        layers.append(nn.Linear(dim, out_dim, bias=not last_bn))
        if last_bn:
            layers.append(nn.BatchNorm1d(out_dim, affine=False))
        super().__init__(*layers)


class DINOHead(nn.Module):
    """DINO's projection head (Caron et al. 2021, sec. 3.1 and the released code).

    A ``num_layers`` MLP with GELU (no BatchNorm by default, as in the paper) down to a ``bottleneck_dim``
    vector, which is l2-normalized, then a weight-normalized linear layer to ``out_dim`` "prototype" scores.
    The weight norm's gain is fixed to 1 (the paper's ``norm_last_layer``), so each output row is a unit vector
    and the scores are cosine similarities: this is what keeps training stable.
    """

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, num_layers: int = 3, bottleneck_dim: int = 256,
                 batch_norm: bool = False) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}.")
        layers: list[nn.Module] = []
        dim = in_dim
        for _ in range(num_layers - 1):
            layers += [nn.Linear(dim, hidden_dim), *([nn.BatchNorm1d(hidden_dim)] if batch_norm else []), nn.GELU()]
            dim = hidden_dim
        layers.append(nn.Linear(dim, bottleneck_dim))
        self.mlp = nn.Sequential(*layers)
        for module in self.mlp:
            if isinstance(module, nn.Linear):  # the released code's init: truncated normal, std 0.02
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
        # Direction of each output row; the row norm (the weight norm's gain) is fixed to 1 in forward.
        self.last_layer = nn.Linear(bottleneck_dim, out_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.normalize(self.mlp(x), dim=-1)
        return F.linear(x, F.normalize(self.last_layer.weight, dim=1))
