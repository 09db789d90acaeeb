#!/usr/bin/env python
"""hfssl vs lightly: SimCLR and BYOL training throughput and kNN accuracy, same backbone, data, views and epochs.

    python benchmarks/contrastive_vs_lightly.py --lightly_python /tmp/lightly-venv/bin/python

lightly needs torchvision, which does not import beside this project's torch, so its side runs as a subprocess
of another interpreter (a venv with ``torch torchvision lightly scikit-learn``). Both sides run this same file
in worker mode; each trains a ResNet-18 (torchvision's ``resnet18`` for lightly, transformers' ``resnet-18``
preset for hfssl: the same architecture) on the scikit-learn digits resized to 32x32 RGB, with the same heads,
loss temperature, optimizer (AdamW), batch size, view parameters, threads and data-loader workers. lightly's
side follows its documented examples: torchvision/PIL views made per image in the DataLoader, one forward per view.

Speed: ``--rounds`` alternating (paired) short runs of ``--speed_steps`` steps per side; the ratio of medians is
reported, which stays fair when the machine is shared. Accuracy: one ``--epochs`` training per side from the
same seed (per seed of ``--seeds``, with means over them); both dump frozen features and the parent computes weighted kNN (k=20, T=0.07) and a linear probe
with the same code, plus each side's random-init baseline. Results are printed and written as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without `pip install -e .`


def digits_32(seed: int = 0):
    """The recipe's deterministic digits split as (N, 32, 32, 3) uint8 RGB arrays and labels."""
    from PIL import Image
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    imgs = (digits.images * (255.0 / 16.0)).round().astype(np.uint8)
    tr, va = train_test_split(np.arange(len(imgs)), test_size=0.2, random_state=seed, stratify=digits.target)
    big = np.stack([np.asarray(Image.fromarray(i, mode="L").convert("RGB").resize((32, 32), Image.BILINEAR)) for i in imgs])
    return big[tr], digits.target[tr], big[va], digits.target[va]


# ---------------------------------------------------------------------------------------------------- workers
def _features(backbone_fn, images, torch, batch=256):
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    out = []
    with torch.no_grad():
        for i in range(0, len(images), batch):
            x = torch.from_numpy(images[i:i + batch]).permute(0, 3, 1, 2).float() / 255
            out.append(backbone_fn((x - mean) / std).float())
    return torch.cat(out).numpy()


def worker_hfssl(a):
    import torch
    from torch.utils.data import DataLoader

    from hfssl.contrastive.augment import augment, normalize, to_float, views_for_method
    from hfssl.contrastive.encoder import ImageEncoder, build_backbone
    from hfssl.contrastive.lars import param_groups
    from hfssl.contrastive.methods import MomentumMethod, build_method, cosine_momentum

    torch.manual_seed(a.seed)
    xtr, _, xva, _ = digits_32()
    model = build_method(a.method, ImageEncoder(build_backbone("resnet-18", 32)), temperature=a.temperature)
    opt = torch.optim.AdamW(param_groups(model, 1e-5), lr=a.lr)
    v1, v2 = views_for_method(a.method, 32, crop_min_scale=a.min_scale, hflip_prob=a.hflip)
    data = torch.from_numpy(xtr).permute(0, 3, 1, 2).contiguous()  # uint8, what the recipe's collator yields
    loader = DataLoader(data, batch_size=a.batch_size, shuffle=True, drop_last=True, num_workers=a.workers)
    gen = torch.Generator().manual_seed(a.seed)

    def dump(tag):
        model.eval()
        np.savez(f"{a.out}/{tag}.npz", train=_features(model.encoder, xtr, torch), val=_features(model.encoder, xva, torch))
        model.train()

    return _loop(a, model, opt, loader, dump, lambda b: (normalize(augment(to_float(b), v1, gen)),
                                                          normalize(augment(to_float(b), v2, gen))),
                 lambda x1, x2: model(x1, x2),
                 lambda step, total: model.update_target(cosine_momentum(step, total, 0.99))
                 if isinstance(model, MomentumMethod) else None, torch)


def worker_lightly(a):
    import copy

    import torch
    import torchvision
    from lightly.loss import NegativeCosineSimilarity, NTXentLoss
    from lightly.models.modules import BYOLPredictionHead, BYOLProjectionHead, SimCLRProjectionHead
    from lightly.models.utils import deactivate_requires_grad, update_momentum
    from lightly.transforms import BYOLTransform, BYOLView1Transform, BYOLView2Transform, SimCLRTransform
    from lightly.utils.scheduler import cosine_schedule
    from PIL import Image
    from torch import nn
    from torch.utils.data import DataLoader, Dataset

    torch.manual_seed(a.seed)
    xtr, _, xva, _ = digits_32()
    resnet = torchvision.models.resnet18()
    resnet.fc = nn.Identity()
    if a.method == "simclr":
        transform = SimCLRTransform(input_size=32, min_scale=a.min_scale, hf_prob=a.hflip)
        head = SimCLRProjectionHead(512, 2048, 128)
        model = nn.Sequential(resnet, head)
        crit = NTXentLoss(temperature=a.temperature)
        loss_fn = lambda x1, x2: crit(model(x1), model(x2))  # noqa: E731
        after_step = lambda step, total: None  # noqa: E731
    else:
        kw = dict(input_size=32, min_scale=a.min_scale, hf_prob=a.hflip)
        transform = BYOLTransform(BYOLView1Transform(**kw), BYOLView2Transform(**kw))
        proj, pred = BYOLProjectionHead(512, 4096, 256), BYOLPredictionHead(256, 4096, 256)
        model = nn.ModuleDict(dict(backbone=resnet, proj=proj, pred=pred))
        tb, tp = copy.deepcopy(resnet), copy.deepcopy(proj)
        deactivate_requires_grad(tb)
        deactivate_requires_grad(tp)
        crit = NegativeCosineSimilarity()

        def loss_fn(x1, x2):
            p1, p2 = pred(proj(resnet(x1))), pred(proj(resnet(x2)))
            with torch.no_grad():
                t1, t2 = tp(tb(x1)), tp(tb(x2))
            return 0.5 * (crit(p1, t2) + crit(p2, t1))

        def after_step(step, total):
            m = cosine_schedule(step, total, 0.99, 1.0)
            update_momentum(resnet, tb, m)
            update_momentum(proj, tp, m)

    class Views(Dataset):
        def __init__(self):
            self.images = [Image.fromarray(x) for x in xtr]

        def __len__(self):
            return len(self.images)

        def __getitem__(self, i):
            return transform(self.images[i])

    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 1e-5}, {"params": no_decay, "weight_decay": 0.0}], lr=a.lr)
    loader = DataLoader(Views(), batch_size=a.batch_size, shuffle=True, drop_last=True, num_workers=a.workers)

    def dump(tag):
        model.eval()
        np.savez(f"{a.out}/{tag}.npz", train=_features(resnet, xtr, torch), val=_features(resnet, xva, torch))
        model.train()

    return _loop(a, model, opt, loader, dump, lambda b: (b[0], b[1]), loss_fn, after_step, torch)


def _loop(a, model, opt, loader, dump, make_views, loss_fn, after_step, torch):
    """The same loop for both sides: views, loss, step, (EMA); images/s timed after ``warmup`` steps."""
    torch.set_num_threads(a.threads)
    if a.mode == "accuracy":
        dump("init")
    steps_per_epoch = len(loader)
    total = a.speed_steps + a.warmup if a.mode == "speed" else a.epochs * steps_per_epoch
    step, t0, losses = 0, None, []
    model.train()
    while step < total:
        for batch in loader:
            if step == a.warmup:
                t0 = time.perf_counter()
            x1, x2 = make_views(batch)
            loss = loss_fn(x1, x2)
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            after_step(step, total)
            losses.append(float(loss))
            if step >= total:
                break
    seconds = time.perf_counter() - t0
    if a.mode == "accuracy":
        dump("final")
    return {"images_per_s": (total - a.warmup) * a.batch_size / seconds, "steps": total,
            "first_loss": losses[0], "last_loss": float(np.mean(losses[-5:]))}


def compare_augmentations(threads: int) -> dict:
    """One SimCLR view per image: hfssl's batched pure-torch pipeline vs kornia's, interleaved timings."""
    import kornia.augmentation as K
    import torch

    from hfssl.contrastive.augment import augment, views_for_method

    torch.set_num_threads(threads)
    out = {}
    for b, size in ((128, 32), (64, 224)):
        x = torch.rand(b, 3, size, size)
        ours = views_for_method("simclr", size)[0]
        kornia_view = K.AugmentationSequential(
            K.RandomResizedCrop((size, size), scale=(0.08, 1.0)), K.RandomHorizontalFlip(),
            K.ColorJitter(0.8, 0.8, 0.8, 0.2, p=0.8), K.RandomGrayscale(p=0.2),
            K.RandomGaussianBlur((max(3, int(0.1 * size) // 2 * 2 + 1),) * 2, (0.1, 2.0), p=0.5))
        gen = torch.Generator().manual_seed(0)
        t_ours, t_kornia = [], []
        for _ in range(6):
            t = time.perf_counter()
            augment(x, ours, gen)
            t_ours.append(time.perf_counter() - t)
            t = time.perf_counter()
            kornia_view(x)
            t_kornia.append(time.perf_counter() - t)
        mo, mk = statistics.median(t_ours[1:]), statistics.median(t_kornia[1:])
        out[f"{b}x{size}px"] = {"hfssl_images_per_s": b / mo, "kornia_images_per_s": b / mk, "ratio": mk / mo}
        print(f"augment {b}x{size}px: hfssl {b / mo:.0f} vs kornia {b / mk:.0f} images/s -> ratio {mk / mo:.2f}", flush=True)
    return out


# ---------------------------------------------------------------------------------------------------- parent
def _run(side, args, mode, out):
    python = args.lightly_python if side == "lightly" else sys.executable
    cmd = [python, __file__, "--worker", side, "--mode", mode, "--out", out, "--method", args.method,
           "--batch_size", str(args.batch_size), "--epochs", str(args.epochs), "--speed_steps", str(args.speed_steps),
           "--warmup", str(args.warmup), "--threads", str(args.threads), "--workers", str(args.workers),
           "--lr", str(args.lr), "--temperature", str(args.temperature), "--min_scale", str(args.min_scale),
           "--hflip", str(args.hflip), "--seed", str(args.seed)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(args.threads)}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{side} worker failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _evaluate(npz, ytr, yva):
    import torch

    from hfssl.contrastive.evaluation import knn_accuracy, linear_probe_accuracy

    d = np.load(npz)
    tr, va = torch.from_numpy(d["train"]), torch.from_numpy(d["val"])
    ytr, yva = torch.from_numpy(ytr), torch.from_numpy(yva)
    return {"knn": knn_accuracy(tr, ytr, va, yva), "linear_probe": linear_probe_accuracy(tr, ytr, va, yva)}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lightly_python", help="Python of a venv with torch, torchvision, lightly and scikit-learn.")
    p.add_argument("--methods", nargs="+", default=["simclr", "byol"], choices=["simclr", "byol"])
    p.add_argument("--phases", nargs="+", default=["speed", "accuracy"], choices=["speed", "accuracy", "augment"],
                   help="augment: our batched views vs kornia's (pip install kornia), the choice behind augment.py.")
    p.add_argument("--rounds", type=int, default=3, help="Paired speed runs per side.")
    p.add_argument("--speed_steps", type=int, default=15)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch_size", type=int, default=128)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers on both sides.")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--temperature", type=float, default=0.1)
    p.add_argument("--min_scale", type=float, default=0.2)
    p.add_argument("--hflip", type=float, default=0.0, help="Digits are not mirror-symmetric: no flips by default.")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seeds", type=int, nargs="+", default=None,
                   help="Accuracy phase: train each side once per seed and report the means (default: --seed alone).")
    p.add_argument("--output", default="benchmarks/contrastive_vs_lightly.json")
    # worker mode (internal)
    p.add_argument("--worker", choices=["hfssl", "lightly"])
    p.add_argument("--mode", choices=["speed", "accuracy"])
    p.add_argument("--method", default="simclr")
    p.add_argument("--out")
    args = p.parse_args()
    if args.worker:
        result = (worker_hfssl if args.worker == "hfssl" else worker_lightly)(args)
        print(json.dumps(result))
        return
    if not args.lightly_python or not Path(args.lightly_python).exists():
        sys.exit("Pass --lightly_python PATH (python -m venv /tmp/lightly-venv && /tmp/lightly-venv/bin/pip install "
                 "torch torchvision lightly scikit-learn).")
    _, ytr, _, yva = digits_32()
    if "augment" in args.phases:
        report_aug = compare_augmentations(args.threads)
    report = {"config": {k: v for k, v in vars(args).items() if k not in ("worker", "mode", "method", "out")}}
    for method in args.methods:
        args.method = method
        entry = report.setdefault(method, {})
        if "speed" in args.phases:
            speeds = {"hfssl": [], "lightly": []}
            for r in range(args.rounds):
                for side in (("hfssl", "lightly") if r % 2 == 0 else ("lightly", "hfssl")):  # alternate who goes first
                    with tempfile.TemporaryDirectory() as tmp:
                        speeds[side].append(_run(side, args, "speed", tmp)["images_per_s"])
                    print(f"{method} round {r} {side}: {speeds[side][-1]:.1f} images/s", flush=True)
            med = {s: statistics.median(v) for s, v in speeds.items()}
            paired = [h / l for h, l in zip(speeds["hfssl"], speeds["lightly"])]
            # Adjacent runs see the same machine load, so the median of the paired ratios is the headline number.
            entry["speed"] = {"images_per_s": speeds, "median": med, "paired_ratios": paired,
                              "ratio_hfssl_over_lightly": statistics.median(paired),
                              "ratio_of_medians": med["hfssl"] / med["lightly"]}
            print(f"{method}: hfssl {med['hfssl']:.1f} vs lightly {med['lightly']:.1f} images/s (medians); paired "
                  f"ratios {', '.join(f'{x:.2f}' for x in paired)} -> ratio {statistics.median(paired):.2f}", flush=True)
        if "accuracy" in args.phases:
            # One training per side and seed; a single seed's kNN moves by a point or two, so compare the means.
            seed = args.seed
            for args.seed in args.seeds or [seed]:
                for side in ("hfssl", "lightly"):
                    with tempfile.TemporaryDirectory() as tmp:
                        run = _run(side, args, "accuracy", tmp)
                        run["init"] = _evaluate(f"{tmp}/init.npz", ytr, yva)
                        run["final"] = _evaluate(f"{tmp}/final.npz", ytr, yva)
                    entry.setdefault("accuracy", {}).setdefault(side, []).append({"seed": args.seed, **run})
                    print(f"{method} {side} seed {args.seed}, {args.epochs} epochs: kNN {run['final']['knn']:.4f} (random init "
                          f"{run['init']['knn']:.4f}), linear probe {run['final']['linear_probe']:.4f} (random init "
                          f"{run['init']['linear_probe']:.4f}), loss {run['first_loss']:.3f}->{run['last_loss']:.3f}, "
                          f"{run['images_per_s']:.1f} images/s", flush=True)
            args.seed = seed
            for side, runs in entry["accuracy"].items():
                mean = {m: statistics.mean(r["final"][m] for r in runs) for m in ("knn", "linear_probe")}
                entry.setdefault("accuracy_mean", {})[side] = mean
                print(f"{method} {side}: mean over {len(runs)} seed(s): kNN {mean['knn']:.4f}, linear probe "
                      f"{mean['linear_probe']:.4f}", flush=True)
    if "augment" in args.phases:
        report["augment"] = report_aug
    Path(args.output).write_text(json.dumps(report, indent=2))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
