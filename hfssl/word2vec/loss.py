"""Skip-gram / CBOW negative-sampling loss (Mikolov et al. 2013, "Distributed Representations of Words and
Phrases and their Compositionality", eq. 4), in the batched form the update step uses.

For each input vector ``v`` (skip-gram: a context word's vector; CBOW: the mean of the window's context
vectors) with its centre word's output vector ``u_0`` and ``K`` negatives' output vectors ``u_k``::

    loss(v) = -log σ(v · u_0) - sum_k log σ(-v · u_k)

summed over all real (non-padding) inputs. Training never calls this module's backward: ``update.py``
applies its gradient in closed form, and the tests check that closed form against autograd on this module.
It is also the readable definition of what the recipe's logged ``train/loss`` measures.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class NegativeSamplingLoss(nn.Module):
    """Summed SGNS loss for ``N`` windows, each with its own ``K`` negatives shared by its ``C`` inputs.

    Args (forward):
        inputs: ``[N, C, d]`` input vectors (``C = 1`` for CBOW's mean vector).
        centers: ``[N, d]`` output vectors of each window's centre word.
        negatives: ``[N, K, d]`` output vectors of each window's negatives.
        valid: ``[N, C]`` 1 for real inputs, 0 for padding (optional).
        negative_ok: ``[N, K]`` 0 where a negative equals the window's centre word and is skipped (optional).
    """

    def forward(self, inputs: torch.Tensor, centers: torch.Tensor, negatives: torch.Tensor,
                valid: torch.Tensor | None = None, negative_ok: torch.Tensor | None = None) -> torch.Tensor:
        pos = (inputs * centers.unsqueeze(1)).sum(-1)  # [N, C]
        neg = torch.einsum("ncd,nkd->nck", inputs, negatives)  # [N, C, K]
        terms = -F.logsigmoid(pos)
        neg_terms = -F.logsigmoid(-neg)
        if negative_ok is not None:
            neg_terms = neg_terms * negative_ok.unsqueeze(1)
        terms = terms + neg_terms.sum(-1)
        if valid is not None:
            terms = terms * valid
        return terms.sum()
