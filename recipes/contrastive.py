#!/usr/bin/env python
"""Self-supervised pretraining of an image encoder with SimCLR, BYOL, MoCo v3, VICReg, Barlow Twins or DINO.

    python recipes/contrastive.py                                   # offline: scikit-learn digits, ResNet-18
    python recipes/contrastive.py --config recipes/configs/contrastive/cifar10-simclr.yaml
    torchrun --nproc_per_node 2 recipes/contrastive.py --method byol --train_dir images/ --max_steps 1000

Two augmented views of every image go through the encoder (a transformers vision model) and its heads; the
method's loss makes them agree (DINO can add smaller local crops, ``--num_local_crops``). The views are made in batches on the training device, so the data loader only
decodes images. kNN accuracy on frozen features is tracked during training; at the end kNN and a linear probe
are measured against the same encoder at random initialization, and the encoder is saved as a transformers model
with its image processor (``AutoModel.from_pretrained(output_dir)``).
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time

import torch
from accelerate import Accelerator, DataLoaderConfiguration
from accelerate.logging import get_logger
from accelerate.utils import set_seed
from datasets.distributed import split_dataset_by_node
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import get_cosine_schedule_with_warmup

from hfssl.distributed import no_accelerator, settle_gloo_workers
from hfssl.checkpointing import (NonFiniteLossError, OutputDirError, load_checkpoint, prepare_output_dir, resolve_resume_path,
                                 save_checkpoint)
from hfssl.config import ConfigError, config_to_dict, parse_config, save_config
from hfssl.contrastive.augment import PerImageRandom, augment, local_view, normalize, to_float, views_for_method
from hfssl.contrastive.config import ContrastiveConfig
from hfssl.contrastive.data import ImageCollator, load_image_splits
from hfssl.data.text import DataError
from hfssl.contrastive.encoder import ImageEncoder, build_backbone, make_image_processor
from hfssl.contrastive.evaluation import extract_features, knn_accuracy, linear_probe_accuracy
from hfssl.contrastive.global_batch_norm import convert_to_global_batch_norm
from hfssl.contrastive.lars import LARS, param_groups
from hfssl.contrastive.methods import DINO, MomentumMethod, build_method, cosine_momentum, linear_warmup
from hfssl.contrastive.rotation import CARD_TEXT as ROTNET_CARD_TEXT
from hfssl.hub import CheckpointPusher, HubError, check_push_ready, push_folder
from hfssl.model_card import write_model_card
from hfssl.tracking import tracker_names

logger = get_logger(__name__)


def evaluate(encoder, eval_loaders, cfg, accelerator, linear_probe: bool) -> dict[str, float]:
    """kNN (and linear probe) accuracy of frozen features; train split = memory bank, validation = queries."""
    bank = extract_features(encoder, eval_loaders["train"], accelerator.device, cfg.max_eval_samples, accelerator.autocast)
    query = extract_features(encoder, eval_loaders["validation"], accelerator.device, cfg.max_eval_samples, accelerator.autocast)
    results = {"knn_accuracy": knn_accuracy(*bank, *query, k=cfg.knn_k, temperature=cfg.knn_temperature)}
    if linear_probe:
        results["linear_probe_accuracy"] = linear_probe_accuracy(*bank, *query, seed=cfg.seed)
    return results


def main(argv: list[str] | None = None) -> dict[str, float]:
    # 1. Arguments, checked before anything expensive.
    cfg = parse_config(ContrastiveConfig, argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    check_push_ready(cfg.push_to_hub, cfg.hub_model_id)
    accelerator = Accelerator(
        cpu=no_accelerator(),  # so that torchrun on a CPU machine starts a gloo process group
        mixed_precision=cfg.mixed_precision, gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        log_with=tracker_names(cfg.report_to) or None, project_dir=cfg.output_dir,
        # Shuffling depends only on (seed, epoch), so a resumed run sees the same order as an uninterrupted one.
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=cfg.seed),
    )
    if accelerator.is_main_process:
        prepare_output_dir(cfg.output_dir, overwrite=cfg.overwrite_output_dir, resuming=bool(cfg.resume_from_checkpoint))
    accelerator.wait_for_everyone()
    resume_path = resolve_resume_path(cfg.resume_from_checkpoint, cfg.output_dir)
    set_seed(cfg.seed)

    # 2. Data: undecoded images; the collator decodes, converts to RGB, resizes and skips corrupt files.
    splits, image_col, label_col = load_image_splits(
        dataset_name=cfg.dataset_name, dataset_config_name=cfg.dataset_config_name,
        dataset_revision=cfg.dataset_revision, train_dir=cfg.train_dir,
        validation_dir=cfg.validation_dir, image_column=cfg.image_column, label_column=cfg.label_column,
        streaming=cfg.streaming, validation_split_percentage=cfg.validation_split_percentage, seed=cfg.seed)
    train_ds = splits["train"]
    if cfg.max_train_samples:
        n = cfg.max_train_samples
        train_ds = train_ds.take(n) if cfg.streaming else train_ds.select(range(min(n, len(train_ds))))
    if cfg.streaming:  # each process reads its own shard of the stream
        train_ds = split_dataset_by_node(train_ds.shuffle(seed=cfg.seed, buffer_size=10_000),
                                         rank=accelerator.process_index, world_size=accelerator.num_processes)
    train_loader = DataLoader(train_ds, batch_size=cfg.per_device_train_batch_size, shuffle=not cfg.streaming,
                              drop_last=True, num_workers=cfg.dataloader_num_workers,
                              # kept across epochs: restarting workers each epoch stalls small datasets (digits: 11 steps)
                              persistent_workers=cfg.dataloader_num_workers > 0,
                              collate_fn=ImageCollator(image_col, None, cfg.decode_size or cfg.image_size))
    eval_loaders = None
    if label_col and "validation" in splits:
        eval_collate = ImageCollator(image_col, label_col, cfg.image_size)
        eval_loaders = {name: DataLoader(ds.take(cfg.max_eval_samples) if cfg.streaming else ds,
                                         batch_size=cfg.per_device_eval_batch_size, collate_fn=eval_collate,
                                         num_workers=cfg.dataloader_num_workers)
                        for name, ds in (("train", splits["train"]), ("validation", splits["validation"]))}
    else:
        logger.warning("No labelled validation split: kNN and linear-probe evaluation are skipped.")

    # 3. Model: a transformers backbone, the method's heads and loss (and EMA target for BYOL / MoCo v3).
    encoder = ImageEncoder(build_backbone(cfg.backbone, cfg.image_size, config_name=cfg.config_name,
                                          model_name_or_path=cfg.model_name_or_path))
    model = build_method(cfg.method, encoder, hidden_dim=cfg.projection_hidden_dim, out_dim=cfg.projection_dim,
                         temperature=cfg.temperature, head_batch_norm=cfg.dino_head_batch_norm,
                         teacher_temperature=0.04 if cfg.teacher_temperature_warmup else cfg.teacher_temperature)
    if accelerator.num_processes > 1:  # BatchNorm over the global batch, as one process would normalize it
        model = convert_to_global_batch_norm(model)
    view1_cfg, view2_cfg = views_for_method(cfg.method, cfg.image_size, crop_min_scale=cfg.crop_min_scale,
                                            hflip_prob=cfg.hflip_prob, jitter_strength=cfg.color_jitter_strength,
                                            blur=cfg.blur)
    local_cfg = local_view(view1_cfg, cfg.local_crop_size or max(4, round(cfg.image_size * 3 / 7)))

    # 4. Optimizer and schedule: AdamW or LARS, no decay on biases / norms, linear warmup then cosine.
    # Separate predictor groups only when asked: the default keeps the two-group layout older checkpoints resume into.
    lr_scales = ({"predictor": (cfg.learning_rate, cfg.predictor_lr_scale)}
                 if isinstance(model, MomentumMethod) and cfg.predictor_lr_scale != 1 else None)
    groups = param_groups(model, cfg.weight_decay, lr_scales)
    optimizer = LARS(groups, lr=cfg.learning_rate) if cfg.optimizer == "lars" else torch.optim.AdamW(groups, lr=cfg.learning_rate)
    if cfg.streaming:
        model, optimizer = accelerator.prepare(model, optimizer)
        steps_per_epoch = cfg.max_steps
    else:
        model, optimizer, train_loader = accelerator.prepare(model, optimizer, train_loader)
        steps_per_epoch = max(len(train_loader) // cfg.gradient_accumulation_steps, 1)
    total_steps = cfg.max_steps if cfg.max_steps > 0 else math.ceil(cfg.num_train_epochs * steps_per_epoch)
    # A stream has no length: it is read again (reshuffled) until max_steps.
    num_epochs = math.ceil(total_steps / steps_per_epoch) if not cfg.streaming else 10**9
    warmup = int(cfg.warmup_steps if cfg.warmup_steps >= 1 else cfg.warmup_steps * total_steps)
    w = cfg.teacher_temperature_warmup
    teacher_warmup = int(w if w >= 1 else w * total_steps)  # DINO only
    freeze_last_layer_steps = round(cfg.freeze_last_layer_epochs * steps_per_epoch)  # DINO only
    # The prepared scheduler steps once per process per optimizer step, hence the factor.
    scheduler = accelerator.prepare(get_cosine_schedule_with_warmup(
        optimizer, warmup * accelerator.num_processes, total_steps * accelerator.num_processes))
    accelerator.init_trackers("contrastive", config={k: v for k, v in config_to_dict(cfg).items() if v is not None})

    # 5. Resume, or measure the randomly initialized encoder as the baseline to beat.
    progress = {"step": 0, "epoch": 0, "batches_in_epoch": 0, "micro_steps": 0, "images_seen": 0,
                "images_skipped": 0, "loss_history": [], "random_init": {}}
    if resume_path is not None:
        progress = load_checkpoint(accelerator, resume_path)
        logger.info(f"Resumed from {resume_path} at step {progress['step']}")
    elif eval_loaders is not None and accelerator.is_main_process:
        progress["random_init"] = evaluate(accelerator.unwrap_model(model).encoder, eval_loaders, cfg, accelerator, True)
        logger.info(f"Random-init encoder: {progress['random_init']}", main_process_only=True)
    accelerator.wait_for_everyone()

    # --hub_push_checkpoints: every checkpoint is uploaded from a background thread; training never waits for it.
    pusher = (CheckpointPusher(cfg.hub_model_id, private=cfg.hub_private_repo, revision=cfg.hub_revision)
              if cfg.hub_push_checkpoints and accelerator.is_main_process else None)

    # 6. Training loop.
    step, micro_steps = progress["step"], progress["micro_steps"]
    unwrapped = accelerator.unwrap_model(model)
    online_history: list[tuple[int, float]] = []
    running, running_count, start_time = torch.zeros((), device=accelerator.device), 0, time.time()
    images_this_run = 0
    bar = tqdm(total=total_steps, initial=step, disable=not accelerator.is_local_main_process, desc="training")
    model.train()
    for epoch in range(progress["epoch"], num_epochs):
        loader = train_loader
        if cfg.streaming:
            train_ds.set_epoch(epoch)
        else:
            train_loader.set_epoch(epoch)
        skip = progress["batches_in_epoch"] if epoch == progress["epoch"] else 0
        if skip:
            loader = accelerator.skip_first_batches(train_loader, skip) if not cfg.streaming else _skip(train_loader, skip)
        batches_in_epoch = skip
        for batch in loader:
            images = to_float(batch["pixel_values"])
            progress["images_skipped"] += int(batch["num_skipped"])
            batches_in_epoch += 1
            if images.shape[0] < 2 and accelerator.num_processes == 1:
                logger.warning("Skipping a batch with fewer than 2 readable images.")
                continue
            with accelerator.accumulate(model):
                # An image's views depend only on (seed, micro-step, view, its place in the global batch): the
                # same for any number of processes (process p holds places p*B..p*B+B-1), replayed on resume.
                place = batch["positions"] + accelerator.process_index * cfg.per_device_train_batch_size
                rngs = [PerImageRandom(cfg.seed, micro_steps, view, place) for view in range(2 + cfg.num_local_crops)]
                micro_steps += 1
                view1 = normalize(augment(images, view1_cfg, rngs[0]))
                view2 = normalize(augment(images, view2_cfg, rngs[1])) if view2_cfg else None  # RotNet: one view
                local_views = [normalize(augment(images, local_cfg, rng)) for rng in rngs[2:]]
                loss = model(view1, view2, *local_views)  # local views: DINO's multi-crop, student only
                accelerator.backward(loss)
                if isinstance(unwrapped, DINO) and step < freeze_last_layer_steps:
                    unwrapped.drop_last_layer_grad()  # DINO's prototypes stay fixed during the first epoch
                if accelerator.sync_gradients and cfg.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            running += loss.detach()
            running_count += 1
            images_this_run += images.shape[0]
            if not accelerator.sync_gradients:
                continue
            step += 1
            bar.update(1)
            if isinstance(unwrapped, (MomentumMethod, DINO)):  # BYOL / MoCo v3 / DINO: target <- EMA of online net
                unwrapped.update_target(cosine_momentum(step, total_steps, cfg.base_momentum))
            if isinstance(unwrapped, DINO):  # the teacher sharpens less as training settles (DINO sec. 3.1)
                unwrapped.set_teacher_temperature(linear_warmup(step, teacher_warmup, 0.04, cfg.teacher_temperature))
            # The loss is read on the host only here (a per-step check would stall a GPU every micro-batch), and
            # always before a checkpoint is written: a run that diverged never overwrites its last good checkpoint.
            checkpoint_now = cfg.checkpointing_steps and step % cfg.checkpointing_steps == 0 and step < total_steps
            if step % cfg.logging_steps == 0 or step == total_steps or checkpoint_now:
                mean_loss = accelerator.reduce(running, "mean").item() / running_count
                if not math.isfinite(mean_loss):
                    raise NonFiniteLossError(f"Loss is {mean_loss} before step {step}. Lower --learning_rate, add "
                                             f"--max_grad_norm 1.0 or use --mixed_precision no; checkpoints in "
                                             f"{cfg.output_dir}/checkpoints are intact.")
                running, running_count = torch.zeros_like(running), 0
                progress["loss_history"].append((step, mean_loss))
                accelerator.log({"train/loss": mean_loss, "train/lr": scheduler.get_last_lr()[0]}, step=step)
                bar.set_postfix(loss=f"{mean_loss:.4f}")
            epoch_done = batches_in_epoch == len(train_loader) if not cfg.streaming else False
            # (the last step is evaluated below, with the linear probe)
            if eval_loaders is not None and step < total_steps and (
                    (cfg.eval_steps and step % cfg.eval_steps == 0) or (not cfg.eval_steps and epoch_done)):
                if accelerator.is_main_process:
                    knn = evaluate(unwrapped.encoder, eval_loaders, cfg, accelerator, False)["knn_accuracy"]
                    online_history.append((step, knn))
                    accelerator.log({"eval/knn_accuracy": knn}, step=step)
                    logger.info(f"step {step}: kNN accuracy {knn:.4f}")
                accelerator.wait_for_everyone()
            progress.update(step=step, micro_steps=micro_steps, epoch=epoch + int(epoch_done),
                            batches_in_epoch=0 if epoch_done else batches_in_epoch)
            if checkpoint_now:
                saved = save_checkpoint(accelerator, cfg.output_dir, step, progress, cfg.checkpoints_total_limit)
                if pusher is not None:
                    pusher.push(saved, step=step)
            if step >= total_steps:
                break
        if step >= total_steps or batches_in_epoch == 0:  # done, or an empty stream
            break
    bar.close()
    wall = time.time() - start_time
    images_seen = int(accelerator.reduce(torch.tensor(images_this_run, device=accelerator.device), "sum"))
    skipped = int(accelerator.reduce(torch.tensor(progress["images_skipped"], device=accelerator.device), "sum"))

    # 7. Final evaluation and a Hub-ready folder: backbone + image processor + card + results.
    saved = save_checkpoint(accelerator, cfg.output_dir, step, progress, cfg.checkpoints_total_limit)
    if pusher is not None:
        pusher.push(saved, step=step)
    results: dict[str, float] = {"train_loss": progress["loss_history"][-1][1] if progress["loss_history"] else float("nan"),
                                 "train_steps": step, "train_images_seen": images_seen, "images_skipped": skipped,
                                 "train_images_per_second": images_seen / max(wall, 1e-9)}
    if accelerator.is_main_process:
        if eval_loaders is not None:
            results.update(evaluate(unwrapped.encoder, eval_loaders, cfg, accelerator, True))
            results.update({f"random_init_{k}": v for k, v in progress["random_init"].items()})
            online_history.append((step, results["knn_accuracy"]))
            accelerator.log({"eval/knn_accuracy": results["knn_accuracy"]}, step=step)
        unwrapped.encoder.backbone.save_pretrained(cfg.output_dir)
        make_image_processor(cfg.image_size).save_pretrained(cfg.output_dir)
        save_config(cfg, f"{cfg.output_dir}/hfssl_config.yaml")
        with open(f"{cfg.output_dir}/all_results.json", "w", encoding="utf-8") as handle:
            json.dump({**results, "online_knn_history": online_history, "loss_history": progress["loss_history"]},
                      handle, indent=2)
        backbone = unwrapped.encoder.backbone
        write_model_card(cfg.output_dir, "image-encoder", {
            "model_name": cfg.hub_model_id or cfg.output_dir, "recipe": "recipes/contrastive.py",
            "datasets": [cfg.dataset_name or cfg.train_dir or "scikit-learn digits"],
            "dataset_config": cfg.dataset_config_name, "dataset_revision": cfg.dataset_revision,
            "base_model": cfg.model_name_or_path,
            "model_details": {"method": cfg.method, "architecture": backbone.config.model_type,
                              "parameters": sum(p.numel() for p in backbone.parameters()),
                              "feature_dim": unwrapped.encoder.dim, "image_size": cfg.image_size,
                              # the baseline goes here, not into the Hub's model-index of this model's scores
                              **{f"baseline: same encoder at random init, {k}": v
                                 for k, v in progress["random_init"].items()}},
            "hyperparameters": {k: v for k, v in config_to_dict(cfg).items() if v is not None and "hub" not in k},
            "compute": {"num_processes": accelerator.num_processes, "wall_time_s": round(wall, 1),
                        "images_seen": images_seen},
            "results": {k: v for k, v in results.items() if "accuracy" in k and not k.startswith("random_init")},
            "results_dataset": "validation split (frozen features)", "loss_history": progress["loss_history"],
            "tags": ["rotation-prediction" if cfg.method == "rotnet" else "contrastive", cfg.method],
            **({"extra": ROTNET_CARD_TEXT} if cfg.method == "rotnet" else {}),
        })
        logger.info(f"Results: {results}")
    accelerator.wait_for_everyone()
    settle_gloo_workers()  # no hang at teardown: hfssl/distributed.py says why
    accelerator.end_training()  # trackers flushed: the local output is complete before any upload can fail
    if pusher is not None:
        pusher.finish()  # waits for checkpoint uploads still running; reports failures without raising
    if cfg.push_to_hub and accelerator.is_main_process:
        push_folder(cfg.output_dir, cfg.hub_model_id, private=cfg.hub_private_repo, revision=cfg.hub_revision)
    return results


def _skip(loader, n: int):
    """Skip the first ``n`` batches of a streaming loader (it cannot seek)."""
    for index, batch in enumerate(loader):
        if index >= n:
            yield batch


if __name__ == "__main__":
    try:
        main()
    except (ConfigError, DataError, OutputDirError, HubError, NonFiniteLossError) as err:  # say what to do, no traceback
        sys.exit(f"error: {err}")
