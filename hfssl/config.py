"""Recipe configuration: one typed dataclass per recipe, filled from a YAML file and CLI flags.

Defaults live only in the dataclass. A YAML file (``--config path.yaml``) sets values, and flags given on the
command line override it, so ``recipes/mlm.py --config recipes/configs/mlm/bert-base.yaml --max_steps 10`` works
as users of the transformers examples expect. Values from YAML go through the same argparse conversion and
``choices`` checks as flags, so a typo in either place gives the same clear error.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any, Sequence, TypeVar

import yaml
from transformers import HfArgumentParser

from .precision import CHOICES as PRECISION_CHOICES, resolve_mixed_precision

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration value is missing, unknown or out of range; the message says how to fix it."""


def _yaml_to_argv(values: dict[str, Any], known: set[str], source: str) -> list[str]:
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(
            f"{source}: unknown key(s) {unknown}. Valid keys are the recipe's flags without '--' "
            f"(see --help)."
        )
    argv: list[str] = []
    for key, value in values.items():
        if value is None:
            continue  # null in YAML means "keep the dataclass default"
        if isinstance(value, (list, tuple)):
            argv += [f"--{key}", *map(str, value)]
        else:
            argv += [f"--{key}", str(value)]
    return argv


@dataclasses.dataclass
class RunConfig:
    """Flags every recipe shares: where output goes, precision, checkpoints, trackers, the Hub.

    Recipes subclass this once (``class MLMConfig(RunConfig)``) and add their own fields.
    """

    output_dir: str = dataclasses.field(default="outputs/run", metadata={"help": "Where checkpoints and the final model go."})
    overwrite_output_dir: bool = dataclasses.field(
        default=False, metadata={"help": "Allow writing into a non-empty output_dir that is not being resumed."}
    )
    seed: int = dataclasses.field(default=42, metadata={"help": "Seed for weights, shuffling and masking."})
    mixed_precision: str = dataclasses.field(
        default="no", metadata={"help": "no, bf16, fp16 (fp16 needs a GPU) or auto (bf16 where the GPU or CPU computes "
                                         "it natively, else no; see hfssl/precision.py).", "choices": PRECISION_CHOICES}
    )
    checkpointing_steps: int = dataclasses.field(
        default=0, metadata={"help": "Save a resumable checkpoint every N optimizer steps (0: only at the end)."}
    )
    checkpoints_total_limit: int = dataclasses.field(
        default=2, metadata={"help": "Keep at most this many step checkpoints (0: keep all)."}
    )
    resume_from_checkpoint: str | None = dataclasses.field(
        default=None, metadata={"help": "A checkpoint folder, or 'latest' for the newest complete one in output_dir."}
    )
    report_to: str = dataclasses.field(
        default="tensorboard",
        metadata={"help": "Tracker: tensorboard, trackio, all or none.", "choices": ["tensorboard", "trackio", "all", "none"]},
    )
    logging_steps: int = dataclasses.field(default=10, metadata={"help": "Log training metrics every N optimizer steps."})
    push_to_hub: bool = dataclasses.field(default=False, metadata={"help": "Upload the final folder to the Hub."})
    hub_model_id: str | None = dataclasses.field(default=None, metadata={"help": "Hub repo id, e.g. user/my-bert."})
    hub_private_repo: bool = dataclasses.field(default=False, metadata={"help": "Create the Hub repo as private."})
    hub_revision: str | None = dataclasses.field(default=None, metadata={"help": "Branch of the Hub repo to push to."})
    hub_push_checkpoints: bool = dataclasses.field(
        default=False,
        metadata={"help": "Also upload every saved checkpoint (under last-checkpoint/ in the repo) in the background while "
                          "training goes on; a failed upload is reported at the end and never stops training. "
                          "Needs --push_to_hub."},
    )

    def __post_init__(self) -> None:
        self.mixed_precision = resolve_mixed_precision(self.mixed_precision)
        if self.checkpointing_steps < 0:
            raise ConfigError(f"checkpointing_steps must be >= 0, got {self.checkpointing_steps}.")
        if self.logging_steps < 1:
            raise ConfigError(f"logging_steps must be >= 1, got {self.logging_steps}.")
        if self.checkpoints_total_limit < 0:
            raise ConfigError(f"checkpoints_total_limit must be >= 0, got {self.checkpoints_total_limit}.")
        if self.push_to_hub and not self.hub_model_id:
            raise ConfigError("push_to_hub needs --hub_model_id (e.g. your-name/your-model).")
        if self.hub_push_checkpoints and not self.push_to_hub:
            raise ConfigError("hub_push_checkpoints uploads checkpoints to the --push_to_hub repo: add --push_to_hub "
                              "--hub_model_id your-name/your-model, or drop --hub_push_checkpoints.")


def check_text_pretraining(cfg: Any) -> None:
    """The checks ``recipes/clm.py`` and ``recipes/mlm.py`` share, on the flags both configs have.

    Sizes, batch sizes and the learning rate positive; decay, warmup and step counts not negative; dropout a
    probability, Adam's beta2 in (0, 1), the clipping norm not negative; a streamed dataset (no length) needs ``max_steps``; some number of steps to train. Each recipe's
    ``__post_init__`` calls this, then checks what is its own (e.g. the shortest useful ``max_seq_length``).
    """
    for name in ("learning_rate", "per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps",
                 "max_seq_length", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size"):
        if getattr(cfg, name) <= 0:
            raise ConfigError(f"{name} must be positive, got {getattr(cfg, name)}.")
    if cfg.weight_decay < 0 or cfg.warmup_steps < 0 or cfg.max_steps < 0 or cfg.eval_steps < 0:
        raise ConfigError("weight_decay, warmup_steps, max_steps and eval_steps must not be negative.")
    if not 0.0 <= cfg.dropout < 1.0:
        raise ConfigError(f"dropout must be in [0, 1), got {cfg.dropout}.")
    if not 0.0 < cfg.adam_beta2 < 1.0:
        raise ConfigError(f"adam_beta2 must be in (0, 1), got {cfg.adam_beta2}.")
    if cfg.max_grad_norm < 0:
        raise ConfigError(f"max_grad_norm must be >= 0 (0 turns clipping off), got {cfg.max_grad_norm}.")
    if cfg.streaming and cfg.max_steps <= 0:
        raise ConfigError("A streamed dataset has no length: pass --max_steps.")
    if cfg.max_steps <= 0 and cfg.num_train_epochs <= 0:
        raise ConfigError("Set --max_steps or --num_train_epochs to a positive value.")


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Config file {path} does not exist. Pass a path to a YAML file, e.g. recipes/configs/...")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"Config file {path} is not valid YAML: {err}") from err
    if not isinstance(values, dict):
        raise ConfigError(f"Config file {path} must hold a mapping of flag names to values, got {type(values).__name__}.")
    return values


def parse_config(config_cls: type[T], args: Sequence[str] | None = None) -> T:
    """Build ``config_cls`` from ``--config FILE`` (optional) and command-line flags, flags winning.

    Validation lives in the dataclass's ``__post_init__`` and raises :class:`ConfigError`.
    """
    args = list(sys.argv[1:] if args is None else args)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=None)
    known, rest = pre.parse_known_args(args)
    field_names = {f.name for f in dataclasses.fields(config_cls)}
    argv: list[str] = []
    if known.config:
        argv = _yaml_to_argv(load_yaml(known.config), field_names, known.config)
    parser = HfArgumentParser(config_cls)
    parser.add_argument("--config", default=None, help="YAML file of flag values; flags on the command line win.")
    # The namespace keeps "config" as an extra entry; the dataclass is always first.
    cfg = parser.parse_args_into_dataclasses(args=argv + rest)[0]
    return cfg


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """Plain-data view of a config, for ``hfssl_config.yaml`` and trackers."""
    return dataclasses.asdict(cfg)


def save_config(cfg: Any, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False), encoding="utf-8")
