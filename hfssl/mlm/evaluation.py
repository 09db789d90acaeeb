"""Held-out masked-LM loss and perplexity, token-weighted and identical whatever the number of processes.

The validation set is masked once, before training, with a generator seeded by each example's index: successive
evaluations, resumed runs and runs on any number of processes all score exactly the same positions, so their
losses are comparable.
"""

from __future__ import annotations

import math

import torch

from .masking import mask_tokens

EVAL_SEED_OFFSET = 7_777_777


def premask_fn(*, seed: int, mask_prob: float, mask_token_id: int, vocab_size: int, special: torch.Tensor,
               word_start: torch.Tensor | None = None):
    """A ``datasets.map(batched=True, with_indices=True)`` function adding fixed masked inputs and labels."""

    def premask(batch: dict, indices: list[int]) -> dict:
        inputs, labels = [], []
        for ids, index in zip(batch["input_ids"], indices):
            generator = torch.Generator().manual_seed(seed + EVAL_SEED_OFFSET + index)
            masked, target = mask_tokens(torch.tensor([ids]), mask_prob=mask_prob, mask_token_id=mask_token_id,
                                         vocab_size=vocab_size, special=special, generator=generator, word_start=word_start)
            inputs.append(masked[0].tolist())
            labels.append(target[0].tolist())
        return {"input_ids": inputs, "labels": labels}

    return premask


@torch.no_grad()
def evaluate_mlm(objective, dataloader, accelerator) -> dict[str, float]:
    """Token-weighted masked-LM loss over a premasked dataloader, gathered across processes."""
    objective.eval()
    total = torch.zeros(2, device=accelerator.device)
    for batch in dataloader:
        with accelerator.autocast():
            per_row = objective(batch["input_ids"], batch["labels"], attention_mask=batch.get("attention_mask"),
                                reduction="sum_per_row")
        # gather_for_metrics drops the samples Accelerate duplicated to even out the last batch.
        total += accelerator.gather_for_metrics(per_row).sum(dim=0)
    objective.train()
    loss = (total[0] / total[1].clamp(min=1)).item()
    return {"eval_loss": loss, "perplexity": math.exp(min(loss, 50.0)), "eval_masked_tokens": int(total[1].item())}
