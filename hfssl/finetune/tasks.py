"""What each GLUE task is: its text columns, whether it is regression, its metrics and its splits.

One :class:`TaskSpec` per task replaces the ``task_to_keys`` dictionaries and ``if task == ...`` branches that
fine-tuning scripts usually grow. Local files get a spec too (:func:`local_task`), so the recipe treats a CSV of
movie reviews and MNLI the same way.
"""

from __future__ import annotations

import dataclasses

GLUE_DATASET = "nyu-mll/glue"


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """Everything the recipe needs to know about a task, beyond the data itself."""

    name: str
    sentence1_key: str
    sentence2_key: str | None
    is_regression: bool
    # Metrics reported at evaluation; ``main_metric`` picks the best checkpoint.
    metrics: tuple[str, ...]
    main_metric: str
    # Evaluation name -> split. One unnamed entry ("") gives metrics called eval_<metric>; MNLI has two.
    eval_splits: dict[str, str]
    # GLUE submission file stem (e.g. "MNLI-m") -> test split.
    test_splits: dict[str, str]
    # GLUE's leaderboard wants label names (e.g. "entailment") for some tasks and 0/1 for others.
    submit_label_names: bool = False
    label_column: str = "label"


def _glue(name, s1, s2, metrics, main, test_stem, *, regression=False, names=False, eval_splits=None, test_splits=None):
    return TaskSpec(
        name=name,
        sentence1_key=s1,
        sentence2_key=s2,
        is_regression=regression,
        metrics=metrics,
        main_metric=main,
        eval_splits=eval_splits or {"": "validation"},
        test_splits=test_splits or {test_stem: "test"},
        submit_label_names=names,
    )


# Metric names follow the GLUE paper: Matthews correlation for CoLA, F1 and accuracy for MRPC/QQP, Pearson and
# Spearman for STS-B, accuracy elsewhere. "combined_score" is the mean of a task's two scores, as on the leaderboard.
GLUE_TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in [
        _glue("cola", "sentence", None, ("matthews_correlation", "accuracy"), "matthews_correlation", "CoLA"),
        _glue("sst2", "sentence", None, ("accuracy",), "accuracy", "SST-2"),
        _glue("mrpc", "sentence1", "sentence2", ("accuracy", "f1", "combined_score"), "combined_score", "MRPC"),
        _glue("stsb", "sentence1", "sentence2", ("pearson", "spearmanr", "combined_score", "mse"), "combined_score",
              "STS-B", regression=True),
        _glue("qqp", "question1", "question2", ("accuracy", "f1", "combined_score"), "combined_score", "QQP"),
        _glue("mnli", "premise", "hypothesis", ("accuracy",), "matched_accuracy", "MNLI", names=True,
              eval_splits={"matched": "validation_matched", "mismatched": "validation_mismatched"},
              test_splits={"MNLI-m": "test_matched", "MNLI-mm": "test_mismatched"}),
        _glue("qnli", "question", "sentence", ("accuracy",), "accuracy", "QNLI", names=True),
        _glue("rte", "sentence1", "sentence2", ("accuracy",), "accuracy", "RTE", names=True),
        _glue("wnli", "sentence1", "sentence2", ("accuracy",), "accuracy", "WNLI"),
    ]
}


def local_task(sentence1_key: str, sentence2_key: str | None, label_column: str, is_regression: bool,
               num_labels: int, has_test: bool) -> TaskSpec:
    """Spec for ``--train_file``-style data: accuracy and F1 (binary or macro) or the regression metrics."""
    if is_regression:
        metrics, main = ("pearson", "spearmanr", "combined_score", "mse"), "combined_score"
    elif num_labels == 2:
        metrics, main = ("accuracy", "f1", "matthews_correlation"), "accuracy"
    else:
        metrics, main = ("accuracy", "macro_f1"), "accuracy"
    return TaskSpec(
        name="local",
        sentence1_key=sentence1_key,
        sentence2_key=sentence2_key,
        is_regression=is_regression,
        metrics=metrics,
        main_metric=main,
        eval_splits={"": "validation"},
        test_splits={"predict_results": "test"} if has_test else {},
        submit_label_names=True,
        label_column=label_column,
    )


__all__ = ["GLUE_DATASET", "GLUE_TASKS", "TaskSpec", "local_task"]
