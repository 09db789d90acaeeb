"""Configuration of ``recipes/word2vec.py``: one dataclass, defaults here only (see hfssl/config.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import ConfigError, RunConfig


@dataclass
class Word2VecConfig(RunConfig):
    output_dir: str = field(default="outputs/word2vec", metadata={"help": "Where checkpoints and the vectors go."})
    # data
    dataset_name: str | None = field(default=None, metadata={"help": "Hub dataset id. With neither this nor --train_file, the offline KJV Bible (or Python docs) is used."})
    dataset_config_name: str | None = field(default=None, metadata={"help": "Hub dataset configuration."})
    dataset_revision: str | None = field(default=None, metadata={"help": "Git revision of --dataset_name to pin: a branch, tag or commit sha of the Hub dataset repo (default: the latest)."})
    train_file: str | None = field(default=None, metadata={"help": "Local .txt/.csv/.json(l)/.parquet file."})
    text_column: str | None = field(default=None, metadata={"help": "Column holding the text (default: 'text' or the only column)."})
    streaming: bool = field(default=False, metadata={"help": "Stream the dataset (it is read twice: vocabulary, then encoding)."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Use only the first N rows."})
    lowercase: bool = field(default=True, metadata={"help": "Lowercase text before splitting into words."})
    keep_punctuation: bool = field(default=False, metadata={"help": "Keep punctuation as separate tokens instead of removing it."})
    # model
    model: str = field(default="sg", metadata={"help": "sg (skip-gram) or cbow.", "choices": ["sg", "cbow"]})
    vector_size: int = field(default=100, metadata={"help": "Dimension of the word vectors."})
    window: int = field(default=5, metadata={"help": "Maximum distance between centre and context word; each window is shrunk at random to 1..window."})
    min_count: int = field(default=5, metadata={"help": "Ignore words seen fewer times than this."})
    max_vocab_size: int | None = field(default=None, metadata={"help": "Keep at most this many most frequent words (gensim's max_final_vocab)."})
    sample: float = field(default=1e-3, metadata={"help": "Frequent-word subsampling threshold (0 disables)."})
    negative: int = field(default=5, metadata={"help": "Negative samples per positive pair."})
    ns_exponent: float = field(default=0.75, metadata={"help": "Exponent of the unigram distribution negatives are drawn from."})
    # optimisation
    epochs: int = field(default=5, metadata={"help": "Passes over the corpus."})
    alpha: float | None = field(default=None, metadata={"help": "Initial learning rate (default 0.025 for sg, 0.05 for cbow)."})
    min_alpha: float = field(default=1e-4, metadata={"help": "Final learning rate; it decays linearly."})
    chunk_words: int = field(default=20000, metadata={"help": "Words per chunk: one optimizer step per process, the unit of resuming and logging."})
    fused_kernel: bool = field(default=True, metadata={"help": "On CPU, train with the fused C loop (hfssl/word2vec/fused_kernel.c, compiled on first use by the system C compiler): window after window as gensim, about 2.7x less CPU time per word than the batched steps. False, a GPU, or no C compiler: batched PyTorch steps of --batch_windows windows."})
    batch_windows: int = field(default=1024, metadata={"help": "Windows per SGD update of the batched PyTorch steps (GPU, or --fused_kernel false), shared by the --workers threads (each steps with batch_windows / workers); larger is faster, too large diverges."})
    workers: int = field(default=1, metadata={"help": "Training threads per process, each on its own chunk, all updating the same tables without locks (Hogwild, like gensim's workers). Use one per core (e.g. 2 on 2 cores); more than 1 is faster but not bit-reproducible (see --deterministic_workers)."})
    deterministic_workers: bool = field(default=False, metadata={"help": "Each --workers thread trains its chunk on its own copy of the tables from the start of the step, then the step adds up their updates, as processes are merged: bit-reproducible, and 1 process x N workers trains like N processes x 1 worker. Costs a copy of the tables per extra worker and a few passes over them per step."})
    num_threads: int = field(default=1, metadata={"help": "torch intra-op threads per process (0: torch's default). One thread plus a window-building thread is fastest on a busy 2-core CPU; scale with processes."})
    # evaluation
    analogy_file: str | None = field(default="auto", metadata={"help": "questions-words file; 'auto' uses gensim's copy if installed, 'none' disables."})
    similarity_files: list[str] = field(default_factory=lambda: ["auto"], metadata={"help": "word-pair files (word1<TAB>word2<TAB>score); 'auto': gensim's wordsim353.tsv and simlex999.txt; 'none' disables."})
    neighbour_words: list[str] = field(default_factory=lambda: ["god", "king", "water", "love", "function", "file"], metadata={"help": "Words whose nearest neighbours are printed and saved."})
    eval_every_epochs: int = field(default=1, metadata={"help": "Run the evaluation after every N epochs (and always at the end)."})
    save_word2vec_format: str = field(default="binary", metadata={"help": "Also export vectors.txt/vectors.bin in word2vec format.", "choices": ["none", "text", "binary", "both"]})
    save_sentence_transformers: bool = field(default=True, metadata={"help": "Also make the output folder a sentence-transformers StaticEmbedding model (modules.json + 0_StaticEmbedding/, a second copy of the vectors): SentenceTransformer(output_dir) embeds a text as the mean of its word vectors."})

    def __post_init__(self) -> None:
        super().__post_init__()
        positive = {"vector_size": self.vector_size, "window": self.window, "min_count": self.min_count, "negative": self.negative,
                    "epochs": self.epochs, "workers": self.workers, "chunk_words": self.chunk_words, "batch_windows": self.batch_windows, "eval_every_epochs": self.eval_every_epochs}
        for name, value in positive.items():
            if value < 1:
                raise ConfigError(f"--{name} must be >= 1, got {value}.")
        if self.max_vocab_size is not None and self.max_vocab_size < 1:
            raise ConfigError(f"--max_vocab_size must be >= 1 (or left unset for no limit), got {self.max_vocab_size}.")
        if self.sample < 0:
            raise ConfigError(f"--sample must be >= 0 (0 disables subsampling; word2vec uses 1e-3..1e-5), got {self.sample}.")
        if self.alpha is not None and self.alpha <= 0:
            raise ConfigError(f"--alpha must be > 0, got {self.alpha}.")
        if not 0 <= self.min_alpha <= (self.alpha if self.alpha is not None else self.min_alpha):
            raise ConfigError(f"--min_alpha must be in [0, alpha], got {self.min_alpha}.")
        if self.num_threads < 0:
            raise ConfigError(f"--num_threads must be >= 0 (0: torch's default), got {self.num_threads}.")
        if self.dataset_name and self.train_file:
            raise ConfigError("Give --dataset_name or --train_file, not both.")
        if self.mixed_precision != "no":
            raise ConfigError("word2vec trains in float32 only; pass --mixed_precision no.")

    @property
    def initial_alpha(self) -> float:
        return self.alpha if self.alpha is not None else (0.025 if self.model == "sg" else 0.05)
