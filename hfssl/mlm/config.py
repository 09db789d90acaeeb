"""``MLMConfig``: every flag of ``recipes/mlm.py``, its default and its checks.

The defaults are the offline default run (``recipes/configs/mlm/offline.yaml``): a small BERT on this Python's
documentation that trains on two CPU cores in minutes. ``recipes/configs/mlm/bert-base.yaml`` holds BERT-base's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import ConfigError, RunConfig, check_text_pretraining
from ..distributed import no_accelerator
from ..precision import CHOICES as PRECISION_CHOICES
from .model_factory import check_sizes


@dataclass
class MLMConfig(RunConfig):
    """Every flag of recipes/mlm.py. The defaults are the offline default run (recipes/configs/mlm/offline.yaml)."""

    output_dir: str = field(default="outputs/mlm", metadata={"help": "Where checkpoints and the final model go."})
    mixed_precision: str = field(default="auto", metadata={"help": "auto (default: bf16 on GPUs and on CPUs with AVX512-BF16 "
                                 "or AMX, where it is ~1.6x faster; float32 on other CPUs, where bf16 is ~28x slower), bf16, "
                                 "fp16 (GPU) or no.", "choices": PRECISION_CHOICES})
    # Data
    dataset_name: str | None = field(default=None, metadata={"help": "Hub dataset, e.g. Salesforce/wikitext."})
    dataset_config_name: str | None = field(default=None, metadata={"help": "Dataset config, e.g. wikitext-103-raw-v1."})
    dataset_revision: str | None = field(default=None, metadata={"help": "Git revision of --dataset_name to pin: a "
                                         "branch, tag or commit sha of the Hub dataset repo (default: the latest)."})
    train_file: str | None = field(default=None, metadata={"help": "Local txt/csv/json/jsonl/parquet file."})
    validation_file: str | None = field(default=None, metadata={"help": "Local validation file (same type)."})
    text_column: str | None = field(default=None, metadata={"help": "Column with the text (default: 'text')."})
    validation_split_percentage: int = field(default=5, metadata={"help": "Held out from train when there is no validation split."})
    streaming: bool = field(default=False, metadata={"help": "Stream the dataset instead of downloading it (needs max_steps)."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Use only the first N training texts."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Use only the first N validation texts."})
    preprocessing_num_workers: int | None = field(default=None, metadata={"help": "Processes for tokenization."})
    line_by_line: bool = field(default=False, metadata={"help": "One example per line instead of packed blocks."})
    # Tokenizer and model
    model_type: str = field(default="bert", metadata={"help": "Architecture when training from scratch.", "choices": ["bert", "roberta"]})
    model_name_or_path: str | None = field(default=None, metadata={"help": "Continue pretraining this checkpoint."})
    tokenizer_name: str | None = field(default=None, metadata={"help": "Tokenizer to use; trained on the data if absent."})
    vocab_size: int = field(default=8192, metadata={"help": "Vocabulary size of a newly trained tokenizer."})
    tokenizer_train_samples: int = field(default=1_000_000, metadata={"help": "Texts used to train a new tokenizer."})
    hidden_size: int = 256
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    intermediate_size: int = 1024
    max_seq_length: int = 128
    dropout: float = field(default=0.1, metadata={"help": "Hidden and attention dropout (Cramming and MosaicBERT use 0)."})
    fast_cpu_dropout: bool = field(default=True, metadata={"help": "On CPU, draw dropout masks 16 bits at a time "
                                   "(hfssl/fast_dropout.py; PyTorch's took a quarter of a step). GPUs are unaffected."})
    # Objective
    mlm_probability: float = field(default=0.15, metadata={"help": "Fraction of tokens selected for prediction."})
    whole_word_mask: bool = field(default=False, metadata={"help": "Mask all sub-tokens of a word together."})
    sparse_prediction: bool = field(default=True, metadata={"help": "Run the MLM head only on masked positions."})
    fixed_sparse_capacity: bool | None = field(default=None, metadata={"help": "Sparse prediction on a fixed number of "
                                               "positions (masking capped 6 sigma above its mean): one shape per step, so "
                                               "CPU memory stays flat, and no mid-step GPU sync. Default: on CPU only."})
    # Optimisation
    per_device_train_batch_size: int = 32
    per_device_eval_batch_size: int = 64
    gradient_accumulation_steps: int = 1
    learning_rate: float = 5e-4
    weight_decay: float = 0.01
    adam_beta2: float = 0.98
    max_grad_norm: float = 1.0
    lr_scheduler_type: str = field(default="linear", metadata={"choices": ["linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup", "inverse_sqrt", "warmup_stable_decay"]})
    warmup_steps: float = field(default=0.06, metadata={"help": "Warmup steps; a value below 1 is a fraction of max_steps."})
    max_steps: int = field(default=400, metadata={"help": "Optimizer steps (overrides num_train_epochs when > 0)."})
    num_train_epochs: float = 1.0
    eval_steps: int = field(default=200, metadata={"help": "Evaluate every N optimizer steps (0: only at the end)."})
    torch_compile: bool = field(default=False, metadata={"help": "torch.compile the model (pays off on long GPU runs)."})
    profile_steps: int = field(default=0, metadata={"help": "Profile this many optimizer steps: a Chrome trace, the heaviest "
                               "operators and how busy the GPU was go to OUTPUT_DIR/profile (hfssl/profiling.py)."})
    profile_skip_steps: int = field(default=10, metadata={"help": "Steps before the profiled ones (compilation and warm-up)."})

    def __post_init__(self):
        super().__post_init__()
        if not 0.0 < self.mlm_probability < 1.0:
            raise ConfigError(f"mlm_probability must be in (0, 1), got {self.mlm_probability}.")
        check_text_pretraining(self)
        if self.max_seq_length < 8:
            raise ConfigError(f"max_seq_length must be at least 8, got {self.max_seq_length}.")
        if self.profile_steps < 0 or self.profile_skip_steps < 0:
            raise ConfigError("--profile_steps and --profile_skip_steps must be >= 0.")
        if not self.model_name_or_path:
            check_sizes(self.hidden_size, self.num_attention_heads, self.max_seq_length)
        if self.fixed_sparse_capacity is None:  # a new row count each step fragments glibc's heap: 3.3 GB vs 1.15
            self.fixed_sparse_capacity = no_accelerator()


__all__ = ["MLMConfig"]
