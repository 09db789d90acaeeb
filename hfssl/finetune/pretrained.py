"""Open the checkpoint to fine-tune (a local hfssl folder or a Hub id) and fail early when it cannot work.

A checkpoint without a tokenizer, a folder that is not a ``save_pretrained`` output or pickle-only weights all
surface in transformers as long stack traces, sometimes only after the data has been tokenized. These checks
run first and say what to do instead. Weights load through safetensors only and remote code is never run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

from ..config import ConfigError

DEFAULT_CHECKPOINT = "outputs/mlm"
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "spiece.model", "sentencepiece.bpe.model", "vocab.json")
_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")


class CheckpointError(ValueError):
    """The checkpoint cannot be fine-tuned as given; the message names the problem and the fix."""


def _looks_local(name: str) -> bool:
    # Hub ids are "name" or "owner/name"; anything else (./x, /x, a/b/c, ~) can only be a folder.
    return (name.startswith((".", "/", "~")) or name.count("/") > 1 or Path(name).exists()
            or name.rstrip("/") == DEFAULT_CHECKPOINT)


def check_checkpoint(model_name_or_path: str) -> None:
    """Raise :class:`CheckpointError` unless a local folder holds a config, safetensors weights and a tokenizer."""
    if not _looks_local(model_name_or_path):
        return  # a Hub id: from_pretrained reports a missing repo or file itself
    path = Path(model_name_or_path).expanduser()
    if not path.is_dir():
        if model_name_or_path.rstrip("/") == DEFAULT_CHECKPOINT:
            raise CheckpointError(
                f"No pretrained model in {DEFAULT_CHECKPOINT}, the default --model_name_or_path. Pretrain one first "
                f"with `python recipes/mlm.py` (it writes {DEFAULT_CHECKPOINT}), or pass --model_name_or_path with a "
                f"local checkpoint or a Hub id such as google-bert/bert-base-uncased."
            )
        raise CheckpointError(f"--model_name_or_path {model_name_or_path} is not a folder. Pass a save_pretrained "
                              f"folder or a Hub id.")
    if not (path / "config.json").is_file():
        raise CheckpointError(f"{path} has no config.json, so it is not a save_pretrained folder. Point "
                              f"--model_name_or_path at the recipe's output_dir (not a checkpoints/ sub-folder).")
    if not any((path / f).is_file() for f in _TOKENIZER_FILES):
        raise CheckpointError(
            f"{path} has no tokenizer (none of {list(_TOKENIZER_FILES[:3])}). Save the tokenizer the model was "
            f"pretrained with into it: tokenizer.save_pretrained('{path}')."
        )
    if not any((path / f).is_file() for f in _WEIGHT_FILES):
        pickles = sorted(p.name for p in path.glob("*.bin"))
        hint = (f" It has pickle weights {pickles}, which hfssl does not load (they can run code); convert them with "
                f"model.save_pretrained(folder, safe_serialization=True)." if pickles else "")
        raise CheckpointError(f"{path} has no model.safetensors.{hint}")


def load_tokenizer(model_name_or_path: str) -> Any:
    """The checkpoint's tokenizer, or a :class:`CheckpointError` saying why it could not be loaded."""
    try:
        return AutoTokenizer.from_pretrained(model_name_or_path, trust_remote_code=False)
    except (OSError, ValueError, KeyError) as err:
        where = "" if Path(model_name_or_path).exists() else " (no such local folder, so it was tried as a Hub id)"
        raise CheckpointError(f"Could not load a tokenizer from {model_name_or_path}{where}: {err}. The checkpoint "
                              f"must include the tokenizer it was trained with.") from err


def load_classifier(model_name_or_path: str, *, num_labels: int, id2label: dict[int, str] | None,
                    label2id: dict[str, int] | None, is_regression: bool) -> Any:
    """A sequence classifier on top of the checkpoint's encoder; the classification head starts random."""
    config = AutoConfig.from_pretrained(
        model_name_or_path,
        num_labels=num_labels,
        problem_type="regression" if is_regression else "single_label_classification",
        trust_remote_code=False,
        **({"id2label": id2label, "label2id": label2id} if id2label else {}),
    )
    return AutoModelForSequenceClassification.from_pretrained(
        model_name_or_path, config=config, use_safetensors=True, trust_remote_code=False
    )


def max_input_length(config: Any, tokenizer: Any) -> int:
    """Longest input the model can take: its position table (less RoBERTa's padding offset) and the tokenizer's limit."""
    limit = tokenizer.model_max_length
    positions = getattr(config, "max_position_embeddings", None)
    if positions:
        # RoBERTa-style models number positions from padding_idx + 1, so that many rows of the table are unused.
        offset = (config.pad_token_id or 0) + 1 if config.model_type in ("roberta", "xlm-roberta", "camembert") else 0
        limit = min(limit, positions - offset)
    return limit


__all__ = ["CheckpointError", "DEFAULT_CHECKPOINT", "check_checkpoint", "load_classifier", "load_tokenizer", "max_input_length"]
