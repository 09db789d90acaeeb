"""Dropout that is cheap on CPUs: the same Bernoulli masks, drawn 16 bits per element from 64-bit draws.

PyTorch's CPU dropout (``bernoulli_``) draws one random number per element, and with attention dropout on, SDPA
falls back to its unfused math path. In a BERT 4x256 MLM step at batch 32 (bf16 autocast, 2 cores) the
``bernoulli_`` calls alone took 26% of the step (profiled with ``benchmarks/mlm_step_profile.py``). Here one 64-bit
draw gives four elements their 16-bit uniforms, and an element is kept when its uniform is at least ``p``: a
Bernoulli(1 - p) mask with ``p`` rounded to a multiple of 1/65536 (0.1 becomes 0.100006), scaled by 1 / (1 - p) as
``nn.Dropout`` does. Masks come from the global torch generator, so seeding and resuming replay them.

:func:`use_fast_dropout` swaps a model's ``nn.Dropout`` modules for :class:`FastDropout` and, for models that take
their attention function from transformers' ``AttentionInterface`` (BERT, RoBERTa, GPT-2...), points it at
:func:`attention_forward`: while training with dropout it computes attention as ``eager_attention_forward`` does
with the cheap masks; otherwise (evaluation, no dropout, masks or biases it does not handle) it is transformers'
SDPA path unchanged. Only in-memory modules change: the saved config and weights are those of the plain model.
On GPUs dropout is fused into the kernels already; the recipes use this on CPU only.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

ATTENTION = "hfssl_fast_dropout"
_LEVELS = 1 << 16


def keep_mask(shape: torch.Size | tuple[int, ...], p: float, device: torch.device | str = "cpu") -> torch.Tensor:
    """A boolean mask of ``shape``: each element True (kept) with probability 1 - p, independently."""
    n = math.prod(shape)
    # random_(from, to) covers [from, to): all 64 bits random (to is 2**63 - 1, so one of 2**64 values never comes).
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=device).random_(-(1 << 63), (1 << 63) - 1)
    uniforms = words.view(torch.int16)[:n].view(shape)  # each in [-32768, 32767], uniform
    return uniforms >= round(p * _LEVELS) - (_LEVELS >> 1)


def apply_dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """``F.dropout(x, p, training)`` with the mask from :func:`keep_mask`."""
    if not training or p == 0.0:
        return x
    if p == 1.0:
        return x * 0.0
    # One multiply by a ready-scaled mask in x's dtype: half the time of x * mask * scale (forward and backward).
    return x * keep_mask(x.shape, p, x.device).to(x.dtype).mul_(1.0 / (1.0 - p))


class FastDropout(nn.Dropout):
    """An ``nn.Dropout`` (same ``p`` and arguments, no state) whose mask comes from :func:`keep_mask`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return apply_dropout(x, self.p, self.training)


def attention_forward(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                      attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                      is_causal: bool | None = None, **kwargs) -> tuple[torch.Tensor, None]:
    """transformers attention function: softmax(q k^T * scale + mask), cheap dropout, times v.

    Masks arrive in SDPA's format (``sdpa_mask``: boolean, True = attend, or None). Anything beyond plain multi-head
    attention (grouped KV heads, position biases, soft-capping) goes to transformers' SDPA path as it is.
    """
    plain = (getattr(module, "num_key_value_groups", 1) == 1 and kwargs.get("position_bias") is None
             and kwargs.get("softcap") is None)
    if dropout == 0.0 or not module.training or not plain:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    if scaling is None:
        scaling = query.size(-1) ** -0.5
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling
    q_length, kv_length = query.shape[2], key.shape[2]
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    if attention_mask is None and causal and q_length > 1:  # as SDPA's is_causal (top-left aligned)
        attention_mask = torch.ones(q_length, kv_length, dtype=torch.bool, device=query.device).tril()
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
        else:
            scores = scores + attention_mask
    weights = F.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    output = torch.matmul(apply_dropout(weights, dropout), value)
    return output.transpose(1, 2).contiguous(), None


AttentionInterface.register(ATTENTION, attention_forward)
AttentionMaskInterface.register(ATTENTION, sdpa_mask)


def use_fast_dropout(model: nn.Module) -> int:
    """Swap every ``nn.Dropout`` in ``model`` for :class:`FastDropout` and route its attention through
    :func:`attention_forward` when it uses transformers' SDPA or eager attention; returns the modules swapped."""
    swapped = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Dropout:
                setattr(parent, name, FastDropout(child.p, child.inplace))
                swapped += 1
    config = getattr(model, "config", None)
    if getattr(config, "_attn_implementation", None) in ("sdpa", "eager") and hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation(ATTENTION)
    return swapped


__all__ = ["ATTENTION", "FastDropout", "apply_dropout", "attention_forward", "keep_mask", "use_fast_dropout"]
