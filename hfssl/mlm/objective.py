"""The masked-LM training objective, with optional sparse prediction.

With ~15% of positions masked, a dense MLM head spends ~85% of its vocabulary projection on positions that have no
label. Sparse prediction (used by MosaicBERT and the Cramming BERT of Geiping & Goldstein, 2023) runs the encoder
on every position but the head only on the masked ones; the loss is identical, and for a small BERT with a 30k
vocabulary the head is a large share of all FLOPs. The wrapped model is a standard ``BertForMaskedLM`` /
``RobertaForMaskedLM``, so what is saved loads unchanged with ``AutoModelForMaskedLM``.

The objective is an ``nn.Module`` so that Accelerate can wrap it (DDP/FSDP hooks fire on its ``forward``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel

from .masking import IGNORE_INDEX


def mlm_head(model: PreTrainedModel) -> nn.Module:
    """The module mapping encoder states to vocabulary logits (``cls`` for BERT, ``lm_head`` for RoBERTa)."""
    for name in ("cls", "lm_head"):
        head = getattr(model, name, None)
        if isinstance(head, nn.Module):
            return head
    raise ValueError(f"{type(model).__name__} has no cls/lm_head module; use --sparse_prediction false.")


class MaskedLMObjective(nn.Module):
    """Mean cross-entropy over masked positions of ``model`` (a ``*ForMaskedLM``)."""

    def __init__(self, model: PreTrainedModel, sparse_prediction: bool = True):
        super().__init__()
        self.model = model
        self.sparse_prediction = sparse_prediction
        if sparse_prediction:
            mlm_head(model)  # fail at construction, not at the first step

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor, attention_mask: torch.Tensor | None = None,
                reduction: str = "mean", capacity: int | None = None) -> torch.Tensor:
        """``reduction="mean"``: mean over masked positions. ``"sum"``: their sum, for the caller to normalise by the
        global batch's count. ``"sum_per_row"``: ``[batch, 2]`` of (loss sum, masked count) per example, for exact
        token-weighted evaluation across processes.

        ``capacity`` (sparse prediction only): run the head on this many positions, the masked ones first, instead
        of exactly the masked ones. Selecting by a boolean mask needs the count on the host, which stalls a GPU in
        mid-step and gives ``torch.compile`` a new shape every step; a fixed capacity does neither. The caller
        guarantees no more than ``capacity`` labels (``mask_tokens(max_selected=...)``); the extra rows carry no
        label and add nothing to the loss."""
        if self.sparse_prediction:
            hidden = self.model.base_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            if capacity is None:
                selected = labels != IGNORE_INDEX
                logits = mlm_head(self.model)(hidden[selected])
                targets = labels[selected]
                rows = selected.nonzero()[:, 0] if reduction == "sum_per_row" else None  # nonzero syncs
            else:
                flat = labels.flatten()
                # A stable sort puts the labelled positions first, in order, without reading their count.
                order = torch.sort((flat == IGNORE_INDEX).to(torch.uint8), stable=True).indices[:capacity]
                logits = mlm_head(self.model)(hidden.flatten(0, 1)[order])
                targets = flat[order]
                rows = order // labels.shape[1]
        else:
            logits = self.model(input_ids=input_ids, attention_mask=attention_mask).logits
            logits, targets = logits.flatten(0, 1), labels.flatten()
            rows = torch.arange(labels.shape[0], device=labels.device).repeat_interleave(labels.shape[1])
        # Cross-entropy in float32: in bf16 the log-sum-exp over the vocabulary loses precision.
        per_token = F.cross_entropy(logits.float(), targets, ignore_index=IGNORE_INDEX, reduction="none")
        if reduction == "mean":
            n = (targets != IGNORE_INDEX).sum().clamp(min=1)
            return per_token.sum() / n
        if reduction == "sum":
            return per_token.sum()
        sums = torch.zeros(labels.shape[0], 2, device=labels.device)
        sums[:, 0].index_add_(0, rows, per_token)
        sums[:, 1].index_add_(0, rows, (targets != IGNORE_INDEX).float())
        return sums
