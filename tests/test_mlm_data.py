from datasets import Dataset

from hfssl.mlm.data import EpochShuffleSampler, PadCollator, prepare_dataset
from hfssl.data.tokenizer_training import train_tokenizer


def _tokenizer(lines):
    return train_tokenizer("bert", lines, vocab_size=800)


def test_packing_gives_full_framed_blocks_and_keeps_every_token(docs_text_file):
    lines = docs_text_file.read_text().splitlines()[:300]
    tok = _tokenizer(lines)
    ds = Dataset.from_dict({"text": lines + ["", "   "]})
    packed = prepare_dataset(ds, tok, "text", 64, line_by_line=False)
    assert len(packed) > 10
    for block in packed["input_ids"]:
        assert len(block) == 64 and block[0] == tok.cls_token_id and block[-1] == tok.sep_token_id
    n_doc_tokens = sum(len(tok(t, add_special_tokens=False)["input_ids"]) + 1 for t in lines if t.strip())
    packed_body = sum(len(b) - 2 for b in packed["input_ids"])
    assert n_doc_tokens - 62 < packed_body <= n_doc_tokens  # only the final partial block is dropped


def test_line_by_line_drops_empty_lines_and_pads_per_batch(docs_text_file):
    lines = docs_text_file.read_text().splitlines()[:50]
    tok = _tokenizer(lines)
    ds = Dataset.from_dict({"text": [lines[0], "", "  \t", lines[1]]})
    encoded = prepare_dataset(ds, tok, "text", 32, line_by_line=True)
    assert len(encoded) == 2
    batch = PadCollator(tok.pad_token_id)([encoded[0], encoded[1]])
    assert batch["input_ids"].shape[1] % 8 == 0
    lengths = [len(encoded[i]["input_ids"]) for i in range(2)]
    assert batch["attention_mask"].sum(dim=1).tolist() == lengths
    assert max(lengths) <= 32


def test_epoch_shuffle_is_a_permutation_reproducible_per_epoch():
    sampler = EpochShuffleSampler(100, seed=3)
    first = list(sampler)
    assert sorted(first) == list(range(100)) and first != list(range(100))
    assert list(sampler) == first
    sampler.set_epoch(1)
    assert list(sampler) != first
