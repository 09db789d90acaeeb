"""hfssl's MAE recipe against a plain transformers ViTMAEForPreTraining loop: same model, data, batch, steps.

    python benchmarks/mae_throughput.py                         # 3 pairs x 100 steps, offline default model
    python benchmarks/mae_throughput.py --pairs 5 --max_steps 200

Each pair runs both trainers as fresh processes one after the other (alternating which goes first, so drift in
machine load hits both alike); the images/s ratio is taken per pair and the median reported. Both use the
recipe's offline-default architecture (ViT 6 x 192 encoder, 2 x 128 decoder, 32 px, 4-px patches, mask 0.75,
normalized-pixel loss) on the same digits split. The peer (benchmarks/canonical_mae_loop.py) transforms images one
by one in the DataLoader and trains in fp32, as the transformers example does; hfssl runs its defaults (batched
crops on the device, bf16 autocast). Quality at equal budget: final training loss (mean of the last 10 steps) and
kNN / linear-probe accuracy of both encoders, scored by the same code (hfssl's frozen-feature evaluation of the
encoder converted to a ViT). Results go to stdout and to benchmarks/out/mae_throughput.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hfssl.contrastive.data import ImageCollator, load_image_splits  # noqa: E402
from hfssl.contrastive.encoder import ImageEncoder  # noqa: E402
from hfssl.contrastive.evaluation import evaluate_frozen  # noqa: E402
from hfssl.mae.model import encoder_as_vit  # noqa: E402


def encoder_scores(pretraining_dir: Path, image_size: int) -> dict[str, float]:
    """kNN and linear-probe accuracy of a saved ViTMAEForPreTraining's encoder on the digits split."""
    from transformers import ViTMAEForPreTraining

    model = ViTMAEForPreTraining.from_pretrained(pretraining_dir, use_safetensors=True)
    splits, image_col, label_col = load_image_splits(dataset_name=None)
    collate = ImageCollator(image_col, label_col, image_size)
    loaders = {name: torch.utils.data.DataLoader(splits[name], batch_size=256, collate_fn=collate)
               for name in ("train", "validation")}
    return evaluate_frozen(ImageEncoder(encoder_as_vit(model)), loaders, torch.device("cpu"), max_samples=10000,
                           k=20, temperature=0.07, linear_probe=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pairs", type=int, default=3)
    p.add_argument("--max_steps", type=int, default=100)
    p.add_argument("--batch_size", type=int, default=128)
    p.add_argument("--threads", type=int, default=0, help="torch threads per run (0: torch's default).")
    p.add_argument("--learning_rate", type=float, default=1.5e-4, help="Peak learning rate of both trainers.")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "out" / "mae"))
    args = p.parse_args()
    out = Path(args.out)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    common = ["--max_steps", str(args.max_steps), "--learning_rate", str(args.learning_rate)]
    commands = {
        "hfssl": [sys.executable, "recipes/mae.py", *common, "--per_device_train_batch_size", str(args.batch_size),
                  "--report_to", "none", "--logging_steps", "10", "--overwrite_output_dir"],
        "transformers": [sys.executable, "benchmarks/canonical_mae_loop.py", *common, "--batch_size", str(args.batch_size)],
    }
    runs: dict[str, list[dict]] = {"hfssl": [], "transformers": []}
    for pair in range(args.pairs):
        order = ["hfssl", "transformers"] if pair % 2 == 0 else ["transformers", "hfssl"]
        for name in order:
            run_dir = out / f"{name}-{pair}"
            subprocess.run([*commands[name], "--output_dir", str(run_dir)], check=True, env=env, cwd=ROOT,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            runs[name].append(json.loads((run_dir / "all_results.json").read_text()))
            print(f"pair {pair} {name}: {runs[name][-1]['train_images_per_second']:.1f} images/s", flush=True)
    ratios = [a["train_images_per_second"] / b["train_images_per_second"]
              for a, b in zip(runs["hfssl"], runs["transformers"])]
    # quality of the last pair's encoders, scored by the same code
    last = args.pairs - 1
    scores = {"hfssl": encoder_scores(out / f"hfssl-{last}" / "pretraining", 32),
              "transformers": encoder_scores(out / f"transformers-{last}", 32)}
    summary = {
        "date": datetime.date.today().isoformat(), "hardware": f"{platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} logical cores", "load_average": os.getloadavg(), "args": vars(args),
        "images_per_second": {k: statistics.median(r["train_images_per_second"] for r in v) for k, v in runs.items()},
        "ratio_median": statistics.median(ratios), "ratios": ratios,
        "train_loss": {k: [r["train_loss"] for r in v] for k, v in runs.items()}, "encoder": scores,
    }
    print(json.dumps(summary, indent=2))
    (out.parent / "mae_throughput.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
