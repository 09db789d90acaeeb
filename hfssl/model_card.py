"""Render a model card (the output folder's README.md) from a template in ``model_cards/``.

Every recipe calls :func:`write_model_card` at save time with what it knows about the run. The card's YAML
metadata is what the Hub indexes (``library_name``, ``pipeline_tag``, ``datasets``, ``base_model``,
``model-index``); the body tells a reader how to load the model and how it was trained.

``info`` keys (all optional except ``model_name``):
    model_name: str                 -- title, usually the output folder or Hub id
    datasets: list[str]             -- Hub ids or local file names the model was trained on
    dataset_config: str | None
    base_model: str | None          -- for fine-tunes and continued pretraining
    hyperparameters: dict           -- flag -> value, printed as a table
    compute: dict                   -- hardware, num_processes, wall_time_s, tokens_seen / words_seen / images_seen
    results: dict[str, float]       -- metric name -> value; also written to model-index
    results_dataset: str            -- which data the results were measured on
    loss_history: list[(step, loss)] -- plotted to training_loss.png when matplotlib is installed
    tags: list[str]; license: str; pipeline_tag: str; task_type: str
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "model_cards"

# kind -> (pipeline_tag, library_name, default tags)
KINDS = {
    "masked-lm": ("fill-mask", "transformers", ["hfssl", "masked-lm", "self-supervised"]),
    "word-embeddings": ("feature-extraction", "hfssl", ["hfssl", "word2vec", "word-embeddings", "self-supervised"]),
    "image-encoder": ("image-feature-extraction", "transformers", ["hfssl", "self-supervised", "contrastive"]),
    "text-classifier": ("text-classification", "transformers", ["hfssl", "text-classification"]),
    "causal-lm": ("text-generation", "transformers", ["hfssl", "causal-lm", "self-supervised"]),
}


def _metadata(kind: str, info: dict[str, Any]) -> dict[str, Any]:
    pipeline_tag, library_name, tags = KINDS[kind]
    meta: dict[str, Any] = {
        "license": info.get("license", "apache-2.0"),
        "library_name": library_name,
        "pipeline_tag": info.get("pipeline_tag", pipeline_tag),
        "tags": list(dict.fromkeys(tags + list(info.get("tags", [])))),
    }
    if info.get("datasets"):
        meta["datasets"] = list(info["datasets"])
    if info.get("base_model"):
        meta["base_model"] = info["base_model"]
    results = info.get("results") or {}
    if results:
        meta["model-index"] = [
            {
                "name": info["model_name"],
                "results": [
                    {
                        "task": {"type": info.get("task_type", meta["pipeline_tag"])},
                        "dataset": {"name": info.get("results_dataset", "validation"), "type": info.get("results_dataset", "validation")},
                        "metrics": [{"type": name, "name": name, "value": float(value)} for name, value in results.items()],
                    }
                ],
            }
        ]
    return meta


def _table(rows: dict[str, Any], head: tuple[str, str]) -> str:
    if not rows:
        return "_not recorded_"
    lines = [f"| {head[0]} | {head[1]} |", "| --- | --- |"]
    for key, value in rows.items():
        if isinstance(value, float):
            value = f"{value:.4g}"
        lines.append(f"| {key} | {value} |")
    return "\n".join(lines)


def _plot_loss(history: list[tuple[int, float]], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    steps, losses = zip(*history)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(steps, losses)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def render_model_card(kind: str, info: dict[str, Any], *, loss_plot: str | None = None) -> str:
    if kind not in KINDS:
        raise ValueError(f"Unknown model card kind {kind!r}; expected one of {sorted(KINDS)}.")
    template = (TEMPLATES_DIR / f"{kind}.md").read_text(encoding="utf-8")
    body = template.format(
        model_name=info["model_name"],
        repo_id=info.get("repo_id", info["model_name"]),
        datasets=", ".join(info.get("datasets") or ["not recorded"]),
        dataset_config=info.get("dataset_config") or "default",
        base_model=info.get("base_model") or "none (trained from scratch)",
        hyperparameters=_table(info.get("hyperparameters") or {}, ("hyperparameter", "value")),
        compute=_table(info.get("compute") or {}, ("item", "value")),
        results=_table(info.get("results") or {}, ("metric", "value")),
        loss_plot=f"![training loss]({loss_plot})" if loss_plot else "_no loss curve recorded_",
    )
    front = yaml.safe_dump(_metadata(kind, info), sort_keys=False)
    return f"---\n{front}---\n\n{body}"


def write_model_card(output_dir: str | Path, kind: str, info: dict[str, Any]) -> Path:
    """Write ``README.md`` (and ``training_loss.png`` when a loss history is given) into ``output_dir``."""
    output_dir = Path(output_dir)
    plot = None
    history = info.get("loss_history")
    if history and _plot_loss(history, output_dir / "training_loss.png"):
        plot = "training_loss.png"
    path = output_dir / "README.md"
    path.write_text(render_model_card(kind, info, loss_plot=plot), encoding="utf-8")
    return path
