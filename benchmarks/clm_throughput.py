"""hfssl's causal-LM recipe against the canonical transformers loop: same GPT-2, batch, sequence length, tokenizer,
optimiser settings and text.

    python benchmarks/clm_throughput.py                      # 3 paired runs, offline default model, Python docs
    python benchmarks/clm_throughput.py --peer_flags "--mixed_precision bf16"   # both in bf16 autocast
    python benchmarks/clm_throughput.py --corpus bible --pairs 5 --max_steps 200

Each pair runs both trainers one after the other as fresh processes (alternating which goes first, so drift in
machine load hits both alike) and the ratio is taken per pair; the median over pairs is reported. Both final models
are then scored by the same held-out next-token loss on the same packed validation blocks, so "quality at equal
steps" is compared like for like. Results go to stdout as a RESULTS.md row and to benchmarks/out/clm_throughput.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from mlm_throughput import hardware  # noqa: E402

from hfssl.clm.objective import CausalLMObjective  # noqa: E402
from hfssl.data.offline_corpus import bible_corpus, python_docs_corpus  # noqa: E402
from hfssl.data.packing import pack_fn  # noqa: E402
from hfssl.data.tokenizer_training import train_tokenizer  # noqa: E402


def held_out_loss(model_dir: Path, blocks: list[list[int]], batch_size: int = 64) -> float:
    """Token-weighted next-token loss of a saved model on fixed validation blocks (fp32, no dropout)."""
    from transformers import AutoModelForCausalLM

    objective = CausalLMObjective(AutoModelForCausalLM.from_pretrained(model_dir).eval())
    total = torch.zeros(2)
    with torch.no_grad():
        for i in range(0, len(blocks), batch_size):
            total += objective(torch.tensor(blocks[i : i + batch_size]), reduction="sum_per_row").sum(dim=0)
    return (total[0] / total[1]).item()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", choices=["python-docs", "bible"], default="python-docs")
    p.add_argument("--pairs", type=int, default=3)
    p.add_argument("--max_steps", type=int, default=150)
    p.add_argument("--per_device_train_batch_size", type=int, default=32)
    p.add_argument("--max_seq_length", type=int, default=128)
    p.add_argument("--hidden_size", type=int, default=256)
    p.add_argument("--num_hidden_layers", type=int, default=4)
    p.add_argument("--num_attention_heads", type=int, default=4)
    p.add_argument("--intermediate_size", type=int, default=1024)
    p.add_argument("--vocab_size", type=int, default=8192)
    p.add_argument("--ours_flags", default="", help="Extra flags for recipes/clm.py, e.g. '--mixed_precision no'.")
    p.add_argument("--peer_flags", default="", help="Extra flags for the canonical loop, e.g. '--mixed_precision bf16'.")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "out" / "clm"))
    args = p.parse_args()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    corpus = python_docs_corpus() if args.corpus == "python-docs" else bible_corpus()
    lines = [line for line in corpus.read_text(encoding="utf-8").splitlines() if line.strip()]
    n_val = len(lines) // 20  # the tail, as the recipe holds out by default
    train_file = out / "train.txt"
    train_file.write_text("\n".join(lines[:-n_val]) + "\n", encoding="utf-8")
    tokenizer = train_tokenizer("gpt2", lines[:-n_val], args.vocab_size)  # one tokenizer shared by both trainers
    tok_dir = out / "tokenizer"
    tokenizer.save_pretrained(tok_dir)
    eval_blocks = pack_fn(tokenizer, "text", args.max_seq_length, separator_id=tokenizer.eos_token_id)(
        {"text": lines[-n_val:]})["input_ids"]

    shared = ["--tokenizer_name", str(tok_dir), "--max_steps", str(args.max_steps),
              "--per_device_train_batch_size", str(args.per_device_train_batch_size),
              "--max_seq_length", str(args.max_seq_length), "--hidden_size", str(args.hidden_size),
              "--num_hidden_layers", str(args.num_hidden_layers), "--num_attention_heads", str(args.num_attention_heads),
              "--intermediate_size", str(args.intermediate_size)]
    # The recipe's optimiser defaults (AdamW beta2 0.95, weight decay 0.1, cosine, 5% warmup, LR 1e-3) are the
    # canonical loop's defaults too; only precision differs unless --peer_flags/--ours_flags say otherwise.
    commands = {
        "hfssl": [sys.executable, str(ROOT / "recipes" / "clm.py"), "--train_file", str(train_file),
                  "--validation_split_percentage", "0", "--eval_steps", "0", "--report_to", "none",
                  "--sample_prompt", "", "--overwrite_output_dir", *shared, *args.ours_flags.split()],
        "transformers": [sys.executable, str(ROOT / "benchmarks" / "canonical_clm_loop.py"), "--train_file",
                         str(train_file), *shared, *args.peer_flags.split()],
    }
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    runs: list[dict] = []
    for pair in range(args.pairs):
        order = ["hfssl", "transformers"] if pair % 2 == 0 else ["transformers", "hfssl"]
        for name in order:
            run_dir = out / f"{name}-{pair}"
            subprocess.run([*commands[name], "--output_dir", str(run_dir)], check=True, env=env, cwd=ROOT,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            result = json.loads((run_dir / "all_results.json").read_text())
            result.update(trainer=name, pair=pair, heldout_loss=held_out_loss(run_dir, eval_blocks))
            runs.append(result)
            print(f"pair {pair} {name:12s} {result['train_tokens_per_second']:9.0f} tokens/s  "
                  f"held-out loss {result['heldout_loss']:.4f}  peak {result['peak_memory_mb']:.0f} MB", flush=True)

    def of(name, key):
        return [r[key] for r in runs if r["trainer"] == name]

    ratios = [a / b for a, b in zip(of("hfssl", "train_tokens_per_second"), of("transformers", "train_tokens_per_second"))]
    summary = {
        "date": datetime.date.today().isoformat(), "hardware": hardware(), "corpus": args.corpus,
        "command": "python benchmarks/clm_throughput.py " + " ".join(sys.argv[1:]),
        "model": f"GPT-2 {args.num_hidden_layers}x{args.hidden_size}, vocab {len(tokenizer)}, seq {args.max_seq_length}, "
                 f"batch {args.per_device_train_batch_size}, {args.max_steps} steps, {len(eval_blocks)} held-out blocks",
        "tokens_per_second": {n: statistics.median(of(n, "train_tokens_per_second")) for n in commands},
        "ratio_median": statistics.median(ratios), "ratios": ratios,
        "heldout_loss": {n: statistics.median(of(n, "heldout_loss")) for n in commands},
        "peak_memory_mb": {n: statistics.median(of(n, "peak_memory_mb")) for n in commands},
        "runs": runs,
    }
    summary["loss_ratio"] = summary["heldout_loss"]["hfssl"] / summary["heldout_loss"]["transformers"]
    (out.parent / "clm_throughput.json").write_text(json.dumps(summary, indent=2))
    tps, loss, mem = summary["tokens_per_second"], summary["heldout_loss"], summary["peak_memory_mb"]
    print(f"\n| {summary['command']} | {summary['date']} | {summary['hardware']} | transformers causal-LM loop | "
          f"{tps['hfssl']:,.0f} vs {tps['transformers']:,.0f} tokens/s: **{summary['ratio_median']:.2f}x** "
          f"(pairs {', '.join(f'{r:.2f}' for r in ratios)}); held-out loss {loss['hfssl']:.3f} vs "
          f"{loss['transformers']:.3f} ({(summary['loss_ratio'] - 1) * 100:+.1f}%, perplexity "
          f"{torch.tensor(loss['hfssl']).exp():.1f} vs {torch.tensor(loss['transformers']).exp():.1f}); peak RSS "
          f"{mem['hfssl']:.0f} vs {mem['transformers']:.0f} MB | {summary['model']} |")


if __name__ == "__main__":
    main()
