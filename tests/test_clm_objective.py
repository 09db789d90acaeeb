import math

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from hfssl.clm.evaluation import evaluate_clm
from hfssl.clm.objective import CausalLMObjective
from hfssl.clm.throughput import decoder_flops_per_token


def _model(**kw):
    torch.manual_seed(0)
    config = dict(vocab_size=97, n_positions=24, n_embd=32, n_layer=2, n_head=4, n_inner=64)
    return GPT2LMHeadModel(GPT2Config(**{**config, **kw})).eval()  # no dropout


def _ids(rows=3, length=24):
    return torch.randint(0, 97, (rows, length), generator=torch.Generator().manual_seed(1))


def naive_next_token_loss(model, ids, lengths=None):
    """The GPT objective as written in the paper: for each sequence and each i >= 1, -log P(u_i | u_<i), where the
    model sees only the prefix u_0..u_{i-1}; averaged over all predicted tokens."""
    total, count = 0.0, 0
    for row, seq in enumerate(ids):
        n = len(seq) if lengths is None else lengths[row]
        for i in range(1, n):
            logits = model(input_ids=seq[:i].unsqueeze(0)).logits[0, -1]
            total += -torch.log_softmax(logits.double(), dim=-1)[seq[i]].item()
            count += 1
    return total / count


def test_loss_equals_the_paper_objective_computed_prefix_by_prefix():
    model, ids = _model(), _ids(rows=2, length=12)
    loss = CausalLMObjective(model)(ids)
    assert loss.item() == pytest.approx(naive_next_token_loss(model, ids), rel=1e-5)
    # ... and transformers' own shifted loss
    torch.testing.assert_close(loss, model(input_ids=ids, labels=ids).loss, rtol=1e-5, atol=1e-6)


def test_padding_is_never_predicted_nor_attended():
    model, ids = _model(), _ids(rows=2, length=12)
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0  # the second row is 7 real tokens, then padding
    padded = ids.clone()
    padded[1, 7:] = 0
    loss = CausalLMObjective(model)(padded, attention_mask=mask)
    assert loss.item() == pytest.approx(naive_next_token_loss(model, ids, lengths=[12, 7]), rel=1e-5)


def test_per_row_sums_add_up_to_the_mean_and_count_t_minus_one_tokens():
    model, ids = _model(), _ids()
    objective = CausalLMObjective(model)
    rows = objective(ids, reduction="sum_per_row")
    assert rows.shape == (3, 2) and rows[:, 1].tolist() == [23.0, 23.0, 23.0]
    torch.testing.assert_close(rows[:, 0].sum() / rows[:, 1].sum(), objective(ids))
    torch.testing.assert_close(objective(ids, reduction="sum"), rows[:, 0].sum())
    with pytest.raises(ValueError, match="reduction"):
        objective(ids, reduction="median")


def test_evaluation_is_token_weighted_over_batches():
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)  # another test's precision must not leak in
    model, ids = _model(), _ids(rows=5)
    objective = CausalLMObjective(model)
    expected = objective(ids).item()  # first: evaluation hands the model back in training mode
    batches = [{"input_ids": ids[:2]}, {"input_ids": ids[2:]}]  # uneven batches: a mean of means would differ
    metrics = evaluate_clm(objective, batches, Accelerator(cpu=True, mixed_precision="no"))
    assert metrics["eval_tokens"] == 5 * 23
    assert metrics["eval_loss"] == pytest.approx(expected, rel=1e-5)
    assert metrics["perplexity"] == pytest.approx(math.exp(metrics["eval_loss"]))


def test_flops_count_every_matmul_including_the_tied_output_projection():
    model = _model()
    h, layers, inner, vocab, seq = 32, 2, 64, 97, 24
    per_layer = 3 * h * h + h * h + 2 * h * inner  # fused QKV, attention output, two MLP matrices
    expected = 6 * (layers * per_layer + h * vocab) + 12 * layers * seq * h
    assert decoder_flops_per_token(model, seq) == expected
