"""Model FLOPs per trained token of a decoder, for MFU (PaLM's definition, Chowdhery et al. 2022, appendix B).

The matrix-multiply parameters are counted from the model itself (every ``nn.Linear`` and GPT-2 ``Conv1D``,
including the output projection onto the vocabulary even when its weight is tied to the input embeddings, which
cost no FLOPs as lookups), so the count is right for GPT-2, Llama-style gated MLPs or any other decoder.
"""

from __future__ import annotations

from torch import nn


def decoder_flops_per_token(model: nn.Module, seq_len: int) -> float:
    """Training FLOPs per token: 6 x matmul parameters (forward + backward) plus 12 x layers x seq x hidden for
    the attention scores and their weighted sum (counted over the full square, as PaLM does)."""
    matmul_params = sum(m.weight.numel() for m in model.modules()
                        if isinstance(m, nn.Linear) or type(m).__name__ == "Conv1D")
    config = model.config
    return 6 * matmul_params + 12 * config.num_hidden_layers * seq_len * config.hidden_size
