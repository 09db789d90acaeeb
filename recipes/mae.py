#!/usr/bin/env python
"""Masked image modelling: pretrain a ViT encoder as a masked autoencoder (MAE, He et al. 2021).

    python recipes/mae.py                                            # offline: scikit-learn digits at 32 px
    python recipes/mae.py --config recipes/configs/mae/cifar10-vit-tiny.yaml
    torchrun --nproc_per_node 2 recipes/mae.py --train_dir images/ --image_size 224 --patch_size 16 --max_steps 1000

Each image is cut into patches, ``--mask_ratio`` of them are hidden, the encoder (transformers'
``ViTMAEForPreTraining``) sees the rest and a light decoder reconstructs the hidden patches' pixels. The augmented
images are made in batches on the training device; the loader only decodes (skipping corrupt files). kNN and a
linear probe on frozen encoder features are measured at the end against the same encoder at random
initialization, and the encoder is saved as a plain ViT with its image processor: ``AutoModel.from_pretrained``
gives a ``ViTModel`` and ``recipes/image_finetune.py`` fine-tunes it. The full pretraining model (decoder
included) goes to ``output_dir/pretraining`` for continued pretraining or reconstructions.
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

from hfssl.checkpointing import NonFiniteLossError, OutputDirError, load_checkpoint, prepare_output_dir, resolve_resume_path, save_checkpoint
from hfssl.config import ConfigError, config_to_dict, parse_config, save_config
from hfssl.contrastive.augment import ViewConfig, augment, normalize, to_float
from hfssl.contrastive.data import ImageCollator, load_image_splits
from hfssl.contrastive.encoder import ImageEncoder, make_image_processor
from hfssl.contrastive.evaluation import evaluate_frozen
from hfssl.data.text import DataError
from hfssl.distributed import no_accelerator, settle_gloo_workers
from hfssl.hub import CheckpointPusher, HubError, check_push_ready, push_folder
from hfssl.mae.config import MAEConfig
from hfssl.mae.model import CARD_TEXT, build_mae, encoder_as_vit, masking_noise, param_groups
from hfssl.model_card import write_model_card
from hfssl.tracking import tracker_names

logger = get_logger(__name__)


def main(argv: list[str] | None = None) -> dict[str, float]:
    # 1. Arguments, checked before anything expensive.
    cfg = parse_config(MAEConfig, argv)
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

    # 2. Model first (its checks are cheap and catch a wrong --image_size before data is read).
    model = build_mae(
        image_size=cfg.image_size, patch_size=cfg.patch_size, hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_hidden_layers, num_attention_heads=cfg.num_attention_heads,
        intermediate_size=cfg.intermediate_size, decoder_hidden_size=cfg.decoder_hidden_size,
        decoder_num_hidden_layers=cfg.decoder_num_hidden_layers,
        decoder_num_attention_heads=cfg.decoder_num_attention_heads,
        decoder_intermediate_size=cfg.decoder_intermediate_size, mask_ratio=cfg.mask_ratio,
        norm_pix_loss=cfg.norm_pix_loss, config_name=cfg.config_name, model_name_or_path=cfg.model_name_or_path)

    # 3. Data: undecoded images; the collator decodes, converts to RGB, resizes and skips corrupt files.
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
    # The paper's only augmentation: random resized crop (and flip); no colour changes.
    view = ViewConfig(cfg.image_size, crop_scale=(cfg.crop_min_scale, 1.0), hflip_prob=cfg.hflip_prob,
                      jitter_prob=0.0, grayscale_prob=0.0, blur_prob=0.0)

    def evaluate(linear_probe: bool) -> dict[str, float]:
        """Frozen features of the encoder exactly as exported (a ViT, no masking), [CLS] token."""
        encoder = ImageEncoder(encoder_as_vit(accelerator.unwrap_model(model)))
        return evaluate_frozen(encoder, eval_loaders, accelerator.device, max_samples=cfg.max_eval_samples,
                               k=cfg.knn_k, temperature=cfg.knn_temperature, linear_probe=linear_probe,
                               seed=cfg.seed, autocast=accelerator.autocast)

    # 4. Optimizer and schedule: AdamW (betas 0.9, 0.95), linear warmup then cosine, as in the paper.
    optimizer = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.learning_rate,
                                  betas=(0.9, cfg.adam_beta2))
    if cfg.streaming:
        model, optimizer = accelerator.prepare(model, optimizer)
        steps_per_epoch = cfg.max_steps
    else:
        model, optimizer, train_loader = accelerator.prepare(model, optimizer, train_loader)
        steps_per_epoch = max(len(train_loader) // cfg.gradient_accumulation_steps, 1)
    total_steps = cfg.max_steps if cfg.max_steps > 0 else math.ceil(cfg.num_train_epochs * steps_per_epoch)
    num_epochs = math.ceil(total_steps / steps_per_epoch) if not cfg.streaming else 10**9  # a stream is re-read
    warmup = int(cfg.warmup_steps if cfg.warmup_steps >= 1 else cfg.warmup_steps * total_steps)
    # The prepared scheduler steps once per process per optimizer step, hence the factor.
    scheduler = accelerator.prepare(get_cosine_schedule_with_warmup(
        optimizer, warmup * accelerator.num_processes, total_steps * accelerator.num_processes))
    accelerator.init_trackers("mae", config={k: v for k, v in config_to_dict(cfg).items() if v is not None})

    # 5. Resume, or measure the randomly initialized encoder as the baseline to beat.
    progress = {"step": 0, "epoch": 0, "batches_in_epoch": 0, "micro_steps": 0, "images_skipped": 0,
                "loss_history": [], "random_init": {}}
    if resume_path is not None:
        progress = load_checkpoint(accelerator, resume_path)
        logger.info(f"Resumed from {resume_path} at step {progress['step']}")
    elif eval_loaders is not None and accelerator.is_main_process:
        progress["random_init"] = evaluate(linear_probe=True)
        logger.info(f"Random-init encoder: {progress['random_init']}", main_process_only=True)
    accelerator.wait_for_everyone()

    # --hub_push_checkpoints: every checkpoint is uploaded from a background thread; training never waits for it.
    pusher = (CheckpointPusher(cfg.hub_model_id, private=cfg.hub_private_repo, revision=cfg.hub_revision)
              if cfg.hub_push_checkpoints and accelerator.is_main_process else None)

    # 6. Training loop.
    step, micro_steps = progress["step"], progress["micro_steps"]
    generator = torch.Generator(device=accelerator.device)
    unwrapped = accelerator.unwrap_model(model)
    online_history: list[tuple[int, float]] = []
    running, running_count, start_time, images_this_run = torch.zeros((), device=accelerator.device), 0, time.time(), 0
    bar = tqdm(total=total_steps, initial=step, disable=not accelerator.is_local_main_process, desc="training")
    model.train()
    for epoch in range(progress["epoch"], num_epochs):
        (train_ds if cfg.streaming else train_loader).set_epoch(epoch)
        skip = progress["batches_in_epoch"] if epoch == progress["epoch"] else 0
        loader = train_loader
        if skip:
            loader = accelerator.skip_first_batches(train_loader, skip) if not cfg.streaming else _skip(train_loader, skip)
        batches_in_epoch = skip
        for batch in loader:
            images = to_float(batch["pixel_values"])
            progress["images_skipped"] += int(batch["num_skipped"])
            batches_in_epoch += 1
            if images.shape[0] == 0 and accelerator.num_processes == 1:
                logger.warning("Skipping a batch without readable images.")
                continue
            with accelerator.accumulate(model):
                # Crops and masks depend only on (seed, micro-step, process): resuming replays them exactly.
                generator.manual_seed(cfg.seed * 1_000_003 + micro_steps * 1009 + accelerator.process_index)
                micro_steps += 1
                pixels = normalize(augment(images, view, generator))
                noise = masking_noise(unwrapped, pixels.shape[0], generator, pixels.device)
                loss = model(pixel_values=pixels, noise=noise).loss
                accelerator.backward(loss)
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
            if eval_loaders is not None and cfg.eval_steps and step % cfg.eval_steps == 0 and step < total_steps:
                if accelerator.is_main_process:
                    knn = evaluate(linear_probe=False)["knn_accuracy"]
                    online_history.append((step, knn))
                    accelerator.log({"eval/knn_accuracy": knn}, step=step)
                    logger.info(f"step {step}: kNN accuracy {knn:.4f}")
                accelerator.wait_for_everyone()
            epoch_done = batches_in_epoch == len(train_loader) if not cfg.streaming else False
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

    # 7. Final evaluation and a Hub-ready folder: the encoder as a ViT + image processor + card + results.
    saved = save_checkpoint(accelerator, cfg.output_dir, step, progress, cfg.checkpoints_total_limit)
    if pusher is not None:
        pusher.push(saved, step=step)
    results: dict[str, float] = {"train_loss": progress["loss_history"][-1][1] if progress["loss_history"] else float("nan"),
                                 "train_steps": step, "train_images_seen": images_seen, "images_skipped": skipped,
                                 "train_images_per_second": images_seen / max(wall, 1e-9)}
    if accelerator.is_main_process:
        if eval_loaders is not None:
            results.update(evaluate(linear_probe=True))
            results.update({f"random_init_{k}": v for k, v in progress["random_init"].items()})
            online_history.append((step, results["knn_accuracy"]))
            accelerator.log({"eval/knn_accuracy": results["knn_accuracy"]}, step=step)
        encoder = encoder_as_vit(unwrapped)
        encoder.save_pretrained(cfg.output_dir)
        make_image_processor(cfg.image_size).save_pretrained(cfg.output_dir)
        unwrapped.save_pretrained(f"{cfg.output_dir}/pretraining")  # decoder included: continue pretraining
        save_config(cfg, f"{cfg.output_dir}/hfssl_config.yaml")
        with open(f"{cfg.output_dir}/all_results.json", "w", encoding="utf-8") as handle:
            json.dump({**results, "online_knn_history": online_history, "loss_history": progress["loss_history"]},
                      handle, indent=2)
        write_model_card(cfg.output_dir, "image-encoder", {
            "model_name": cfg.hub_model_id or cfg.output_dir, "recipe": "recipes/mae.py",
            "datasets": [cfg.dataset_name or cfg.train_dir or "scikit-learn digits"],
            "dataset_config": cfg.dataset_config_name, "dataset_revision": cfg.dataset_revision,
            "base_model": cfg.model_name_or_path,
            "model_details": {"method": "MAE", "architecture": "vit (converted from vit_mae)",
                              "parameters": sum(p.numel() for p in encoder.parameters()),
                              "feature_dim": encoder.config.hidden_size, "image_size": cfg.image_size,
                              "patch_size": encoder.config.patch_size, "mask_ratio (pretraining)": cfg.mask_ratio,
                              # the baseline goes here, not into the Hub's model-index of this model's scores
                              **{f"baseline: same encoder at random init, {k}": v
                                 for k, v in progress["random_init"].items()}},
            "hyperparameters": {k: v for k, v in config_to_dict(cfg).items() if v is not None and "hub" not in k},
            "compute": {"num_processes": accelerator.num_processes, "wall_time_s": round(wall, 1),
                        "images_seen": images_seen},
            "results": {k: v for k, v in results.items() if "accuracy" in k and not k.startswith("random_init")},
            "results_dataset": "validation split (frozen features)", "loss_history": progress["loss_history"],
            "tags": ["mae", "masked-image-modeling", "vit"], "extra": CARD_TEXT,
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
