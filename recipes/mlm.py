"""Pretrain a BERT- or RoBERTa-style masked language model with Accelerate.

    python recipes/mlm.py                                   # offline default: small BERT on Python's own docs
    accelerate launch recipes/mlm.py --config recipes/configs/mlm/bert-base.yaml
    torchrun --nproc_per_node 2 recipes/mlm.py --max_steps 50 # two CPU processes (gloo)

The story: config -> accelerator -> data (tokenize, pack) -> tokenizer and model -> masked-LM objective ->
AdamW + schedule -> training loop (dynamic masking, accumulation, clipping, eval, checkpoints) -> save and push.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import torch
from accelerate import Accelerator, DataLoaderConfiguration
from accelerate.logging import get_logger
from accelerate.utils import set_seed
from datasets.distributed import split_dataset_by_node
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import get_scheduler

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from hfssl.checkpointing import (NonFiniteLossError, OutputDirError, load_checkpoint, prepare_output_dir,
                                 resolve_resume_path, save_checkpoint)
from hfssl.config import ConfigError, parse_config, save_config
from hfssl.data.offline_corpus import python_docs_corpus
from hfssl.distributed import no_accelerator, settle_gloo_workers
from hfssl.fast_dropout import use_fast_dropout
from hfssl.profiling import step_profiler
from hfssl.data.text import DataError, load_text_splits
from hfssl.data.tokenizer_training import load_or_train_tokenizer
from hfssl.hub import CheckpointPusher, HubError, check_push_ready, push_folder
from hfssl.mlm.config import MLMConfig
from hfssl.mlm.data import EpochShuffleSampler, PadCollator, prepare_dataset
from hfssl.mlm.evaluation import evaluate_mlm, premask_fn
from hfssl.mlm.masking import (IGNORE_INDEX, mask_tokens, selection_bound, special_token_table, step_generator,
                                word_start_table)
from hfssl.mlm.model_factory import build_model
from hfssl.mlm.objective import MaskedLMObjective, mlm_head
from hfssl.mlm.throughput import encoder_flops_per_token, gpu_peak_flops, peak_memory_mb, tokens_per_second
from hfssl.model_card import write_model_card
from hfssl.tracking import tracker_names

logger = get_logger(__name__)


def main(argv: list[str] | None = None) -> dict:
    cfg = parse_config(MLMConfig, argv)
    check_push_ready(cfg.push_to_hub, cfg.hub_model_id)
    resume_path = resolve_resume_path(cfg.resume_from_checkpoint, cfg.output_dir)
    accelerator = Accelerator(cpu=no_accelerator(), gradient_accumulation_steps=cfg.gradient_accumulation_steps,
                              mixed_precision=cfg.mixed_precision,
                              # Pinned batches copied without blocking: a blocking copy would drain the GPU each step.
                              dataloader_config=DataLoaderConfiguration(non_blocking=True),
                              log_with=tracker_names(cfg.report_to) or None, project_dir=cfg.output_dir)
    if accelerator.is_main_process:
        prepare_output_dir(cfg.output_dir, overwrite=cfg.overwrite_output_dir, resuming=cfg.resume_from_checkpoint is not None)
    accelerator.wait_for_everyone()
    set_seed(cfg.seed)
    output_dir = Path(cfg.output_dir)

    # ---- Data: the embedded offline corpus unless a dataset or file is given.
    train_file = cfg.train_file
    if not cfg.dataset_name and not train_file:
        with accelerator.main_process_first():
            train_file = str(python_docs_corpus())
        logger.info(f"No dataset given: pretraining on this Python's documentation ({train_file}).", main_process_only=True)
    with accelerator.main_process_first():
        splits, text_column = load_text_splits(
            dataset_name=cfg.dataset_name, dataset_config_name=cfg.dataset_config_name,
            dataset_revision=cfg.dataset_revision, train_file=train_file,
            validation_file=cfg.validation_file, text_column=cfg.text_column, streaming=cfg.streaming,
            validation_split_percentage=cfg.validation_split_percentage, max_train_samples=cfg.max_train_samples,
            max_eval_samples=cfg.max_eval_samples)

    # ---- Tokenizer (trained on the training text when none is given) and model.
    with accelerator.main_process_first():
        tokenizer = load_or_train_tokenizer(
            tokenizer_name=cfg.tokenizer_name, model_name_or_path=cfg.model_name_or_path, model_type=cfg.model_type,
            vocab_size=cfg.vocab_size, texts=(t for t in splits["train"][text_column] if t) if not cfg.streaming
            else (ex[text_column] for ex in splits["train"] if ex[text_column]),
            saved_dir=output_dir / "checkpoints" / "tokenizer", max_texts=cfg.tokenizer_train_samples)
    if tokenizer.mask_token_id is None:
        raise ConfigError(f"Tokenizer {cfg.tokenizer_name or cfg.model_name_or_path} has no mask token; MLM needs one.")
    model = build_model(cfg, tokenizer)
    if cfg.fast_cpu_dropout and accelerator.device.type == "cpu":
        use_fast_dropout(model)  # in memory only: the saved model is the plain one
    objective = MaskedLMObjective(model, sparse_prediction=cfg.sparse_prediction)
    if cfg.torch_compile:
        # Compiled in place, so parameter names (and checkpoints) stay those of the plain model. Sparse prediction
        # calls the encoder and the head separately, bypassing the model's own forward: each is compiled then.
        for module in (model.base_model, mlm_head(model)) if cfg.sparse_prediction else (model,):
            module.compile()
    special = special_token_table(tokenizer, accelerator.device)
    word_start = word_start_table(tokenizer, accelerator.device) if cfg.whole_word_mask else None
    mask_kwargs = dict(mask_prob=cfg.mlm_probability, mask_token_id=tokenizer.mask_token_id, vocab_size=len(tokenizer))

    with accelerator.main_process_first():
        train_ds = prepare_dataset(splits["train"], tokenizer, text_column, cfg.max_seq_length, line_by_line=cfg.line_by_line,
                                   num_proc=cfg.preprocessing_num_workers, streaming=cfg.streaming)
        eval_ds = None
        if "validation" in splits:
            eval_ds = prepare_dataset(splits["validation"], tokenizer, text_column, cfg.max_seq_length,
                                      line_by_line=cfg.line_by_line, streaming=cfg.streaming)
            eval_ds = eval_ds.map(premask_fn(seed=cfg.seed, special=special.cpu(), **mask_kwargs,
                                             word_start=None if word_start is None else word_start.cpu()),
                                  batched=True, with_indices=True)
    if not cfg.streaming and len(train_ds) == 0:
        raise ConfigError(f"The training text gives no complete block of {cfg.max_seq_length} tokens: use more text, "
                          f"a smaller --max_seq_length, or --line_by_line.")
    collate = PadCollator(tokenizer.pad_token_id)
    pin = accelerator.device.type == "cuda"
    sampler = None
    if cfg.streaming:
        # Each process reads its own shards of the stream; Accelerate then only moves batches to the device.
        # A seeded shuffle buffer keeps the order reproducible, so a resumed stream can skip what was already seen.
        train_ds = split_dataset_by_node(train_ds.shuffle(seed=cfg.seed, buffer_size=10_000),
                                         rank=accelerator.process_index, world_size=accelerator.num_processes)
        train_dl = DataLoader(train_ds, batch_size=cfg.per_device_train_batch_size, collate_fn=collate, pin_memory=pin)
    else:
        sampler = EpochShuffleSampler(len(train_ds), cfg.seed)
        # The DataLoader draws a base seed when each epoch starts; a generator of its own keeps that draw out of the
        # global RNG, whose state a resumed run restores mid-epoch (dropout must replay exactly).
        train_dl = DataLoader(train_ds, batch_size=cfg.per_device_train_batch_size, sampler=sampler, collate_fn=collate,
                              drop_last=True, generator=torch.Generator().manual_seed(cfg.seed), pin_memory=pin)
    eval_dl = DataLoader(eval_ds, batch_size=cfg.per_device_eval_batch_size, collate_fn=collate) if eval_ds is not None else None

    # ---- Optimizer and schedule. No weight decay on biases and LayerNorm weights, as in BERT.
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
                                  lr=cfg.learning_rate, betas=(0.9, cfg.adam_beta2), eps=1e-6,
                                  fused=accelerator.device.type == "cuda")
    if cfg.max_steps > 0:
        max_steps = cfg.max_steps
    else:
        steps_per_epoch = math.ceil(len(train_dl) / accelerator.num_processes / cfg.gradient_accumulation_steps)
        max_steps = max(1, int(cfg.num_train_epochs * steps_per_epoch))
    warmup = int(cfg.warmup_steps * max_steps) if cfg.warmup_steps < 1 else int(cfg.warmup_steps)
    # Accelerate steps a prepared scheduler once per process at each optimizer step, so the schedule is laid out
    # in process-steps (as in transformers' no_trainer examples).
    scheduler = get_scheduler(cfg.lr_scheduler_type, optimizer, num_warmup_steps=warmup * accelerator.num_processes,
                              num_training_steps=max_steps * accelerator.num_processes)

    objective, optimizer, scheduler = accelerator.prepare(objective, optimizer, scheduler)
    if not cfg.streaming:
        train_dl = accelerator.prepare(train_dl)
    if eval_dl is not None:
        eval_dl = accelerator.prepare(eval_dl)

    # ---- Resume: weights, optimizer, schedule and RNG from the checkpoint; data order from (seed, epoch).
    progress = {"step": 0, "epoch": 0, "batches_in_epoch": 0, "tokens_seen": 0, "loss_history": []}
    if resume_path is not None:
        progress = load_checkpoint(accelerator, resume_path)
        logger.info(f"Resumed from {resume_path} at step {progress['step']}", main_process_only=True)
    elif cfg.resume_from_checkpoint:
        logger.info("No checkpoint to resume from: starting a fresh run.", main_process_only=True)

    accelerator.init_trackers("hfssl-mlm", config={k: v for k, v in vars(cfg).items() if v is not None})
    if accelerator.is_main_process:
        save_config(cfg, output_dir / "hfssl_config.yaml")
    flops_per_token = encoder_flops_per_token(model.config, cfg.max_seq_length)
    peak = gpu_peak_flops(torch.cuda.get_device_name()) if accelerator.device.type == "cuda" else None
    logger.info(f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters, {accelerator.num_processes} "
                f"process(es), {max_steps} steps", main_process_only=True)

    # --hub_push_checkpoints: every checkpoint is uploaded from a background thread; training never waits for it.
    pusher = (CheckpointPusher(cfg.hub_model_id, private=cfg.hub_private_repo, revision=cfg.hub_revision)
              if cfg.hub_push_checkpoints and accelerator.is_main_process else None)

    # --profile_steps: a trace, the heaviest operators and how busy the device was over a few steps.
    profiler = step_profiler(accelerator, output_dir / "profile", skip_steps=cfg.profile_skip_steps, active_steps=cfg.profile_steps,
                             steps_left=max_steps - progress["step"], print_fn=tqdm.write) if cfg.profile_steps else None

    # ---- Training loop.
    step, epoch = progress["step"], progress["epoch"]
    tokens_seen, loss_history = progress["tokens_seen"], progress["loss_history"]
    metrics: dict = {}
    bar = tqdm(total=max_steps, initial=step, desc="mlm", disable=not accelerator.is_local_main_process)
    objective.train()
    # Throughput counts this process's run only (not what a resumed checkpoint had seen) and excludes eval/saving.
    start_time, start_tokens, window_loss, window_n = time.perf_counter(), tokens_seen, 0.0, 0
    windows: list[tuple[float, int]] = []  # (seconds, tokens) per logging window; the first holds compile and warm-up
    if profiler is not None:
        profiler.start()
    while step < max_steps:
        (sampler or train_ds).set_epoch(epoch)
        skip = progress["batches_in_epoch"] if epoch == progress["epoch"] else 0
        batches = accelerator.skip_first_batches(train_dl, skip) if skip and not cfg.streaming else train_dl
        if cfg.streaming and skip:
            batches = (b for i, b in enumerate(train_dl) if i >= skip)
        micro = skip
        for batch in batches:
            n_tokens = int(batch["attention_mask"].sum()) if "attention_mask" in batch else batch["input_ids"].numel()
            batch = {k: v.to(accelerator.device, non_blocking=True) for k, v in batch.items()}
            micro += 1
            rows = batch["input_ids"].shape[0]
            capacity = (selection_bound(batch["input_ids"].numel(), cfg.mlm_probability, cfg.whole_word_mask)
                        if cfg.fixed_sparse_capacity and cfg.sparse_prediction else None)
            inputs, labels = mask_tokens(batch["input_ids"], special=special, word_start=word_start, **mask_kwargs,
                                         generator=step_generator(cfg.seed, epoch * 10_000_000 + micro, accelerator.device),
                                         row_offset=accelerator.process_index * rows, total_rows=accelerator.num_processes * rows,
                                         max_selected=capacity)
            with accelerator.accumulate(objective):
                # Normalise by the masked tokens of the whole global batch (DDP then averages over processes), so
                # N processes compute the gradient one process would on the same global batch.
                n_masked = accelerator.reduce((labels != IGNORE_INDEX).sum(), "sum").clamp(min=1)
                with accelerator.autocast():
                    loss = objective(inputs, labels, attention_mask=batch.get("attention_mask"), reduction="sum", capacity=capacity)
                loss = loss * accelerator.num_processes / n_masked
                accelerator.backward(loss)
                if accelerator.sync_gradients and cfg.max_grad_norm > 0:  # 0: no clipping
                    accelerator.clip_grad_norm_(objective.parameters(), cfg.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            tokens_seen += n_tokens * accelerator.num_processes
            # Kept as a tensor: calling .item() every step would stall a GPU on each micro-batch.
            window_loss, window_n = window_loss + loss.detach(), window_n + 1
            if not accelerator.sync_gradients:
                continue
            step += 1
            bar.update(1)
            if profiler is not None:
                profiler.step()
            checkpoint_now = cfg.checkpointing_steps and step % cfg.checkpointing_steps == 0
            if step % cfg.logging_steps == 0 or step == max_steps or checkpoint_now:
                elapsed = time.perf_counter() - start_time
                tps = (tokens_seen - start_tokens) / max(elapsed, 1e-9)
                windows.append((elapsed, tokens_seen - start_tokens))
                avg = float(accelerator.reduce(torch.as_tensor(window_loss, device=accelerator.device), "mean")) / window_n
                if not math.isfinite(avg):  # checked before any checkpoint, so the last saved one is good
                    raise NonFiniteLossError(f"Training loss is {avg} before step {step}. Lower --learning_rate or use "
                                             f"--mixed_precision no; the last good checkpoint is kept in {output_dir}.")
                loss_history.append((step, avg))
                log = {"train/loss": avg, "train/lr": scheduler.get_last_lr()[0], "train/tokens_per_second": tps}
                if peak:
                    log["train/mfu"] = tps * flops_per_token / (peak * accelerator.num_processes)
                accelerator.log(log, step=step)
                bar.set_postfix(loss=f"{avg:.3f}", tok_s=f"{tps:,.0f}", **({"mfu": f"{log['train/mfu']:.1%}"} if peak else {}))
                start_time, start_tokens, window_loss, window_n = time.perf_counter(), tokens_seen, 0.0, 0
            if eval_dl is not None and cfg.eval_steps and step % cfg.eval_steps == 0 and step < max_steps:
                metrics = evaluate_mlm(objective, eval_dl, accelerator)
                accelerator.log({f"eval/{k}": v for k, v in metrics.items()}, step=step)
                bar.write(f"step {step}: eval_loss {metrics['eval_loss']:.4f}, perplexity {metrics['perplexity']:.2f}")
                start_time = time.perf_counter()  # evaluation time is not training throughput
            if checkpoint_now:
                saved = save_checkpoint(accelerator, output_dir, step, {"epoch": epoch, "batches_in_epoch": micro, "tokens_seen": tokens_seen,
                                                                "loss_history": loss_history}, cfg.checkpoints_total_limit)
                if pusher is not None:
                    pusher.push(saved, step=step)
                start_time = time.perf_counter()
            if step >= max_steps:
                break
        else:
            epoch += 1
            if micro == skip:
                raise ConfigError("The training data gave no batch: lower --per_device_train_batch_size or add data.")
            continue
        break
    bar.close()
    if profiler is not None:
        profiler.stop()

    # ---- Final evaluation, save and push.
    if eval_dl is not None:
        metrics = evaluate_mlm(objective, eval_dl, accelerator)
        accelerator.log({f"eval/{k}": v for k, v in metrics.items()}, step=step)
    # Steady state: every logging window but the first (torch.compile, cuDNN/cuBLAS autotuning, allocator growth).
    results = {"train_steps": step, "train_tokens": tokens_seen, "train_runtime": round(sum(t for t, _ in windows), 2),
               "train_tokens_per_second": tokens_per_second(windows),
               "train_tokens_per_second_steady": tokens_per_second(windows[1:] or windows),
               "train_loss": loss_history[-1][1] if loss_history else None, **metrics,
               "peak_memory_mb": round(peak_memory_mb(accelerator.device), 1), "num_processes": accelerator.num_processes}
    if peak:
        for key, tps_key in (("mfu", "train_tokens_per_second"), ("mfu_steady", "train_tokens_per_second_steady")):
            results[key] = results[tps_key] * flops_per_token / (peak * accelerator.num_processes)
    accelerator.wait_for_everyone()
    # get_state_dict gathers FSDP shards (a no-op elsewhere); every rank must call it.
    state_dict = {k.removeprefix("model."): v for k, v in accelerator.get_state_dict(objective).items()}
    if accelerator.is_main_process:
        unwrapped = accelerator.unwrap_model(objective).model
        unwrapped.save_pretrained(output_dir, state_dict=state_dict, safe_serialization=True)
        tokenizer.save_pretrained(output_dir)
        (output_dir / "all_results.json").write_text(json.dumps(results, indent=2))
        (output_dir / "training_log.json").write_text(json.dumps({"loss_history": loss_history}))
        write_model_card(output_dir, "masked-lm", {
            "model_name": cfg.hub_model_id or output_dir.name, "repo_id": cfg.hub_model_id or str(output_dir),
            "datasets": [cfg.dataset_name or Path(train_file).name], "dataset_config": cfg.dataset_config_name,
            "dataset_revision": cfg.dataset_revision,
            "base_model": cfg.model_name_or_path,
            "hyperparameters": {k: getattr(cfg, k) for k in ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads",
                                "max_seq_length", "mlm_probability", "whole_word_mask", "per_device_train_batch_size",
                                "gradient_accumulation_steps", "learning_rate", "max_steps", "seed")},
            "compute": {"processes": accelerator.num_processes, "device": accelerator.device.type, "tokens_seen": tokens_seen,
                        "train_runtime_s": results["train_runtime"]},
            "results": {k: metrics[k] for k in ("eval_loss", "perplexity") if k in metrics},
            "loss_history": loss_history})
        mfu = f", MFU {results['mfu_steady']:.1%}" if peak else ""
        print(f"Saved the model to {output_dir.resolve()} — eval_loss {metrics.get('eval_loss', float('nan')):.4f}, "
              f"{results['train_tokens_per_second']:,.0f} tokens/s ({results['train_tokens_per_second_steady']:,.0f} "
              f"after the first log window{mfu}), peak memory {results['peak_memory_mb']:.0f} MB")
    settle_gloo_workers()  # no hang at teardown: hfssl/distributed.py says why
    accelerator.end_training()  # trackers flushed: the local output is complete before any upload can fail
    if pusher is not None:
        pusher.finish()  # waits for checkpoint uploads still running; reports failures without raising
    if cfg.push_to_hub and accelerator.is_main_process:
        push_folder(output_dir, cfg.hub_model_id, private=cfg.hub_private_repo, revision=cfg.hub_revision)
    return results


if __name__ == "__main__":
    try:
        main()
    except (ConfigError, DataError, OutputDirError, HubError, NonFiniteLossError) as err:
        sys.exit(f"error: {err}")
