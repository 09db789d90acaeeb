"""Losses over 2 CPU processes (gloo) equal the single-process loss on the global batch, gradients included."""

import os

import pytest
import torch
import torch.distributed as dist

from conftest import run_gloo_workers
from hfssl.contrastive.barlow_twins_loss import BarlowTwinsLoss
from hfssl.contrastive.distributed import gather_with_grad
from hfssl.contrastive.moco_v3_loss import MoCoV3Loss
from hfssl.contrastive.nt_xent import NTXentLoss
from hfssl.contrastive.vicreg_loss import VICRegLoss
from hfssl.distributed import settle_gloo_workers

WORLD = 2


def _data():
    g = torch.Generator().manual_seed(0)
    return torch.randn(8, 6, generator=g), torch.randn(8, 6, generator=g)


def _losses():
    return {"simclr": lambda a, b: NTXentLoss(0.2)(a, b), "vicreg": lambda a, b: VICRegLoss()(a, b),
            "barlow": lambda a, b: BarlowTwinsLoss()(a, b),
            "mocov3": lambda a, b: MoCoV3Loss(0.2)(a, b, b * 2, a - 1)}


def _worker(rank, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    z1, z2 = _data()
    rows = slice(rank * 4, rank * 4 + 4)
    results = {}
    for name, fn in _losses().items():
        a, b = z1[rows].clone().requires_grad_(), z2[rows].clone().requires_grad_()
        loss = fn(a, b)
        loss.backward()
        results[name] = (loss.detach(), a.grad, b.grad)
    # Unequal batch sizes (a corrupt image dropped on one process): rows come back in process order.
    local = torch.arange(3 if rank == 0 else 2, dtype=torch.float32).view(-1, 1) + 10 * rank
    gathered, offset = gather_with_grad(local.requires_grad_())
    results["uneven"] = (gathered.detach(), torch.tensor(offset))
    torch.save(results, f"{out}/rank{rank}.pt")
    dist.barrier()
    settle_gloo_workers()  # as the recipes do before the group goes: hfssl/distributed.py says why
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return run_gloo_workers(_worker, tmp_path_factory.mktemp("dist"), WORLD)


@pytest.mark.parametrize("name", ["simclr", "vicreg", "barlow", "mocov3"])
def test_sharded_loss_and_gradient_equal_global_batch(shards, name):
    z1, z2 = _data()
    a, b = z1.clone().requires_grad_(), z2.clone().requires_grad_()
    full = _losses()[name](a, b)
    full.backward()
    # DDP averages gradients over processes, so the loss being optimized is the mean of the per-process losses
    # and each process's input gradient must be WORLD x the global-batch gradient of its rows.
    mean_loss = sum(s[name][0] for s in shards) / WORLD
    assert mean_loss.item() == pytest.approx(full.item(), rel=1e-5)
    grad_a = torch.cat([s[name][1] for s in shards]) / WORLD
    grad_b = torch.cat([s[name][2] for s in shards]) / WORLD
    torch.testing.assert_close(grad_a, a.grad, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(grad_b, b.grad, rtol=1e-4, atol=1e-6)


def test_gather_handles_unequal_batch_sizes(shards):
    expected = torch.tensor([0.0, 1.0, 2.0, 10.0, 11.0]).view(-1, 1)
    for rank, s in enumerate(shards):
        gathered, offset = s["uneven"]
        torch.testing.assert_close(gathered, expected)
        assert int(offset) == (0 if rank == 0 else 3)
