"""The masked-LM data path: tokenization + packing, and the training DataLoader, against the transformers examples.

    python benchmarks/data_throughput.py --pairs 3 --num_proc 1 2

Issue 3 asks for "a data path that never starves the model", with tokenization throughput measured. Two numbers:

1. **Preprocessing** (once per dataset, cached by 🤗 Datasets afterwards): hfssl's one ``map`` that tokenizes and
   packs (:func:`hfssl.mlm.data.prepare_dataset`) against run_mlm.py's two (``tokenizer(...,
   return_special_tokens_mask=True)``, then ``group_texts`` over every column), both with the same fast tokenizer,
   ``batched=True`` and ``num_proc``. Caching is off so each run computes; pairs alternate which goes first.
   Reported as tokens of packed blocks per second, and the ratio per pair.
2. **Loading** (every step): batches per second of the recipe's DataLoader (shuffled indices from the Arrow table,
   :class:`~hfssl.mlm.data.PadCollator`, no masking: that runs on the device) in tokens/s, to set beside the
   training tokens/s of the recipe on a GPU. The examples' loader, which also masks in its collator
   (``DataCollatorForLanguageModeling``), is timed alike for reference.

The corpus is the KJV Bible + Python docs text of the other CPU benchmarks; the tokenizer is a WordPiece trained
on it once by hfssl (its training time is reported, with no peer: both sides would call the same library).
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import tempfile
import time
from itertools import chain
from pathlib import Path

import datasets
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hfssl.data.offline_corpus import bible_corpus, python_docs_corpus  # noqa: E402
from hfssl.data.tokenizer_training import train_wordpiece  # noqa: E402
from hfssl.mlm.data import EpochShuffleSampler, PadCollator, prepare_dataset  # noqa: E402
from pairing import hardware  # noqa: E402


def examples_preprocess(raw, tokenizer, block: int, num_proc: int | None):
    """run_mlm.py's preprocessing, written from its description: tokenize every line, then ``group_texts``."""
    tokenized = raw.map(lambda b: tokenizer(b["text"], return_special_tokens_mask=True), batched=True,
                        remove_columns=["text"], num_proc=num_proc)

    def group_texts(examples):
        joined = {k: list(chain(*examples[k])) for k in examples}
        total = len(joined["input_ids"]) // block * block
        return {k: [v[i : i + block] for i in range(0, total, block)] for k, v in joined.items()}

    return tokenized.map(group_texts, batched=True, num_proc=num_proc)


def time_preprocessing(name: str, raw, tokenizer, block: int, num_proc: int | None) -> dict:
    start = time.perf_counter()
    if name == "hfssl":
        packed = prepare_dataset(raw, tokenizer, "text", block, line_by_line=False, num_proc=num_proc)
    else:
        packed = examples_preprocess(raw, tokenizer, block, num_proc)
    seconds = time.perf_counter() - start
    tokens = len(packed) * block
    return {"trainer": name, "num_proc": num_proc or 1, "seconds": seconds, "blocks": len(packed),
            "tokens_per_second": tokens / seconds, "dataset": packed}


def time_loader(loader, batches: int, tokens_per_batch: int) -> float:
    """Tokens/s of ``batches`` batches after one warm-up batch."""
    iterator = iter(loader)
    next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * tokens_per_batch / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pairs", type=int, default=3)
    p.add_argument("--num_proc", type=int, nargs="+", default=[1, 2])
    p.add_argument("--max_seq_length", type=int, default=128)
    p.add_argument("--vocab_size", type=int, default=30522)
    p.add_argument("--batch_sizes", type=int, nargs="+", default=[256, 512])
    p.add_argument("--loader_batches", type=int, default=40)
    p.add_argument("--out", default="benchmarks/out/data_throughput.json")
    args = p.parse_args()
    datasets.disable_caching()
    datasets.disable_progress_bars()

    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "kjv_docs.txt"
        corpus.write_text(bible_corpus().read_text(encoding="utf-8") + python_docs_corpus().read_text(encoding="utf-8"),
                          encoding="utf-8")
        raw = datasets.load_dataset("text", data_files={"train": str(corpus)}, cache_dir=tmp)["train"]
        words = sum(len(t.split()) for t in raw["text"])
        start = time.perf_counter()
        tokenizer = train_wordpiece((t for t in raw["text"] if t.strip()), args.vocab_size)
        tokenizer_seconds = time.perf_counter() - start
        print(f"{len(raw):,} lines, {words:,} words; WordPiece ({len(tokenizer):,} tokens) trained in "
              f"{tokenizer_seconds:.1f} s ({words / tokenizer_seconds:,.0f} words/s)", flush=True)

        pre = {}
        for num_proc in args.num_proc:
            runs = []
            for pair in range(args.pairs):
                for name in (("hfssl", "transformers") if pair % 2 == 0 else ("transformers", "hfssl")):
                    runs.append(time_preprocessing(name, raw, tokenizer, args.max_seq_length, num_proc if num_proc > 1 else None))
                    print(f"num_proc {num_proc} pair {pair} {name}: {runs[-1]['tokens_per_second']:,.0f} tokens/s "
                          f"({runs[-1]['seconds']:.2f} s, {runs[-1]['blocks']:,} blocks)", flush=True)
            of = {n: [r for r in runs if r["trainer"] == n] for n in ("hfssl", "transformers")}
            ratios = [a["tokens_per_second"] / b["tokens_per_second"] for a, b in zip(of["hfssl"], of["transformers"])]
            pre[num_proc] = {"tokens_per_second": {n: statistics.median(r["tokens_per_second"] for r in of[n]) for n in of},
                             "ratio_median": statistics.median(ratios), "ratios": ratios,
                             "blocks": {n: of[n][0]["blocks"] for n in of}}
            ours, theirs = of["hfssl"][0]["dataset"], of["transformers"][0]["dataset"]

        # The examples' collator pads with the tokenizer and masks; it needs the columns its map wrote.
        from transformers import DataCollatorForLanguageModeling

        loaders = {}
        for batch in args.batch_sizes:
            hfssl_loader = DataLoader(ours, batch_size=batch, sampler=EpochShuffleSampler(len(ours), 0),
                                      collate_fn=PadCollator(tokenizer.pad_token_id), drop_last=True)
            peer_loader = DataLoader(theirs, batch_size=batch, shuffle=True, drop_last=True,
                                     collate_fn=DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15))
            n = min(args.loader_batches, len(ours) // batch - 1, len(theirs) // batch - 1)
            loaders[batch] = {"hfssl": time_loader(hfssl_loader, n, batch * args.max_seq_length),
                              "transformers (masks in the collator)": time_loader(peer_loader, n, batch * args.max_seq_length)}
            print(f"loader, batch {batch}: " + ", ".join(f"{k} {v:,.0f} tokens/s" for k, v in loaders[batch].items()), flush=True)

    summary = {"date": datetime.date.today().isoformat(), "hardware": hardware(),
               "command": "python benchmarks/data_throughput.py " + " ".join(sys.argv[1:]),
               "corpus": {"lines": len(raw), "words": words}, "vocab": len(tokenizer),
               "tokenizer_training_seconds": tokenizer_seconds, "preprocessing": pre, "loader_tokens_per_second": loaders}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2))
    for num_proc, r in pre.items():
        tps = r["tokens_per_second"]
        print(f"preprocessing, num_proc {num_proc}: {tps['hfssl']:,.0f} vs {tps['transformers']:,.0f} tokens/s: "
              f"{r['ratio_median']:.2f}x (pairs {', '.join(f'{x:.2f}' for x in r['ratios'])}); blocks {r['blocks']}")


if __name__ == "__main__":
    main()
