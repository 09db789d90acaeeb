"""Load text for pretraining from the Hub, local files or a stream, with checks that fail early and clearly.

Every text recipe goes through :func:`load_text_splits`, so a Hub name, a local ``.txt``/``.csv``/``.json(l)``/
``.parquet`` file and ``--streaming`` all give the same ``{"train": ..., "validation": ...}`` shape and the same
error messages for a missing column, an empty dataset or bytes that are not UTF-8.
"""

from __future__ import annotations

from pathlib import Path

from datasets import Dataset, IterableDataset, load_dataset
from datasets.exceptions import DatasetGenerationError
from datasets.table import CastError

from ..config import ConfigError

# File extension -> datasets packaged builder.
BUILDERS = {".txt": "text", ".text": "text", ".csv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}


class DataError(ValueError):
    """The data cannot be used as given; the message names the problem and the fix."""


def builder_for(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in BUILDERS:
        raise ConfigError(f"{path}: unsupported file type '{suffix}'. Use one of {sorted(BUILDERS)}.")
    return BUILDERS[suffix]


def check_text_file(path: str | Path, chunk_size: int = 1 << 20) -> None:
    """Raise :class:`DataError` if ``path`` is missing, empty or whitespace-only, or holds bytes that are not UTF-8
    (naming the line of the first bad byte)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} does not exist. Check the path given to --train_file/--validation_file.")
    if path.suffix.lower() == ".parquet":
        if path.stat().st_size == 0:
            raise DataError(f"{path} is empty: there is nothing to train on.")
        return  # parquet stores typed strings; Arrow validates them itself
    import codecs

    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    line, has_text = 1, False
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            has_text = has_text or bool(chunk.strip())
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as err:
                bad_line = line + chunk[: err.start].count(b"\n")
                raise DataError(
                    f"{path}: line {bad_line} is not valid UTF-8 ({err.reason} at byte {err.start}). Re-encode the "
                    f"file, e.g. `iconv -f latin1 -t utf-8 {path.name} > fixed.txt`."
                ) from None
            line += chunk.count(b"\n")
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise DataError(f"{path}: the file ends inside a UTF-8 character (truncated?).") from None
    if not has_text:
        raise DataError(f"{path} is empty or holds only whitespace: there is nothing to train on.")


def resolve_text_column(column_names: list[str] | None, text_column: str | None, source: str) -> str:
    """The column holding text: the one asked for, else ``text``, else the only column."""
    if column_names is None:  # some streaming datasets don't know their columns before reading
        return text_column or "text"
    if text_column:
        if text_column not in column_names:
            raise DataError(f"{source} has no column '{text_column}'; its columns are {column_names}. Pass --text_column NAME.")
        return text_column
    if "text" in column_names:
        return "text"
    if len(column_names) == 1:
        return column_names[0]
    raise DataError(f"{source} has columns {column_names} and none is called 'text'. Pass --text_column NAME.")


def _unreadable(what: str, err: Exception) -> DataError:
    """datasets' error when files of one dataset disagree on columns, as one line that says what to fix."""
    cause = " ".join(str(err.__cause__ or err).split())
    return DataError(f"Could not read {what}: {cause}. A --validation_file needs the same columns as the --train_file.")


def load_text_splits(
    *,
    dataset_name: str | None,
    dataset_config_name: str | None = None,
    dataset_revision: str | None = None,
    train_file: str | None = None,
    validation_file: str | None = None,
    text_column: str | None = None,
    streaming: bool = False,
    validation_split_percentage: int = 5,
    max_train_samples: int | None = None,
    max_eval_samples: int | None = None,
    cache_dir: str | None = None,
) -> tuple[dict[str, Dataset | IterableDataset], str]:
    """Return ``({"train": ds, "validation": ds}, text_column)``; validation is carved from train if absent.

    ``dataset_revision`` (a branch, tag or commit sha of the Hub dataset repo) pins ``dataset_name`` to one version
    so a run can be reproduced; it is refused for local files, which have no revision.
    """
    if not dataset_name and not train_file:
        raise ConfigError("Give --dataset_name (a Hub dataset) or --train_file (a local file).")
    if dataset_revision and not dataset_name:
        raise ConfigError(f"--dataset_revision {dataset_revision} pins a version of a Hub dataset, but the data here "
                          f"is the local file {train_file}, which has no revision. Drop --dataset_revision, or pass "
                          f"--dataset_name with it.")
    if not 0 <= validation_split_percentage < 100:
        raise ConfigError(f"validation_split_percentage must be in [0, 100), got {validation_split_percentage}.")

    if dataset_name:
        raw = load_dataset(dataset_name, dataset_config_name, revision=dataset_revision, streaming=streaming,
                           cache_dir=cache_dir)
        source = f"dataset {dataset_name}"
    else:
        files = {"train": train_file}
        if validation_file:
            files["validation"] = validation_file
        builders = {builder_for(f) for f in files.values()}
        if len(builders) > 1:
            raise ConfigError(f"--train_file and --validation_file must be the same file type, got {sorted(files.values())}.")
        for f in files.values():
            check_text_file(f)
        try:
            raw = load_dataset(builders.pop(), data_files=files, streaming=streaming, cache_dir=cache_dir)
        except DatasetGenerationError as err:  # datasets reads every file with the first file's columns
            raise _unreadable(" and ".join(files.values()), err) from None
        source = f"file {train_file}"

    if "train" not in raw:
        raise DataError(f"{source} has no 'train' split (splits: {list(raw)}).")
    train = raw["train"]
    column = resolve_text_column(train.column_names, text_column, source)

    validation = raw.get("validation")
    if streaming and validation is not None:
        # A stream casts each file to the first file's columns only when it is read: without this peek, a
        # validation file with other columns would fail at the first evaluation, after training had begun.
        try:
            next(iter(validation.take(1)), None)
        except (DatasetGenerationError, CastError) as err:
            where = f"--validation_file {validation_file}" if validation_file else f"the validation split of {source}"
            raise _unreadable(where, err) from None
    if validation is not None and validation.column_names is not None and column not in validation.column_names:
        where = f"file {validation_file}" if validation_file else f"{source}, split 'validation',"
        raise DataError(f"{where} has no column '{column}' (the training text column); its columns are "
                        f"{validation.column_names}. Give both splits the same text column.")
    if validation is None and validation_split_percentage > 0:
        if streaming:
            # A stream has no length: hold out the first examples, a fixed number standing in for the percentage.
            n_val = 100 * validation_split_percentage
            validation, train = train.take(n_val), train.skip(n_val)
        else:
            n_val = max(1, len(train) * validation_split_percentage // 100)
            if len(train) - n_val < 1:
                raise DataError(f"{source} has {len(train)} example(s): too few to hold out a validation split.")
            # The tail is held out (not a random sample) so the split is stable when the file grows.
            validation = train.select(range(len(train) - n_val, len(train)))
            train = train.select(range(len(train) - n_val))

    if not streaming:
        if len(train) == 0:
            raise DataError(f"{source} is empty: there is nothing to train on.")
        if max_train_samples is not None:
            train = train.select(range(min(max_train_samples, len(train))))
        if validation is not None and max_eval_samples is not None:
            validation = validation.select(range(min(max_eval_samples, len(validation))))
    else:
        if max_train_samples is not None:
            train = train.take(max_train_samples)
        if validation is not None and max_eval_samples is not None:
            validation = validation.take(max_eval_samples)

    splits = {"train": train}
    if validation is not None:
        splits["validation"] = validation
    return splits, column


__all__ = ["DataError", "builder_for", "check_text_file", "load_text_splits", "resolve_text_column"]
