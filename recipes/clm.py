"""Pretrain a GPT-2-style causal language model (next-token prediction) with Accelerate.

    python recipes/clm.py                                   # offline default: small GPT-2 on Python's own docs
    accelerate launch recipes/clm.py --config recipes/configs/clm/gpt2-small.yaml
    torchrun --nproc_per_node 2 recipes/clm.py --max_steps 50 # two CPU processes (gloo)

The story: config -> accelerator -> data -> tokenizer -> packing -> model and next-token objective ->
AdamW + schedule -> training loop (accumulation, clipping, eval perplexity, checkpoints) -> save, sample and push.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import set_seed
from datasets.distributed import split_dataset_by_node
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import get_scheduler, pipeline

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from hfssl.checkpointing import (NonFiniteLossError, OutputDirError, load_checkpoint, prepare_output_dir,
                                 resolve_resume_path, save_checkpoint)
from hfssl.clm.evaluation import evaluate_clm
from hfssl.clm.model_factory import build_model, check_tokenizer
from hfssl.clm.objective import CausalLMObjective
from hfssl.clm.throughput import decoder_flops_per_token
from hfssl.config import ConfigError, RunConfig, check_text_pretraining, parse_config, save_config
from hfssl.data.offline_corpus import python_docs_corpus
from hfssl.data.packing import pack_fn
from hfssl.data.text import DataError, load_text_splits
from hfssl.data.tokenizer_training import load_or_train_tokenizer
from hfssl.distributed import no_accelerator, settle_gloo_workers
from hfssl.fast_dropout import use_fast_dropout
from hfssl.precision import CHOICES as PRECISION_CHOICES
from hfssl.hub import CheckpointPusher, HubError, check_push_ready, push_folder
from hfssl.mlm.data import EpochShuffleSampler, PadCollator
from hfssl.mlm.model_factory import check_sizes
from hfssl.mlm.throughput import gpu_peak_flops, peak_memory_mb
from hfssl.model_card import write_model_card
from hfssl.tracking import tracker_names

logger = get_logger(__name__)


@dataclass
class CLMConfig(RunConfig):
    """Every flag of recipes/clm.py. The defaults are the offline default run (recipes/configs/clm/offline.yaml)."""

    output_dir: str = field(default="outputs/clm", metadata={"help": "Where checkpoints and the final model go."})
    mixed_precision: str = field(default="auto", metadata={"help": "auto (default: bf16 on GPUs and on CPUs with AVX512-BF16 "
                                 "or AMX; float32 on other CPUs, where bf16 is many times slower), bf16, fp16 (GPU) or no.",
                                 "choices": PRECISION_CHOICES})
    # Data
    dataset_name: str | None = field(default=None, metadata={"help": "Hub dataset, e.g. Salesforce/wikitext."})
    dataset_config_name: str | None = field(default=None, metadata={"help": "Dataset config, e.g. wikitext-103-raw-v1."})
    dataset_revision: str | None = field(default=None, metadata={"help": "Git revision of --dataset_name to pin: a "
                                         "branch, tag or commit sha of the Hub dataset repo (default: the latest)."})
    train_file: str | None = field(default=None, metadata={"help": "Local txt/csv/json/jsonl/parquet file."})
    validation_file: str | None = field(default=None, metadata={"help": "Local validation file (same type)."})
    text_column: str | None = field(default=None, metadata={"help": "Column with the text (default: 'text')."})
    validation_split_percentage: int = field(default=5, metadata={"help": "Held out from train when there is no validation split."})
    streaming: bool = field(default=False, metadata={"help": "Stream the dataset instead of downloading it (needs max_steps)."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Use only the first N training texts."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Use only the first N validation texts."})
    preprocessing_num_workers: int | None = field(default=None, metadata={"help": "Processes for tokenization."})
    # Tokenizer and model
    model_type: str = field(default="gpt2", metadata={"help": "Architecture when training from scratch.", "choices": ["gpt2"]})
    model_name_or_path: str | None = field(default=None, metadata={"help": "Continue pretraining this causal LM (its own "
                                           "dropout and sizes are kept)."})
    tokenizer_name: str | None = field(default=None, metadata={"help": "Tokenizer to use; a byte-level BPE is trained on the data if absent."})
    vocab_size: int = field(default=8192, metadata={"help": "Vocabulary size of a newly trained tokenizer."})
    tokenizer_train_samples: int = field(default=1_000_000, metadata={"help": "Texts used to train a new tokenizer."})
    hidden_size: int = 256
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    intermediate_size: int = 1024
    max_seq_length: int = field(default=128, metadata={"help": "Tokens per packed block (the context length of a new model)."})
    dropout: float = field(default=0.1, metadata={"help": "Residual, embedding and attention dropout of a new model (GPT-2: 0.1)."})
    fast_cpu_dropout: bool = field(default=True, metadata={"help": "On CPU, draw dropout masks 16 bits at a time "
                                   "(hfssl/fast_dropout.py; PyTorch's per-element draws are slow). GPUs are unaffected."})
    # Optimisation (GPT-2/3 style: AdamW beta2 0.95, weight decay 0.1, cosine decay after a warmup)
    per_device_train_batch_size: int = 32
    per_device_eval_batch_size: int = 64
    gradient_accumulation_steps: int = 1
    learning_rate: float = 1e-3
    weight_decay: float = 0.1
    adam_beta2: float = 0.95
    max_grad_norm: float = 1.0
    lr_scheduler_type: str = field(default="cosine", metadata={"choices": ["linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup", "inverse_sqrt", "warmup_stable_decay"]})
    warmup_steps: float = field(default=0.05, metadata={"help": "Warmup steps; a value below 1 is a fraction of max_steps."})
    max_steps: int = field(default=300, metadata={"help": "Optimizer steps (overrides num_train_epochs when > 0)."})
    num_train_epochs: float = 1.0
    eval_steps: int = field(default=150, metadata={"help": "Evaluate every N optimizer steps (0: only at the end)."})
    torch_compile: bool = field(default=False, metadata={"help": "torch.compile the model (pays off on long GPU runs)."})
    # Sample shown at the end, generated by the saved folder through pipeline("text-generation")
    sample_prompt: str = field(default="The function", metadata={"help": "Prompt continued after training ('' to skip)."})
    sample_max_new_tokens: int = 40

    def __post_init__(self):
        super().__post_init__()
        check_text_pretraining(self)
        if self.sample_max_new_tokens < 0:
            raise ConfigError(f"sample_max_new_tokens must not be negative, got {self.sample_max_new_tokens}.")
        if self.max_seq_length < 2:
            raise ConfigError(f"max_seq_length must be at least 2 (a token and the next one), got {self.max_seq_length}.")
        if not self.model_name_or_path:
            check_sizes(self.hidden_size, self.num_attention_heads, self.max_seq_length)


def main(argv: list[str] | None = None) -> dict:
    cfg = parse_config(CLMConfig, argv)
    check_push_ready(cfg.push_to_hub, cfg.hub_model_id)
    resume_path = resolve_resume_path(cfg.resume_from_checkpoint, cfg.output_dir)
    accelerator = Accelerator(cpu=no_accelerator(), gradient_accumulation_steps=cfg.gradient_accumulation_steps,
                              mixed_precision=cfg.mixed_precision,
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

    # ---- Tokenizer: a GPT-2 byte-level BPE trained on the training text when none is given.
    with accelerator.main_process_first():
        tokenizer = load_or_train_tokenizer(
            tokenizer_name=cfg.tokenizer_name, model_name_or_path=cfg.model_name_or_path, model_type=cfg.model_type,
            vocab_size=cfg.vocab_size, texts=(t for t in splits["train"][text_column] if t) if not cfg.streaming
            else (ex[text_column] for ex in splits["train"] if ex[text_column]),
            saved_dir=output_dir / "checkpoints" / "tokenizer", max_texts=cfg.tokenizer_train_samples)
    check_tokenizer(tokenizer, cfg.tokenizer_name or cfg.model_name_or_path or "trained here")

    # Documents are joined with <|endoftext|> (GPT-2's separator) and cut into full blocks: no padding anywhere.
    def pack(split, **kwargs):
        kwargs = {} if cfg.streaming else {"desc": "Tokenizing and packing", **kwargs}
        return split.map(pack_fn(tokenizer, text_column, cfg.max_seq_length, separator_id=tokenizer.eos_token_id),
                         batched=True, batch_size=1000, remove_columns=split.column_names, **kwargs)

    with accelerator.main_process_first():
        train_ds = pack(splits["train"], num_proc=cfg.preprocessing_num_workers)
        eval_ds = pack(splits["validation"]) if "validation" in splits else None
    if not cfg.streaming and len(train_ds) == 0:
        raise ConfigError(f"The training text gives no complete block of {cfg.max_seq_length} tokens: use more text "
                          f"or a smaller --max_seq_length.")
    if eval_ds is not None and not cfg.streaming and len(eval_ds) == 0:
        logger.warning(f"The validation text gives no block of {cfg.max_seq_length} tokens: no perplexity will be "
                       f"reported. Raise --validation_split_percentage or pass a longer --validation_file.")
        eval_ds = None

    # ---- Model (a new GPT-2 sized by the flags, or the checkpoint continued) and the next-token objective.
    model = build_model(cfg, tokenizer)
    if cfg.fast_cpu_dropout and accelerator.device.type == "cpu":
        use_fast_dropout(model)  # in memory only: the saved model is the plain one
    if cfg.torch_compile:
        model.compile()  # in place: parameter names (and checkpoints) stay those of the plain model
    objective = CausalLMObjective(model)

    # Full blocks stack without padding; the collator pads only if a user's data gives ragged rows.
    collate = PadCollator(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id)
    sampler = None
    if cfg.streaming:
        # Each process reads its own shards of the stream; a seeded shuffle buffer keeps the order reproducible,
        # so a resumed stream can skip what was already seen.
        train_ds = split_dataset_by_node(train_ds.shuffle(seed=cfg.seed, buffer_size=10_000),
                                         rank=accelerator.process_index, world_size=accelerator.num_processes)
        train_dl = DataLoader(train_ds, batch_size=cfg.per_device_train_batch_size, collate_fn=collate)
    else:
        sampler = EpochShuffleSampler(len(train_ds), cfg.seed)
        # A generator of its own keeps the DataLoader's per-epoch seed draw out of the global RNG, whose state a
        # resumed run restores mid-epoch (dropout must replay exactly).
        train_dl = DataLoader(train_ds, batch_size=cfg.per_device_train_batch_size, sampler=sampler, collate_fn=collate,
                              drop_last=True, generator=torch.Generator().manual_seed(cfg.seed))
    eval_dl = DataLoader(eval_ds, batch_size=cfg.per_device_eval_batch_size, collate_fn=collate) if eval_ds is not None else None

    # ---- Optimizer and schedule. No weight decay on biases and LayerNorm weights, as in GPT-2/3.
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
                                  lr=cfg.learning_rate, betas=(0.9, cfg.adam_beta2), eps=1e-8,
                                  fused=accelerator.device.type == "cuda")
    if cfg.max_steps > 0:
        max_steps = cfg.max_steps
    else:
        steps_per_epoch = math.ceil(len(train_dl) / accelerator.num_processes / cfg.gradient_accumulation_steps)
        max_steps = max(1, int(cfg.num_train_epochs * steps_per_epoch))
    warmup = int(cfg.warmup_steps * max_steps) if cfg.warmup_steps < 1 else int(cfg.warmup_steps)
    # Accelerate steps a prepared scheduler once per process at each optimizer step: lay the schedule out in
    # process-steps (as in transformers' no_trainer examples).
    scheduler = get_scheduler(cfg.lr_scheduler_type, optimizer, num_warmup_steps=warmup * accelerator.num_processes,
                              num_training_steps=max_steps * accelerator.num_processes)

    objective, optimizer, scheduler = accelerator.prepare(objective, optimizer, scheduler)
    if not cfg.streaming:
        train_dl = accelerator.prepare(train_dl)
    if eval_dl is not None:
        eval_dl = accelerator.prepare(eval_dl)

    # ---- Resume: weights, optimizer, schedule and RNG from the checkpoint; data order from (seed, epoch).
    progress = {"step": 0, "epoch": 0, "batches_in_epoch": 0, "tokens_seen": 0, "loss_history": [], "eval_history": []}
    if resume_path is not None:
        progress = load_checkpoint(accelerator, resume_path)
        logger.info(f"Resumed from {resume_path} at step {progress['step']}", main_process_only=True)
    elif cfg.resume_from_checkpoint:
        logger.info("No checkpoint to resume from: starting a fresh run.", main_process_only=True)

    accelerator.init_trackers("hfssl-clm", config={k: v for k, v in vars(cfg).items() if v is not None})
    if accelerator.is_main_process:
        save_config(cfg, output_dir / "hfssl_config.yaml")
    flops_per_token = decoder_flops_per_token(model, cfg.max_seq_length)
    peak = gpu_peak_flops(torch.cuda.get_device_name()) if accelerator.device.type == "cuda" else None
    n_params = sum(p.numel() for p in model.parameters())
    logger.info(f"{n_params / 1e6:.1f}M parameters, {accelerator.num_processes} process(es), {max_steps} steps", main_process_only=True)
    # --hub_push_checkpoints: every checkpoint is uploaded from a background thread; training never waits for it.
    pusher = (CheckpointPusher(cfg.hub_model_id, private=cfg.hub_private_repo, revision=cfg.hub_revision)
              if cfg.hub_push_checkpoints and accelerator.is_main_process else None)

    # ---- Training loop.
    step, epoch = progress["step"], progress["epoch"]
    tokens_seen, loss_history, eval_history = progress["tokens_seen"], progress["loss_history"], progress["eval_history"]
    metrics: dict = {}
    bar = tqdm(total=max_steps, initial=step, desc="clm", disable=not accelerator.is_local_main_process)
    objective.train()
    # Throughput counts this process's run only (not what a resumed checkpoint had seen) and excludes eval/saving.
    start_time, start_tokens, window_loss, window_n = time.perf_counter(), tokens_seen, 0.0, 0
    train_time, run_tokens = 0.0, 0
    while step < max_steps:
        (sampler or train_ds).set_epoch(epoch)
        skip = progress["batches_in_epoch"] if epoch == progress["epoch"] else 0
        batches = accelerator.skip_first_batches(train_dl, skip) if skip and not cfg.streaming else train_dl
        if cfg.streaming and skip:
            batches = (b for i, b in enumerate(train_dl) if i >= skip)
        micro = skip
        for batch in batches:
            input_ids = batch["input_ids"].to(accelerator.device)
            micro += 1
            with accelerator.accumulate(objective):
                # Every block is full, so each process predicts the same number of tokens: the mean per process,
                # averaged by DDP, is the mean over the global batch.
                with accelerator.autocast():
                    loss = objective(input_ids)
                accelerator.backward(loss)
                if accelerator.sync_gradients and cfg.max_grad_norm > 0:  # 0: no clipping
                    accelerator.clip_grad_norm_(objective.parameters(), cfg.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            tokens_seen += input_ids.numel() * accelerator.num_processes
            # Kept as a tensor: calling .item() every step would stall a GPU on each micro-batch.
            window_loss, window_n = window_loss + loss.detach(), window_n + 1
            if not accelerator.sync_gradients:
                continue
            step += 1
            bar.update(1)
            checkpoint_now = cfg.checkpointing_steps and step % cfg.checkpointing_steps == 0
            if step % cfg.logging_steps == 0 or step == max_steps or checkpoint_now:
                elapsed = time.perf_counter() - start_time
                tps = (tokens_seen - start_tokens) / max(elapsed, 1e-9)
                train_time, run_tokens = train_time + elapsed, run_tokens + tokens_seen - start_tokens
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
                metrics = evaluate_clm(objective, eval_dl, accelerator)
                eval_history.append((step, metrics["eval_loss"]))
                accelerator.log({f"eval/{k}": v for k, v in metrics.items()}, step=step)
                bar.write(f"step {step}: eval_loss {metrics['eval_loss']:.4f}, perplexity {metrics['perplexity']:.2f}")
                start_time = time.perf_counter()  # evaluation time is not training throughput
            if checkpoint_now:
                saved = save_checkpoint(accelerator, output_dir, step, {"epoch": epoch, "batches_in_epoch": micro,
                                        "tokens_seen": tokens_seen, "loss_history": loss_history,
                                        "eval_history": eval_history}, cfg.checkpoints_total_limit)
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

    # ---- Final evaluation, save, sample and push.
    if eval_dl is not None:
        metrics = evaluate_clm(objective, eval_dl, accelerator)
        eval_history.append((step, metrics["eval_loss"]))
        accelerator.log({f"eval/{k}": v for k, v in metrics.items()}, step=step)
    results = {"train_steps": step, "train_tokens": tokens_seen, "train_runtime": round(train_time, 2),
               "train_tokens_per_second": run_tokens / max(train_time, 1e-9),
               "train_loss": loss_history[-1][1] if loss_history else None, **metrics,
               "peak_memory_mb": round(peak_memory_mb(accelerator.device), 1), "num_processes": accelerator.num_processes}
    if peak:
        results["mfu"] = results["train_tokens_per_second"] * flops_per_token / (peak * accelerator.num_processes)
    accelerator.wait_for_everyone()
    # get_state_dict gathers FSDP shards (a no-op elsewhere); every rank must call it.
    state_dict = {k.removeprefix("model."): v for k, v in accelerator.get_state_dict(objective).items()}
    if accelerator.is_main_process:
        unwrapped = accelerator.unwrap_model(objective).model
        unwrapped.save_pretrained(output_dir, state_dict=state_dict, safe_serialization=True)
        tokenizer.save_pretrained(output_dir)
        # Generated by the saved folder, as a user would load it: proof that it is complete. Prompt and continuation
        # must fit the position table.
        room = min(cfg.sample_max_new_tokens, getattr(unwrapped.config, "max_position_embeddings", cfg.max_seq_length)
                   - len(tokenizer(cfg.sample_prompt)["input_ids"]))
        if cfg.sample_prompt and room > 0:
            set_seed(cfg.seed)
            generate = pipeline("text-generation", model=str(output_dir), device=accelerator.device)
            results["sample"] = generate(cfg.sample_prompt, max_new_tokens=room, do_sample=True, top_k=50)[0]["generated_text"]
        (output_dir / "all_results.json").write_text(json.dumps(results, indent=2))
        (output_dir / "training_log.json").write_text(json.dumps({"loss_history": loss_history, "eval_history": eval_history}))
        write_model_card(output_dir, "causal-lm", {
            "model_name": cfg.hub_model_id or output_dir.name, "repo_id": cfg.hub_model_id or str(output_dir),
            "datasets": [cfg.dataset_name or Path(train_file).name], "dataset_config": cfg.dataset_config_name,
            "dataset_revision": cfg.dataset_revision,
            "base_model": cfg.model_name_or_path,
            "model_details": {"architecture": type(unwrapped).__name__, "parameters": n_params,
                              "layers": unwrapped.config.num_hidden_layers, "hidden size": unwrapped.config.hidden_size,
                              "attention heads": unwrapped.config.num_attention_heads, "vocabulary": len(tokenizer),
                              "context length": cfg.max_seq_length},
            "hyperparameters": {k: getattr(cfg, k) for k in ("model_type", "max_seq_length", "dropout", "per_device_train_batch_size",
                                "gradient_accumulation_steps", "learning_rate", "weight_decay", "adam_beta2",
                                "lr_scheduler_type", "warmup_steps", "max_steps", "mixed_precision", "seed")},
            "compute": {"processes": accelerator.num_processes, "device": accelerator.device.type, "tokens_seen": tokens_seen,
                        "train_runtime_s": results["train_runtime"]},
            "results": {k: metrics[k] for k in ("eval_loss", "perplexity") if k in metrics}, "results_split": "validation",
            "loss_history": loss_history, "eval_history": eval_history})
        print(f"Saved the model to {output_dir.resolve()} — eval_loss {metrics.get('eval_loss', float('nan')):.4f}, "
              f"perplexity {metrics.get('perplexity', float('nan')):.2f}, {results['train_tokens_per_second']:,.0f} tokens/s, "
              f"peak memory {results['peak_memory_mb']:.0f} MB")
        if "sample" in results:
            print(f"Sample: {results['sample']!r}")
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
