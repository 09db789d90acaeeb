"""Render a model card (the output folder's README.md) from a template in ``model_cards/``.

Every recipe calls :func:`write_model_card` at save time with what it knows about the run. The card's YAML
metadata is what the Hub indexes (``license``, ``tags``, ``library_name``, ``pipeline_tag``, ``datasets``,
``base_model``, ``model-index``) and is built with ``huggingface_hub.ModelCardData`` so that
``ModelCard.load`` parses it back exactly; the body tells a reader what the model is, how to load it (a snippet
that is tested against a saved folder), how it was trained, on what compute, and how well it does.

``info`` keys (all optional except ``model_name``):
    model_name: str                 -- title, usually the output folder or Hub id
    repo_id: str                    -- Hub id used in the loading snippet (default: model_name)
    recipe: str                     -- script that trained it, e.g. "recipes/mlm.py" (each kind has a default)
    datasets: list[str]             -- Hub ids or local file names the model was trained on; only Hub ids go
                                       into the ``datasets`` metadata, local files are named in the body
    dataset_config: str | None
    dataset_revision: str | None    -- Hub dataset revision (commit sha, tag or branch) for reproducibility; the
                                       body says "not pinned" without one, and "n/a" when no dataset is on the Hub
    base_model: str | None          -- for fine-tunes and continued pretraining (Hub id or local path)
    model_details: dict             -- architecture facts (parameters, layers, vocab size, ...), printed as a table
    hyperparameters: dict           -- flag -> value, printed as a table (token-like keys are dropped)
    compute: dict                   -- num_processes, wall_time_s, tokens_seen / words_seen / images_seen, ...;
                                       ``hardware`` is filled in from the running machine when missing
    results: dict                   -- metric -> value (measured on ``results_dataset``), or
                                       dataset -> {metric -> value}; also written to ``model-index``
    results_dataset: str            -- which data flat ``results`` were measured on (default "validation")
    results_split: str              -- split of that data, if any
    loss_history: list[(step, loss)] -- plotted to training_loss.png (matplotlib)
    eval_history: list[(step, loss)] -- optional validation curve drawn on the same plot
    tags: list[str]; license: str; pipeline_tag: str; task_type: str
    extra: dict[str, str]           -- more ``{placeholders}`` for a recipe's own template text

Templates are Markdown with ``{placeholder}`` fields. Only the known placeholder names are substituted, so code
in a template can use braces freely; ``{{`` and ``}}`` are still turned into single braces so templates written
for ``str.format`` keep working.
"""

from __future__ import annotations

import math
import os
import platform
import re
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCardData

from .hub import redact_token

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "model_cards"
LOSS_PLOT_FILE = "training_loss.png"
CONFIG_FILE = "hfssl_config.yaml"

# kind -> (pipeline_tag, library_name, default tags, default recipe)
KINDS = {
    "masked-lm": ("fill-mask", "transformers", ["hfssl", "masked-lm", "self-supervised"], "recipes/mlm.py"),
    "word-embeddings": (
        "feature-extraction", "hfssl", ["hfssl", "word2vec", "word-embeddings", "self-supervised"], "recipes/word2vec.py",
    ),
    "image-encoder": (
        "image-feature-extraction", "transformers", ["hfssl", "self-supervised"], "recipes/contrastive.py",
    ),
    "text-classifier": ("text-classification", "transformers", ["hfssl", "text-classification"], "recipes/finetune.py"),
    "image-classifier": (
        "image-classification", "transformers", ["hfssl", "image-classification"], "recipes/image_finetune.py",
    ),
    "causal-lm": ("text-generation", "transformers", ["hfssl", "causal-lm", "self-supervised"], "recipes/clm.py"),
}

# Template fields a kind needs beyond the common ones; a recipe overrides them through ``info["extra"]``.
DEFAULT_EXTRA = {
    "image-encoder": {  # contrastive methods; RotNet and MAE pass their own
        "objective": "two random augmentations of the same image were pulled together in embedding space (and, for "
                     "SimCLR and MoCo v3, pushed away from the other images of the batch)",
        "limitations": "Contrastive pretraining teaches invariance to the augmentations used in training (crops, "
                       "colour jitter, flips); features may therefore ignore colour or orientation when a downstream "
                       "task needs them. Quality depends strongly on batch size and training length.",
    },
    "word-embeddings": {"vectors_file": "model.safetensors", "vectors_key": "embeddings", "vocab_file": "vocab.txt"},
}

# A Hub repo id: "name" or "namespace/name" (what the Hub accepts for ``datasets`` and ``base_model`` metadata).
_HUB_ID = re.compile(r"^(?:[A-Za-z0-9][\w.-]*/)?[A-Za-z0-9][\w.-]*$")
# Hyperparameter names that could hold a credential; never printed even if a recipe passes them by mistake.
_SECRET_KEY = re.compile(r"token|password|secret|api_key|credential", re.IGNORECASE)
# Compute entries holding a duration in seconds (wall_time_s, train_runtime_s, ...), shown as s / min / h.
_SECONDS_KEY = re.compile(r"(time|runtime|duration)(_s|_sec|_seconds)$")
_SPLIT_NAME = re.compile(r"^(train|training|validation|valid|val|dev|eval|test)([_-]\w+)?$", re.IGNORECASE)
_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")


def is_hub_id(name: str | None) -> bool:
    """True when ``name`` looks like a Hub repo id and is not a local file or folder."""
    if not name or os.path.exists(name):
        return False
    return bool(_HUB_ID.match(name)) and not name.endswith((".txt", ".json", ".jsonl", ".csv", ".parquet", ".md"))


def hardware_summary() -> str:
    """One line describing the accelerators (or CPU) of this machine, for the card's compute table."""
    try:
        import torch

        if torch.cuda.is_available():
            names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
            return f"{len(names)} x {names[0]}" if len(set(names)) == 1 else ", ".join(names)
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return f"Apple MPS ({platform.machine()})"
    except ImportError:  # pragma: no cover - torch is a hard dependency, but the card should still render
        pass
    cpu = platform.processor() or platform.machine() or "unknown CPU"
    return f"CPU: {cpu}, {os.cpu_count()} logical cores"


def _format_value(key: str, value: Any) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and _SECONDS_KEY.search(key):
        return _format_seconds(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10_000:
        return f"{value:,}"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return str(value).replace("|", "\\|").replace("\n", " ")


def _format_seconds(seconds: float) -> str:
    seconds = float(seconds)
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def _table(rows: dict[str, Any], head: tuple[str, str]) -> str:
    if not rows:
        return "_not recorded_"
    lines = [f"| {head[0]} | {head[1]} |", "| --- | --- |"]
    for key, value in rows.items():
        lines.append(f"| {key} | {_format_value(key, value)} |")
    return "\n".join(lines)


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _grouped_results(info: dict[str, Any]) -> list[tuple[str, str | None, dict[str, float]]]:
    """``results`` as (dataset, split, {metric -> value}) groups, whichever accepted shape was given.

    A flat ``{metric: value}`` is measured on ``results_dataset`` / ``results_split``. A nested group whose key
    looks like a split name (``validation``, ``test_matched``, ...) is that split of ``results_dataset`` (or of
    the first Hub dataset trained on); any other group key is a dataset name. Non-numeric values are skipped.
    """
    results = info.get("results") or {}
    hub_datasets = [d for d in info.get("datasets") or [] if is_hub_id(d)]
    local = [Path(d).name for d in info.get("datasets") or []]
    home = info.get("results_dataset") or (hub_datasets or local or ["held-out data"])[0]
    groups: dict[tuple[str, str | None], dict[str, float]] = {}
    for key, value in results.items():
        if isinstance(value, dict):
            where = (home, str(key)) if _SPLIT_NAME.match(str(key)) else (str(key), None)
            metrics = {str(m): _number(v) for m, v in value.items()}
        else:
            where = (home, info.get("results_split"))
            metrics = {str(key): _number(value)}
        groups.setdefault(where, {}).update({m: v for m, v in metrics.items() if v is not None})
    return [(dataset, split, metrics) for (dataset, split), metrics in groups.items() if metrics]


def _results_table(groups: list[tuple[str, str | None, dict[str, float]]]) -> str:
    if not groups:
        return "_not evaluated_"
    lines = ["| dataset | split | metric | value |", "| --- | --- | --- | --- |"]
    for dataset, split, metrics in groups:
        for metric, value in metrics.items():
            lines.append(f"| {dataset} | {split or '-'} | {metric} | {value:.4g} |")
    return "\n".join(lines)


def card_metadata(kind: str, info: dict[str, Any]) -> ModelCardData:
    """The card's YAML header as ``ModelCardData`` (what the Hub indexes and ``ModelCard.load`` returns)."""
    pipeline_tag, library_name, tags, _ = KINDS[kind]
    pipeline_tag = info.get("pipeline_tag", pipeline_tag)
    hub_datasets = [d for d in info.get("datasets") or [] if is_hub_id(d)]
    base_model = info.get("base_model") if is_hub_id(info.get("base_model")) else None
    eval_results = []
    for dataset, split, metrics in _grouped_results(info):
        for metric, value in metrics.items():
            eval_results.append(
                EvalResult(
                    task_type=info.get("task_type", pipeline_tag),
                    dataset_type=dataset,
                    dataset_name=dataset,
                    dataset_config=info.get("dataset_config") if dataset in hub_datasets else None,
                    dataset_split=split,
                    dataset_revision=info.get("dataset_revision") if dataset in hub_datasets else None,
                    metric_type=metric,
                    metric_name=metric,
                    metric_value=value,
                )
            )
    return ModelCardData(
        license=info.get("license", "apache-2.0"),
        library_name=library_name,
        pipeline_tag=pipeline_tag,
        tags=list(dict.fromkeys(tags + list(info.get("tags") or []))),
        datasets=hub_datasets or None,
        base_model=base_model,
        model_name=info["model_name"],
        eval_results=eval_results or None,
    )


def _plot_loss(history: list[tuple[int, float]], path: Path, eval_history: list[tuple[int, float]] | None) -> bool:
    """Draw the training (and validation) loss curve; returns False when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # no display on training machines
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    steps, losses = zip(*history)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(steps, losses, label="training loss", alpha=0.5 if len(losses) > 50 else 1.0)
    if len(losses) > 50:  # a moving average makes the trend readable when the raw curve is noisy
        window = max(len(losses) // 25, 2)
        smooth = [sum(losses[max(0, i - window + 1): i + 1]) / (i + 1 - max(0, i - window + 1)) for i in range(len(losses))]
        ax.plot(steps, smooth, label=f"moving average ({window})")
    if eval_history:
        eval_steps, eval_losses = zip(*eval_history)
        ax.plot(eval_steps, eval_losses, "o-", label="validation loss")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def _datasets_text(info: dict[str, Any]) -> str:
    names = info.get("datasets") or []
    if not names:
        return "not recorded"
    shown = []
    for name in names:
        if is_hub_id(name):
            shown.append(f"[{name}](https://huggingface.co/datasets/{name})")
        elif os.path.exists(name) or Path(name).suffix:
            shown.append(f"`{Path(name).name}` (local {'folder' if os.path.isdir(name) else 'file'})")
        else:
            shown.append(str(name))  # a description such as "scikit-learn digits"
    return ", ".join(shown)


def _revision_text(info: dict[str, Any]) -> str:
    if info.get("dataset_revision"):
        return f"`{info['dataset_revision']}`"
    names = info.get("datasets") or []
    if names and not any(is_hub_id(name) for name in names):
        return "n/a (local data)"  # a local file or folder has no Hub revision to pin
    return "not pinned"


def render_model_card(kind: str, info: dict[str, Any], *, loss_plot: str | None = None,
                      training_config: str | None = None) -> str:
    """The complete README.md text (YAML metadata + body) for a model of ``kind``."""
    if kind not in KINDS:
        raise ValueError(f"Unknown model card kind {kind!r}; expected one of {sorted(KINDS)}.")
    if not info.get("model_name"):
        raise ValueError("write_model_card needs info['model_name'] (usually the Hub id or output folder name).")
    path = TEMPLATES_DIR / f"{kind}.md"
    if not path.is_file():
        raise FileNotFoundError(f"Model card template {path} is missing; add it or reinstall hfssl from the "
                                "repository.")
    compute = dict(info.get("compute") or {})
    compute.setdefault("hardware", hardware_summary())
    hyperparameters = {k: v for k, v in (info.get("hyperparameters") or {}).items() if not _SECRET_KEY.search(k)}
    grouped = _grouped_results(info)
    values = {
        "model_name": info["model_name"],
        "repo_id": info.get("repo_id") or info["model_name"],
        "recipe": info.get("recipe") or KINDS[kind][3],
        "datasets": _datasets_text(info),
        "dataset_config": info.get("dataset_config") or "default",
        "dataset_revision": _revision_text(info),
        "base_model": info.get("base_model") or "none (trained from scratch)",
        "model_details": _table(info.get("model_details") or {}, ("property", "value")),
        "hyperparameters": _table(hyperparameters, ("hyperparameter", "value")),
        "compute": _table(compute, ("item", "value")),
        "results": _results_table(grouped),
        "results_dataset": (", ".join(dict.fromkeys(d for d, _, _ in grouped)) or info.get("results_dataset")
                            or "validation"),
        "loss_plot": f"![training loss]({loss_plot})" if loss_plot else "_no loss curve recorded_",
        "training_config": (
            f"The full configuration is in [`{training_config}`]({training_config}); reproduce the run with "
            f"`python {info.get('recipe') or KINDS[kind][3]} --config {training_config} --output_dir NEW_DIR`."
            if training_config else "_configuration file not saved_"
        ),
        **DEFAULT_EXTRA.get(kind, {}),
        **{str(k): str(v) for k, v in (info.get("extra") or {}).items()},
    }

    def substitute(match: re.Match[str]) -> str:
        token = match.group(0)
        if token in ("{{", "}}"):
            return token[0]
        return str(values[match.group(1)]) if match.group(1) in values else token

    body = _PLACEHOLDER.sub(substitute, path.read_text(encoding="utf-8"))
    front = card_metadata(kind, info).to_yaml()
    return redact_token(f"---\n{front}\n---\n\n{body}")


def write_model_card(output_dir: str | Path, kind: str, info: dict[str, Any]) -> Path:
    """Write ``README.md`` (and ``training_loss.png`` when a loss history is given) into ``output_dir``.

    Call it on the main process only, after the model is saved.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    plot = None
    history = info.get("loss_history")
    if history and _plot_loss(list(history), output_dir / LOSS_PLOT_FILE, info.get("eval_history")):
        plot = LOSS_PLOT_FILE
    config = CONFIG_FILE if (output_dir / CONFIG_FILE).is_file() else None
    path = output_dir / "README.md"
    path.write_text(render_model_card(kind, info, loss_plot=plot, training_config=config), encoding="utf-8")
    return path
