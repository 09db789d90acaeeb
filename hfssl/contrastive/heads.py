"""Projection and prediction heads (MLPs with BatchNorm) as specified by each method's paper.

A single :class:`MLPHead` covers them all; :func:`paper_head_dims` holds the sizes each paper uses, so a user can
shrink them with flags for small data without touching code.
"""

from __future__ import annotations

from torch import nn

# method -> (projector hidden, projector out, projector layers, predictor hidden or None)
PAPER_DIMS = {
    "simclr": (2048, 128, 2, None),  # SimCLR sec. 2.1 / released code: Linear-BN-ReLU-Linear
    "byol": (4096, 256, 2, 4096),  # BYOL sec. 3.3: MLP 4096 -> 256, predictor the same shape
    "mocov3": (4096, 256, 3, 4096),  # MoCo v3 sec. 4 (ResNet): 3-layer projector, 2-layer predictor
    "vicreg": (8192, 8192, 3, None),  # VICReg sec. 4.1: expander 8192-8192-8192
    "barlowtwins": (8192, 8192, 3, None),  # Barlow Twins sec. 4: projector 8192-8192-8192
    "rotnet": (None, 4, 1, None),  # RotNet (rotation.py): a linear 4-way rotation classifier
}


class MLPHead(nn.Sequential):
    """``num_layers`` Linear layers; BatchNorm + ReLU after every hidden layer.

    ``last_bn`` adds a BatchNorm without affine parameters after the output layer (MoCo v3's projector).
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
