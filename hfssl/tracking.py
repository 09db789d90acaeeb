"""Map ``--report_to`` onto Accelerate trackers, checking up front that the tracker package is installed."""

from __future__ import annotations

import importlib.util

from .config import ConfigError

_PACKAGES = {"tensorboard": "tensorboard", "trackio": "trackio"}


def tracker_names(report_to: str) -> list[str]:
    """Trackers to hand to ``Accelerator(log_with=...)``; raises before training if one is not installed."""
    if report_to == "none":
        return []
    names = ["tensorboard", "trackio"] if report_to == "all" else [report_to]
    for name in names:
        if importlib.util.find_spec(_PACKAGES[name]) is None:
            raise ConfigError(
                f"--report_to {report_to} needs the '{_PACKAGES[name]}' package. Install it with "
                f"`pip install {_PACKAGES[name]}` or pass --report_to none."
            )
    return names
