import pytest

from hfssl.config import ConfigError
from hfssl.data.tokenizer_training import load_or_train_tokenizer, train_tokenizer


def test_gpt2_tokenizer_is_lossless_byte_level_bpe_with_end_of_text(docs_text_file):
    lines = docs_text_file.read_text().splitlines()[:300]
    tok = train_tokenizer("gpt2", lines, vocab_size=700)
    assert len(tok) == 700
    assert tok.eos_token == tok.bos_token == "<|endoftext|>" and tok.pad_token == "<pad>"
    assert tok.pad_token_id != tok.eos_token_id  # padding collators must not hide the real end of text
    text = "Return a list — naïve café 🙂, tabs\tand  spaces."
    ids = tok(text)["input_ids"]
    assert tok.eos_token_id not in ids  # GPT-2 adds no special tokens
    assert tok.decode(ids) == text  # any byte sequence round-trips, unseen characters included
    assert any(t.startswith("Ġ") for t in tok.convert_ids_to_tokens(tok(" the function")["input_ids"]))


def test_trained_tokenizer_is_saved_and_reused(tmp_path, docs_text_file):
    lines = docs_text_file.read_text().splitlines()[:200]
    saved = tmp_path / "tok"
    first = load_or_train_tokenizer(tokenizer_name=None, model_name_or_path=None, model_type="gpt2", vocab_size=400,
                                    texts=iter(lines), saved_dir=saved, max_texts=100)
    again = load_or_train_tokenizer(tokenizer_name=None, model_name_or_path=None, model_type="gpt2", vocab_size=400,
                                    texts=iter(["never read"]), saved_dir=saved, max_texts=100)
    assert again.get_vocab() == first.get_vocab()
    with pytest.raises(ConfigError, match="--tokenizer_name"):
        load_or_train_tokenizer(tokenizer_name=str(tmp_path / "missing"), model_name_or_path=None, model_type="gpt2",
                                vocab_size=400, texts=iter(lines), saved_dir=saved, max_texts=100)
    with pytest.raises(ValueError, match="bert, roberta or gpt2"):
        train_tokenizer("t5", lines, 100)
