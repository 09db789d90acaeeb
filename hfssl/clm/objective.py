"""The causal language-modelling objective: predict every token from the ones before it.

Radford et al. 2018 ("Improving Language Understanding by Generative Pre-Training", eq. 1) and 2019 (GPT-2)
maximise ``sum_i log P(u_i | u_1 .. u_{i-1})``: the model reads positions ``0 .. T-2`` and is scored on the
tokens at ``1 .. T-1``. The cross-entropy is computed in float32 even under bf16 autocast (a log-sum-exp over
the vocabulary loses precision in bf16), and can be returned per row so evaluation is exactly token-weighted
across processes.

The objective is an ``nn.Module`` so that Accelerate can wrap it (DDP/FSDP hooks fire on its ``forward``); the
wrapped model is a standard ``*ForCausalLM`` and is saved unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel

IGNORE_INDEX = -100


class CausalLMObjective(nn.Module):
    """Mean next-token cross-entropy of ``model`` (a ``*ForCausalLM``) over the positions that have a next token."""

    def __init__(self, model: PreTrainedModel):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                reduction: str = "mean") -> torch.Tensor:
        """``reduction="mean"``: mean over predicted tokens. ``"sum"``: their sum. ``"sum_per_row"``: ``[batch, 2]``
        of (loss sum, predicted-token count) per example. Padded positions (``attention_mask == 0``) are not
        predicted."""
        logits = self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits[:, :-1]
        targets = input_ids[:, 1:]
        if attention_mask is not None:
            targets = targets.masked_fill(attention_mask[:, 1:] == 0, IGNORE_INDEX)
        per_token = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX,
                                    reduction="none").view_as(targets)
        counted = targets != IGNORE_INDEX
        if reduction == "mean":
            return per_token.sum() / counted.sum().clamp(min=1)
        if reduction == "sum":
            return per_token.sum()
        if reduction == "sum_per_row":
            return torch.stack([per_token.sum(dim=1), counted.sum(dim=1).float()], dim=1)
        raise ValueError(f"reduction must be mean, sum or sum_per_row, got {reduction!r}.")
