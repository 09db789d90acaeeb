"""RotNet against SimCLR and against random init: kNN and linear probe of the same encoder at equal epochs.

    python benchmarks/rotnet_vs_simclr.py                      # 40 epochs each (the offline default budget)
    python benchmarks/rotnet_vs_simclr.py --epochs 10 --seeds 1 2 3

Both runs are recipes/contrastive.py on the offline digits with the same ResNet-18, image size, batch of images
and number of epochs; RotNet uses recipes/configs/contrastive/digits-rotnet.yaml, SimCLR the recipe's defaults.
Each run also measures its encoder at random initialization (same seed, so the same random weights for both), the
baseline either method has to beat. Note what "equal epochs" means in compute: RotNet forwards 4 rotations of each
image per step and SimCLR 2 views, so RotNet does about twice SimCLR's work per epoch; wall time is reported too.
Results go to stdout and to benchmarks/out/rotnet_vs_simclr.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KEYS = ("knn_accuracy", "linear_probe_accuracy", "random_init_knn_accuracy", "random_init_linear_probe_accuracy")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=float, default=40)
    p.add_argument("--seeds", type=int, nargs="+", default=[42])
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "out" / "rotnet_vs_simclr"))
    args = p.parse_args()
    out = Path(args.out)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    methods = {"rotnet": ["--config", "recipes/configs/contrastive/digits-rotnet.yaml"], "simclr": ["--method", "simclr"]}
    rows = []
    for seed in args.seeds:
        for name, flags in methods.items():
            run_dir = out / f"{name}-seed{seed}"
            start = time.perf_counter()
            subprocess.run([sys.executable, "recipes/contrastive.py", *flags, "--num_train_epochs", str(args.epochs),
                            "--seed", str(seed), "--output_dir", str(run_dir), "--overwrite_output_dir",
                            "--report_to", "none"], check=True, env=env, cwd=ROOT,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            results = json.loads((run_dir / "all_results.json").read_text())
            rows.append({"method": name, "seed": seed, "wall_s": round(time.perf_counter() - start, 1),
                         **{k: results[k] for k in KEYS}})
            print(json.dumps(rows[-1]), flush=True)
    summary = {"date": datetime.date.today().isoformat(), "load_average": os.getloadavg(), "epochs": args.epochs,
               "runs": rows}
    (out.parent / "rotnet_vs_simclr.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
