"""Dynamic masking for masked-LM pretraining (BERT, Devlin et al. 2019, section 3.1 and appendix C.2).

A fraction ``mask_prob`` of the non-special positions is selected; of those, 80% become the mask token, 10% a random
token and 10% stay unchanged, and only selected positions carry a label. With whole-word masking (released with
BERT in 2019) the draw is made once per word and shared by all its sub-tokens.

Masking runs on the training device inside the loop rather than in the DataLoader: it is a handful of vectorised
ops, and drawing it from a generator seeded by the optimizer step makes an interrupted-and-resumed run see exactly
the masks of an uninterrupted one.
"""

from __future__ import annotations

import math

import torch
from transformers import PreTrainedTokenizerBase

IGNORE_INDEX = -100


def special_token_table(tokenizer: PreTrainedTokenizerBase, device=None) -> torch.Tensor:
    """Bool ``[vocab]``: True for ids that must never be masked (CLS, SEP, PAD, ...)."""
    table = torch.zeros(len(tokenizer), dtype=torch.bool, device=device)
    table[torch.tensor(sorted(set(tokenizer.all_special_ids)), dtype=torch.long)] = True
    return table


def word_start_table(tokenizer: PreTrainedTokenizerBase, device=None) -> torch.Tensor:
    """Bool ``[vocab]``: True for tokens that begin a word.

    WordPiece marks continuations with ``##``; byte-level BPE marks word starts with ``Ġ`` (a leading space). A
    punctuation or symbol token is its own word in both schemes.
    """
    vocab = tokenizer.get_vocab()
    byte_level = any(tok.startswith("Ġ") for tok in vocab)
    table = torch.zeros(len(tokenizer), dtype=torch.bool)
    for token, idx in vocab.items():
        if idx >= len(table):
            continue
        if byte_level:
            starts = token.startswith("Ġ") or not token[:1].isalnum()
        else:
            starts = not token.startswith("##")
        table[idx] = starts
    return table.to(device)


def mask_tokens(
    input_ids: torch.Tensor,
    *,
    mask_prob: float,
    mask_token_id: int,
    vocab_size: int,
    special: torch.Tensor,
    generator: torch.Generator,
    word_start: torch.Tensor | None = None,
    row_offset: int = 0,
    total_rows: int | None = None,
    max_selected: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(masked_input_ids, labels)``; labels are ``IGNORE_INDEX`` except at selected positions.

    With data parallelism, each process passes its slice of the global batch (``row_offset``, ``total_rows``): the
    random draws are made for the whole global batch and sliced, so N processes with batch B mask exactly as one
    process with batch N*B does.

    ``max_selected`` caps the positions selected in this batch at the ones with the lowest draws (see
    ``selection_bound``): the head can then run on a fixed number of positions. Below the cap nothing changes.
    """
    device = input_ids.device
    is_special = special[input_ids]
    rows = slice(row_offset, row_offset + input_ids.shape[0])
    global_shape = (total_rows or input_ids.shape[0], input_ids.shape[1])

    def draw_uniform() -> torch.Tensor:
        return torch.rand(global_shape, generator=generator, device=device)[rows]

    draw = draw_uniform()
    if word_start is not None:
        # Every token takes the draw made at the start of its word: find each position's word start with a
        # running maximum over the indices of word-start positions.
        starts = word_start[input_ids] | is_special
        starts[:, 1:] |= is_special[:, :-1]
        starts[:, 0] = True
        positions = torch.arange(input_ids.shape[1], device=device).expand_as(input_ids)
        start_of_word = torch.where(starts, positions, torch.zeros_like(positions)).cummax(dim=1).values
        draw = draw.gather(1, start_of_word)
    selected = (draw < mask_prob) & ~is_special
    if max_selected is not None and max_selected < selected.numel():
        # topk, not a count compared on the host: the cap must not make the GPU wait for the CPU.
        key = torch.where(selected, draw, torch.full_like(draw, 2.0)).flatten()
        keep = torch.zeros_like(selected).flatten()
        keep[key.topk(max_selected, largest=False, sorted=False).indices] = True
        selected &= keep.view_as(selected)
    labels = torch.where(selected, input_ids, torch.full_like(input_ids, IGNORE_INDEX))

    action = draw_uniform()
    to_mask = selected & (action < 0.8)
    to_random = selected & (action >= 0.8) & (action < 0.9)
    random_ids = torch.randint(vocab_size, global_shape, generator=generator, device=device)[rows]
    masked = torch.where(to_mask, torch.full_like(input_ids, mask_token_id), input_ids)
    masked = torch.where(to_random, random_ids, masked)
    return masked, labels


def selection_bound(positions: int, mask_prob: float, whole_word: bool = False) -> int:
    """A number of selected positions that ``mask_tokens`` practically never reaches in a batch of ``positions``.

    The count is binomial (mean ``n p``, variance ``n p (1 - p)``); whole words move several sub-tokens at once, and
    four times the variance covers words of up to ~4 sub-tokens on average. Mean + 6 standard deviations is passed
    about once in 10^9 batches, and even then ``mask_tokens(max_selected=...)`` only drops the excess. Rounded up to a
    multiple of 8 for tensor-core-friendly shapes.
    """
    variance = positions * mask_prob * (1.0 - mask_prob) * (4.0 if whole_word else 1.0)
    bound = math.ceil(positions * mask_prob + 6.0 * math.sqrt(variance)) + 1
    return min(positions, -(-bound // 8) * 8)


def step_generator(seed: int, step: int, device) -> torch.Generator:
    """The masking RNG for one micro-batch: a pure function of (seed, step), so a resumed run replays it."""
    generator = torch.Generator(device=device)
    generator.manual_seed(seed * 1_000_003 + step)
    return generator
