"""Where an MLM training step's time goes: the recipe's step (objective, bf16 autocast, fused AdamW, clipping) on
random tokens, timed for a few variants, and a profiler table of the heaviest GPU kernels.

    python benchmarks/mlm_step_profile.py                                  # BERT-base, seq 128, batch 256
    python benchmarks/mlm_step_profile.py --variants eager:0.1:256 compile:0:256 --profile eager:0.1:256

A variant is MODE:DROPOUT:BATCH[:dense] (MODE eager or compile; ``dense`` runs the vocabulary head on every
position instead of the masked ones only). No data loading, masking or logging is timed: the gap between these
numbers and the recipe's tokens/s is the loop's overhead. MFU is against the datasheet peak (hfssl.mlm.throughput)
and, with --measured_peak_tflops, against a measured one.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hfssl.mlm.objective import MaskedLMObjective, mlm_head  # noqa: E402
from hfssl.mlm.throughput import encoder_flops_per_token, gpu_peak_flops  # noqa: E402


def build(args, dropout: float, compile_: bool, sparse: bool, device: str):
    from transformers import BertConfig, BertForMaskedLM

    config = BertConfig(vocab_size=args.vocab_size, hidden_size=args.hidden_size, num_hidden_layers=args.layers,
                        num_attention_heads=args.hidden_size // 64, intermediate_size=4 * args.hidden_size,
                        hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout,
                        max_position_embeddings=args.seq_len)
    model = BertForMaskedLM(config).to(device)
    objective = MaskedLMObjective(model, sparse_prediction=sparse)
    if compile_:  # as recipes/mlm.py does
        for module in (model.base_model, mlm_head(model)) if sparse else (model,):
            module.compile()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device == "cuda")
    return model, objective, optimizer


def make_step(model, objective, optimizer, device: str):
    def step(inputs, labels):
        with torch.autocast(device, dtype=torch.bfloat16):
            loss = objective(inputs, labels, reduction="sum") / (labels != -100).sum().clamp(min=1)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss
    return step


def batches(args, batch: int, device: str, n: int = 4):
    g = torch.Generator(device="cpu").manual_seed(0)
    out = []
    for _ in range(n):
        ids = torch.randint(5, args.vocab_size, (batch, args.seq_len), generator=g)
        labels = torch.where(torch.rand(ids.shape, generator=g) < 0.15, ids, torch.full_like(ids, -100))
        out.append((ids.to(device), labels.to(device)))
    return out


def run_variant(args, spec: str, device: str, profile: bool = False) -> dict:
    mode, dropout, batch, *rest = spec.split(":")
    sparse = "dense" not in rest
    model, objective, optimizer = build(args, float(dropout), mode == "compile", sparse, device)
    step = make_step(model, objective, optimizer, device)
    data = batches(args, int(batch), device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    t0 = time.perf_counter()
    for i in range(args.warmup):
        step(*data[i % len(data)])
    sync()
    warm_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(args.steps):
        step(*data[i % len(data)])
    sync()
    seconds = (time.perf_counter() - t0) / args.steps
    tps = int(batch) * args.seq_len / seconds
    flops = encoder_flops_per_token(model.config, args.seq_len)
    peak = gpu_peak_flops(torch.cuda.get_device_name()) if device == "cuda" else None
    result = {"variant": spec, "ms_per_step": round(seconds * 1e3, 2), "tokens_per_second": round(tps),
              "warmup_s": round(warm_s, 1)}
    if peak:
        result["mfu_datasheet"] = round(tps * flops / peak, 4)
    if args.measured_peak_tflops:
        result["mfu_measured_peak"] = round(tps * flops / (args.measured_peak_tflops * 1e12), 4)
    if device == "cuda":
        result["peak_memory_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 1)
    print(json.dumps(result), flush=True)
    if profile:
        from torch.profiler import ProfilerActivity, profile as torch_profile

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
        with torch_profile(activities=activities) as prof:
            for i in range(5):
                step(*data[i % len(data)])
            sync()
        key = "cuda_time_total" if device == "cuda" else "cpu_time_total"
        print(prof.key_averages().table(sort_by=key, row_limit=args.profile_rows, max_name_column_width=70), flush=True)
    del model, objective, optimizer, step, data
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", nargs="+", default=["eager:0.1:256", "eager:0:256", "eager:0:512", "eager:0.1:256:dense",
                                                     "compile:0:256"])
    p.add_argument("--profile", nargs="*", default=["eager:0.1:256"], help="Variants to profile (5 steps each).")
    p.add_argument("--hidden_size", type=int, default=768)
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--vocab_size", type=int, default=30522)
    p.add_argument("--seq_len", type=int, default=128)
    p.add_argument("--warmup", type=int, default=8)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--profile_rows", type=int, default=25)
    p.add_argument("--measured_peak_tflops", type=float, default=None)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.backends.cuda.matmul.allow_tf32 = True
    results = [run_variant(args, spec, device) for spec in args.variants]
    for spec in args.profile:
        run_variant(args, spec, device, profile=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
