"""Train a tokenizer with the 🤗 tokenizers library when the user gives none.

BERT-style models get a WordPiece tokenizer (lower-cased, ``[CLS] ... [SEP]``, ``##`` continuation pieces);
RoBERTa-style models get a byte-level BPE (``<s> ... </s>``, ``Ġ`` marks a word start), as in the original papers.
The result is wrapped as a transformers fast tokenizer so ``AutoTokenizer.from_pretrained`` and
``pipeline("fill-mask")`` load it from the output folder.
"""

from __future__ import annotations

from typing import Iterable, Iterator

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

BERT_SPECIAL = {"pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]", "mask_token": "[MASK]"}
ROBERTA_SPECIAL = {"bos_token": "<s>", "pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>", "mask_token": "<mask>"}


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


def train_byte_level_bpe(texts: Iterable[str], vocab_size: int) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(ROBERTA_SPECIAL.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_batches(texts), trainer=trainer)
    tok.post_processor = processors.RobertaProcessing(
        ("</s>", tok.token_to_id("</s>")), ("<s>", tok.token_to_id("<s>")), trim_offsets=True, add_prefix_space=False
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=512, **ROBERTA_SPECIAL)


def train_tokenizer(model_type: str, texts: Iterable[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """WordPiece for ``bert``, byte-level BPE for ``roberta``."""
    if model_type == "bert":
        return train_wordpiece(texts, vocab_size)
    if model_type == "roberta":
        return train_byte_level_bpe(texts, vocab_size)
    raise ValueError(f"No tokenizer recipe for model_type {model_type!r}; use bert or roberta.")
