"""GlobalBatchNorm on 2 CPU processes (gloo) against nn.BatchNorm on the concatenated batch: outputs, gradients of
inputs and affine parameters, running statistics over two steps, eval mode; and the conversion of a model."""

import os

import pytest
import torch
import torch.distributed as dist
from torch import nn

from conftest import run_gloo_workers
from hfssl.contrastive.global_batch_norm import GlobalBatchNorm, convert_to_global_batch_norm
from hfssl.distributed import settle_gloo_workers

WORLD = 2
# name -> (BatchNorm class, kwargs, shape of one sample, rows of each process: uneven, as after a corrupt image)
CASES = {
    "2d": (nn.BatchNorm2d, {}, (3, 4, 4), (5, 5)),
    "2d-uneven": (nn.BatchNorm2d, {}, (3, 4, 4), (6, 3)),
    "1d": (nn.BatchNorm1d, {"momentum": 0.3}, (7,), (4, 4)),
    "1d-sequence": (nn.BatchNorm1d, {}, (7, 5), (3, 2)),
    "cumulative": (nn.BatchNorm1d, {"momentum": None}, (7,), (4, 4)),
    "no-affine": (nn.BatchNorm1d, {"affine": False}, (7,), (4, 4)),
    "no-running-stats": (nn.BatchNorm2d, {"track_running_stats": False}, (3, 4, 4), (4, 4)),
}
STEPS = 2


def _reference(name):
    cls, kwargs, shape, rows = CASES[name]
    torch.manual_seed(0)
    bn = cls(shape[0], **kwargs)
    if bn.affine:  # not the identity init, so the affine gradients are not trivial
        nn.init.normal_(bn.weight)
        nn.init.normal_(bn.bias)
    data = [(torch.randn(sum(rows), *shape) * 3 + 1, torch.randn(sum(rows), *shape)) for _ in range(STEPS)]
    return bn, data, rows


def _run(bn, data, rows, rank):
    """Train-mode forward/backward for each step on this process's rows, then one eval forward of all rows."""
    mine = slice(sum(rows[:rank]), sum(rows[: rank + 1])) if rank is not None else slice(None)
    outputs = []
    for x, target in data:
        x = x[mine].clone().requires_grad_()
        bn.zero_grad()
        y = bn(x)
        (y * target[mine]).sum().backward()
        grads = {k: p.grad.clone() for k, p in bn.named_parameters()}
        outputs.append((y.detach(), x.grad, grads, {k: b.clone() for k, b in bn.named_buffers()}))
    bn.eval()
    with torch.no_grad():
        evaluated = bn(data[0][0])
    return outputs, evaluated


def _worker(rank, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    results = {}
    for name in CASES:
        bn, data, rows = _reference(name)
        results[name] = _run(convert_to_global_batch_norm(bn), data, rows, rank)
    torch.save(results, f"{out}/rank{rank}.pt")
    dist.barrier()
    settle_gloo_workers()  # as the recipes do before the group goes: hfssl/distributed.py says why
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return run_gloo_workers(_worker, tmp_path_factory.mktemp("global-bn"), WORLD)


@pytest.mark.parametrize("name", list(CASES))
def test_two_processes_equal_batch_norm_on_the_global_batch(shards, name):
    bn, data, rows = _reference(name)
    expected, expected_eval = _run(bn, data, rows, None)
    close = dict(rtol=1e-4, atol=1e-5)
    for step, (y, x_grad, grads, buffers) in enumerate(expected):
        got = [s[name][0][step] for s in shards]
        torch.testing.assert_close(torch.cat([g[0] for g in got]), y, **close)
        # each process gets the gradient of the global loss with respect to its own rows
        torch.testing.assert_close(torch.cat([g[1] for g in got]), x_grad, **close)
        # parameter gradients are partial sums; DDP adds them up (and divides by the world size)
        for key, grad in grads.items():
            torch.testing.assert_close(sum(g[2][key] for g in got), grad, **close)
        for g in got:  # running statistics equal on every process, updated as nn.BatchNorm updates them
            assert g[3].keys() == buffers.keys()
            for key, value in buffers.items():
                torch.testing.assert_close(g[3][key], value, **close)
    for s in shards:  # eval mode: the running statistics (or, untracked, the process's own batch), no collective
        torch.testing.assert_close(s[name][1], expected_eval, **close)


def test_one_process_is_plain_batch_norm():
    bn, data, rows = _reference("2d")
    converted = convert_to_global_batch_norm(_reference("2d")[0])
    x = data[0][0]
    torch.testing.assert_close(converted(x), bn(x), rtol=0, atol=0)
    torch.testing.assert_close(converted.running_var, bn.running_var, rtol=0, atol=0)


def test_conversion_keeps_parameters_buffers_and_settings():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, eps=1e-3, momentum=0.2),
                          nn.Sequential(nn.Flatten(), nn.Linear(16, 5), nn.BatchNorm1d(5, affine=False)))
    model[1].running_mean.fill_(0.5)
    model[1].num_batches_tracked.fill_(7)
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    weight = model[1].weight
    converted = convert_to_global_batch_norm(model)
    assert converted is model
    assert isinstance(model[1], GlobalBatchNorm) and isinstance(model[2][2], GlobalBatchNorm)
    assert not any(type(m) in (nn.BatchNorm1d, nn.BatchNorm2d) for m in model.modules())
    assert model[1].weight is weight  # the same Parameter: an optimizer built before still updates it
    assert (model[1].eps, model[1].momentum, model[1].affine, model[2][2].affine) == (1e-3, 0.2, True, False)
    assert not model[1].training
    after = model.state_dict()
    assert after.keys() == before.keys()
    for key, value in before.items():
        assert torch.equal(after[key], value), key
    single = convert_to_global_batch_norm(nn.BatchNorm1d(3, track_running_stats=False))
    assert isinstance(single, GlobalBatchNorm) and single.running_mean is None
