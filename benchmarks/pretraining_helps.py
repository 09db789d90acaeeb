#!/usr/bin/env python
"""Does self-supervised pretraining help? Fine-tune an MLM checkpoint and the same network from random weights.

    python benchmarks/pretraining_helps.py                          # pretrain (recipes/mlm.py defaults), then compare
    python benchmarks/pretraining_helps.py --pretrained_dir outputs/mlm   # reuse a checkpoint, skip pretraining
    python benchmarks/pretraining_helps.py --quick                  # minutes: a plumbing check, not a result

1. Pretrain: ``recipes/mlm.py`` with its default model (a 4-layer BERT with a WordPiece vocabulary trained on the
   corpus) for ``--pretrain_steps`` on real unlabelled text: by default every fortune file *except* the task's four
   categories (~12.8k entries, ~360k words: the task's register, none of its text, no label information), or with
   ``--pretrain_corpus python-docs`` the recipe's own offline corpus. The run must end within
   ``--pretrain_minutes`` (20 by default) or the benchmark stops and says so.
2. Random baseline: the same config (architecture, vocabulary size) and the same tokenizer, weights drawn fresh
   (``AutoModelForMaskedLM.from_config``), saved as a second checkpoint. The only difference is the weights.
3. Fine-tune both with ``recipes/finetune.py`` on the offline fortunes topic task (computers / food / law /
   politics, labels by the fortune maintainers), with identical flags, for each seed; runs alternate
   (pretrained, random, pretrained, random, ...) so machine load hits both sides alike.
4. Report validation and held-out test accuracy and macro-F1, mean and standard deviation over seeds, the
   difference and the ratio, and write them to ``<work_dir>/pretraining_helps.json``.

"Clearly higher" is decided on held-out test accuracy: the pretrained arm must win for every seed and its mean must
beat the random mean by more than two standard errors of the difference (the verdict is printed, not assumed).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing
METRICS = ("eval_accuracy", "eval_macro_f1", "predict_test_accuracy", "predict_test_macro_f1")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work_dir", default="outputs/bench-pretraining-helps")
    parser.add_argument("--pretrained_dir", default=None, help="An existing recipes/mlm.py output: skip pretraining.")
    parser.add_argument("--pretrain_minutes", type=float, default=20.0, help="Wall-clock budget for pretraining.")
    parser.add_argument("--pretrain_steps", type=int, default=2000,
                        help="recipes/mlm.py --max_steps (its default model runs about 150 steps/min on 2 quiet cores).")
    parser.add_argument("--pretrain_corpus", default="fortunes", choices=["fortunes", "python-docs"],
                        help="fortunes: every fortune file except the task's four categories (in-domain, unlabelled); "
                             "python-docs: recipes/mlm.py's offline default corpus.")
    parser.add_argument("--mlm_args", default="", help="Extra flags for recipes/mlm.py, e.g. '--hidden_size 128'.")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="Fine-tuning seeds (at least 2).")
    parser.add_argument("--num_train_epochs", type=float, default=10)
    parser.add_argument("--learning_rate", type=float, default=3e-4)
    parser.add_argument("--max_train_samples", type=int, default=None)
    parser.add_argument("--finetune_args", default="",
                        help="Extra flags for recipes/finetune.py (both arms), e.g. --finetune_args='--max_seq_length 64'.")
    parser.add_argument("--quick", action="store_true", help="Tiny budget to check the plumbing (not a result).")
    args = parser.parse_args(argv)
    if len(args.seeds) < 2:
        parser.error("--seeds needs at least 2 seeds: one run per arm is not evidence.")
    if args.quick:
        args.pretrain_minutes, args.pretrain_steps = min(args.pretrain_minutes, 5), 60
        args.num_train_epochs, args.max_train_samples = 1, args.max_train_samples or 256
        args.seeds = args.seeds[:2]
    return args


def run(cmd: list[str], log: Path, timeout_s: float | None = None) -> tuple[int, float]:
    """Run ``cmd`` with output to ``log``; returns (exit code, seconds). A timeout ends it with SIGTERM."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    start = time.perf_counter()
    with open(log, "w", encoding="utf-8") as handle:
        process = subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        try:
            code = process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.terminate()
            code = process.wait()
            code = -1 if code == 0 else code
    return code, time.perf_counter() - start


def pretrain(args: argparse.Namespace, work: Path) -> tuple[Path, float]:
    """recipes/mlm.py with its offline defaults for ``--pretrain_steps`` steps; fails if it overruns the budget."""
    out = work / "mlm"
    cmd = [sys.executable, "recipes/mlm.py", "--output_dir", str(out), "--overwrite_output_dir", "--report_to", "none",
           "--max_steps", str(args.pretrain_steps), *args.mlm_args.split()]
    if args.pretrain_corpus == "fortunes":
        from hfssl.finetune.fortunes import DEFAULT_CATEGORIES, fortunes_text_corpus

        cmd += ["--train_file", str(fortunes_text_corpus(exclude=DEFAULT_CATEGORIES, out_path=work / "fortunes-other.txt"))]
    print(f"[pretrain] {' '.join(cmd)}  (budget {args.pretrain_minutes:g} min)", flush=True)
    code, seconds = run(cmd, work / "mlm.log", timeout_s=args.pretrain_minutes * 60)
    if code == -1:
        sys.exit(f"Pretraining overran the {args.pretrain_minutes:g}-minute budget: pass a smaller --pretrain_steps, "
                 f"or pretrain separately and pass --pretrained_dir.")
    if code != 0 or not (out / "model.safetensors").is_file():
        sys.exit(f"recipes/mlm.py failed (exit {code}); see {work / 'mlm.log'}")
    return out, seconds


def random_init_copy(pretrained: Path, out: Path, seed: int) -> Path:
    """Same config and tokenizer as ``pretrained``, fresh weights (the architecture's own initialisation)."""
    import torch
    from transformers import AutoConfig, AutoModelForMaskedLM, AutoTokenizer

    torch.manual_seed(seed)
    config = AutoConfig.from_pretrained(pretrained)
    AutoModelForMaskedLM.from_config(config).save_pretrained(out)
    AutoTokenizer.from_pretrained(pretrained).save_pretrained(out)
    return out


def finetune(checkpoint: Path, out: Path, seed: int, args: argparse.Namespace) -> dict[str, float]:
    cmd = [sys.executable, "recipes/finetune.py", "--model_name_or_path", str(checkpoint), "--output_dir", str(out),
           "--overwrite_output_dir", "--config", "recipes/configs/finetune/fortunes.yaml", "--seed", str(seed),
           "--num_train_epochs", str(args.num_train_epochs), "--learning_rate", str(args.learning_rate),
           "--report_to", "none", "--checkpoints_total_limit", "1", *args.finetune_args.split()]
    if args.max_train_samples:
        cmd += ["--max_train_samples", str(args.max_train_samples)]
    code, seconds = run(cmd, out.with_suffix(".log"))
    if code != 0:
        sys.exit(f"recipes/finetune.py failed (exit {code}); see {out.with_suffix('.log')}")
    results = json.loads((out / "all_results.json").read_text(encoding="utf-8"))
    shutil.rmtree(out / "checkpoints", ignore_errors=True)  # keep the final model, drop optimizer states
    return {**{m: results[m] for m in METRICS}, "seconds": seconds}


def summarise(runs: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, float]]:
    summary = {}
    for arm, arm_runs in runs.items():
        for metric in METRICS:
            values = [r[metric] for r in arm_runs]
            summary.setdefault(arm, {})[metric] = statistics.mean(values)
            summary[arm][metric + "_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
    return summary


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    work = (ROOT / args.work_dir).resolve() if not Path(args.work_dir).is_absolute() else Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    started = datetime.now(timezone.utc)

    if args.pretrained_dir:
        pretrained, pretrain_seconds = Path(args.pretrained_dir).resolve(), None
        print(f"[pretrain] skipped: using {pretrained}", flush=True)
    else:
        pretrained, pretrain_seconds = pretrain(args, work)
        print(f"[pretrain] done in {pretrain_seconds / 60:.1f} min -> {pretrained}", flush=True)
    random_dir = random_init_copy(pretrained, work / "random-init", seed=0)

    runs: dict[str, list[dict[str, float]]] = {"pretrained": [], "random": []}
    for seed in args.seeds:  # alternate the arms so that load on a shared machine affects both alike
        for arm, checkpoint in (("pretrained", pretrained), ("random", random_dir)):
            result = finetune(checkpoint, work / f"finetune-{arm}-seed{seed}", seed, args)
            runs[arm].append(result)
            print(f"[finetune] {arm:10s} seed {seed}: test acc {result['predict_test_accuracy']:.4f}  macro-F1 "
                  f"{result['predict_test_macro_f1']:.4f}  val acc {result['eval_accuracy']:.4f}  "
                  f"({result['seconds']:.0f} s)", flush=True)

    summary = summarise(runs)
    p, r = summary["pretrained"], summary["random"]
    n = len(args.seeds)
    diff = p["predict_test_accuracy"] - r["predict_test_accuracy"]
    stderr = ((p["predict_test_accuracy_std"] ** 2 + r["predict_test_accuracy_std"] ** 2) / n) ** 0.5
    paired = [a["predict_test_accuracy"] - b["predict_test_accuracy"] for a, b in zip(runs["pretrained"], runs["random"])]
    clearly = diff > 2 * stderr and all(d > 0 for d in paired)
    print(f"\nFortunes topic task, mean ± std over {n} seeds ({', '.join(map(str, args.seeds))}):")
    print(f"{'metric':24s} {'pretrained':>16s} {'random init':>16s} {'diff':>8s} {'ratio':>7s}")
    for metric in METRICS:
        print(f"{metric:24s} {p[metric]:8.4f} ± {p[metric + '_std']:.4f} {r[metric]:8.4f} ± {r[metric + '_std']:.4f} "
              f"{p[metric] - r[metric]:+8.4f} {p[metric] / r[metric] if r[metric] else float('nan'):7.3f}")
    print(f"per-seed test accuracy difference (pretrained - random): {', '.join(f'{d:+.4f}' for d in paired)}")
    print(f"pretrained clearly higher on test accuracy (every seed, and mean diff > 2 standard errors = {2 * stderr:.4f}): "
          f"{'YES' if clearly else 'NO'}{'  [--quick: plumbing check only]' if args.quick else ''}")

    report = {
        "date": started.strftime("%Y-%m-%d"), "hardware": f"{platform.machine()}, {os.cpu_count()} logical cores",
        "command": " ".join([Path(sys.argv[0]).name] + (argv if argv is not None else sys.argv[1:])),
        "pretrained_dir": str(pretrained), "pretrain_seconds": pretrain_seconds, "seeds": args.seeds,
        "pretrain": None if args.pretrained_dir else {"corpus": args.pretrain_corpus, "steps": args.pretrain_steps,
                                                      "mlm_args": args.mlm_args},
        "finetune": {"num_train_epochs": args.num_train_epochs, "learning_rate": args.learning_rate,
                     "max_train_samples": args.max_train_samples, "extra": args.finetune_args},
        "runs": runs, "summary": summary, "test_accuracy_diff": diff, "paired_test_accuracy_diffs": paired, "clearly_higher": clearly, "quick": args.quick,
    }
    (work / "pretraining_helps.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    return report


if __name__ == "__main__":
    main()
