"""LARS: layer-wise adaptive rate scaling, the optimizer SimCLR and BYOL use for large batches.

You, Gitman, Ginsburg. "Large Batch Training of Convolutional Networks" (arXiv:1708.03888), as used by SimCLR:
SGD with momentum where each parameter's step is scaled by the trust ratio
``eta * ||w|| / ||g + weight_decay * w||`` (the form of SimCLR's released code). Biases and normalization
weights (1-d tensors) get neither weight decay nor the trust ratio, as in the SimCLR and BYOL implementations;
:func:`param_groups` builds those groups.
"""

from __future__ import annotations

import torch
from torch import nn


def param_groups(model: nn.Module, weight_decay: float, lr_scales: dict[str, tuple[float, float]] | None = None
                 ) -> list[dict]:
    """Two groups: weights with decay (and LARS adaptation), biases/norm weights without.

    ``lr_scales`` maps a submodule name (``"predictor"``) to ``(base_lr, scale)``: its parameters get two groups
    of their own with learning rate ``base_lr * scale`` (a learning-rate schedule then scales every group alike).
    """
    lr_scales = lr_scales or {}
    own = {name: ([], []) for name in lr_scales}
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        prefix = next((p for p in own if name == p or name.startswith(p + ".")), None)
        bucket = own[prefix] if prefix is not None else (decay, no_decay)
        (bucket[1] if param.ndim <= 1 else bucket[0]).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay, "lars_adapt": True},
              {"params": no_decay, "weight_decay": 0.0, "lars_adapt": False}]
    for prefix, (own_decay, own_no_decay) in own.items():
        lr = lr_scales[prefix][0] * lr_scales[prefix][1]
        groups += [{"params": own_decay, "weight_decay": weight_decay, "lars_adapt": True, "lr": lr},
                   {"params": own_no_decay, "weight_decay": 0.0, "lars_adapt": False, "lr": lr}]
    return [group for group in groups if group["params"]]


class LARS(torch.optim.Optimizer):
    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 1e-6, eta: float = 0.001) -> None:
        if lr <= 0:
            raise ValueError(f"lr must be > 0, got {lr}.")
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta, lars_adapt=True))

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if group["weight_decay"]:
                    grad = grad.add(p, alpha=group["weight_decay"])
                if group["lars_adapt"]:
                    w_norm, g_norm = torch.norm(p), torch.norm(grad)
                    trust = torch.where((w_norm > 0) & (g_norm > 0), group["eta"] * w_norm / g_norm,
                                        torch.ones_like(w_norm))
                    grad = grad * trust
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.clone(grad).detach()
                else:
                    state["momentum_buffer"].mul_(group["momentum"]).add_(grad)
                p.add_(state["momentum_buffer"], alpha=-group["lr"])
        return loss
