"""BatchNorm over the global batch of all processes, on any device and backend (gloo included).

With several processes each one sees a shard of the batch, and ``nn.BatchNorm`` would normalize every shard with
its own statistics: the model then trains differently from one process on the same global batch (and contrastive
methods can exploit the per-shard statistics, SimCLR sec. 2.2 "Global BN"). ``torch.nn.SyncBatchNorm`` fixes that
only for CUDA tensors. :class:`GlobalBatchNorm` computes each shard's mean and (biased) variance, exchanges them
with one differentiable ``all_reduce`` (:func:`~hfssl.contrastive.distributed.all_reduce_with_grad`: its backward
sums the gradients of every process, so each process gets the gradient of the global statistics with respect to
its own rows), and combines them as Chan et al. do for parallel variances (no ``E[x^2] - E[x]^2`` cancellation).
Running statistics are updated exactly as ``nn.BatchNorm`` updates them on the concatenated batch (unbiased
variance, ``momentum``, or the cumulative average when ``momentum=None``), so they stay equal on every process.
The price is one collective per BatchNorm layer in the forward pass and one in the backward pass, which every
process waits for; it weighs most where the convolutions are cheap (small images).

Only training mode exchanges statistics. In eval mode every process uses its running statistics (or its own
batch when ``track_running_stats=False``), because evaluation may run on one process alone and a collective
there would wait forever.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from .distributed import _world, all_reduce_with_grad


class GlobalBatchNorm(_BatchNorm):
    """``nn.BatchNorm1d/2d/3d`` whose training-mode statistics cover the batches of all processes."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"GlobalBatchNorm expects (N, C, ...) input, got {input.dim()}D.")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(input)
        if not self.training or _world() == 1:
            return super().forward(input)
        dims = [0, *range(2, input.dim())]
        x = input.to(torch.promote_types(input.dtype, torch.float32))  # statistics of half inputs in float32
        count = x.numel() // x.shape[1]
        if count:
            var, mean = torch.var_mean(x, dim=dims, unbiased=False)
        else:  # an empty shard (every image of this process's batch was unreadable) adds nothing
            var = mean = x.new_zeros(x.shape[1])
        # One row per process: (count, mean, var) per channel; the others' rows are zeros before the sum.
        rows = [x.new_zeros(3, x.shape[1]) for _ in range(_world())]
        rows[dist.get_rank()] = torch.stack([torch.full_like(mean, count), mean, var])
        counts, means, variances = all_reduce_with_grad(torch.stack(rows)).unbind(1)
        total = counts.sum(0)  # (C,), the same for every channel
        if count <= 1 and float(total[0]) <= 1:  # (reads the total back only when it can be too small)
            raise ValueError(f"Expected more than 1 value per channel when training, got a global batch of "
                             f"{int(total[0])} values per channel.")
        global_mean = (counts * means).sum(0) / total
        global_var = (counts * (variances + (means - global_mean) ** 2)).sum(0) / total
        if self.track_running_stats:
            self._update_running_stats(global_mean.detach(), global_var.detach(), total)
        scale = torch.rsqrt(global_var + self.eps)
        shift = -global_mean * scale
        if self.affine:
            scale, shift = scale * self.weight, shift * self.weight + self.bias
        shape = (1, -1) + (1,) * (input.dim() - 2)
        return (x * scale.view(shape) + shift.view(shape)).to(input.dtype)

    @torch.no_grad()
    def _update_running_stats(self, mean: torch.Tensor, var: torch.Tensor, n: torch.Tensor) -> None:
        """What ``nn.BatchNorm`` does in training mode, with the global batch's statistics."""
        self.num_batches_tracked.add_(1)
        factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        self.running_mean.lerp_(mean.to(self.running_mean.dtype), factor)
        self.running_var.lerp_((var * n / (n - 1)).to(self.running_var.dtype), factor)


def convert_to_global_batch_norm(module: nn.Module) -> nn.Module:
    """Replace every ``nn.BatchNorm1d/2d/3d`` in ``module`` (in place) by a :class:`GlobalBatchNorm` with the same
    parameters, buffers and settings; returns ``module`` (or the replacement when ``module`` is a BatchNorm).

    Parameter and buffer names do not change, so state dicts and ``save_pretrained`` folders stay the same.
    """
    if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)):
        new = GlobalBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                              module.track_running_stats, device=_device_of(module))
        if module.affine:
            new.weight, new.bias = module.weight, module.bias  # the same Parameter objects (optimizer-safe)
        new.running_mean, new.running_var = module.running_mean, module.running_var
        new.num_batches_tracked = module.num_batches_tracked
        new.train(module.training)
        return new
    for name, child in module.named_children():
        replacement = convert_to_global_batch_norm(child)
        if replacement is not child:
            setattr(module, name, replacement)
    return module


def _device_of(module: nn.Module) -> torch.device | None:
    tensor = next((t for t in (*module.parameters(), *module.buffers())), None)
    return tensor.device if tensor is not None else None
