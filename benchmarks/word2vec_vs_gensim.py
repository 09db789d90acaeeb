#!/usr/bin/env python
"""hfssl word2vec vs gensim 4 on the same corpus, tokens and hyperparameters, in one run.

    python benchmarks/word2vec_vs_gensim.py                     # KJV Bible + Python docs, sg and cbow, 5 epochs
    python benchmarks/word2vec_vs_gensim.py --models sg --epochs 3 --repeat 4

Both get the same pre-tokenised sentences (hfssl's tokenizer) and the same vocabulary rule (min_count), and
are timed on training only (vocabulary building excluded). Runs alternate (gensim, hfssl, gensim, hfssl, ...)
so that load from other processes hits both alike; the script prints the median words/s of each and the ratio.
words/s = corpus words (before subsampling) x epochs / training seconds, the same count for both. The CPU time per
word (all threads of the process) is printed too: unlike words/s it barely moves when other jobs share the cores.
Quality uses one evaluator for both models (hfssl.word2vec.evaluation, gensim's rules): analogy accuracy on
questions-words.txt and Spearman on wordsim353 / simlex999 over the pairs both vocabularies contain.
gensim uses ``--gensim_workers`` threads; hfssl one process with ``--workers`` training threads (Hogwild, as
gensim) plus a window-building thread, or (``--processes N``) the recipe under torchrun with N processes;
``--fused_kernel off`` measures its batched PyTorch steps instead of the fused C loop.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from hfssl.data.offline_corpus import bible_corpus, python_docs_corpus
from hfssl.word2vec import Word2VecModel, WordVectors
from hfssl.word2vec.evaluation import evaluate_analogies, evaluate_word_pairs, gensim_test_file
from hfssl.word2vec.model import train_in_process
from hfssl.word2vec.vocab import build_corpus, iterate_batches, split_words


def load_texts(name: str, repeat: int) -> list[str]:
    paths = {"bible": [bible_corpus()], "docs": [python_docs_corpus()], "both": [bible_corpus(), python_docs_corpus()]}[name]
    lines = [line for p in paths for line in Path(p).read_text(encoding="utf-8").splitlines() if line.strip()]
    return lines * repeat


def run_gensim(sentences, args, sg: bool, seed: int):
    from gensim.models import Word2Vec

    model = Word2Vec(vector_size=args.vector_size, window=args.window, min_count=args.min_count, sg=int(sg), negative=args.negative,
                     sample=args.sample, ns_exponent=0.75, workers=args.gensim_workers, seed=seed, hs=0,
                     alpha=0.025 if sg else 0.05, min_alpha=1e-4)
    model.build_vocab(sentences)
    start, cpu = time.perf_counter(), time.process_time()
    model.train(sentences, total_examples=len(sentences), epochs=args.epochs)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return WordVectors(list(model.wv.index_to_key), model.wv.vectors), seconds, cpu


def run_hfssl(data, args, sg: bool, seed: int):
    tokenizer, words, counts, corpus = data
    model = Word2VecModel(len(words), args.vector_size, seed=seed)
    fused_kernel = {"auto": None, "on": True, "off": False}[args.fused_kernel]
    start, cpu = time.perf_counter(), time.process_time()
    train_in_process(model, corpus, counts, sg=sg, window=args.window, negative=args.negative, sample=args.sample,
                     epochs=args.epochs, chunk_words=args.chunk_words, batch_windows=args.batch_windows, workers=args.workers,
                     fused_kernel=fused_kernel, seed=seed)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return WordVectors(words, model.word_vectors().numpy(), counts, tokenizer), seconds, cpu


def run_hfssl_processes(texts, args, sg: bool, seed: int, processes: int):
    """The recipe itself under torchrun with ``processes`` CPU processes (one torch thread each); its
    ``train_runtime_s`` covers the training loop only, as the in-process timings."""
    import subprocess
    import sys
    import tempfile

    root = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory() as tmp:
        train_file = Path(tmp) / "corpus.txt"
        train_file.write_text("\n".join(texts) + "\n", encoding="utf-8")
        out = Path(tmp) / "out"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
               str(root / "recipes" / "word2vec.py"), "--train_file", str(train_file), "--output_dir", str(out),
               "--model", "sg" if sg else "cbow", "--epochs", str(args.epochs), "--vector_size", str(args.vector_size),
               "--window", str(args.window), "--min_count", str(args.min_count), "--negative", str(args.negative),
               "--sample", str(args.sample), "--chunk_words", str(args.chunk_words), "--batch_windows", str(args.batch_windows),
               "--seed", str(seed), "--report_to", "none", "--analogy_file", "none", "--similarity_files", "none",
               "--save_word2vec_format", "none", "--num_threads", str(args.threads), "--workers", str(args.workers),
               "--logging_steps", "1000000"]
        env = dict(__import__("os").environ, OMP_NUM_THREADS=str(args.threads), TOKENIZERS_PARALLELISM="false")
        subprocess.run(cmd, check=True, capture_output=True, env=env, cwd=root)
        seconds = json.loads((out / "all_results.json").read_text())["train_runtime_s"]
        return WordVectors.from_pretrained(out), seconds, float("nan")  # CPU time of the training loop alone is not reported


def quality(wv: WordVectors, shared: set[str]) -> dict[str, float]:
    """Scores on the words both models know, so both are scored on exactly the same questions and pairs."""
    rows = [i for i, w in enumerate(wv.words) if w in shared]
    common = WordVectors([wv.words[i] for i in rows], wv.vectors[rows])
    out = {"analogy": evaluate_analogies(common, gensim_test_file("questions-words.txt"))["accuracy"]}
    for name in ("wordsim353.tsv", "simlex999.txt"):
        res = evaluate_word_pairs(common, gensim_test_file(name))
        out[name.split(".")[0]] = res["spearman"]
        out[name.split(".")[0] + "_pairs"] = res["pairs"]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", default="both", choices=["bible", "docs", "both"])
    p.add_argument("--repeat", type=int, default=1, help="Concatenate the corpus this many times (a bigger corpus).")
    p.add_argument("--models", nargs="+", default=["sg", "cbow"], choices=["sg", "cbow"])
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--rounds", type=int, default=2, help="Alternating runs of each library per model.")
    p.add_argument("--vector_size", type=int, default=100)
    p.add_argument("--window", type=int, default=5)
    p.add_argument("--min_count", type=int, default=5)
    p.add_argument("--negative", type=int, default=5)
    p.add_argument("--sample", type=float, default=1e-3)
    p.add_argument("--chunk_words", type=int, default=20000)
    p.add_argument("--batch_windows", type=int, default=1024)
    p.add_argument("--gensim_workers", type=int, default=2)
    p.add_argument("--workers", type=int, default=2, help="hfssl training threads per process (Hogwild, as gensim's workers).")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads for hfssl (per process).")
    p.add_argument("--fused_kernel", default="auto", choices=["auto", "on", "off"],
                   help="hfssl's fused C loop (auto: where a C compiler works, as the recipe) or its batched PyTorch steps (off).")
    p.add_argument("--processes", type=int, default=1,
                   help="hfssl processes: 1 trains in this process; N>1 runs recipes/word2vec.py under torchrun.")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", default=None, help="Also write the results here.")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    texts = load_texts(args.corpus, args.repeat)
    data = build_corpus(lambda: iterate_batches(texts), min_count=args.min_count)
    tokenizer = data[0]
    sentences = [split_words(tokenizer, t) for t in texts]
    sentences = [s for s in sentences if s]
    print(f"corpus {args.corpus} x{args.repeat}: {data[3].raw_words:,} words, {len(sentences):,} sentences, "
          f"vocab {len(data[1]):,}; epochs {args.epochs}; hfssl {args.processes} process(es) x {args.workers} worker(s), "
          f"gensim {args.gensim_workers} workers")

    report = {"args": vars(args), "words": data[3].raw_words, "models": {}}
    for name in args.models:
        sg = name == "sg"
        times = {"gensim": [], "hfssl": []}
        cpu_times = {"gensim": [], "hfssl": []}
        scores_by_round = {"gensim": [], "hfssl": []}
        for r in range(args.rounds):
            for lib in (("gensim", "hfssl") if r % 2 == 0 else ("hfssl", "gensim")):
                if lib == "gensim":
                    wv, seconds, cpu = run_gensim(sentences, args, sg, args.seed + r)
                elif args.processes > 1:
                    wv, seconds, cpu = run_hfssl_processes(texts, args, sg, args.seed + r, args.processes)
                else:
                    wv, seconds, cpu = run_hfssl(data, args, sg, args.seed + r)
                times[lib].append(seconds)
                cpu_times[lib].append(cpu)
                scores_by_round[lib].append(wv)
                print(f"  {name} round {r} {lib:>6}: {data[3].raw_words * args.epochs / seconds / 1e6:.3f} M words/s ({seconds:.1f} s; "
                      f"{cpu / (data[3].raw_words * args.epochs) * 1e6:.2f} CPU-us/word)")
        # Quality of every round's vectors, on the words all of them know; mean and range over rounds (the
        # round-to-round spread shows how much of a difference is seed noise).
        shared = set.intersection(*(set(wv.words) for runs in scores_by_round.values() for wv in runs))
        per_round = {lib: [quality(wv, shared) for wv in runs] for lib, runs in scores_by_round.items()}
        scores = {lib: {m: float(np.mean([r[m] for r in runs])) for m in runs[0]} for lib, runs in per_round.items()}
        spread = {lib: {m: (min(r[m] for r in runs), max(r[m] for r in runs)) for m in runs[0]} for lib, runs in per_round.items()}
        speed = {lib: data[3].raw_words * args.epochs / statistics.median(t) for lib, t in times.items()}
        cpu_per_word = {lib: statistics.median(t) / (data[3].raw_words * args.epochs) for lib, t in cpu_times.items()}
        report["models"][name] = {"words_per_s": speed, "speed_ratio": speed["hfssl"] / speed["gensim"],
                                  "cpu_seconds_per_word": cpu_per_word,
                                  "per_round_ratio": [g / h for g, h in zip(times["gensim"], times["hfssl"])], "quality": scores,
                                  "quality_per_round": per_round}
        print(f"{name} ({args.rounds} rounds; quality = mean [min, max] over rounds)")
        print(f"{name}: words/s gensim {speed['gensim'] / 1e6:.3f}M, hfssl {speed['hfssl'] / 1e6:.3f}M, "
              f"ratio hfssl/gensim {speed['hfssl'] / speed['gensim']:.2f} (per round: "
              f"{', '.join(f'{x:.2f}' for x in report['models'][name]['per_round_ratio'])}); CPU time per word "
              f"gensim {cpu_per_word['gensim'] * 1e6:.2f} us, hfssl {cpu_per_word['hfssl'] * 1e6:.2f} us")
        for metric in ("analogy", "wordsim353", "simlex999"):
            g, h = scores["gensim"][metric], scores["hfssl"][metric]
            (g0, g1), (h0, h1) = spread["gensim"][metric], spread["hfssl"][metric]
            print(f"  {metric:>10}: gensim {g:.4f} [{g0:.4f}, {g1:.4f}]  hfssl {h:.4f} [{h0:.4f}, {h1:.4f}]  diff {h - g:+.4f}"
                  + (f"  ({int(scores['hfssl'][metric + '_pairs'])} pairs)" if metric != "analogy" else ""))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
