#!/usr/bin/env python
"""Fine-tune a pretrained checkpoint for text classification or regression with ``transformers.Trainer``.

    python recipes/finetune.py                                   # offline: outputs/mlm on the fortunes task
    python recipes/finetune.py --model_name_or_path outputs/mlm --task_name mrpc
    python recipes/finetune.py --model_name_or_path outputs/mlm --dataset_name stanfordnlp/imdb
    python recipes/finetune.py --config recipes/configs/finetune/sst2.yaml --model_name_or_path my/bert
    python recipes/finetune.py --train_file train.csv --validation_file dev.csv --test_file test.csv \
        --sentence1_key review --label_column stars
    torchrun --nproc_per_node 2 recipes/finetune.py ...          # data-parallel, CPU or GPU

Data: a GLUE task from the Hub (``--task_name``), any labelled Hub dataset (``--dataset_name``), local files
(``--train_file``...), or with none of them the offline fortunes topic task (hfssl/finetune/fortunes.py). Evaluates
and saves each epoch (or every ``--checkpointing_steps``), keeps the best checkpoint by the task's metric, can stop
early, predicts the test split in GLUE submission format, and writes a Hub-ready folder: model, tokenizer, id2label,
all_results.json, README.md.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from accelerate import PartialState
from transformers import DataCollatorWithPadding, EarlyStoppingCallback, Trainer, set_seed

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from hfssl.checkpointing import NonFiniteLossError, OutputDirError, prepare_output_dir, resolve_trainer_resume
from hfssl.config import ConfigError, parse_config, save_config
from hfssl.data.text import DataError
from hfssl.distributed import no_accelerator, settle_gloo_workers
from hfssl.finetune.config import FinetuneConfig
from hfssl.finetune.data import (check_columns, check_texts, encode_splits, glue_task, load_glue_splits, load_hub_splits,
                                 load_local_splits, local_task_for, resolve_labels, select_splits)
from hfssl.finetune.fortunes import build_fortunes_task
from hfssl.finetune.metrics import classification_metrics, logits_to_predictions, regression_metrics
from hfssl.finetune.non_finite import StopOnNonFiniteLoss
from hfssl.finetune.pretrained import (CheckpointError, check_checkpoint, load_classifier, load_tokenizer,
                                       max_input_length)
from hfssl.finetune.submission import STSB_RANGE, format_predictions, write_submission
from hfssl.finetune.tasks import GLUE_DATASET
from hfssl.hub import CheckpointPusher, HubError, PushCheckpointsCallback, check_push_ready, push_folder
from hfssl.model_card import write_model_card
from hfssl.tracking import tracker_names


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Run the recipe; returns all_results (train, eval and test metrics) for callers such as the benchmark."""
    # ---- 1. Arguments, checked before anything expensive -------------------------------------------------------
    cfg = parse_config(FinetuneConfig, argv)
    check_push_ready(cfg.push_to_hub, cfg.hub_model_id)
    report_to = tracker_names(cfg.report_to)
    check_checkpoint(cfg.model_name_or_path)
    tokenizer = load_tokenizer(cfg.model_name_or_path)
    state = PartialState(cpu=no_accelerator())  # as TrainingArguments(use_cpu=...) below: CPU torchrun is multi-process
    if state.is_main_process:  # one process checks and creates the folder; the others could see its files as a clash
        prepare_output_dir(cfg.output_dir, overwrite=cfg.overwrite_output_dir, resuming=bool(cfg.resume_from_checkpoint))
    state.wait_for_everyone()
    started = time.time()

    # ---- 2. Labelled data: GLUE or another Hub dataset, local files, or the offline fortunes task -----------
    if cfg.task_name:
        dataset_name = cfg.dataset_name or GLUE_DATASET
        source = f"{dataset_name}/{cfg.task_name}"
        task = glue_task(cfg.task_name)
        raw = load_glue_splits(task, dataset_name, cfg.dataset_revision)
        check_columns(raw, task, source)
        labels = resolve_labels(raw, task.label_column, "auto", source)
        data_sources, task_description = [dataset_name], f"GLUE {cfg.task_name}"
    elif cfg.dataset_name:
        source = cfg.dataset_name
        with state.main_process_first():  # rank 0 downloads, the others read its cache
            raw = load_hub_splits(cfg.dataset_name, cfg.dataset_config_name, cfg.dataset_revision, seed=cfg.seed)
        task, labels = local_task_for(raw, cfg.sentence1_key, cfg.sentence2_key, cfg.label_column, cfg.label_type, source)
        data_sources, task_description = [cfg.dataset_name], f"classification or regression on {cfg.dataset_name}"
    else:
        files = {"train": cfg.train_file, "validation": cfg.validation_file, "test": cfg.test_file}
        if not cfg.train_file:
            with state.main_process_first():
                files = {k: str(v) for k, v in build_fortunes_task(cfg.fortune_categories).items()}
        source = files["train"]
        raw = load_local_splits(files["train"], files["validation"], files["test"], seed=cfg.seed)
        task, labels = local_task_for(raw, cfg.sentence1_key, cfg.sentence2_key, cfg.label_column, cfg.label_type, source)
        data_sources = [Path(f).name for f in files.values() if f]
        task_description = "classification or regression from local files"
        if not cfg.train_file:
            data_sources = [f"Debian fortunes, categories {', '.join(cfg.fortune_categories)} (hfssl/finetune/fortunes.py)"]
            task_description = "fortune topic classification (offline default task)"
    raw = select_splits(raw, task, max_train_samples=cfg.max_train_samples, max_eval_samples=cfg.max_eval_samples,
                        max_predict_samples=cfg.max_predict_samples, do_predict=cfg.do_predict)
    check_texts(raw, task, source)  # an empty text cell fails here, not while tokenizing after the model loaded

    # ---- 3. Model: the pretrained encoder plus a fresh classification (or regression) head ---------------------
    set_seed(cfg.seed)  # the head is initialised here, before Trainer seeds anything
    model = load_classifier(cfg.model_name_or_path, num_labels=labels.num_labels, id2label=labels.id2label,
                            label2id=labels.label2id, is_regression=labels.is_regression)

    # ---- 4. Tokenize (no padding here: the collator pads each batch to its longest input) ---------------------
    max_length = min(cfg.max_seq_length, max_input_length(model.config, tokenizer))
    with state.main_process_first():  # rank 0 fills the datasets cache, the others read it
        encoded = encode_splits(raw, task, labels, tokenizer, max_length,
                                token_type_ids=getattr(model.config, "type_vocab_size", 1) > 1)

    def compute_metrics(eval_pred) -> dict[str, float]:
        predictions = logits_to_predictions(eval_pred.predictions, labels.is_regression)
        if labels.is_regression:
            return regression_metrics(predictions, eval_pred.label_ids, task.metrics)
        return classification_metrics(predictions, eval_pred.label_ids, task.metrics, labels.num_labels)

    # ---- 5. Trainer: evaluate each epoch, keep the best checkpoint, optionally stop early -----------------------
    args = cfg.training_arguments(task.main_metric, report_to)
    # --hub_push_checkpoints: each checkpoint-N is uploaded in the background by hfssl's pusher, as in the other
    # recipes (hfssl.hub.PushCheckpointsCallback says why Trainer's own hub_strategy="checkpoint" is not used).
    pusher = (CheckpointPusher(cfg.hub_model_id, private=cfg.hub_private_repo, revision=cfg.hub_revision)
              if cfg.hub_push_checkpoints and state.is_main_process else None)
    eval_sets = {name or "eval": encoded[split] for name, split in task.eval_splits.items()}
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=encoded["train"],
        eval_dataset=eval_sets if len(eval_sets) > 1 else eval_sets["eval"],
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=compute_metrics,
        # A NaN/inf loss stops the run before anything from it is saved (the Trainer would log nan and go on).
        callbacks=[StopOnNonFiniteLoss()]
        + ([EarlyStoppingCallback(cfg.early_stopping_patience)] if cfg.early_stopping_patience else [])
        + ([PushCheckpointsCallback(pusher)] if pusher is not None else []),
    )

    # ---- 6. Train (resuming if asked), then evaluate the best model ---------------------------------------------
    # 'latest': the newest COMPLETE checkpoint-N under output_dir/checkpoints (the Trainer writes them in place, so
    # a killed run can leave a newer half-written one); none saved yet: start fresh.
    resume = resolve_trainer_resume(cfg.resume_from_checkpoint, args.output_dir)
    train_result = trainer.train(resume_from_checkpoint=resume)
    trainer.save_model(cfg.output_dir)  # the best model (load_best_model_at_end) + tokenizer, as safetensors
    all_results = {k if k.startswith("train") else f"train_{k}": v for k, v in train_result.metrics.items()}
    card_results: dict[str, dict[str, float]] = {}  # split -> metric -> value, for the model card
    for name, split in task.eval_splits.items():
        prefix = f"eval_{name}" if name else "eval"
        metrics = trainer.evaluate(encoded[split], metric_key_prefix=prefix)
        all_results.update(metrics)
        card_results[split] = scores_only(metrics, prefix)

    # ---- 7. Predict the test split(s) in GLUE submission format --------------------------------------------------
    for stem, split in task.test_splits.items() if cfg.do_predict else []:
        if split not in encoded:
            continue
        output = trainer.predict(encoded[split], metric_key_prefix=f"predict_{split}")
        if "labels" in encoded[split].column_names:  # a labelled local test file is scored too
            all_results.update(output.metrics)
            card_results[split] = scores_only(output.metrics, f"predict_{split}")
        if trainer.is_world_process_zero():
            predictions = logits_to_predictions(output.predictions, labels.is_regression)
            lines = format_predictions(predictions, is_regression=labels.is_regression, label_names=labels.names,
                                       use_names=task.submit_label_names, clip=STSB_RANGE if task.name == "stsb" else None)
            write_submission(Path(cfg.output_dir) / f"{stem}.tsv", lines)
    trainer.log_metrics("all", all_results)

    # ---- 8. Results, config, model card, Hub ------------------------------------------------------------------------
    if trainer.is_world_process_zero():
        out = Path(cfg.output_dir)
        (out / "training_args.bin").unlink(missing_ok=True)  # a pickle; hfssl_config.yaml records the run instead
        (out / "all_results.json").write_text(json.dumps(all_results, indent=2), encoding="utf-8")
        save_config(cfg, out / "hfssl_config.yaml")
        history = trainer.state.log_history
        write_model_card(out, "text-classifier", {
            "model_name": cfg.hub_model_id or out.name,
            "repo_id": cfg.hub_model_id or str(out),
            "base_model": cfg.model_name_or_path,
            "datasets": data_sources,
            "dataset_config": cfg.task_name or cfg.dataset_config_name,
            "dataset_revision": cfg.dataset_revision,
            "model_details": {
                "task": task_description,
                "labels": "regression (one score)" if labels.is_regression else ", ".join(labels.names),
                "architecture": type(model).__name__,
                "parameters": sum(p.numel() for p in model.parameters()),
                "max_seq_length": max_length,
            },
            "hyperparameters": {k: getattr(cfg, k) for k in (
                "learning_rate", "per_device_train_batch_size", "gradient_accumulation_steps", "num_train_epochs",
                "max_steps", "warmup_steps", "weight_decay", "early_stopping_patience", "seed", "mixed_precision")},
            "compute": {"num_processes": state.num_processes, "wall_time_s": round(time.time() - started, 1)},
            "results": card_results,
            "loss_history": [(e["step"], e["loss"]) for e in history if "loss" in e],
            "eval_history": [(e["step"], v) for e in history for k, v in e.items() if k.endswith("eval_loss")
                             or k == "eval_loss"],
        })
    # No collective op follows, so end the process group here rather than at interpreter exit, where its gloo threads
    # can abort the process (hfssl/distributed.py). Settling first lets a gloo worker still freeing the last
    # collective's work take the GIL; otherwise freeing the DDP model when main() returns joins that worker while
    # holding the GIL it waits for (a deadlock seen in tests/test_finetune_recipe.py and test_image_finetune_faults.py).
    state.wait_for_everyone()
    settle_gloo_workers()
    state.destroy_process_group()
    if pusher is not None:
        pusher.finish()  # waits for checkpoint uploads still running; reports failures without raising
    if cfg.push_to_hub and trainer.is_world_process_zero():
        push_folder(cfg.output_dir, cfg.hub_model_id, private=cfg.hub_private_repo, revision=cfg.hub_revision)
    return all_results


def scores_only(metrics: dict[str, float], prefix: str) -> dict[str, float]:
    """Drop timings and the key prefix: {"eval_accuracy": .9, "eval_runtime": 1.2} -> {"accuracy": .9}."""
    return {k[len(prefix) + 1:]: v for k, v in metrics.items() if not k.endswith(("_runtime", "_per_second", "epoch"))}


if __name__ == "__main__":
    try:
        main()
    except (ConfigError, DataError, CheckpointError, OutputDirError, NonFiniteLossError, HubError) as err:  # bad input: print the message with its fix, no trace
        sys.exit(f"error: {err}")
