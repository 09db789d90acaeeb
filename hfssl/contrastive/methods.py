"""The self-supervised methods as modules: ``model(view1, view2)`` returns the training loss.

Each method owns its encoder, heads and loss, so the recipe's loop is the same for all of them. BYOL and MoCo v3
also own a *target* (momentum) copy of the encoder and projector that receives no gradient and is updated after
each optimizer step with :meth:`MomentumMethod.update_target` using :func:`cosine_momentum`; DINO's teacher the
same way (:class:`DINO`, whose loss, ``dino_loss.py``, also keeps a center). Keeping the target inside the module
means ``accelerator.save_state`` checkpoints it with everything else (exact resume).

Each view goes through the networks in its own forward pass, so BatchNorm normalizes each view over the batch
(with several processes, over the global batch: ``global_batch_norm.py``), as the released code of BYOL, MoCo v3,
VICReg and Barlow Twins and lightly's examples do. SimCLR's released code concatenates the views instead; on
digits (``benchmarks/contrastive_vs_lightly.py``, 10 epochs, 3 seeds, at b28bfc1) per-view passes gave kNN 0.953
against 0.933 concatenated, at the same images/s on CPU. DINO keeps one pass for the global views, as its multi-crop code does.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from .barlow_twins_loss import BarlowTwinsLoss
from .byol_loss import BYOLLoss
from .dino_loss import DINOLoss
from .encoder import ImageEncoder
from .heads import PAPER_DIMS, DINOHead, MLPHead
from .moco_v3_loss import MoCoV3Loss
from .nt_xent import NTXentLoss
from .rotation import RotNet
from .vicreg_loss import VICRegLoss

METHODS = tuple(PAPER_DIMS)


def cosine_momentum(step: int, total_steps: int, base: float) -> float:
    """BYOL's schedule (sec. 3.3): ``1 - (1 - base) * (cos(pi * step / total) + 1) / 2``, from base up to 1."""
    progress = min(step / max(total_steps, 1), 1.0)
    return 1 - (1 - base) * (math.cos(math.pi * progress) + 1) / 2


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """``target <- momentum * target + (1 - momentum) * online`` for parameters; buffers (BN statistics) copied."""
    for t, o in zip(target.parameters(), online.parameters()):
        t.mul_(momentum).add_(o.detach(), alpha=1 - momentum)
    for t, o in zip(target.buffers(), online.buffers()):
        t.copy_(o)


def linear_warmup(step: int, warmup_steps: int, start: float, end: float) -> float:
    """``start`` rising linearly to ``end`` over ``warmup_steps`` steps, then ``end`` (DINO's teacher temperature)."""
    if step >= warmup_steps:
        return end
    return start + (end - start) * step / warmup_steps


class SimCLR(nn.Module):
    def __init__(self, encoder: ImageEncoder, hidden_dim: int, out_dim: int, num_layers: int, temperature: float) -> None:
        super().__init__()
        self.encoder = encoder
        # BatchNorm on the output layer too, as in SimCLR's released code (which MoCo v3 follows) and lightly: it
        # centres the embeddings, whose cosines at random init are otherwise ~0.3 for any two images.
        self.projector = MLPHead(encoder.dim, hidden_dim, out_dim, num_layers, last_bn=True)
        self.loss = NTXentLoss(temperature)

    def forward(self, view1: torch.Tensor, view2: torch.Tensor) -> torch.Tensor:
        return self.loss(self.projector(self.encoder(view1)), self.projector(self.encoder(view2)))


class _TwoBranchRedundancy(nn.Module):
    """VICReg and Barlow Twins: one shared encoder + projector, a loss on the two embeddings."""

    def __init__(self, encoder: ImageEncoder, hidden_dim: int, out_dim: int, num_layers: int, loss: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.projector = MLPHead(encoder.dim, hidden_dim, out_dim, num_layers)
        self.loss = loss

    def forward(self, view1: torch.Tensor, view2: torch.Tensor) -> torch.Tensor:
        return self.loss(self.projector(self.encoder(view1)), self.projector(self.encoder(view2)))


class MomentumMethod(nn.Module):
    """BYOL and MoCo v3: online encoder + projector + predictor, target = EMA of encoder + projector."""

    def __init__(self, encoder: ImageEncoder, hidden_dim: int, out_dim: int, num_layers: int, pred_hidden: int,
                 loss: nn.Module, projector_last_bn: bool) -> None:
        super().__init__()
        self.encoder = encoder
        self.projector = MLPHead(encoder.dim, hidden_dim, out_dim, num_layers, last_bn=projector_last_bn)
        self.predictor = MLPHead(out_dim, pred_hidden, out_dim, 2)
        self.target_encoder = copy.deepcopy(encoder)
        self.target_projector = copy.deepcopy(self.projector)
        for p in [*self.target_encoder.parameters(), *self.target_projector.parameters()]:
            p.requires_grad_(False)
        self.loss = loss

    def forward(self, view1: torch.Tensor, view2: torch.Tensor) -> torch.Tensor:
        p1, p2 = (self.predictor(self.projector(self.encoder(v))) for v in (view1, view2))
        with torch.no_grad():
            t1, t2 = (self.target_projector(self.target_encoder(v)) for v in (view1, view2))
        return self.loss(p1, p2, t1, t2)

    @torch.no_grad()
    def update_target(self, momentum: float) -> None:
        ema_update(self.target_encoder, self.encoder, momentum)
        ema_update(self.target_projector, self.projector, momentum)


class DINO(nn.Module):
    """DINO: student = encoder + DINO head; teacher = EMA of both (no predictor, no negatives).

    ``model(global1, global2, *local_views)``: the teacher sees the two global views, the student those and any
    local (multi-crop) views, which must share one size. The teacher's temperature is a buffer that the training
    loop sets every step (:func:`linear_warmup`), so it is checkpointed and a resumed run continues the schedule.
    """

    def __init__(self, encoder: ImageEncoder, hidden_dim: int, out_dim: int, num_layers: int,
                 student_temperature: float, teacher_temperature: float, head_batch_norm: bool = False) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = DINOHead(encoder.dim, hidden_dim, out_dim, num_layers, batch_norm=head_batch_norm)
        self.teacher_encoder = copy.deepcopy(encoder)
        self.teacher_head = copy.deepcopy(self.head)
        for p in [*self.teacher_encoder.parameters(), *self.teacher_head.parameters()]:
            p.requires_grad_(False)
        self.loss = DINOLoss(out_dim, student_temperature)
        self.register_buffer("teacher_temperature", torch.tensor(float(teacher_temperature)))

    def forward(self, view1: torch.Tensor, view2: torch.Tensor, *local_views: torch.Tensor) -> torch.Tensor:
        global_views = torch.cat([view1, view2])
        student = list(self.head(self.encoder(global_views)).chunk(2))
        if local_views:  # one batch per resolution
            student += self.head(self.encoder(torch.cat(local_views))).chunk(len(local_views))
        with torch.no_grad():
            teacher = list(self.teacher_head(self.teacher_encoder(global_views)).chunk(2))
        return self.loss(student, teacher, float(self.teacher_temperature))

    @torch.no_grad()
    def update_target(self, momentum: float) -> None:
        ema_update(self.teacher_encoder, self.encoder, momentum)
        ema_update(self.teacher_head, self.head, momentum)

    def set_teacher_temperature(self, value: float) -> None:
        self.teacher_temperature.fill_(value)

    def drop_last_layer_grad(self) -> None:
        """Skip the prototypes' update this step: DINO freezes the last layer during the first epoch(s)
        (released code, ``--freeze_last_layer 1``), while the rest of the head learns to spread the images over
        the still-random prototypes; updating them from the start makes the early, near-uniform phase unstable."""
        self.head.last_layer.weight.grad = None


def build_method(method: str, encoder: ImageEncoder, *, hidden_dim: int | None = None, out_dim: int | None = None,
                 temperature: float | None = None, teacher_temperature: float | None = None,
                 head_batch_norm: bool = False) -> nn.Module:
    """The model for ``method`` with the paper's head sizes unless ``hidden_dim`` / ``out_dim`` are given.

    ``temperature`` is SimCLR's / MoCo v3's softmax temperature and DINO's student temperature;
    ``teacher_temperature`` is DINO's (starting) teacher temperature; ``head_batch_norm`` puts BatchNorm in the
    hidden layers of DINO's head (solo-learn's default for ResNets; the paper's ViT head has none).
    """
    if method not in PAPER_DIMS:
        raise ValueError(f"Unknown method {method!r}; expected one of {METHODS}.")
    if method == "rotnet":  # a rotation classifier, not a projector: out_dim is always the 4 rotations
        return RotNet(encoder, hidden_dim)
    paper_hidden, paper_out, layers, pred_hidden = PAPER_DIMS[method]
    hidden = hidden_dim or paper_hidden
    out = out_dim or paper_out
    if method == "simclr":
        return SimCLR(encoder, hidden, out, layers, temperature or 0.1)
    if method == "byol":
        return MomentumMethod(encoder, hidden, out, layers, hidden_dim or pred_hidden, BYOLLoss(), projector_last_bn=False)
    if method == "mocov3":
        return MomentumMethod(encoder, hidden, out, layers, hidden_dim or pred_hidden,
                              MoCoV3Loss(temperature or 0.2), projector_last_bn=True)
    if method == "dino":
        return DINO(encoder, hidden, out, layers, temperature or 0.1, teacher_temperature or 0.04, head_batch_norm)
    if method == "vicreg":
        return _TwoBranchRedundancy(encoder, hidden, out, layers, VICRegLoss())
    return _TwoBranchRedundancy(encoder, hidden, out, layers, BarlowTwinsLoss())
