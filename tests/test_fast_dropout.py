"""hfssl.fast_dropout: the masks are Bernoulli(1 - p), the attention equals transformers' own, and a model keeps its
outputs in evaluation, its causality in training, and its plain saved form."""

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from hfssl.fast_dropout import ATTENTION, FastDropout, apply_dropout, attention_forward, keep_mask, use_fast_dropout


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_masks_keep_each_element_with_probability_one_minus_p_independently(p):
    torch.manual_seed(0)
    n = 1 << 20
    mask = keep_mask((n,), p).float()
    sigma = math.sqrt(p * (1 - p) / n)
    assert abs(mask.mean().item() - (1 - p)) < 5 * sigma
    # Four elements share each 64-bit draw: each of the four places must be unbiased on its own (a draw without its
    # sign bit would keep one place in four too often), and neighbours must not correlate.
    for place in range(4):
        assert abs(mask[place::4].mean().item() - (1 - p)) < 5 * 2 * sigma, place
    a, b = mask[:-1] - mask.mean(), mask[1:] - mask.mean()
    assert abs((a * b).mean().item() / (p * (1 - p))) < 0.01


def test_masks_follow_the_global_seed_and_differ_between_draws():
    torch.manual_seed(3)
    first, second = keep_mask((64, 64), 0.3), keep_mask((64, 64), 0.3)
    torch.manual_seed(3)
    assert torch.equal(keep_mask((64, 64), 0.3), first) and not torch.equal(first, second)


def test_dropout_is_the_naive_mask_and_scale_and_its_gradient_is_the_same_mask():
    x = torch.randn(8, 33, 17, requires_grad=True)
    torch.manual_seed(1)
    y = apply_dropout(x, 0.25)
    torch.manual_seed(1)
    mask = keep_mask(x.shape, 0.25)
    torch.testing.assert_close(y, x * mask / 0.75)  # Srivastava et al. 2014 with inverted scaling, as nn.Dropout
    y.sum().backward()
    torch.testing.assert_close(x.grad, mask.float() / 0.75)
    assert apply_dropout(x, 0.25, training=False) is x and apply_dropout(x, 0.0) is x
    assert torch.count_nonzero(apply_dropout(x, 1.0)) == 0


def test_fast_dropout_module_is_an_nn_dropout_that_is_identity_in_eval():
    module = FastDropout(0.2)
    assert isinstance(module, nn.Dropout) and module.extra_repr() == nn.Dropout(0.2).extra_repr()
    x = torch.randn(4, 10)
    assert torch.equal(module.eval()(x), x)
    out = module.train()(x)
    kept = out != 0
    torch.testing.assert_close(out[kept], x[kept] / 0.8)


class _Attention(nn.Module):
    def __init__(self, is_causal: bool) -> None:
        super().__init__()
        self.is_causal = is_causal


def _naive_attention(q, k, v, allowed, p):
    """softmax(q k^T / sqrt(d)) with disallowed pairs removed, dropout with the next keep_mask, times v."""
    scores = q @ k.transpose(2, 3) / math.sqrt(q.shape[-1])
    scores = scores.masked_fill(~allowed, float("-inf"))
    weights = scores.softmax(-1)
    if p:
        weights = weights * keep_mask(weights.shape, p) / (1 - p)
    return (weights @ v).transpose(1, 2)


@pytest.mark.parametrize("causal", [False, True])
def test_attention_with_dropout_matches_the_naive_computation(causal):
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 7, 8) for _ in range(3))
    padding = torch.ones(2, 1, 7, 7, dtype=torch.bool)
    padding[1, ..., 5:] = False  # the second sequence's last two keys are padding
    module = _Attention(causal).train()
    for mask in (None, padding):
        allowed = torch.ones(7, 7, dtype=torch.bool).tril() if causal and mask is None else (
            mask if mask is not None else torch.ones(7, 7, dtype=torch.bool))
        torch.manual_seed(5)
        out, _ = attention_forward(module, q, k, v, mask, dropout=0.2)
        torch.manual_seed(5)
        torch.testing.assert_close(out, _naive_attention(q, k, v, allowed, 0.2))


def test_attention_without_dropout_is_transformers_sdpa():
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    q, k, v = (torch.randn(2, 3, 7, 8) for _ in range(3))
    for training in (True, False):  # transformers passes dropout 0 in evaluation
        module = _Attention(False).train(training)
        ours, _ = attention_forward(module, q, k, v, None, dropout=0.0)
        reference, _ = sdpa_attention_forward(module, q, k, v, None, dropout=0.0)
        assert torch.equal(ours, reference)


def _tiny_bert():
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(0)
    return BertForMaskedLM(BertConfig(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                      intermediate_size=64, max_position_embeddings=32))


def test_a_bert_keeps_its_eval_outputs_trains_and_saves_as_the_plain_model(tmp_path):
    from transformers import AutoModelForMaskedLM

    model, reference = _tiny_bert(), _tiny_bert()
    count = sum(type(m) is nn.Dropout for m in model.modules())
    assert use_fast_dropout(model) == count > 0
    assert not any(type(m) is nn.Dropout for m in model.modules())
    assert model.config._attn_implementation == ATTENTION
    ids = torch.randint(5, 120, (3, 16))
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(ids).logits, reference.eval()(ids).logits)
    model.train()
    loss = F.cross_entropy(model(ids).logits.flatten(0, 1), ids.flatten())
    loss.backward()
    assert all(p.grad is not None for p in model.bert.encoder.parameters())
    model.save_pretrained(tmp_path)
    loaded = AutoModelForMaskedLM.from_pretrained(tmp_path, use_safetensors=True)
    assert loaded.config._attn_implementation == "sdpa"
    assert not any(isinstance(m, FastDropout) for m in loaded.modules())


def test_a_causal_model_still_cannot_see_the_future_while_training():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=100, n_embd=32, n_layer=2, n_head=4, n_positions=32))
    use_fast_dropout(model)
    assert model.config._attn_implementation == ATTENTION
    model.train()
    ids = torch.randint(0, 100, (2, 12))
    changed = ids.clone()
    changed[:, 8:] = (changed[:, 8:] + 1) % 100  # only the future of position 7 changes
    torch.manual_seed(9)
    a = model(ids).logits
    torch.manual_seed(9)
    b = model(changed).logits
    torch.testing.assert_close(a[:, :8], b[:, :8])
    assert not torch.allclose(a[:, 8:], b[:, 8:])
