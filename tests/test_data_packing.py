from datasets import Dataset

from hfssl.data.packing import pack_fn
from hfssl.data.tokenizer_training import train_tokenizer


def test_gpt2_packing_joins_documents_with_end_of_text_and_keeps_every_token(docs_text_file):
    lines = docs_text_file.read_text().splitlines()[:300]
    tok = train_tokenizer("gpt2", lines, vocab_size=600)
    eot = tok.eos_token_id
    ds = Dataset.from_dict({"text": lines + ["", "   ", None]})
    packed = ds.map(pack_fn(tok, "text", 64, separator_id=eot), batched=True, remove_columns=["text"])
    blocks = packed["input_ids"]
    assert len(blocks) > 10 and all(len(b) == 64 for b in blocks)
    # Concatenated, the blocks are exactly the documents, each followed by <|endoftext|>, minus a partial tail.
    stream = [t for b in blocks for t in b]
    expected = [t for line in lines if line.strip() for t in tok(line, add_special_tokens=False)["input_ids"] + [eot]]
    assert stream == expected[: len(stream)] and len(expected) - len(stream) < 64
    assert stream.count(eot) > 0 and tok.pad_token_id not in stream


def test_framed_packing_puts_prefix_and_suffix_on_every_block():
    class Tok:  # a whitespace tokenizer is enough to check the framing arithmetic
        def __call__(self, texts, **_):
            return {"input_ids": [[int(w) for w in t.split()] for t in texts]}

    fn = pack_fn(Tok(), "text", 6, separator_id=0, prefix_id=101, suffix_id=102)
    out = fn({"text": ["1 2 3", "4 5 6 7", " "]})["input_ids"]
    assert out == [[101, 1, 2, 3, 0, 102], [101, 4, 5, 6, 7, 102]]  # bodies of 4; the trailing separator is dropped
