"""Heads, the EMA target and its momentum schedule, and every method's forward/backward on a tiny ResNet."""

import math

import pytest
import torch
from transformers import AutoModel, ResNetConfig, ResNetModel

from hfssl.contrastive.encoder import ImageEncoder, build_backbone, preset_config
from hfssl.contrastive.heads import DINOHead, MLPHead
from hfssl.contrastive.lars import LARS, param_groups
from hfssl.contrastive.methods import (DINO, METHODS, MomentumMethod, build_method, cosine_momentum, ema_update,
                                       linear_warmup)


def tiny_encoder():
    torch.manual_seed(0)
    return ImageEncoder(ResNetModel(ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1],
                                                 layer_type="basic")))


def test_cosine_momentum_schedule():
    assert cosine_momentum(0, 100, 0.99) == pytest.approx(0.99)
    assert cosine_momentum(50, 100, 0.99) == pytest.approx(0.995)
    assert cosine_momentum(100, 100, 0.99) == pytest.approx(1.0)
    values = [cosine_momentum(s, 100, 0.9) for s in range(101)]
    assert all(a <= b for a, b in zip(values, values[1:]))


def test_ema_update_formula_and_buffers():
    online, target = torch.nn.BatchNorm1d(3), torch.nn.BatchNorm1d(3)
    with torch.no_grad():
        online.weight.fill_(2.0)
        target.weight.fill_(1.0)
        online.running_mean.fill_(5.0)
    ema_update(target, online, 0.9)
    torch.testing.assert_close(target.weight, torch.full((3,), 0.9 * 1.0 + 0.1 * 2.0))
    torch.testing.assert_close(target.running_mean, torch.full((3,), 5.0))


def test_mlp_head_layout():
    head = MLPHead(8, 32, 4, num_layers=3, last_bn=True)
    assert head(torch.randn(5, 8)).shape == (5, 4)
    assert isinstance(head[-1], torch.nn.BatchNorm1d) and not head[-1].affine
    assert sum(isinstance(m, torch.nn.Linear) for m in head) == 3


@pytest.mark.parametrize("method", METHODS)
def test_every_method_trains_a_step(method):
    model = build_method(method, tiny_encoder(), hidden_dim=32, out_dim=16)
    x1, x2 = torch.rand(6, 3, 16, 16), torch.rand(6, 3, 16, 16)
    loss = model(x1, x2)
    assert loss.ndim == 0 and math.isfinite(loss.item())
    loss.backward()
    grads = [p.grad for p in model.encoder.parameters()]
    assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)
    if isinstance(model, MomentumMethod):
        assert all(p.grad is None for p in model.target_encoder.parameters())


@pytest.mark.parametrize("method", ["simclr", "mocov3"])
def test_projector_output_is_batch_normalized(method):
    """SimCLR's released code (and MoCo v3, which follows it) ends the projector with BatchNorm: every output
    dimension has mean 0 and variance 1 over the batch in training mode."""
    model = build_method(method, tiny_encoder(), hidden_dim=32, out_dim=16).train()
    z = model.projector(model.encoder(torch.rand(12, 3, 16, 16)))
    torch.testing.assert_close(z.mean(0), torch.zeros(16), atol=1e-5, rtol=0)
    torch.testing.assert_close(z.var(0, unbiased=False), torch.ones(16), atol=1e-3, rtol=0)


@pytest.mark.parametrize("method", ["simclr", "byol", "mocov3", "vicreg", "barlowtwins"])
def test_batch_norm_sees_each_view_alone(method):
    """Each view is its own forward pass: in training mode a view's embedding must not depend on the other view's
    batch statistics (the released code of these methods; see the module docstring of methods.py)."""
    model = build_method(method, tiny_encoder(), hidden_dim=32, out_dim=16).train()
    seen = []
    model.projector.register_forward_hook(lambda module, args, out: seen.append(out.detach()))
    x1 = torch.rand(6, 3, 16, 16)
    model(x1, torch.rand(6, 3, 16, 16))
    model(x1, torch.rand(6, 3, 16, 16) * 5)
    assert seen[0].shape[0] == 6
    torch.testing.assert_close(seen[0], seen[2])
    assert not torch.allclose(seen[1], seen[3])


def test_target_follows_online_network_by_ema():
    model = build_method("byol", tiny_encoder(), hidden_dim=16, out_dim=8)
    with torch.no_grad():
        for p in model.encoder.parameters():
            p.add_(1.0)
    before = [p.clone() for p in model.target_encoder.parameters()]
    model.update_target(0.75)
    for b, t, o in zip(before, model.target_encoder.parameters(), model.encoder.parameters()):
        torch.testing.assert_close(t, 0.75 * b + 0.25 * o)


def test_presets_build_and_encode():
    enc = ImageEncoder(build_backbone("resnet-18", 32))
    assert enc(torch.rand(2, 3, 32, 32)).shape == (2, 512)
    config = preset_config("vit-tiny", 32)
    assert config.patch_size == 4 and config.image_size == 32
    config.num_hidden_layers = 2  # 2 layers are enough to check the wiring
    vit = ImageEncoder(AutoModel.from_config(config))
    assert vit(torch.rand(2, 3, 32, 32)).shape == (2, 192)
    # a pretrained ViT used at another resolution interpolates its position embeddings
    assert vit(torch.rand(2, 3, 48, 48)).shape == (2, 192)


def test_lars_step_matches_formula():
    w = torch.nn.Parameter(torch.tensor([[3.0, 4.0]]))  # a weight matrix: decayed and adapted
    b = torch.nn.Parameter(torch.tensor([1.0]))  # a bias: neither
    w.grad, b.grad = torch.tensor([[0.6, 0.8]]), torch.tensor([0.5])
    module = torch.nn.Module()
    module.w, module.b = w, b
    opt = LARS(param_groups(module, weight_decay=0.1), lr=0.5, momentum=0.9, eta=0.01)
    opt.step()
    g = torch.tensor([[0.6, 0.8]]) + 0.1 * torch.tensor([[3.0, 4.0]])
    trust = 0.01 * 5.0 / g.norm()
    torch.testing.assert_close(w.detach(), torch.tensor([[3.0, 4.0]]) - 0.5 * trust * g)
    torch.testing.assert_close(b.detach(), torch.tensor([1.0 - 0.5 * 0.5]))  # no decay, no trust ratio on 1-d


def test_param_groups_give_the_predictor_its_own_learning_rate():
    model = build_method("byol", tiny_encoder(), hidden_dim=16, out_dim=8)
    groups = param_groups(model, 0.1, {"predictor": (0.01, 10.0)})
    predictor = {id(p) for p in model.predictor.parameters()}
    grouped = [id(p) for group in groups for p in group["params"]]
    assert sorted(grouped) == sorted(id(p) for p in model.parameters() if p.requires_grad)  # each once, no target
    optimizer = torch.optim.AdamW(groups, lr=0.01)
    for group in optimizer.param_groups:
        in_predictor = {id(p) in predictor for p in group["params"]}
        assert len(in_predictor) == 1  # a group is all predictor or all the rest
        assert group["lr"] == pytest.approx(0.1 if in_predictor.pop() else 0.01)
        assert group["weight_decay"] == (0.0 if group["params"][0].ndim <= 1 else 0.1)


def test_dino_head_outputs_cosine_scores():
    head = DINOHead(8, 32, 10, num_layers=3, bottleneck_dim=6)
    with torch.no_grad():
        head.last_layer.weight.mul_(7.0)  # the row norms do not matter: the gain is fixed to 1
    out = head(torch.randn(5, 8))
    assert out.shape == (5, 10) and out.abs().max() <= 1 + 1e-6
    assert sum(isinstance(m, torch.nn.Linear) for m in head.mlp) == 3


def test_dino_teacher_is_ema_and_multi_crop_trains():
    model = build_method("dino", tiny_encoder(), hidden_dim=16, out_dim=32)
    assert isinstance(model, DINO)
    x1, x2 = torch.rand(4, 3, 16, 16), torch.rand(4, 3, 16, 16)
    local = [torch.rand(4, 3, 8, 8) for _ in range(3)]
    model(x1, x2, *local).backward()
    assert all(p.grad is None for p in [*model.teacher_encoder.parameters(), *model.teacher_head.parameters()])
    assert any(p.grad.abs().sum() > 0 for p in model.head.parameters())
    with torch.no_grad():
        for p in model.head.parameters():
            p.add_(1.0)
    before = [p.clone() for p in model.teacher_head.parameters()]
    model.update_target(0.75)
    for b, t, o in zip(before, model.teacher_head.parameters(), model.head.parameters()):
        torch.testing.assert_close(t, 0.75 * b + 0.25 * o)
    model.set_teacher_temperature(0.055)
    assert "teacher_temperature" in model.state_dict() and float(model.teacher_temperature) == pytest.approx(0.055)


def test_dino_head_batch_norm_is_optional_and_copied_to_the_teacher():
    plain = build_method("dino", tiny_encoder(), hidden_dim=16, out_dim=32)
    with_bn = build_method("dino", tiny_encoder(), hidden_dim=16, out_dim=32, head_batch_norm=True)
    assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in plain.head.modules())
    for head in (with_bn.head, with_bn.teacher_head):  # one BatchNorm per hidden layer (3 layers: 2 hidden)
        assert sum(isinstance(m, torch.nn.BatchNorm1d) for m in head.modules()) == 2


def test_dino_drop_last_layer_grad_keeps_the_prototypes_fixed():
    model = build_method("dino", tiny_encoder(), hidden_dim=16, out_dim=32)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.1, weight_decay=0.1)
    prototypes, first = model.head.last_layer.weight.clone(), model.head.mlp[0].weight.clone()
    model(torch.rand(4, 3, 16, 16), torch.rand(4, 3, 16, 16)).backward()
    model.drop_last_layer_grad()
    optimizer.step()
    torch.testing.assert_close(model.head.last_layer.weight, prototypes, rtol=0, atol=0)  # not even decayed
    assert not torch.equal(model.head.mlp[0].weight, first)


def test_linear_warmup():
    assert linear_warmup(0, 10, 0.04, 0.07) == pytest.approx(0.04)
    assert linear_warmup(5, 10, 0.04, 0.07) == pytest.approx(0.055)
    assert linear_warmup(10, 10, 0.04, 0.07) == linear_warmup(99, 10, 0.04, 0.07) == pytest.approx(0.07)
    assert linear_warmup(0, 0, 0.04, 0.07) == pytest.approx(0.07)
