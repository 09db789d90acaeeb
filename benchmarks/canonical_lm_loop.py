"""What the canonical transformers language-model loops (canonical_clm_loop.py, canonical_mlm_loop.py) share.

The examples' ``group_texts`` (token streams concatenated and cut into full blocks), the plain Accelerate training
loop timed from its first step to its last, and the ``all_results.json`` the throughput benchmarks read: steps,
tokens, runtime, tokens/s, the mean of the last 10 losses and the peak resident memory of the process. Written from
the descriptions of run_clm_no_trainer.py / run_mlm_no_trainer.py; it shares no code with hfssl's recipes.
"""

from __future__ import annotations

import json
import resource
import time
from itertools import chain
from pathlib import Path


def group_texts_fn(block: int):
    """``group_texts`` of the examples: every column concatenated and cut into blocks of ``block``, the rest dropped."""

    def group_texts(examples):
        joined = {k: list(chain(*examples[k])) for k in examples}
        total = len(joined["input_ids"]) // block * block
        return {k: [v[i : i + block] for i in range(0, total, block)] for k, v in joined.items()}

    return group_texts


def train_and_save(accelerator, model, optimizer, scheduler, loader, tokenizer, max_steps: int, output_dir: str) -> None:
    """Train for ``max_steps`` (gradients clipped to norm 1), then save model, tokenizer and ``all_results.json``."""
    model.train()
    step, tokens, losses = 0, 0, []
    start = time.perf_counter()
    while step < max_steps:
        for batch in loader:
            loss = model(**batch).loss
            accelerator.backward(loss)
            accelerator.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            tokens += batch["input_ids"].numel()
            losses.append(loss.item())
            step += 1
            if step >= max_steps:
                break
    runtime = time.perf_counter() - start

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    accelerator.unwrap_model(model).save_pretrained(out)
    tokenizer.save_pretrained(out)
    results = {"train_steps": step, "train_tokens": tokens, "train_runtime": runtime,
               "train_tokens_per_second": tokens / runtime, "train_loss": sum(losses[-10:]) / len(losses[-10:]),
               "peak_memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    (out / "all_results.json").write_text(json.dumps(results, indent=2))
