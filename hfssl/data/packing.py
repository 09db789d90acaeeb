"""Pack tokenized documents into full blocks of a fixed length (shared by the masked- and causal-LM recipes).

Documents are tokenized without special tokens, concatenated with a separator token after each one, and cut into
blocks; a block may carry a fixed prefix and suffix (BERT's ``[CLS] ... [SEP]``, RoBERTa's ``<s> ... </s>``) or
none (GPT-2, where ``<|endoftext|>`` between documents is the only marker). Every position is a real token, so no
compute is spent on padding and no attention mask is needed. Empty and whitespace-only texts carry no signal and
are dropped.
"""

from __future__ import annotations

from transformers import PreTrainedTokenizerBase


def non_empty_texts(batch: dict, text_column: str) -> list[str]:
    """The texts of a ``datasets`` batch that hold something besides whitespace."""
    return [t for t in batch[text_column] if isinstance(t, str) and t.strip()]


def pack_fn(tokenizer: PreTrainedTokenizerBase, text_column: str, max_seq_length: int, *, separator_id: int,
            prefix_id: int | None = None, suffix_id: int | None = None):
    """A ``datasets.map(batched=True)`` function producing full blocks of ``max_seq_length`` token ids.

    ``separator_id`` follows every document; ``prefix_id``/``suffix_id``, when given, frame every block.
    """
    if separator_id is None:
        raise ValueError("Packing needs a separator token (sep, </s> or <|endoftext|>) between documents.")
    prefix = [] if prefix_id is None else [prefix_id]
    suffix = [] if suffix_id is None else [suffix_id]
    body = max_seq_length - len(prefix) - len(suffix)
    if body < 1:
        raise ValueError(f"max_seq_length {max_seq_length} leaves no room for text between the framing tokens.")

    def pack(batch: dict) -> dict:
        ids = tokenizer(non_empty_texts(batch, text_column), add_special_tokens=False, verbose=False)["input_ids"]
        stream: list[int] = []
        for doc in ids:
            if doc:
                stream.extend(doc)
                stream.append(separator_id)
        # The tail shorter than a block is dropped, as in the transformers examples; with 1000-document batches
        # that is <1% of the tokens.
        n_blocks = len(stream) // body
        return {"input_ids": [prefix + stream[i * body : (i + 1) * body] + suffix for i in range(n_blocks)]}

    return pack
