"""``recipes/finetune.py``'s configuration: the shared :class:`RunConfig` flags plus the fine-tuning ones.

The recipe runs on ``transformers.Trainer``; :meth:`FinetuneConfig.training_arguments` maps these flags onto
``TrainingArguments`` in one visible place, so hfssl's flag names (``--mixed_precision``, ``--report_to``,
``--checkpointing_steps``...) mean the same thing here as in the pretraining recipes.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ..checkpointing import CHECKPOINTS_DIR
from ..config import ConfigError, RunConfig
from ..distributed import no_accelerator
from .fortunes import DEFAULT_CATEGORIES
from .pretrained import DEFAULT_CHECKPOINT
from .tasks import GLUE_DATASET, GLUE_TASKS


@dataclasses.dataclass
class FinetuneConfig(RunConfig):
    """Fine-tune a checkpoint on a GLUE task, a labelled Hub dataset, local files, or (default) the offline fortunes task."""

    output_dir: str = dataclasses.field(default="outputs/finetune", metadata={"help": "Where checkpoints and the final model go."})
    model_name_or_path: str = dataclasses.field(
        default=DEFAULT_CHECKPOINT, metadata={"help": "A local save_pretrained folder (e.g. recipes/mlm.py's output) or a Hub id."}
    )
    # --- data: a GLUE task, another Hub dataset, local files, or none of them (the offline fortunes task) ---
    task_name: str | None = dataclasses.field(
        default=None, metadata={"help": "A GLUE task loaded from the Hub.", "choices": sorted(GLUE_TASKS)}
    )
    dataset_name: str | None = dataclasses.field(
        default=None, metadata={"help": f"Hub dataset. With --task_name: the repo holding GLUE (default {GLUE_DATASET}). "
                                        "Without: any labelled text dataset (e.g. stanfordnlp/imdb, fancyzhx/ag_news); "
                                        "the text column is guessed or given by --sentence1_key."}
    )
    dataset_config_name: str | None = dataclasses.field(
        default=None, metadata={"help": "Configuration of --dataset_name (not with --task_name: that names GLUE's)."}
    )
    dataset_revision: str | None = dataclasses.field(default=None, metadata={"help": "Git revision of dataset_name to pin."})
    train_file: str | None = dataclasses.field(default=None, metadata={"help": "Local csv/tsv/json/jsonl/parquet training file."})
    validation_file: str | None = dataclasses.field(
        default=None, metadata={"help": "Local validation file (default: a seeded 10%% of train is held out)."}
    )
    test_file: str | None = dataclasses.field(default=None, metadata={"help": "Local test file; labels optional."})
    sentence1_key: str | None = dataclasses.field(
        default=None, metadata={"help": "Text column (default: sentence1, sentence, text...)."}
    )
    sentence2_key: str | None = dataclasses.field(default=None, metadata={"help": "Second text column for sentence pairs."})
    label_column: str = dataclasses.field(default="label", metadata={"help": "Column holding the label (local files)."})
    label_type: str = dataclasses.field(
        default="auto",
        metadata={"help": "auto: floats are regression, anything else classification.",
                  "choices": ["auto", "classification", "regression"]},
    )
    fortune_categories: list[str] = dataclasses.field(
        default_factory=lambda: list(DEFAULT_CATEGORIES),
        metadata={"help": "Offline default task: fortune files (in /usr/share/games/fortunes) used as classes."},
    )
    max_seq_length: int = dataclasses.field(default=128, metadata={"help": "Longer inputs are truncated."})
    max_train_samples: int | None = dataclasses.field(default=None, metadata={"help": "Use only the first N training examples."})
    max_eval_samples: int | None = dataclasses.field(default=None, metadata={"help": "Use only the first N validation examples."})
    max_predict_samples: int | None = dataclasses.field(default=None, metadata={"help": "Predict only the first N test examples."})
    # --- optimisation ---
    per_device_train_batch_size: int = dataclasses.field(default=32, metadata={"help": "Batch size per process."})
    per_device_eval_batch_size: int = dataclasses.field(default=64, metadata={"help": "Evaluation batch size per process."})
    gradient_accumulation_steps: int = dataclasses.field(default=1, metadata={"help": "Batches per optimizer step."})
    learning_rate: float = dataclasses.field(default=5e-5, metadata={"help": "Peak AdamW learning rate."})
    weight_decay: float = dataclasses.field(default=0.01, metadata={"help": "AdamW weight decay."})
    warmup_steps: float = dataclasses.field(
        default=0.1, metadata={"help": "Warm-up steps; a value below 1 is a fraction of all steps."}
    )
    num_train_epochs: float = dataclasses.field(default=3.0, metadata={"help": "Epochs (ignored when max_steps > 0)."})
    max_steps: int = dataclasses.field(default=-1, metadata={"help": "Stop after N optimizer steps (-1: use epochs)."})
    # --- evaluation and model selection ---
    metric_for_best_model: str | None = dataclasses.field(
        default=None, metadata={"help": "Metric that picks the best checkpoint (default: the task's main metric)."}
    )
    early_stopping_patience: int = dataclasses.field(
        default=0, metadata={"help": "Stop after N evaluations without improvement (0: never)."}
    )
    do_predict: bool = dataclasses.field(default=True, metadata={"help": "Predict the test split when there is one."})

    def __post_init__(self) -> None:
        super().__post_init__()
        local_files = self.train_file or self.validation_file or self.test_file
        if (self.task_name or self.dataset_name) and local_files:
            raise ConfigError("Give either Hub data (--task_name or --dataset_name) or local files (--train_file/"
                              "--validation_file/--test_file), not both.")
        if (self.validation_file or self.test_file) and not self.train_file:
            raise ConfigError("--validation_file/--test_file need --train_file too.")
        if self.task_name and self.dataset_config_name:
            raise ConfigError(f"--task_name {self.task_name} already names the configuration of the GLUE repo; drop "
                              f"--dataset_config_name {self.dataset_config_name}.")
        if self.dataset_config_name and not self.dataset_name:
            raise ConfigError("--dataset_config_name needs --dataset_name (the Hub dataset it configures).")
        if self.dataset_revision and not (self.task_name or self.dataset_name):
            local = f"the local file {self.train_file}" if self.train_file else "the offline fortunes task"
            raise ConfigError(f"--dataset_revision {self.dataset_revision} pins a version of a Hub dataset, but the data "
                              f"here is {local}, which has no revision. Drop --dataset_revision, or pass --dataset_name.")
        for name in ("max_seq_length", "per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}.")
        for name in ("max_train_samples", "max_eval_samples", "max_predict_samples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be >= 1 (or unset for all examples), got {value}.")
        if self.learning_rate <= 0:
            raise ConfigError(f"learning_rate must be > 0, got {self.learning_rate}.")
        if self.max_steps == 0 or self.max_steps < -1:
            raise ConfigError(f"max_steps must be -1 (use num_train_epochs) or > 0, got {self.max_steps}.")
        if self.max_steps == -1 and self.num_train_epochs <= 0:
            raise ConfigError(f"num_train_epochs must be > 0, got {self.num_train_epochs}.")
        if self.warmup_steps < 0:
            raise ConfigError(f"warmup_steps must be >= 0, got {self.warmup_steps}.")
        if self.early_stopping_patience < 0:
            raise ConfigError(f"early_stopping_patience must be >= 0, got {self.early_stopping_patience}.")

    def training_arguments(self, main_metric: str, report_to: list[str]):
        """``TrainingArguments`` for this run: evaluate and save together so the best checkpoint can be restored."""
        from transformers import TrainingArguments

        # Evaluation and saving share one schedule: each epoch, or every checkpointing_steps steps.
        strategy = "steps" if self.checkpointing_steps > 0 else "epoch"
        metric = self.metric_for_best_model or main_metric
        return TrainingArguments(
            # Trainer's checkpoint-N folders go under checkpoints/, as in every hfssl recipe (and are not pushed).
            output_dir=str(Path(self.output_dir) / CHECKPOINTS_DIR),
            seed=self.seed,
            per_device_train_batch_size=self.per_device_train_batch_size,
            per_device_eval_batch_size=self.per_device_eval_batch_size,
            gradient_accumulation_steps=self.gradient_accumulation_steps,
            learning_rate=self.learning_rate,
            weight_decay=self.weight_decay,
            warmup_steps=self.warmup_steps,
            num_train_epochs=self.num_train_epochs,
            max_steps=self.max_steps,
            bf16=self.mixed_precision == "bf16",
            # Without a GPU, say so: only then does Accelerate turn torchrun's environment into a gloo process group
            # (otherwise each CPU process trains its own model on all the data), and Trainer accepts bf16 on CPU.
            use_cpu=no_accelerator(),
            # Our losses are means over examples. With this on (the default), Trainer multiplies the loss of any model
            # whose forward takes **kwargs by the number of processes, expecting a token-sum loss: under DDP the
            # logged loss and the gradients (so gradient clipping) came out num_processes times too large.
            average_tokens_across_devices=False,
            fp16=self.mixed_precision == "fp16",
            eval_strategy=strategy,
            save_strategy=strategy,
            eval_steps=self.checkpointing_steps or None,
            save_steps=self.checkpointing_steps or 500,
            save_total_limit=self.checkpoints_total_limit or None,
            load_best_model_at_end=True,
            metric_for_best_model=metric,
            greater_is_better=not metric.endswith(("loss", "mse")),
            logging_steps=self.logging_steps,
            report_to=report_to or "none",
            push_to_hub=False,  # hfssl.hub pushes the final folder with the model card, once, at the end
            dataloader_num_workers=0,
        )
