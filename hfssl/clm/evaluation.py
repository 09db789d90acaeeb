"""Held-out next-token loss and perplexity, token-weighted and identical whatever the number of processes.

Perplexity is ``exp`` of the mean per-token cross-entropy over every predicted token of the validation blocks
(not the mean of per-batch perplexities), in the model's own tokens: numbers from different tokenizers are not
comparable.
"""

from __future__ import annotations

import math

import torch


@torch.no_grad()
def evaluate_clm(objective, dataloader, accelerator) -> dict[str, float]:
    """Token-weighted causal-LM loss over ``dataloader``, gathered across processes."""
    objective.eval()
    total = torch.zeros(2, device=accelerator.device)
    for batch in dataloader:
        with accelerator.autocast():
            per_row = objective(batch["input_ids"], attention_mask=batch.get("attention_mask"), reduction="sum_per_row")
        # gather_for_metrics drops the samples Accelerate duplicated to even out the last batch.
        total += accelerator.gather_for_metrics(per_row).sum(dim=0)
    objective.train()
    loss = (total[0] / total[1].clamp(min=1)).item()
    return {"eval_loss": loss, "perplexity": math.exp(min(loss, 50.0)), "eval_tokens": int(total[1].item())}
