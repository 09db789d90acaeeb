import torch

from hfssl.mlm.masking import IGNORE_INDEX, mask_tokens, special_token_table, step_generator, word_start_table
from hfssl.data.tokenizer_training import train_tokenizer

VOCAB, MASK, CLS, SEP = 1000, 4, 2, 3


def _special():
    table = torch.zeros(VOCAB, dtype=torch.bool)
    table[:5] = True
    return table


def _batch(rows=64, length=128):
    ids = torch.randint(5, VOCAB, (rows, length), generator=torch.Generator().manual_seed(0))
    ids[:, 0], ids[:, -1] = CLS, SEP
    return ids


def test_masking_rate_and_80_10_10_split():
    ids = _batch()
    masked, labels = mask_tokens(ids, mask_prob=0.3, mask_token_id=MASK, vocab_size=VOCAB, special=_special(),
                                 generator=torch.Generator().manual_seed(1))
    selected = labels != IGNORE_INDEX
    eligible = ids.numel() - 2 * ids.shape[0]
    assert abs(selected.sum().item() / eligible - 0.3) < 0.02
    assert torch.equal(labels[selected], ids[selected])  # labels are the original tokens
    n = selected.sum().item()
    as_mask = (masked[selected] == MASK).sum().item() / n
    unchanged = (masked[selected] == ids[selected]).sum().item() / n
    assert abs(as_mask - 0.8) < 0.03
    assert abs(unchanged - 0.1) < 0.03  # (random replacements hit the same id only 1 time in 1000)
    assert torch.equal(masked[~selected], ids[~selected])  # unselected positions are untouched


def test_special_tokens_are_never_masked():
    ids = _batch()
    _, labels = mask_tokens(ids, mask_prob=0.99, mask_token_id=MASK, vocab_size=VOCAB, special=_special(),
                            generator=torch.Generator().manual_seed(2))
    assert (labels[:, 0] == IGNORE_INDEX).all() and (labels[:, -1] == IGNORE_INDEX).all()


def test_step_generator_replays_the_same_masks():
    ids = _batch()
    kwargs = dict(mask_prob=0.15, mask_token_id=MASK, vocab_size=VOCAB, special=_special())
    a = mask_tokens(ids, generator=step_generator(42, 17, "cpu"), **kwargs)
    b = mask_tokens(ids, generator=step_generator(42, 17, "cpu"), **kwargs)
    c = mask_tokens(ids, generator=step_generator(42, 18, "cpu"), **kwargs)
    assert torch.equal(a[1], b[1]) and torch.equal(a[0], b[0])
    assert not torch.equal(a[1], c[1])


def _assert_whole_words(tokenizer, text_lines):
    enc = tokenizer(text_lines, truncation=True, max_length=64, padding="max_length", return_tensors="pt")
    ids = enc["input_ids"]
    special = special_token_table(tokenizer)
    starts = word_start_table(tokenizer)
    _, labels = mask_tokens(ids, mask_prob=0.3, mask_token_id=tokenizer.mask_token_id, vocab_size=len(tokenizer),
                            special=special, generator=torch.Generator().manual_seed(3), word_start=starts)
    selected = labels != IGNORE_INDEX
    checked_words = 0
    for row in range(ids.shape[0]):
        for pos in range(1, ids.shape[1]):
            continuation = not starts[ids[row, pos]] and not special[ids[row, pos]] and not special[ids[row, pos - 1]]
            if continuation:
                checked_words += 1
                assert selected[row, pos] == selected[row, pos - 1], "a word was split by the mask"
    assert checked_words > 20  # the text really has multi-piece words
    assert selected.any()


def test_whole_word_masking_wordpiece_and_byte_level_bpe(docs_text_file):
    lines = docs_text_file.read_text().splitlines()
    for model_type in ("bert", "roberta"):
        tokenizer = train_tokenizer(model_type, lines, vocab_size=600)  # small vocab: many words split
        _assert_whole_words(tokenizer, lines[:32])


def test_slices_of_a_global_batch_mask_like_the_whole_batch():
    ids = _batch(rows=8)
    kwargs = dict(mask_prob=0.15, mask_token_id=MASK, vocab_size=VOCAB, special=_special())
    whole = mask_tokens(ids, generator=step_generator(1, 5, "cpu"), **kwargs)
    halves = [mask_tokens(ids[r * 4:(r + 1) * 4], generator=step_generator(1, 5, "cpu"), row_offset=r * 4, total_rows=8,
                          **kwargs) for r in range(2)]
    assert torch.equal(torch.cat([h[0] for h in halves]), whole[0])
    assert torch.equal(torch.cat([h[1] for h in halves]), whole[1])


def test_a_cap_above_the_count_changes_nothing_and_a_cap_below_keeps_the_lowest_draws():
    ids = _batch(rows=8, length=32)
    kwargs = dict(mask_prob=0.3, mask_token_id=MASK, vocab_size=VOCAB, special=_special())
    masked, labels = mask_tokens(ids, generator=step_generator(7, 1, "cpu"), **kwargs)
    count = int((labels != IGNORE_INDEX).sum())
    same = mask_tokens(ids, generator=step_generator(7, 1, "cpu"), max_selected=count, **kwargs)
    assert torch.equal(same[0], masked) and torch.equal(same[1], labels)

    capped_ids, capped = mask_tokens(ids, generator=step_generator(7, 1, "cpu"), max_selected=count // 2, **kwargs)
    kept = capped != IGNORE_INDEX
    assert int(kept.sum()) == count // 2
    assert not (kept & (labels == IGNORE_INDEX)).any()  # a subset of the uncapped selection
    # The kept positions are those whose selection draw (the generator's first draw) is lowest.
    draw = torch.rand(ids.shape, generator=step_generator(7, 1, "cpu"))
    assert draw[kept].max() < draw[(labels != IGNORE_INDEX) & ~kept].min()
    assert torch.equal(capped_ids[~kept & (labels != IGNORE_INDEX)], ids[~kept & (labels != IGNORE_INDEX)])


def test_selection_bound_is_never_reached_in_practice():
    from hfssl.mlm.masking import selection_bound
    ids = _batch(rows=16, length=64)
    kwargs = dict(mask_token_id=MASK, vocab_size=VOCAB, special=_special())
    for p in (0.15, 0.3):
        bound = selection_bound(ids.numel(), p)
        assert bound % 8 == 0 and ids.numel() * p < bound < ids.numel()
        counts = [int((mask_tokens(ids, mask_prob=p, generator=step_generator(0, s, "cpu"), **kwargs)[1] != IGNORE_INDEX).sum())
                  for s in range(200)]
        assert max(counts) < bound
    assert selection_bound(16, 0.9) == 16  # never more than the positions
    assert selection_bound(4096, 0.15, whole_word=True) > selection_bound(4096, 0.15)
