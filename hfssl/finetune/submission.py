"""Write test-set predictions in the GLUE submission format.

gluebenchmark.com takes one tab-separated file per task (``CoLA.tsv``, ``MNLI-m.tsv``, ...) with a header
``index<TAB>prediction`` and one row per test example, the prediction being the class id for CoLA/SST-2/MRPC/
QQP/WNLI, the label name for MNLI/QNLI/RTE and a score in [0, 5] for STS-B. Local tasks use the same layout in
``predict_results.tsv`` with label names, so the file is readable without the model config.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# STS-B similarity scores are defined on [0, 5]; regression heads can step outside it.
STSB_RANGE = (0.0, 5.0)


def format_predictions(predictions: np.ndarray, *, is_regression: bool, label_names: list[str] | None,
                       use_names: bool, clip: tuple[float, float] | None = None) -> list[str]:
    """Prediction strings: ``%.3f`` floats (clipped to ``clip``), label names, or class ids."""
    if is_regression:
        values = np.clip(predictions, *clip) if clip else predictions
        return [f"{float(v):.3f}" for v in values]
    if use_names and label_names:
        return [label_names[int(i)] for i in predictions]
    return [str(int(i)) for i in predictions]


def write_submission(path: str | Path, predictions: list[str], indices: list[int] | None = None) -> Path:
    """``index<TAB>prediction`` rows; ``indices`` default to 0..n-1 (GLUE's ``idx`` column when given)."""
    path = Path(path)
    indices = list(range(len(predictions))) if indices is None else indices
    if len(indices) != len(predictions):
        raise ValueError(f"{len(indices)} indices for {len(predictions)} predictions.")
    lines = ["index\tprediction"] + [f"{i}\t{p}" for i, p in zip(indices, predictions)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


__all__ = ["STSB_RANGE", "format_predictions", "write_submission"]
