"""Train a tokenizer with the 🤗 tokenizers library when the user gives none (shared by the text recipes).

BERT-style models get a WordPiece tokenizer (lower-cased, ``[CLS] ... [SEP]``, ``##`` continuation pieces);
RoBERTa-style models get a byte-level BPE (``<s> ... </s>``, ``Ġ`` marks a word start); GPT-2-style models get
the same byte-level BPE with GPT-2's single ``<|endoftext|>`` token (document separator, BOS and EOS) and no
template, as in the original papers. The result is wrapped as a transformers fast tokenizer so
``AutoTokenizer.from_pretrained`` and the pipelines (``fill-mask``, ``text-generation``) load it from the output folder.
"""

from __future__ import annotations

from itertools import islice
from pathlib import Path
from typing import Iterable, Iterator

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from ..config import ConfigError

BERT_SPECIAL = {"pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]", "mask_token": "[MASK]"}
ROBERTA_SPECIAL = {"bos_token": "<s>", "pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>", "mask_token": "<mask>"}
# GPT-2 has no pad token. We add one that never occurs in text, so that padding collators (e.g. transformers'
# DataCollatorForLanguageModeling, which sets labels of pad positions to -100) never hide the real end-of-text token.
GPT2_SPECIAL = {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>", "pad_token": "<pad>"}


def _batches(texts: Iterable[str], size: int = 1000) -> Iterator[list[str]]:
    batch: list[str] = []
    for text in texts:
        batch.append(text)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def train_wordpiece(texts: Iterable[str], vocab_size: int) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size, special_tokens=list(BERT_SPECIAL.values()), continuing_subword_prefix="##", show_progress=False
    )
    tok.train_from_iterator(_batches(texts), trainer=trainer)
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)]
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=512, **BERT_SPECIAL)


def _byte_level_bpe(texts: Iterable[str], vocab_size: int, special_tokens: list[str]) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_batches(texts), trainer=trainer)
    return tok


def train_byte_level_bpe(texts: Iterable[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """RoBERTa's tokenizer: byte-level BPE, sequences framed as ``<s> ... </s>``."""
    tok = _byte_level_bpe(texts, vocab_size, list(ROBERTA_SPECIAL.values()))
    tok.post_processor = processors.RobertaProcessing(
        ("</s>", tok.token_to_id("</s>")), ("<s>", tok.token_to_id("<s>")), trim_offsets=True, add_prefix_space=False
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=512, **ROBERTA_SPECIAL)


def train_gpt2_bpe(texts: Iterable[str], vocab_size: int, model_max_length: int = 1024) -> PreTrainedTokenizerFast:
    """GPT-2's tokenizer: byte-level BPE, no added framing; ``<|endoftext|>`` separates documents when packing."""
    tok = _byte_level_bpe(texts, vocab_size, list(dict.fromkeys(GPT2_SPECIAL.values())))
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=model_max_length, **GPT2_SPECIAL)


def train_tokenizer(model_type: str, texts: Iterable[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """WordPiece for ``bert``, byte-level BPE for ``roberta`` and ``gpt2``."""
    if model_type == "bert":
        return train_wordpiece(texts, vocab_size)
    if model_type == "roberta":
        return train_byte_level_bpe(texts, vocab_size)
    if model_type == "gpt2":
        return train_gpt2_bpe(texts, vocab_size)
    raise ValueError(f"No tokenizer recipe for model_type {model_type!r}; use bert, roberta or gpt2.")


def load_or_train_tokenizer(*, tokenizer_name: str | None, model_name_or_path: str | None, model_type: str,
                            vocab_size: int, texts, saved_dir: Path, max_texts: int) -> PreTrainedTokenizerBase:
    """The tokenizer named, else the continued model's, else one already trained for this run, else train one.

    A trained tokenizer is saved to ``saved_dir`` (next to the checkpoints), so a resumed run uses the very same
    vocabulary: the tokenizers library breaks frequency ties in hash order, so retraining could differ.
    """
    source = tokenizer_name or model_name_or_path
    if source:
        try:
            return AutoTokenizer.from_pretrained(source, trust_remote_code=False)
        except (OSError, ValueError) as err:
            raise ConfigError(f"Could not load a tokenizer from {source}: {err}. Pass --tokenizer_name explicitly.") from err
    if (saved_dir / "tokenizer_config.json").is_file():
        return AutoTokenizer.from_pretrained(saved_dir)
    tokenizer = train_tokenizer(model_type, islice(texts, max_texts), vocab_size)
    tokenizer.save_pretrained(saved_dir)
    return tokenizer
