"""RotNet: learn image features by predicting which of four rotations was applied to an image.

Gidaris, Singh and Komodakis, "Unsupervised Representation Learning by Predicting Image Rotations", ICLR 2018.
Every image ``x`` of a batch is fed four times, as ``rot(x, 0)``, ``rot(x, 90)``, ``rot(x, 180)`` and
``rot(x, 270)`` (the paper's sec. 3 and 4.1: all four rotations of an image in the same mini-batch work better than
one random rotation per image), and a classifier on the encoder's feature predicts the rotation index ``y`` in
{0, 1, 2, 3} with cross-entropy, averaged over the ``4 B`` rotated images (the paper's eq. 1-2). Recognising
"upright" needs the encoder to know where the object's parts are and how they are oriented, which is the
representation kNN and linear probes then measure.

The classifier is linear on the pooled feature by default (``hidden_dim=None``); a hidden size gives a 2-layer
MLP (Linear-BN-ReLU-Linear), closer to the paper's setting where the rotation head sits on top of extra
convolutional blocks. Rotations are exact (``torch.rot90``: no resampling), so square images only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .encoder import ImageEncoder
from .heads import MLPHead

NUM_ROTATIONS = 4

# Model-card text (the image-encoder template's {objective} and {limitations}) of an encoder trained with RotNet.
CARD_TEXT = {
    "objective": "every image was shown rotated by 0, 90, 180 and 270 degrees and the encoder, with a linear "
                 "classifier on top, learned to tell which rotation it saw (RotNet, Gidaris et al. 2018)",
    "limitations": "Rotation prediction makes the features depend on orientation by design, and it is only a "
                   "meaningful task on images with a canonical 'up' (objects, digits; not textures or aerial "
                   "views). It is usually weaker than contrastive methods under kNN and linear probing.",
}


def rotate_four_ways(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, C, H, W) -> the four rotations (4B, C, H, W) and their labels (4B,).

    Rotation ``k`` (``k * 90`` degrees counter-clockwise) of image ``i`` is row ``k * B + i`` with label ``k``.
    """
    if images.ndim != 4 or images.shape[-1] != images.shape[-2]:
        raise ValueError(f"rotate_four_ways needs a (B, C, H, W) batch of square images, got {tuple(images.shape)}.")
    rotated = torch.cat([torch.rot90(images, k, dims=(2, 3)) for k in range(NUM_ROTATIONS)])
    labels = torch.arange(NUM_ROTATIONS, device=images.device).repeat_interleave(images.shape[0])
    return rotated, labels


class RotNet(nn.Module):
    """Encoder + rotation classifier; ``model(view)`` returns the mean cross-entropy over the 4 rotations.

    ``model(view1, view2)`` (the two-view call of the contrastive methods) rotates both views: 8 B images.
    """

    def __init__(self, encoder: ImageEncoder, hidden_dim: int | None = None) -> None:
        super().__init__()
        self.encoder = encoder
        self.classifier = (nn.Linear(encoder.dim, NUM_ROTATIONS) if not hidden_dim
                           else MLPHead(encoder.dim, hidden_dim, NUM_ROTATIONS, num_layers=2))

    def logits_and_labels(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rotated, labels = rotate_four_ways(images)
        return self.classifier(self.encoder(rotated)), labels

    def forward(self, view1: torch.Tensor, view2: torch.Tensor | None = None) -> torch.Tensor:
        images = view1 if view2 is None else torch.cat([view1, view2])
        logits, labels = self.logits_and_labels(images)
        return F.cross_entropy(logits.float(), labels)
