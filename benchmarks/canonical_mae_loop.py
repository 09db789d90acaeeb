"""The peer for benchmarks/mae_throughput.py: a plain transformers ``ViTMAEForPreTraining`` training loop.

What a user of the transformers image-pretraining example (run_mae.py) would write without hfssl: per-image
transforms in the DataLoader (random resized crop, flip, to tensor, normalize: run_mae.py uses torchvision for
these, which does not import beside this project's CPU torch, so they are written here with PIL and numpy),
``ViTMAEForPreTraining`` computing its own random masks and loss, AdamW with warmup + cosine, fp32, a plain
Accelerate loop. It shares no code with hfssl's recipe so that the comparison is with what users would otherwise
run. The data is the recipe's offline default: scikit-learn digits (same stratified split) resized to the image size.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from transformers import ViTMAEConfig, ViTMAEForPreTraining, get_cosine_schedule_with_warmup, set_seed

MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])


class DigitsMAE(Dataset):
    """Digits train split as PIL RGB images; __getitem__ applies run_mae.py's transforms to one image."""

    def __init__(self, size: int, crop_min_scale: float, hflip_prob: float, seed: int = 0) -> None:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        digits = load_digits()
        images = (digits.images * (255.0 / 16.0)).round().astype(np.uint8)
        train_idx, _ = train_test_split(np.arange(len(images)), test_size=0.2, random_state=seed,
                                        stratify=digits.target)
        self.images = [Image.fromarray(images[i], mode="L").convert("RGB") for i in train_idx]
        self.size, self.scale, self.hflip = size, (crop_min_scale, 1.0), hflip_prob

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        image = self.images[index]
        w, h = image.size
        for _ in range(10):  # RandomResizedCrop: area in scale, log-uniform aspect ratio in [3/4, 4/3]
            area = w * h * random.uniform(*self.scale)
            ratio = math.exp(random.uniform(math.log(3 / 4), math.log(4 / 3)))
            cw, ch = round(math.sqrt(area * ratio)), round(math.sqrt(area / ratio))
            if 0 < cw <= w and 0 < ch <= h:
                left, top = random.randint(0, w - cw), random.randint(0, h - ch)
                break
        else:
            cw, ch, left, top = w, h, 0, 0
        crop = image.resize((self.size, self.size), Image.BILINEAR, box=(left, top, left + cw, top + ch))
        if random.random() < self.hflip:
            crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
        array = (np.asarray(crop, dtype=np.float32) / 255 - MEAN) / STD
        return torch.from_numpy(array.transpose(2, 0, 1).astype(np.float32))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--output_dir", required=True)
    p.add_argument("--max_steps", type=int, default=100)
    p.add_argument("--batch_size", type=int, default=128)
    p.add_argument("--learning_rate", type=float, default=1.5e-4)
    p.add_argument("--weight_decay", type=float, default=0.05)
    p.add_argument("--warmup_ratio", type=float, default=0.05)
    p.add_argument("--image_size", type=int, default=32)
    p.add_argument("--patch_size", type=int, default=4)
    p.add_argument("--hidden_size", type=int, default=192)
    p.add_argument("--num_hidden_layers", type=int, default=6)
    p.add_argument("--num_attention_heads", type=int, default=3)
    p.add_argument("--decoder_hidden_size", type=int, default=128)
    p.add_argument("--decoder_num_hidden_layers", type=int, default=2)
    p.add_argument("--decoder_num_attention_heads", type=int, default=4)
    p.add_argument("--mask_ratio", type=float, default=0.75)
    p.add_argument("--norm_pix_loss", type=int, default=1)
    p.add_argument("--crop_min_scale", type=float, default=0.2)
    p.add_argument("--hflip_prob", type=float, default=0.0)
    p.add_argument("--num_workers", type=int, default=0)
    p.add_argument("--seed", type=int, default=42)
    args = p.parse_args()

    set_seed(args.seed)
    random.seed(args.seed)
    accelerator = Accelerator()
    config = ViTMAEConfig(image_size=args.image_size, patch_size=args.patch_size, hidden_size=args.hidden_size,
                          num_hidden_layers=args.num_hidden_layers, num_attention_heads=args.num_attention_heads,
                          intermediate_size=4 * args.hidden_size, decoder_hidden_size=args.decoder_hidden_size,
                          decoder_num_hidden_layers=args.decoder_num_hidden_layers,
                          decoder_num_attention_heads=args.decoder_num_attention_heads,
                          decoder_intermediate_size=4 * args.decoder_hidden_size, mask_ratio=args.mask_ratio,
                          norm_pix_loss=bool(args.norm_pix_loss))
    model = ViTMAEForPreTraining(config)
    data = DigitsMAE(args.image_size, args.crop_min_scale, args.hflip_prob)
    loader = DataLoader(data, batch_size=args.batch_size, shuffle=True, drop_last=True, num_workers=args.num_workers)
    decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim <= 1]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=args.learning_rate, betas=(0.9, 0.95))
    scheduler = get_cosine_schedule_with_warmup(optimizer, int(args.warmup_ratio * args.max_steps), args.max_steps)
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)

    model.train()
    step, images, losses = 0, 0, []
    start = time.perf_counter()
    while step < args.max_steps:
        for pixel_values in loader:
            loss = model(pixel_values=pixel_values).loss
            accelerator.backward(loss)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            losses.append(loss.item())
            step += 1
            images += pixel_values.shape[0]
            if step >= args.max_steps:
                break
    wall = time.perf_counter() - start
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    accelerator.unwrap_model(model).save_pretrained(out)
    (out / "all_results.json").write_text(json.dumps({
        "train_steps": step, "train_images_seen": images, "train_images_per_second": images / wall,
        "train_loss": sum(losses[-10:]) / len(losses[-10:]), "wall_s": wall}, indent=2))


if __name__ == "__main__":
    main()
