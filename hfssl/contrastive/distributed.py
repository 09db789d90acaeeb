"""Gather embeddings (and sum statistics) over every process with gradients flowing back through the collective.

Contrastive losses (SimCLR, MoCo v3) use the other processes' samples as negatives and the redundancy losses
(VICReg, Barlow Twins) estimate batch statistics; both need the *global* batch. ``torch.distributed.all_gather``
cuts the graph, so :func:`gather_with_grad` wraps it in an autograd function whose backward sums the gradient
each process computed for a shard and hands every process the gradient of its own rows. Batches may differ in
size between processes (a corrupt image is dropped from one process's batch), so rows are padded to the largest
batch for the collective and the padding is removed again. :func:`all_reduce_with_grad` sums a tensor over the
processes the same way (BatchNorm statistics of the global batch, ``global_batch_norm.py``).
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def _world() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


class _GatherRows(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tensor: torch.Tensor, sizes: list[int], rank: int):  # type: ignore[override]
        ctx.sizes, ctx.rank = sizes, rank
        padded = tensor.new_zeros((max(sizes), *tensor.shape[1:]))
        padded[: tensor.shape[0]] = tensor
        parts = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(parts, padded.contiguous())
        return torch.cat([part[:n] for part, n in zip(parts, sizes)])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        # Every process computed d(its loss)/d(all rows); the total for our rows is the sum over processes.
        # all_reduce works on every backend (gloo has no reduce_scatter).
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = sum(ctx.sizes[: ctx.rank])
        return grad[start : start + ctx.sizes[ctx.rank]], None, None


def gather_sizes(n: int, device: torch.device) -> list[int]:
    if _world() == 1:
        return [n]
    size = torch.tensor([n], device=device)
    sizes = [torch.zeros_like(size) for _ in range(_world())]
    dist.all_gather(sizes, size)
    return [int(s.item()) for s in sizes]


def gather_with_grad(tensor: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Concatenate ``tensor`` (rows = samples) from all processes; return it and the offset of our own rows.

    With one process this is the identity, so losses are written once for both cases.
    """
    if _world() == 1:
        return tensor, 0
    sizes = gather_sizes(tensor.shape[0], tensor.device)
    rank = dist.get_rank()
    return _GatherRows.apply(tensor, sizes, rank), sum(sizes[:rank])


@torch.no_grad()
def gather_no_grad(tensor: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Like :func:`gather_with_grad` for tensors that need no gradient (momentum-encoder keys)."""
    if _world() == 1:
        return tensor, 0
    sizes = gather_sizes(tensor.shape[0], tensor.device)
    rank = dist.get_rank()
    padded = tensor.new_zeros((max(sizes), *tensor.shape[1:]))
    padded[: tensor.shape[0]] = tensor
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded.contiguous())
    return torch.cat([part[:n] for part, n in zip(parts, sizes)]), sum(sizes[:rank])


class _AllReduceSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tensor: torch.Tensor):  # type: ignore[override]
        total = tensor.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        # Every process's output is the sum of every input, so an input's gradient is the sum of all the outputs'.
        grad = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad


def all_reduce_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """The sum of ``tensor`` over all processes, differentiable (the identity with one process).

    Written here rather than taken from ``torch.distributed.nn.functional.all_reduce``, which torch deprecates.
    """
    if _world() == 1:
        return tensor
    return _AllReduceSum.apply(tensor)
