import torch
from transformers import BertConfig, BertForMaskedLM, RobertaConfig, RobertaForMaskedLM

from hfssl.mlm.masking import IGNORE_INDEX, mask_tokens
from hfssl.mlm.objective import MaskedLMObjective

SIZES = dict(vocab_size=300, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)


def _inputs(vocab=300):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, vocab, (4, 24), generator=g)
    special = torch.zeros(vocab, dtype=torch.bool)
    special[:5] = True
    return mask_tokens(ids, mask_prob=0.2, mask_token_id=4, vocab_size=vocab, special=special, generator=g)


def test_sparse_loss_and_gradients_equal_dense_loss():
    for model in (BertForMaskedLM(BertConfig(**SIZES)), RobertaForMaskedLM(RobertaConfig(**SIZES, pad_token_id=1))):
        model.eval()  # no dropout, so both paths see the same network
        inputs, labels = _inputs()
        sparse, dense = MaskedLMObjective(model, True), MaskedLMObjective(model, False)
        loss_s = sparse(inputs, labels)
        grads_s = torch.autograd.grad(loss_s, list(model.parameters()), allow_unused=True)
        loss_d = dense(inputs, labels)
        grads_d = torch.autograd.grad(loss_d, list(model.parameters()), allow_unused=True)
        # The reference: transformers' own dense loss.
        ref = model(input_ids=inputs, labels=labels).loss
        torch.testing.assert_close(loss_s, ref, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(loss_d, ref, rtol=1e-5, atol=1e-6)
        for gs, gd in zip(grads_s, grads_d):
            if gs is None or gd is None:
                assert (gs is None or not gs.any()) and (gd is None or not gd.any())
            else:
                torch.testing.assert_close(gs, gd, rtol=1e-4, atol=1e-6)


def test_per_row_sums_add_up_to_the_mean_loss():
    model = BertForMaskedLM(BertConfig(**SIZES)).eval()
    inputs, labels = _inputs()
    objective = MaskedLMObjective(model, True)
    rows = objective(inputs, labels, reduction="sum_per_row")
    assert rows.shape == (4, 2)
    assert torch.equal(rows[:, 1], (labels != IGNORE_INDEX).sum(dim=1).float())
    torch.testing.assert_close(rows[:, 0].sum() / rows[:, 1].sum(), objective(inputs, labels))


def test_a_fixed_capacity_gives_the_same_loss_gradients_and_row_sums():
    model = BertForMaskedLM(BertConfig(**SIZES)).eval()
    inputs, labels = _inputs()
    objective = MaskedLMObjective(model, True)
    count = int((labels != IGNORE_INDEX).sum())
    for reduction in ("mean", "sum", "sum_per_row"):
        exact = objective(inputs, labels, reduction=reduction)
        for capacity in (count, count + 13):
            torch.testing.assert_close(objective(inputs, labels, reduction=reduction, capacity=capacity), exact)
    loss = objective(inputs, labels, capacity=count + 13)
    grads = torch.autograd.grad(loss, list(model.parameters()), allow_unused=True)
    grads_exact = torch.autograd.grad(objective(inputs, labels), list(model.parameters()), allow_unused=True)
    for g, ge in zip(grads, grads_exact):
        if g is not None and ge is not None:
            torch.testing.assert_close(g, ge, rtol=1e-4, atol=1e-6)
    # Too small a capacity drops labels: the loss then differs (the caller must cap the masking to match).
    assert not torch.allclose(objective(inputs, labels, reduction="sum", capacity=count // 2),
                              objective(inputs, labels, reduction="sum"))
