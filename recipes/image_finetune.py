#!/usr/bin/env python
"""Fine-tune an image encoder (e.g. one from ``recipes/contrastive.py``) for classification with the ``Trainer``.

    python recipes/image_finetune.py --model_name_or_path outputs/contrastive      # offline digits
    python recipes/image_finetune.py --model_name_or_path outputs/contrastive --dataset_name cifar10
    python recipes/image_finetune.py --model_name_or_path outputs/contrastive --from_scratch   # the baseline

``AutoModelForImageClassification`` puts a new linear classifier on the saved backbone; the data pipeline is
the one pretraining used (undecoded images, corrupt files skipped, any mode to RGB, resize to a square) with the
normalization of the saved image processor. Accuracy on the validation split goes to ``all_results.json``.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
from accelerate import PartialState
from transformers import (AutoConfig, AutoImageProcessor, AutoModelForImageClassification, Trainer, TrainingArguments,
                          set_seed)

from hfssl.checkpointing import NonFiniteLossError, OutputDirError, prepare_output_dir, resolve_trainer_resume
from hfssl.config import ConfigError, RunConfig, parse_config, save_config
from hfssl.contrastive.augment import normalize, to_float
from hfssl.contrastive.data import ImageCollator, load_image_splits
from hfssl.contrastive.encoder import processor_geometry
from hfssl.data.text import DataError
from hfssl.distributed import no_accelerator, settle_gloo_workers
from hfssl.finetune.non_finite import StopOnNonFiniteLoss
from hfssl.hub import CheckpointPusher, HubError, PushCheckpointsCallback, check_push_ready, push_folder
from hfssl.model_card import write_model_card
from hfssl.tracking import tracker_names


@dataclasses.dataclass
class ImageFinetuneConfig(RunConfig):
    output_dir: str = dataclasses.field(default="outputs/image-finetune", metadata={"help": "Where the classifier goes."})
    model_name_or_path: str | None = dataclasses.field(default=None, metadata={"help": "Encoder to fine-tune (folder or Hub id)."})
    from_scratch: bool = dataclasses.field(default=False, metadata={"help": "Same architecture, random weights: the baseline."})
    dataset_name: str | None = dataclasses.field(default=None, metadata={"help": "Hub dataset; none: offline digits."})
    dataset_config_name: str | None = dataclasses.field(default=None, metadata={"help": "Configuration of --dataset_name."})
    dataset_revision: str | None = dataclasses.field(
        default=None, metadata={"help": "Git revision of --dataset_name to pin: a branch, tag or commit sha of the Hub "
                                        "dataset repo (default: the latest)."})
    train_dir: str | None = dataclasses.field(default=None, metadata={"help": "Image folder, one subfolder per class."})
    validation_dir: str | None = dataclasses.field(default=None, metadata={"help": "Validation image folder."})
    image_column: str | None = dataclasses.field(default=None, metadata={"help": "Column holding the images."})
    label_column: str | None = dataclasses.field(default=None, metadata={"help": "Column holding the class labels."})
    validation_split_percentage: int = dataclasses.field(default=10, metadata={"help": "Held-out percent if no validation split."})
    max_train_samples: int | None = dataclasses.field(default=None, metadata={"help": "Use only N training images."})
    per_device_train_batch_size: int = dataclasses.field(default=64, metadata={"help": "Images per process per step."})
    per_device_eval_batch_size: int = dataclasses.field(default=256, metadata={"help": "Images per evaluation batch."})
    num_train_epochs: float = dataclasses.field(default=5, metadata={"help": "Passes over the training data."})
    max_steps: int = dataclasses.field(default=-1, metadata={"help": "Optimizer steps (overrides epochs when > 0)."})
    learning_rate: float = dataclasses.field(default=1e-3, metadata={"help": "Peak learning rate."})
    weight_decay: float = dataclasses.field(default=0.01, metadata={"help": "AdamW weight decay."})
    warmup_steps: float = dataclasses.field(default=0.1, metadata={"help": "Warmup steps, or a fraction if < 1."})

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.model_name_or_path:
            raise ConfigError("Pass --model_name_or_path: the encoder folder written by recipes/contrastive.py or a Hub id.")
        if self.dataset_name and self.train_dir:
            raise ConfigError("Pass either --dataset_name or --train_dir, not both.")
        for name in ("per_device_train_batch_size", "per_device_eval_batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name} must be >= 1, got {getattr(self, name)}.")
        if self.learning_rate <= 0:
            raise ConfigError(f"--learning_rate must be > 0, got {self.learning_rate}.")
        if self.weight_decay < 0 or self.warmup_steps < 0:
            raise ConfigError(f"--weight_decay and --warmup_steps must be >= 0, got {self.weight_decay}, {self.warmup_steps}.")
        if self.max_steps == 0 or self.max_steps < -1 or (self.max_steps == -1 and self.num_train_epochs <= 0):
            raise ConfigError(f"Pass --max_steps > 0, or --max_steps -1 with --num_train_epochs > 0 (got {self.max_steps}, "
                              f"{self.num_train_epochs}).")
        if not 0 <= self.validation_split_percentage < 100:
            raise ConfigError(f"--validation_split_percentage must be in [0, 100), got {self.validation_split_percentage}.")
        if self.max_train_samples is not None and self.max_train_samples < 1:
            raise ConfigError(f"--max_train_samples must be >= 1 (or unset for all images), got {self.max_train_samples}.")


def main(argv: list[str] | None = None) -> dict[str, float]:
    cfg = parse_config(ImageFinetuneConfig, argv)
    check_push_ready(cfg.push_to_hub, cfg.hub_model_id)
    # cpu=no_accelerator(), as in TrainingArguments(use_cpu=...) below: torchrun on CPU then gives a gloo process group.
    state = PartialState(cpu=no_accelerator())
    if state.is_main_process:  # one process checks and creates the folder; the others could see its files as a clash
        prepare_output_dir(cfg.output_dir, overwrite=cfg.overwrite_output_dir, resuming=bool(cfg.resume_from_checkpoint))
    state.wait_for_everyone()
    processor = AutoImageProcessor.from_pretrained(cfg.model_name_or_path)
    size, mean, std = processor_geometry(processor)

    splits, image_col, label_col = load_image_splits(
        dataset_name=cfg.dataset_name, dataset_config_name=cfg.dataset_config_name,
        dataset_revision=cfg.dataset_revision, train_dir=cfg.train_dir,
        validation_dir=cfg.validation_dir, image_column=cfg.image_column, label_column=cfg.label_column,
        validation_split_percentage=cfg.validation_split_percentage, seed=cfg.seed)
    if label_col is None or "validation" not in splits:
        raise ConfigError("Fine-tuning needs a label column and a validation split; pass --label_column NAME.")
    train = splits["train"]
    if cfg.max_train_samples:
        train = train.select(range(min(cfg.max_train_samples, len(train))))
    feature = train.features[label_col]
    names = list(feature.names) if hasattr(feature, "names") else sorted(set(train[label_col]))
    decode = ImageCollator(image_col, label_col, size)

    def collate(examples):  # the saved processor's normalization, on batches of uint8 images
        batch = decode(examples)
        return {"pixel_values": normalize(to_float(batch["pixel_values"]), mean, std), "labels": batch["labels"]}

    label_args = dict(num_labels=len(names), id2label=dict(enumerate(map(str, names))),
                      label2id={str(n): i for i, n in enumerate(names)})
    set_seed(cfg.seed)  # the new head (and --from_scratch weights) are initialised here, before Trainer seeds anything
    if cfg.from_scratch:
        config = AutoConfig.from_pretrained(cfg.model_name_or_path, **label_args)
        model = AutoModelForImageClassification.from_config(config)
    else:
        model = AutoModelForImageClassification.from_pretrained(cfg.model_name_or_path, use_safetensors=True,
                                                                trust_remote_code=False, **label_args)

    strategy = "steps" if cfg.checkpointing_steps > 0 else "epoch"
    args = TrainingArguments(
        # Trainer's checkpoint-N folders go under checkpoints/, as in every hfssl recipe (kept out of the final push).
        output_dir=f"{cfg.output_dir}/checkpoints", seed=cfg.seed,
        per_device_train_batch_size=cfg.per_device_train_batch_size,
        per_device_eval_batch_size=cfg.per_device_eval_batch_size, num_train_epochs=cfg.num_train_epochs,
        max_steps=cfg.max_steps, learning_rate=cfg.learning_rate, weight_decay=cfg.weight_decay,
        warmup_steps=cfg.warmup_steps, lr_scheduler_type="cosine",
        # Evaluate and save together: each epoch, or every --checkpointing_steps steps.
        eval_strategy=strategy, save_strategy=strategy, eval_steps=cfg.checkpointing_steps or None,
        save_steps=cfg.checkpointing_steps or 500, save_total_limit=cfg.checkpoints_total_limit or None,
        load_best_model_at_end=True, metric_for_best_model="accuracy",  # the saved model is the best evaluation's
        logging_steps=cfg.logging_steps, bf16=cfg.mixed_precision == "bf16", fp16=cfg.mixed_precision == "fp16",
        use_cpu=no_accelerator(),
        average_tokens_across_devices=False,  # a per-image mean loss: see hfssl/finetune/config.py for why
        report_to=tracker_names(cfg.report_to) or "none",
        remove_unused_columns=False,  # the image column is decoded by our collator, not by the model
    )
    # --hub_push_checkpoints: each checkpoint-N is uploaded in the background, as in the other recipes.
    pusher = (CheckpointPusher(cfg.hub_model_id, private=cfg.hub_private_repo, revision=cfg.hub_revision)
              if cfg.hub_push_checkpoints and args.process_index == 0 else None)
    trainer = Trainer(model=model, args=args, train_dataset=train, eval_dataset=splits["validation"],
                      data_collator=collate, processing_class=processor,
                      # A NaN/inf loss stops the run before anything from it is saved.
                      callbacks=[StopOnNonFiniteLoss()] + ([PushCheckpointsCallback(pusher)] if pusher is not None else []),
                      compute_metrics=lambda p: {"accuracy": float((np.argmax(p.predictions, -1) == p.label_ids).mean())})
    # 'latest': the newest COMPLETE checkpoint-N (a killed run can leave a newer half-written one); none: start fresh.
    resume = resolve_trainer_resume(cfg.resume_from_checkpoint, args.output_dir)
    train_result = trainer.train(resume_from_checkpoint=resume)
    metrics = {**train_result.metrics, **trainer.evaluate()}
    trainer.save_model(cfg.output_dir)
    if trainer.is_world_process_zero():
        (Path(cfg.output_dir) / "training_args.bin").unlink(missing_ok=True)  # a pickle; hfssl_config.yaml records the run
        save_config(cfg, f"{cfg.output_dir}/hfssl_config.yaml")
        with open(f"{cfg.output_dir}/all_results.json", "w", encoding="utf-8") as handle:
            json.dump(metrics, handle, indent=2)
        write_model_card(cfg.output_dir, "image-classifier", {
            "model_name": cfg.hub_model_id or cfg.output_dir, "recipe": "recipes/image_finetune.py",
            "model_details": {"labels": ", ".join(map(str, names)), "architecture": type(model).__name__,
                              "parameters": sum(p.numel() for p in model.parameters()), "image_size": size},
            "datasets": [cfg.dataset_name or cfg.train_dir or "scikit-learn digits"],
            "dataset_config": cfg.dataset_config_name, "dataset_revision": cfg.dataset_revision,
            "base_model": None if cfg.from_scratch else cfg.model_name_or_path,
            "hyperparameters": {k: v for k, v in dataclasses.asdict(cfg).items() if v is not None and "hub" not in k},
            "compute": {"num_processes": args.world_size, "train_runtime_s": metrics["train_runtime"],
                        "images_seen": trainer.state.global_step * args.train_batch_size * args.world_size
                        * args.gradient_accumulation_steps},
            "results": {"accuracy": metrics["eval_accuracy"]}, "results_dataset": "validation split",
            "loss_history": [(h["step"], h["loss"]) for h in trainer.state.log_history if "loss" in h],
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
    return metrics


if __name__ == "__main__":
    try:
        main()
    except (ConfigError, DataError, OutputDirError, NonFiniteLossError, HubError) as err:  # the fix, no traceback
        sys.exit(f"error: {err}")
