"""Turn text into model inputs for masked-LM pretraining: batched tokenization, then packing or line-by-line.

Packing (the default, :mod:`hfssl.data.packing`) concatenates documents, separated by the tokenizer's separator, and
cuts full blocks of ``max_seq_length`` tokens framed by ``[CLS] ... [SEP]`` (``<s> ... </s>``). No position is
padding, so no compute is spent on pad tokens and no attention mask is needed. Line-by-line keeps one example per
line, truncated, and pads per batch. Empty and whitespace-only lines carry no signal and are dropped in both modes.
"""

from __future__ import annotations

import torch
from torch.utils.data import Sampler
from transformers import PreTrainedTokenizerBase

from ..data import packing
from ..data.packing import non_empty_texts
from .masking import IGNORE_INDEX


def pack_fn(tokenizer: PreTrainedTokenizerBase, text_column: str, max_seq_length: int):
    """A ``datasets.map(batched=True)`` function producing full blocks of ``max_seq_length`` token ids, each framed
    as ``[CLS] ... [SEP]`` (``<s> ... </s>``), documents separated by ``[SEP]`` as between BERT's segments."""
    start, end = tokenizer.cls_token_id, tokenizer.sep_token_id
    if start is None or end is None:
        raise ValueError("Packing needs a tokenizer with cls/sep (or <s>/</s>) tokens.")
    return packing.pack_fn(tokenizer, text_column, max_seq_length, separator_id=end, prefix_id=start, suffix_id=end)


def line_by_line_fn(tokenizer: PreTrainedTokenizerBase, text_column: str, max_seq_length: int):
    """A ``datasets.map(batched=True)`` function producing one truncated example per non-empty line."""

    def encode(batch: dict) -> dict:
        enc = tokenizer(non_empty_texts(batch, text_column), truncation=True, max_length=max_seq_length)
        return {"input_ids": enc["input_ids"]}

    return encode


def prepare_dataset(dataset, tokenizer, text_column: str, max_seq_length: int, *, line_by_line: bool,
                    num_proc: int | None = None, streaming: bool = False):
    """Tokenize and pack (or encode line by line); cached by ``datasets`` when the source is on disk."""
    fn = line_by_line_fn if line_by_line else pack_fn
    kwargs = {} if streaming else {"num_proc": num_proc, "desc": "Tokenizing and packing" if not line_by_line else "Tokenizing"}
    return dataset.map(fn(tokenizer, text_column, max_seq_length), batched=True, batch_size=1000,
                       remove_columns=dataset.column_names, **kwargs)


class PadCollator:
    """Stack examples (``input_ids`` and, for premasked evaluation data, ``labels``); pad variable-length ones
    (line-by-line) and add the attention mask only then."""

    def __init__(self, pad_token_id: int, pad_to_multiple_of: int = 8):
        self.pad_token_id = pad_token_id
        self.multiple = pad_to_multiple_of

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        keys = [k for k in ("input_ids", "labels") if k in examples[0]]
        seqs = [list(e["input_ids"]) for e in examples]
        longest = max(len(s) for s in seqs)
        if all(len(s) == longest for s in seqs):
            return {k: torch.tensor([list(e[k]) for e in examples], dtype=torch.long) for k in keys}
        width = -(-longest // self.multiple) * self.multiple
        fill = {"input_ids": self.pad_token_id, "labels": IGNORE_INDEX}
        batch = {k: torch.full((len(seqs), width), fill[k], dtype=torch.long) for k in keys}
        batch["attention_mask"] = torch.zeros((len(seqs), width), dtype=torch.long)
        for row, example in enumerate(examples):
            n = len(example["input_ids"])
            for k in keys:
                batch[k][row, :n] = torch.tensor(list(example[k]))
            batch["attention_mask"][row, :n] = 1
        return batch


class EpochShuffleSampler(Sampler[int]):
    """A new permutation each epoch from ``seed + epoch``, so a resumed run sees exactly the same order."""

    def __init__(self, num_samples: int, seed: int):
        self.num_samples = num_samples
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        yield from torch.randperm(self.num_samples, generator=generator).tolist()
