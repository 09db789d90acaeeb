#!/usr/bin/env python
"""Train word2vec (skip-gram or CBOW with negative sampling) with Accelerate.

    python recipes/word2vec.py                                  # offline: the KJV Bible, then nearest neighbours
    python recipes/word2vec.py --config recipes/configs/word2vec/text8-sg.yaml
    python recipes/word2vec.py --dataset_name afmoreno/text8 --model cbow --epochs 5
    torchrun --nproc_per_node 2 recipes/word2vec.py --train_file corpus.txt

Each process trains on its own chunks of the corpus; after every step the processes add up their updates
(see ``merge_updates``). The output folder loads with ``hfssl.word2vec.WordVectors.from_pretrained``.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import set_seed
from tqdm.auto import tqdm

from hfssl.checkpointing import (NonFiniteLossError, OutputDirError, load_checkpoint, prepare_output_dir, resolve_resume_path,
                                 save_checkpoint)
from hfssl.config import ConfigError, config_to_dict, parse_config, save_config
from hfssl.data.offline_corpus import bible_corpus, python_docs_corpus
from hfssl.data.text import DataError, load_text_splits
from hfssl.distributed import no_accelerator, settle_gloo_workers
from hfssl.hub import CheckpointPusher, HubError, check_push_ready, push_folder
from hfssl.model_card import write_model_card
from hfssl.tracking import tracker_names
from hfssl.word2vec import Word2VecConfig, Word2VecModel, WordVectors, fused
from hfssl.word2vec.evaluation import evaluate_analogies, evaluate_word_pairs, gensim_test_file, nearest_neighbours
from hfssl.word2vec.model import chunk_bounds, chunk_generator, chunk_windows, learning_rate, merge_updates, table_copies, train_chunks
from hfssl.word2vec.update import Workspace
from hfssl.word2vec.vocab import build_corpus, keep_probabilities, noise_distribution
from hfssl.word2vec.windows import AliasSampler

logger = get_logger(__name__)


def offline_train_file() -> str:
    try:
        return str(bible_corpus())
    except (FileNotFoundError, OSError):
        return str(python_docs_corpus())


def evaluation_files(cfg: Word2VecConfig) -> tuple[str | None, list[str]]:
    analogy = gensim_test_file("questions-words.txt") if cfg.analogy_file == "auto" else cfg.analogy_file
    sims: list[str] = []
    for name in cfg.similarity_files:
        if name == "auto":
            sims += [str(p) for p in (gensim_test_file("wordsim353.tsv"), gensim_test_file("simlex999.txt")) if p]
        elif name != "none":
            sims.append(name)
    return (None if analogy in (None, "none") else str(analogy)), sims


def evaluate(wv: WordVectors, analogy_file: str | None, similarity_files: list[str]) -> dict[str, float]:
    results: dict[str, float] = {}
    if analogy_file:
        analogy = evaluate_analogies(wv, analogy_file)
        results.update(analogy_accuracy=analogy["accuracy"], analogy_answered=analogy["answered"])
    for path in similarity_files:
        name = path.rsplit("/", 1)[-1].split(".")[0]
        pairs = evaluate_word_pairs(wv, path)
        results.update({f"{name}_spearman": pairs["spearman"], f"{name}_pairs": pairs["pairs"]})
    return results


def main(argv: list[str] | None = None) -> dict:
    # 1. Arguments, checked before any expensive work.
    cfg = parse_config(Word2VecConfig, argv)
    check_push_ready(cfg.push_to_hub, cfg.hub_model_id)
    analogy_file, similarity_files = evaluation_files(cfg)
    for path in [analogy_file, *similarity_files]:
        if path and not os.path.isfile(path):
            raise ConfigError(f"Evaluation file {path} does not exist. Fix the path, or pass 'none'.")
    resume_path = resolve_resume_path(cfg.resume_from_checkpoint, cfg.output_dir)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)

    # 2. Accelerator: device, processes, trackers.
    output_dir = Path(cfg.output_dir)
    accelerator = Accelerator(cpu=no_accelerator(), log_with=tracker_names(cfg.report_to) or None, project_dir=str(output_dir))
    if accelerator.is_main_process:  # one process checks and creates the folder; the others could see its files as a clash
        prepare_output_dir(output_dir, overwrite=cfg.overwrite_output_dir, resuming=bool(cfg.resume_from_checkpoint))
    accelerator.wait_for_everyone()
    set_seed(cfg.seed)

    # 3. Data: every process reads and encodes the whole corpus (deterministically) and trains its own chunks.
    train_file = cfg.train_file or (None if cfg.dataset_name else offline_train_file())
    splits, column = load_text_splits(dataset_name=cfg.dataset_name, dataset_config_name=cfg.dataset_config_name,
                                      dataset_revision=cfg.dataset_revision, train_file=train_file,
                                      text_column=cfg.text_column, streaming=cfg.streaming,
                                      validation_split_percentage=0, max_train_samples=cfg.max_train_samples)
    train = splits["train"]

    def text_batches():
        for batch in train.iter(batch_size=1000):
            yield [t for t in batch[column] if t]

    tokenizer, words, counts, corpus = build_corpus(text_batches, lowercase=cfg.lowercase, keep_punctuation=cfg.keep_punctuation,
                                                    min_count=cfg.min_count, max_vocab_size=cfg.max_vocab_size)
    # Written only once the data has passed its checks, so a bad-input failure leaves output_dir empty.
    if accelerator.is_main_process:
        save_config(cfg, output_dir / "hfssl_config.yaml")
        accelerator.init_trackers("word2vec", config={k: v if isinstance(v, (int, float, str, bool)) else str(v)
                                                      for k, v in config_to_dict(cfg).items()})
    keep_prob = keep_probabilities(counts, cfg.sample)
    noise = AliasSampler(noise_distribution(counts, cfg.ns_exponent))
    logger.info(f"{corpus.raw_words} words, {len(corpus.ids)} in a vocabulary of {len(words)}; "
                f"subsampling keeps {float((keep_prob * counts).sum() / counts.sum()):.1%}", main_process_only=True)

    # 4. Model: the two embedding tables, identical on every process (Accelerate broadcasts them when wrapping).
    model = accelerator.prepare(Word2VecModel(len(words), cfg.vector_size, seed=cfg.seed))
    net = accelerator.unwrap_model(model)

    # 5. Schedule: one step = one chunk per worker thread of each process; the learning rate decays linearly over all steps.
    bounds = chunk_bounds(corpus, cfg.chunk_words)
    world, rank = accelerator.num_processes, accelerator.process_index
    slots = world * cfg.workers  # chunks per step
    steps_per_epoch = math.ceil(len(bounds) / slots)
    total_steps = steps_per_epoch * cfg.epochs
    progress = {"step": 0, "loss_history": [], "words_seen": 0, "train_seconds": 0.0}
    if resume_path is not None:
        progress = load_checkpoint(accelerator, resume_path)
        logger.info(f"Resumed from {resume_path} at step {progress['step']}", main_process_only=True)
    # Processes, and --deterministic_workers threads, each train their own copy of the tables; merge_updates adds them up.
    deterministic = cfg.deterministic_workers and cfg.workers > 1
    snapshots = [net.input_vectors.data.clone(), net.output_vectors.data.clone()] if world > 1 or deterministic else []
    copies = table_copies(net, cfg.workers - 1) if deterministic else None
    workspaces = [Workspace(net.input_vectors.device) for _ in range(cfg.workers)]
    sg = cfg.model == "sg"
    alpha = cfg.initial_alpha
    # On CPU the fused C loop (window after window, as gensim); on a GPU, or without a C compiler, batched steps.
    use_fused = cfg.fused_kernel and fused.usable(net.input_vectors.device, cfg.vector_size)
    logger.info(f"Training with {'the fused C loop' if use_fused else f'batched steps of {cfg.batch_windows} windows'} "
                f"on {net.input_vectors.device}", main_process_only=True)

    def my_chunks(step: int) -> list[int]:
        first = (step % steps_per_epoch) * slots + rank * cfg.workers
        return [index for index in range(first, first + cfg.workers) if index < len(bounds)]

    # Concurrent workers read the tables before each other's writes like one bigger batch (deterministic workers
    # exactly so), so they share --batch_windows: skip-gram diverged with 2 workers x 1024 windows on the KJV
    # benchmark, not with 2 x 512.
    per_worker_batch = math.ceil(cfg.batch_windows / cfg.workers)

    def windows_for(step: int):  # one list of batches per worker thread
        return [chunk_windows(corpus, bounds[index], window=cfg.window, negative=cfg.negative, keep_prob=keep_prob, noise=noise,
                              pad_id=net.pad_id, rng=chunk_generator(cfg.seed, step // steps_per_epoch, index),
                              max_windows=per_worker_batch, sg=sg, fused_kernel=use_fused) for index in my_chunks(step)]

    # --hub_push_checkpoints: every checkpoint is uploaded from a background thread; training never waits for it.
    pusher = (CheckpointPusher(cfg.hub_model_id, private=cfg.hub_private_repo, revision=cfg.hub_revision)
              if cfg.hub_push_checkpoints and accelerator.is_main_process else None)

    # 6. Loop. Windows for the next step are built in a helper thread while --workers threads train this step's
    # chunks (numpy and torch both release the GIL), which keeps the cores busy without torch thread contention.
    results: dict = {}
    bar = tqdm(total=total_steps, initial=progress["step"], disable=not accelerator.is_local_main_process, desc="word2vec")
    pool = ThreadPoolExecutor(max_workers=1)
    trainers = ThreadPoolExecutor(max_workers=cfg.workers) if cfg.workers > 1 else None
    pending = pool.submit(windows_for, progress["step"]) if progress["step"] < total_steps else None
    # The loss summed since the last log line is checkpointed too, so a resumed run logs the same curve.
    window_loss, window_terms = progress.get("window_loss", 0.0), progress.get("window_terms", 0)
    start_time = time.perf_counter() - progress["train_seconds"]
    for step in range(progress["step"], total_steps):
        chunks = pending.result()
        pending = pool.submit(windows_for, step + 1) if step + 1 < total_steps else None
        lr = learning_rate(alpha, cfg.min_alpha, step / total_steps)
        loss, terms = train_chunks(net, chunks, sg=sg, lr=lr, workspaces=workspaces, pool=trainers, copies=copies)
        if snapshots:
            merge_updates(net, snapshots, copies or [], (lambda t: accelerator.reduce(t, "sum")) if world > 1 else None)
        # Words trained on by all processes in this step (in-vocabulary words, before subsampling).
        first = (step % steps_per_epoch) * slots
        progress["words_seen"] += sum(hi - lo for lo, hi in bounds[first : first + slots])
        stats = accelerator.reduce(torch.tensor([loss or 0.0, float(terms)], device=net.input_vectors.device), "sum")
        window_loss, window_terms = window_loss + float(stats[0]), window_terms + int(stats[1])
        if not math.isfinite(float(stats[0])):
            raise NonFiniteLossError(f"Loss became {float(stats[0])} at step {step + 1}; lower --alpha or --batch_windows "
                                     f"and resume from the last checkpoint.")
        bar.update(1)
        done = step + 1
        if done % cfg.logging_steps == 0 or done == total_steps:
            mean_loss = window_loss / max(window_terms, 1)
            progress["loss_history"].append((done, mean_loss))
            accelerator.log({"train/loss": mean_loss, "train/learning_rate": lr}, step=done)
            bar.set_postfix(loss=f"{mean_loss:.3f}", lr=f"{lr:.4f}")
            window_loss, window_terms = 0.0, 0
        epoch_end = done % steps_per_epoch == 0
        epoch = done // steps_per_epoch
        if epoch_end and (epoch % cfg.eval_every_epochs == 0 or done == total_steps) and accelerator.is_main_process:
            eval_start = time.perf_counter()
            wv = WordVectors(words, net.word_vectors().cpu().numpy(), counts)
            results = evaluate(wv, analogy_file, similarity_files)
            accelerator.log({f"eval/{k}": v for k, v in results.items()}, step=done)
            logger.info(f"epoch {epoch}: {json.dumps(results)}", main_process_only=True)
            start_time += time.perf_counter() - eval_start  # train_runtime_s counts training only
        if (cfg.checkpointing_steps and done % cfg.checkpointing_steps == 0) or done == total_steps:
            progress.update(step=done, train_seconds=time.perf_counter() - start_time, window_loss=window_loss,
                            window_terms=window_terms)
            saved = save_checkpoint(accelerator, output_dir, done, {k: v for k, v in progress.items() if k != "step"},
                                    cfg.checkpoints_total_limit)
            if pusher is not None:
                pusher.push(saved, step=done)
    pool.shutdown()
    if trainers is not None:
        trainers.shutdown()
    bar.close()
    train_seconds = time.perf_counter() - start_time

    # 7. Save the Hub-ready folder, exports, results and model card; push.
    if accelerator.is_main_process:
        config = {"architecture": cfg.model, "window": cfg.window, "min_count": cfg.min_count, "sample": cfg.sample,
                  "negative": cfg.negative, "ns_exponent": cfg.ns_exponent, "epochs": cfg.epochs, "lowercase": cfg.lowercase,
                  "keep_punctuation": cfg.keep_punctuation}
        wv = WordVectors(words, net.word_vectors().cpu().numpy(), counts, tokenizer, config)
        wv.save_pretrained(output_dir, sentence_transformers=cfg.save_sentence_transformers)
        if cfg.save_word2vec_format in ("text", "both"):
            wv.save_word2vec_format(output_dir / "vectors.txt", binary=False)
        if cfg.save_word2vec_format in ("binary", "both"):
            wv.save_word2vec_format(output_dir / "vectors.bin", binary=True)
        if not results:
            results = evaluate(wv, analogy_file, similarity_files)
        neighbours = nearest_neighbours(wv, cfg.neighbour_words, topn=8)
        history = progress["loss_history"]
        all_results = {"train_loss": history[-1][1] if history else float("nan"), "epochs": cfg.epochs,
                       "vocab_size": len(words), "corpus_words": corpus.raw_words, "words_seen": progress["words_seen"],
                       "train_runtime_s": train_seconds, "num_processes": world,
                       "train_words_per_second": corpus.raw_words * cfg.epochs / max(train_seconds, 1e-9), **results, "nearest_neighbours": neighbours}
        (output_dir / "all_results.json").write_text(json.dumps(all_results, indent=2) + "\n", encoding="utf-8")
        write_model_card(output_dir, "word-embeddings", {
            "model_name": cfg.hub_model_id or output_dir.name, "repo_id": cfg.hub_model_id or str(output_dir),
            "datasets": [cfg.dataset_name or train_file], "dataset_config": cfg.dataset_config_name,
            "dataset_revision": cfg.dataset_revision,
            "hyperparameters": {k: getattr(cfg, k) for k in ("model", "vector_size", "window", "min_count", "max_vocab_size", "sample",
                                                             "negative", "ns_exponent", "epochs", "min_alpha", "chunk_words", "batch_windows", "workers",
                                                             "deterministic_workers")}
            | {"alpha": alpha, "update": "fused C loop" if use_fused else "batched PyTorch steps"},
            "compute": {"device": str(net.input_vectors.device), "num_processes": world, "wall_time_s": round(train_seconds, 1),
                        "words_seen": progress["words_seen"]},
            "results": {k: v for k, v in results.items() if isinstance(v, float) and math.isfinite(v)},
            "model_details": {"architecture": f"{cfg.model} with negative sampling", "vocab_size": len(words),
                              "vector_size": cfg.vector_size, "parameters": 2 * len(words) * cfg.vector_size},
            "results_dataset": "questions-words / wordsim353 / simlex999", "loss_history": history,
            "extra": {"vectors_file": "model.safetensors", "vectors_key": "embeddings", "vocab_file": "vocab.txt"}})
        for word, near in neighbours.items():
            print(f"{word:>10}: " + ", ".join(f"{w} ({s:.2f})" for w, s in near))
        print(f"Saved to {output_dir}: " + ", ".join(f"{k}={v:.4g}" for k, v in results.items() if isinstance(v, float)))
    accelerator.wait_for_everyone()
    settle_gloo_workers()  # no hang at teardown: hfssl/distributed.py says why
    accelerator.end_training()  # trackers flushed: the local output is complete before any upload can fail
    if pusher is not None:
        pusher.finish()  # waits for checkpoint uploads still running; reports failures without raising
    if cfg.push_to_hub and accelerator.is_main_process:
        push_folder(output_dir, cfg.hub_model_id, private=cfg.hub_private_repo, revision=cfg.hub_revision)
    return all_results if accelerator.is_main_process else {}


if __name__ == "__main__":
    try:
        main()
    except (ConfigError, DataError, OutputDirError, HubError, NonFiniteLossError) as err:  # bad input: the fix, no trace
        sys.exit(f"error: {err}")
