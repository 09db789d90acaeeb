"""hfssl's MLM recipe against the canonical transformers loop: same model, batch, sequence length, tokenizer and text.

    python benchmarks/mlm_throughput.py                      # 3 paired runs, offline default model, Python docs
    python benchmarks/mlm_throughput.py --corpus bible --pairs 5 --max_steps 200

Each pair runs both trainers one after the other as fresh processes (alternating which goes first, so drift in
machine load hits both alike) and the ratio is taken per pair; the median over pairs is reported. Both final models
are then scored by the same held-out masked-LM loss on the same masked positions, so "quality at equal steps" is
compared like for like. Results go to stdout as RESULTS.md rows and to benchmarks/out/mlm_throughput.json.
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

from hfssl.data.offline_corpus import bible_corpus, python_docs_corpus  # noqa: E402
from hfssl.mlm.data import PadCollator, prepare_dataset  # noqa: E402
from hfssl.mlm.evaluation import premask_fn  # noqa: E402
from hfssl.mlm.masking import special_token_table  # noqa: E402
from hfssl.mlm.objective import MaskedLMObjective  # noqa: E402
from hfssl.data.tokenizer_training import train_tokenizer  # noqa: E402


def held_out_loss(model_dir: Path, eval_blocks, batch_size: int = 64) -> float:
    """Token-weighted masked-LM loss of a saved model on fixed, premasked validation blocks."""
    from transformers import AutoModelForMaskedLM

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = AutoModelForMaskedLM.from_pretrained(model_dir, use_safetensors=True).to(device).eval()
    objective = MaskedLMObjective(model, sparse_prediction=True)
    collate = PadCollator(0)
    total = torch.zeros(2, device=device)
    with torch.no_grad():
        for i in range(0, len(eval_blocks), batch_size):
            batch = collate([eval_blocks[j] for j in range(i, min(i + batch_size, len(eval_blocks)))])
            total += objective(batch["input_ids"].to(device), batch["labels"].to(device), reduction="sum_per_row").sum(dim=0)
    return (total[0] / total[1]).item()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", choices=["python-docs", "bible"], default="python-docs")
    p.add_argument("--corpus_file", help="A text file (one paragraph per line) to use instead of --corpus.")
    p.add_argument("--pairs", type=int, default=3)
    add_model_arguments(p)
    p.add_argument("--ours_flags", default="", help="Extra flags for recipes/mlm.py, e.g. '--mixed_precision bf16'.")
    p.add_argument("--peer_flags", default="", help="Extra flags for the canonical loop.")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "out" / "mlm"))
    args = p.parse_args()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    corpus = Path(args.corpus_file) if args.corpus_file else python_docs_corpus() if args.corpus == "python-docs" else bible_corpus()
    lines = corpus.read_text(encoding="utf-8").splitlines()
    n_val = len(lines) // 20  # the tail, as the recipe holds out by default
    train_file, val_file = out / "train.txt", out / "validation.txt"
    train_file.write_text("\n".join(lines[:-n_val]) + "\n", encoding="utf-8")
    val_file.write_text("\n".join(lines[-n_val:]) + "\n", encoding="utf-8")
    tokenizer = train_tokenizer("bert", lines[:-n_val], args.vocab_size)  # one tokenizer shared by both trainers
    tok_dir = out / "tokenizer"
    tokenizer.save_pretrained(tok_dir)

    from datasets import Dataset

    val = prepare_dataset(Dataset.from_dict({"text": lines[-n_val:]}), tokenizer, "text", args.max_seq_length, line_by_line=False)
    eval_blocks = val.map(premask_fn(seed=0, mask_prob=0.15, mask_token_id=tokenizer.mask_token_id,
                                     vocab_size=len(tokenizer), special=special_token_table(tokenizer)),
                          batched=True, with_indices=True)

    shared = model_flags(args, tok_dir)
    commands = {
        "hfssl": [sys.executable, str(ROOT / "recipes" / "mlm.py"), "--train_file", str(train_file), "--validation_file",
                  str(val_file), "--eval_steps", "0", "--report_to", "none", "--overwrite_output_dir", *shared,
                  *args.ours_flags.split()],
        "transformers": [sys.executable, str(ROOT / "benchmarks" / "canonical_mlm_loop.py"), "--train_file",
                         str(train_file), *shared, *args.peer_flags.split()],
    }
    runs = run_pairs(commands, args.pairs, out, lambda run_dir: held_out_loss(run_dir, eval_blocks))
    summary = summarize(runs, {
        "date": datetime.date.today().isoformat(), "hardware": hardware(), "corpus": args.corpus_file or args.corpus,
        "command": "python benchmarks/mlm_throughput.py " + " ".join(sys.argv[1:]),
        "model": f"BERT {args.num_hidden_layers}x{args.hidden_size}, vocab {len(tokenizer)}, seq {args.max_seq_length}, "
                 f"batch {args.per_device_train_batch_size}, {args.max_steps} steps",
    })
    (out.parent / "mlm_throughput.json").write_text(json.dumps(summary, indent=2))
    print("\n" + results_row(summary, "transformers MLM loop", "held-out MLM loss"))


if __name__ == "__main__":
    main()
