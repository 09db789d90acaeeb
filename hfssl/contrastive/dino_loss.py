"""DINO's loss: cross-entropy between a centred, sharpened teacher distribution and the student's distribution.

Caron, Touvron, Misra, Jégou, Mairal, Bojanowski, Joulin. "Emerging Properties in Self-Supervised Vision
Transformers", ICCV 2021 (arXiv:2104.14294), Algorithm 1 and sec. 3.1:

    H(t, s) = - sum_k softmax((t - C) / tpt)_k * log softmax(s / tps)_k
    loss    = mean over pairs (teacher view i, student view v), v != i, of H(t_i, s_v)
    C      <- m * C + (1 - m) * mean of the teacher outputs of the batch

The teacher sees only the global views; the student sees the global views and any local (multi-crop) views,
so with two global views and no local ones the loss is ``H(t1, s2) / 2 + H(t2, s1) / 2`` exactly as in
Algorithm 1. Centering (subtracting ``C``) keeps one dimension from dominating, sharpening (the low teacher
temperature ``tpt``) keeps the output from going uniform: together they avoid collapse without negatives or a
predictor. The center is a buffer (saved in checkpoints, so a resumed run continues it exactly) and is updated
with the teacher outputs of *all* processes, as in the released code. The teacher temperature is an argument
because it follows a warmup schedule that the training loop owns.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


class DINOLoss(nn.Module):
    def __init__(self, out_dim: int, student_temperature: float = 0.1, center_momentum: float = 0.9) -> None:
        super().__init__()
        if student_temperature <= 0:
            raise ValueError(f"student_temperature must be > 0, got {student_temperature}.")
        if not 0 <= center_momentum < 1:
            raise ValueError(f"center_momentum must be in [0, 1), got {center_momentum}.")
        self.student_temperature = student_temperature
        self.center_momentum = center_momentum
        self.register_buffer("center", torch.zeros(1, out_dim))

    def forward(self, student_out: list[torch.Tensor], teacher_out: list[torch.Tensor],
                teacher_temperature: float) -> torch.Tensor:
        """``student_out``: one (B, K) tensor per view, the global views first in the teacher's order;
        ``teacher_out``: one (B, K) tensor per global view. Returns a scalar and updates the center."""
        if teacher_temperature <= 0:
            raise ValueError(f"teacher_temperature must be > 0, got {teacher_temperature}.")
        if len(teacher_out) > len(student_out):
            raise ValueError("The student must see every view the teacher sees (global views first).")
        teacher_probs = [F.softmax((t.detach().float() - self.center) / teacher_temperature, dim=-1)
                         for t in teacher_out]
        student_logp = [F.log_softmax(s.float() / self.student_temperature, dim=-1) for s in student_out]
        total, pairs = 0.0, 0
        for i, q in enumerate(teacher_probs):
            for v, logp in enumerate(student_logp):
                if v == i:  # a view is never its own target
                    continue
                total = total + (-q * logp).sum(dim=-1).mean()
                pairs += 1
        if pairs == 0:
            raise ValueError("DINO needs at least two views (two global views, or one global view and local views).")
        self.update_center(teacher_out)
        return total / pairs

    @torch.no_grad()
    def update_center(self, teacher_out: list[torch.Tensor]) -> None:
        """``C <- m C + (1 - m) mean(teacher outputs)``, the mean taken over the global batch of every process."""
        batch = torch.cat([t.detach().float() for t in teacher_out])
        summed = batch.sum(dim=0, keepdim=True)
        count = torch.tensor(float(batch.shape[0]), device=batch.device)
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(summed)
            dist.all_reduce(count)
        self.center.mul_(self.center_momentum).add_(summed / count, alpha=1 - self.center_momentum)
