"""Labelled data for fine-tuning: GLUE or another Hub dataset, or local csv/tsv/json(l)/parquet files, checked first.

The recipe reads the splits (:func:`load_glue_splits`, :func:`load_hub_splits` or :func:`load_local_splits`) and
checks their text and label columns (:func:`check_columns`, :func:`local_task_for`); :func:`resolve_labels` decides between
classification and regression and builds the label mapping (strings like ``"positive"`` become ids, and the
mapping is stored in the model config as ``id2label``/``label2id``); :func:`encode_splits` tokenizes and turns
labels into ids. Every problem a user can cause (a missing column, an empty file, a validation label never seen
in training) raises :class:`DataError` naming the file and the fix, before any model is loaded.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

from datasets import ClassLabel, Dataset, DatasetDict, Value, load_dataset

from ..config import ConfigError
from ..data.text import DataError, check_text_file
from .tasks import GLUE_TASKS, TaskSpec, local_task

logger = logging.getLogger(__name__)
# File extension -> (datasets packaged builder, extra builder arguments).
LOCAL_BUILDERS = {
    ".csv": ("csv", {}),
    ".tsv": ("csv", {"delimiter": "\t"}),
    ".json": ("json", {}),
    ".jsonl": ("json", {}),
    ".parquet": ("parquet", {}),
}
# Column pairs tried, in order, when --sentence1_key is not given.
_TEXT_GUESSES = [("sentence1", "sentence2"), ("question", "sentence"), ("premise", "hypothesis"), ("sentence", None),
                 ("text", None)]


def load_glue_splits(task: TaskSpec, dataset_name: str, revision: str | None = None) -> DatasetDict:
    """The GLUE task's train, validation and test splits from the Hub (``nyu-mll/glue`` by default)."""
    return load_dataset(dataset_name, task.name, revision=revision)


def _hold_out_validation(splits: dict[str, Dataset], percentage: int, seed: int) -> None:
    """Move a seeded ``percentage``% of ``splits["train"]`` to ``splits["validation"]`` (Hub data and local files)."""
    held = splits["train"].train_test_split(test_size=percentage / 100, seed=seed)
    splits["train"], splits["validation"] = held["train"], held["test"]


def load_hub_splits(dataset_name: str, config_name: str | None = None, revision: str | None = None, *,
                    validation_split_percentage: int = 10, seed: int = 42) -> DatasetDict:
    """A labelled Hub dataset's train, validation and test splits (e.g. ``stanfordnlp/imdb``, ``fancyzhx/ag_news``).

    Without a ``validation`` split, a seeded ``validation_split_percentage``% of train is held out for checkpoint
    selection, as for local files: picking the best epoch on ``test`` would report a score tuned on the test set.
    ``test`` is kept apart and predicted (and scored when it has labels). Other splits (imdb's ``unsupervised``) are
    not used.
    """
    raw = load_dataset(dataset_name, config_name, revision=revision)
    source = dataset_name + (f"/{config_name}" if config_name else "")
    if "train" not in raw:
        raise DataError(f"{source} has no 'train' split (it has {list(raw)}). Pass a dataset with one, or local files "
                        f"with --train_file.")
    splits = {"train": raw["train"]}
    if len(splits["train"]) == 0:
        raise DataError(f"The train split of {source} is empty.")
    if "validation" in raw:
        splits["validation"] = raw["validation"]
    else:
        _hold_out_validation(splits, validation_split_percentage, seed)
        logger.warning(f"{source} has no 'validation' split: {validation_split_percentage}% of train (seed {seed}) "
                       f"is held out to pick the best checkpoint.")
    if "test" in raw:
        splits["test"] = raw["test"]
    return DatasetDict(splits)


def _load_file(path: str, split: str) -> Dataset:
    path_obj = Path(path)
    suffix = path_obj.suffix.lower()
    if suffix not in LOCAL_BUILDERS:
        raise ConfigError(f"{path}: unsupported file type '{suffix}'. Use one of {sorted(LOCAL_BUILDERS)}.")
    check_text_file(path_obj)  # exists, not empty, UTF-8
    builder, kwargs = LOCAL_BUILDERS[suffix]
    no_rows = DataError(f"{path} has a header but no rows: there is nothing to {'train on' if split == 'train' else 'evaluate'}.")
    try:
        dataset = load_dataset(builder, data_files={split: str(path_obj)}, **kwargs)[split]
    except Exception as err:  # pandas/pyarrow parse errors are long; keep the cause, add the file name
        if "corresponds to no data" in str(err):  # how datasets reports a file with zero rows
            raise no_rows from None
        cause = err
        while cause.__cause__ is not None:  # datasets wraps the parser's error, which names the bad line
            cause = cause.__cause__
        raise DataError(f"{path} could not be read as {builder}: {cause}") from err
    if len(dataset) == 0:
        raise no_rows
    return dataset


def load_local_splits(train_file: str, validation_file: str | None, test_file: str | None, *,
                      validation_split_percentage: int = 10, seed: int = 42) -> DatasetDict:
    """Read local files; without ``validation_file`` a seeded ``validation_split_percentage``% of train is held out."""
    splits = {"train": _load_file(train_file, "train")}
    if validation_file:
        splits["validation"] = _load_file(validation_file, "validation")
    else:
        if len(splits["train"]) < 10:
            raise DataError(f"{train_file} has {len(splits['train'])} rows: too few to hold out a validation split. "
                            f"Pass --validation_file.")
        _hold_out_validation(splits, validation_split_percentage, seed)
    if test_file:
        splits["test"] = _load_file(test_file, "test")
    return DatasetDict(splits)


def resolve_text_columns(columns: list[str], sentence1_key: str | None, sentence2_key: str | None, source: str) -> tuple[str, str | None]:
    """The text column(s): the ones asked for, else a conventional name (sentence1/sentence2, sentence, text...)."""
    if sentence1_key:
        for key, flag in ((sentence1_key, "--sentence1_key"), (sentence2_key, "--sentence2_key")):
            if key and key not in columns:
                raise DataError(f"{source} has no column '{key}' (given by {flag}); its columns are {columns}.")
        return sentence1_key, sentence2_key
    if sentence2_key:
        raise ConfigError("--sentence2_key needs --sentence1_key too (the first sentence of each pair).")
    for first, second in _TEXT_GUESSES:
        if first in columns and (second is None or second in columns):
            return first, second
    raise DataError(f"{source} has columns {columns}; none is a known text column (sentence1/sentence2, sentence, "
                    f"text). Pass --sentence1_key NAME (and --sentence2_key NAME for sentence pairs).")


def check_columns(raw: DatasetDict, task: TaskSpec, source: str) -> None:
    """Every split has the text columns; train and validation have the label column (test may lack it)."""
    for split, dataset in raw.items():
        needed = [task.sentence1_key] + ([task.sentence2_key] if task.sentence2_key else [])
        if split != "test" and not split.startswith("test_"):
            needed.append(task.label_column)
        missing = [c for c in needed if c not in dataset.column_names]
        if missing:
            hint = " Pass --label_column NAME." if task.label_column in missing else " Pass --sentence1_key/--sentence2_key."
            raise DataError(f"{source}, split '{split}', has no column(s) {missing}; its columns are "
                            f"{dataset.column_names}.{hint}")


@dataclasses.dataclass
class Labels:
    """Classification (with label names, id = position) or regression (one float output)."""

    is_regression: bool
    names: list[str] | None = None

    @property
    def num_labels(self) -> int:
        return 1 if self.is_regression else len(self.names)

    @property
    def id2label(self) -> dict[int, str] | None:
        return None if self.is_regression else dict(enumerate(self.names))

    @property
    def label2id(self) -> dict[str, int] | None:
        return None if self.is_regression else {name: i for i, name in enumerate(self.names)}


def _sort_key(value: str) -> tuple[int, float | str]:
    # Numeric labels sort as numbers ("2" before "10"), others alphabetically, so ids don't depend on file order.
    try:
        return (0, float(value))
    except ValueError:
        return (1, value)


def resolve_labels(raw: DatasetDict, label_column: str, label_type: str = "auto", source: str = "data") -> Labels:
    """Decide classification vs regression and the label names; check every labelled split against train.

    ``label_type="auto"``: a ``ClassLabel`` column keeps its names (GLUE), floats mean regression, anything
    else (strings, ints, bools) is classification over the sorted distinct values.
    """
    train = raw["train"]
    feature = train.features[label_column]
    is_float = isinstance(feature, Value) and feature.dtype.startswith("float")
    if label_type == "regression" or (label_type == "auto" and is_float):
        for split, dataset in raw.items():
            if label_column in dataset.column_names and any(v is None for v in dataset[label_column]):
                raise DataError(f"{source}, split '{split}': the label column '{label_column}' has empty values.")
        return Labels(is_regression=True)
    if isinstance(feature, ClassLabel):
        return Labels(is_regression=False, names=list(feature.names))

    def values(dataset: Dataset, split: str) -> set[str]:
        found = dataset.unique(label_column)
        if any(v is None for v in found):
            raise DataError(f"{source}, split '{split}': the label column '{label_column}' has empty values. Fill or "
                            f"drop those rows.")
        return {str(v) for v in found}

    names = sorted(values(train, "train"), key=_sort_key)
    if len(names) < 2:
        raise DataError(f"{source}: the training labels in '{label_column}' take only the value(s) {names}; a "
                        f"classifier needs at least two. For a numeric target pass --label_type regression.")
    for split, dataset in raw.items():
        if split == "train" or label_column not in dataset.column_names:
            continue
        unseen = sorted(values(dataset, split) - set(names), key=_sort_key)
        if unseen:
            raise DataError(f"{source}, split '{split}', has label(s) {unseen[:10]} that never occur in the training "
                            f"data {names[:20]}. Fix the labels or add examples of them to the training file.")
    return Labels(is_regression=False, names=names)


def encode_splits(raw: DatasetDict, task: TaskSpec, labels: Labels, tokenizer: Any, max_seq_length: int,
                  token_type_ids: bool | None = None) -> DatasetDict:
    """Tokenize (no padding: the collator pads each batch) and store labels as ``labels`` ids or floats.

    ``token_type_ids=True`` asks for segment ids even from tokenizers that don't list them as a model input (a
    tokenizer trained with ``tokenizers`` and wrapped in ``PreTrainedTokenizerFast``); BERT uses them to tell
    the two sentences of a pair apart. Pass it when the model has ``type_vocab_size > 1``.
    """
    label2id = labels.label2id
    # GLUE's test splits carry the placeholder label -1 everywhere: they are predicted, never scored.
    unlabelled = {split for split, dataset in raw.items() if split.startswith("test") and task.label_column in
                  dataset.column_names and set(dataset.unique(task.label_column)) <= {-1}}
    is_class_label = isinstance(raw["train"].features[task.label_column], ClassLabel)

    def encode(batch: dict[str, list], split: str) -> dict[str, list]:
        texts = [batch[task.sentence1_key]] + ([batch[task.sentence2_key]] if task.sentence2_key else [])
        for column in texts:
            if any(t is None for t in column):
                raise DataError(f"A row has an empty text column ({task.sentence1_key}/{task.sentence2_key}). "
                                f"Fill or drop rows without text.")
        out = tokenizer(*texts, truncation=True, max_length=max_seq_length, return_token_type_ids=token_type_ids)
        if task.label_column in batch and split not in unlabelled:
            values = batch[task.label_column]
            if labels.is_regression:
                out["labels"] = [float(v) for v in values]
            elif is_class_label:
                out["labels"] = list(values)  # already ids (-1 on GLUE's unlabelled test splits)
            else:
                out["labels"] = [label2id[str(v)] for v in values]
        return out

    return DatasetDict({
        split: dataset.map(encode, batched=True, fn_kwargs={"split": split}, remove_columns=dataset.column_names,
                           desc=f"Tokenizing {split}")
        for split, dataset in raw.items()
    })


def glue_task(task_name: str) -> TaskSpec:
    if task_name not in GLUE_TASKS:
        raise ConfigError(f"Unknown --task_name {task_name!r}; GLUE tasks are {sorted(GLUE_TASKS)}. For other data "
                          f"pass --dataset_name (a Hub dataset) or --train_file/--validation_file instead.")
    return GLUE_TASKS[task_name]


def local_task_for(raw: DatasetDict, sentence1_key: str | None, sentence2_key: str | None, label_column: str,
                   label_type: str, source: str) -> tuple[TaskSpec, Labels]:
    """Spec and labels for data that is not GLUE (local files or a Hub dataset), after checking its columns."""
    train_columns = raw["train"].column_names
    if label_column not in train_columns:
        raise DataError(f"{source} has no label column '{label_column}'; its columns are {train_columns}. "
                        f"Pass --label_column NAME.")
    s1, s2 = resolve_text_columns([c for c in train_columns if c != label_column], sentence1_key, sentence2_key, source)
    probe = local_task(s1, s2, label_column, is_regression=False, num_labels=2, has_test="test" in raw)
    check_columns(raw, probe, source)
    labels = resolve_labels(raw, label_column, label_type, source)
    return local_task(s1, s2, label_column, labels.is_regression, labels.num_labels, "test" in raw), labels


def check_texts(raw: DatasetDict, task: TaskSpec, source: str) -> None:
    """Raise :class:`DataError` naming the first row whose text column is empty (missing or only whitespace).

    Called before the model is loaded: tokenizing would otherwise fail (None) or train on an empty input.
    """
    for split, dataset in raw.items():
        for column in filter(None, (task.sentence1_key, task.sentence2_key)):
            if column not in dataset.column_names:
                continue
            for row, text in enumerate(dataset[column]):
                if text is None or not str(text).strip():
                    raise DataError(f"{source}, split '{split}', row {row + 1}: the text column '{column}' is empty. "
                                    f"Fill or drop rows without text.")


def select_splits(raw: DatasetDict, task: TaskSpec, *, max_train_samples: int | None, max_eval_samples: int | None,
                  max_predict_samples: int | None, do_predict: bool) -> DatasetDict:
    """The splits the run uses (train, the task's evaluation splits, test if predicting), each cut to its limit."""
    limits = {"train": max_train_samples}
    limits.update({split: max_eval_samples for split in task.eval_splits.values()})
    limits.update({split: max_predict_samples for split in task.test_splits.values()})
    keep = ["train", *task.eval_splits.values(), *(task.test_splits.values() if do_predict else [])]
    missing = [split for split in keep[: 1 + len(task.eval_splits)] if split not in raw]
    if missing:
        raise DataError(f"The data has no split(s) {missing}; it has {list(raw)}.")
    return DatasetDict({
        split: raw[split].select(range(min(limits[split], len(raw[split])))) if limits[split] else raw[split]
        for split in keep if split in raw
    })


__all__ = [
    "LOCAL_BUILDERS", "Labels", "check_columns", "check_texts", "encode_splits", "glue_task", "load_glue_splits",
    "load_hub_splits", "load_local_splits",
    "local_task_for", "resolve_labels", "resolve_text_columns", "select_splits",
]
