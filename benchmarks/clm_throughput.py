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
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from pairing import add_model_arguments, hardware, model_flags, results_row, run_pairs, summarize  # noqa: E402

from hfssl.clm.objective import CausalLMObjective  # noqa: E402
from hfssl.data.offline_corpus import bible_corpus, python_docs_corpus  # noqa: E402
from hfssl.data.packing import pack_fn  # noqa: E402
from hfssl.data.tokenizer_training import train_tokenizer  # noqa: E402


def held_out_loss(model_dir: Path, blocks: list[list[int]], batch_size: int = 64) -> float:
    """Token-weighted next-token loss of a saved model on fixed validation blocks (fp32, no dropout)."""
    from transformers import AutoModelForCausalLM

    objective = CausalLMObjective(AutoModelForCausalLM.from_pretrained(model_dir, use_safetensors=True).eval())
    total = torch.zeros(2)
    with torch.no_grad():
        for i in range(0, len(blocks), batch_size):
            total += objective(torch.tensor(blocks[i : i + batch_size]), reduction="sum_per_row").sum(dim=0)
    return (total[0] / total[1]).item()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", choices=["python-docs", "bible"], default="python-docs")
    p.add_argument("--pairs", type=int, default=3)
    add_model_arguments(p)
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

    shared = model_flags(args, tok_dir)
    # The recipe's optimiser defaults (AdamW beta2 0.95, weight decay 0.1, cosine, 5% warmup, LR 1e-3) are the
    # canonical loop's defaults too; only precision differs unless --peer_flags/--ours_flags say otherwise.
    commands = {
        "hfssl": [sys.executable, str(ROOT / "recipes" / "clm.py"), "--train_file", str(train_file),
                  "--validation_split_percentage", "0", "--eval_steps", "0", "--report_to", "none",
                  "--sample_prompt", "", "--overwrite_output_dir", *shared, *args.ours_flags.split()],
        "transformers": [sys.executable, str(ROOT / "benchmarks" / "canonical_clm_loop.py"), "--train_file",
                         str(train_file), *shared, *args.peer_flags.split()],
    }
    runs = run_pairs(commands, args.pairs, out, lambda run_dir: held_out_loss(run_dir, eval_blocks))
    summary = summarize(runs, {
        "date": datetime.date.today().isoformat(), "hardware": hardware(), "corpus": args.corpus,
        "command": "python benchmarks/clm_throughput.py " + " ".join(sys.argv[1:]),
        "model": f"GPT-2 {args.num_hidden_layers}x{args.hidden_size}, vocab {len(tokenizer)}, seq {args.max_seq_length}, "
                 f"batch {args.per_device_train_batch_size}, {args.max_steps} steps, {len(eval_blocks)} held-out blocks",
    })
    (out.parent / "clm_throughput.json").write_text(json.dumps(summary, indent=2))
    loss = summary["heldout_loss"]
    perplexity = (f", perplexity {torch.tensor(loss['hfssl']).exp():.1f} vs "
                  f"{torch.tensor(loss['transformers']).exp():.1f}")
    print("\n" + results_row(summary, "transformers causal-LM loop", "held-out loss", perplexity))


if __name__ == "__main__":
    main()
