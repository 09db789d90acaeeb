"""Paired throughput runs of hfssl's language-model recipes against their canonical transformers peers.

Used by ``clm_throughput.py`` and ``mlm_throughput.py``. Each pair runs both trainers one after the other as fresh
processes, alternating which goes first so that drift in machine load hits both alike; the ratio is taken per pair
and the median over pairs reported, with each final model's held-out loss scored by the same code for both. Both
trainers get the same model sizes, batch, sequence length, steps and tokenizer (:func:`model_flags`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
from pathlib import Path
from typing import Callable

import torch

ROOT = Path(__file__).resolve().parent.parent


def hardware() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    model = platform.machine()
    try:
        model = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{os.cpu_count()} CPU cores ({model})"


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """The flags both trainers of a pair receive alike (see :func:`model_flags`)."""
    p.add_argument("--max_steps", type=int, default=150)
    p.add_argument("--per_device_train_batch_size", type=int, default=32)
    p.add_argument("--max_seq_length", type=int, default=128)
    p.add_argument("--hidden_size", type=int, default=256)
    p.add_argument("--num_hidden_layers", type=int, default=4)
    p.add_argument("--num_attention_heads", type=int, default=4)
    p.add_argument("--intermediate_size", type=int, default=1024)
    p.add_argument("--vocab_size", type=int, default=8192)


def model_flags(args: argparse.Namespace, tokenizer_dir: Path) -> list[str]:
    """Command-line flags that give both trainers the same tokenizer, model, batch, sequence length and steps."""
    return ["--tokenizer_name", str(tokenizer_dir), "--max_steps", str(args.max_steps),
            "--per_device_train_batch_size", str(args.per_device_train_batch_size),
            "--max_seq_length", str(args.max_seq_length), "--hidden_size", str(args.hidden_size),
            "--num_hidden_layers", str(args.num_hidden_layers), "--num_attention_heads", str(args.num_attention_heads),
            "--intermediate_size", str(args.intermediate_size)]


def run_pairs(commands: dict[str, list[str]], pairs: int, out: Path,
              held_out_loss: Callable[[Path], float]) -> list[dict]:
    """Run ``commands["hfssl"]`` and ``commands["transformers"]`` ``pairs`` times each, alternating which goes first.

    Each run writes ``all_results.json`` into ``out/<name>-<pair>``; its entries, with the trainer, the pair and
    ``held_out_loss(run_dir)`` added, make one row of the returned list.
    """
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    runs: list[dict] = []
    for pair in range(pairs):
        order = ["hfssl", "transformers"] if pair % 2 == 0 else ["transformers", "hfssl"]
        for name in order:
            run_dir = out / f"{name}-{pair}"
            subprocess.run([*commands[name], "--output_dir", str(run_dir)], check=True, env=env, cwd=ROOT,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            result = json.loads((run_dir / "all_results.json").read_text())
            result.update(trainer=name, pair=pair, heldout_loss=held_out_loss(run_dir))
            runs.append(result)
            print(f"pair {pair} {name:12s} {result['train_tokens_per_second']:9.0f} tokens/s  "
                  f"held-out loss {result['heldout_loss']:.4f}  peak {result['peak_memory_mb']:.0f} MB", flush=True)
    return runs


def summarize(runs: list[dict], header: dict) -> dict:
    """``header`` (date, hardware, command, model...) followed by per-trainer medians and the per-pair ratios."""
    names = ("hfssl", "transformers")

    def of(name, key):
        return [r[key] for r in runs if r["trainer"] == name]

    ratios = [a / b for a, b in zip(of("hfssl", "train_tokens_per_second"), of("transformers", "train_tokens_per_second"))]
    summary = {
        **header,
        "tokens_per_second": {n: statistics.median(of(n, "train_tokens_per_second")) for n in names},
        "ratio_median": statistics.median(ratios), "ratios": ratios,
        "heldout_loss": {n: statistics.median(of(n, "heldout_loss")) for n in names},
        "peak_memory_mb": {n: statistics.median(of(n, "peak_memory_mb")) for n in names},
        "runs": runs,
    }
    summary["loss_ratio"] = summary["heldout_loss"]["hfssl"] / summary["heldout_loss"]["transformers"]
    return summary


def results_row(summary: dict, peer: str, loss_name: str, loss_note: str = "") -> str:
    """The benchmarks/RESULTS.md row of a summary; ``loss_note`` is appended inside the loss parenthesis."""
    tps, loss, mem = summary["tokens_per_second"], summary["heldout_loss"], summary["peak_memory_mb"]
    return (f"| {summary['command']} | {summary['date']} | {summary['hardware']} | {peer} | "
            f"{tps['hfssl']:,.0f} vs {tps['transformers']:,.0f} tokens/s: **{summary['ratio_median']:.2f}x** "
            f"(pairs {', '.join(f'{r:.2f}' for r in summary['ratios'])}); {loss_name} {loss['hfssl']:.3f} vs "
            f"{loss['transformers']:.3f} ({(summary['loss_ratio'] - 1) * 100:+.1f}%{loss_note}); peak RSS "
            f"{mem['hfssl']:.0f} vs {mem['transformers']:.0f} MB | {summary['model']} |")
