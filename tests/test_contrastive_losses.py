"""Each loss against a naive, loop-based implementation of its paper's pseudocode."""

import math

import pytest
import torch

from hfssl.contrastive.barlow_twins_loss import BarlowTwinsLoss
from hfssl.contrastive.byol_loss import BYOLLoss
from hfssl.contrastive.dino_loss import DINOLoss
from hfssl.contrastive.moco_v3_loss import MoCoV3Loss
from hfssl.contrastive.nt_xent import NTXentLoss
from hfssl.contrastive.vicreg_loss import VICRegLoss


def _cos(a, b):
    return float(a @ b) / (float(a.norm()) * float(b.norm()))


def naive_nt_xent(z1, z2, t):
    """SimCLR Algorithm 1: z_{2k-1}, z_{2k} are the two views of image k; L = 1/2N sum_k l(2k-1,2k) + l(2k,2k-1)."""
    n = z1.shape[0]
    z = [None] * (2 * n)
    for k in range(n):
        z[2 * k], z[2 * k + 1] = z1[k], z2[k]
    s = [[_cos(z[i], z[j]) for j in range(2 * n)] for i in range(2 * n)]

    def l(i, j):
        denom = sum(math.exp(s[i][k] / t) for k in range(2 * n) if k != i)
        return -math.log(math.exp(s[i][j] / t) / denom)

    return sum(l(2 * k, 2 * k + 1) + l(2 * k + 1, 2 * k) for k in range(n)) / (2 * n)


def naive_byol(p1, p2, t1, t2):
    """BYOL eq. 2-3: per image ||p/|p| - z'/|z'|||^2 for both view orders, averaged over images."""
    total = 0.0
    for i in range(p1.shape[0]):
        for p, t in ((p1[i], t2[i]), (p2[i], t1[i])):
            total += float(((p / p.norm() - t / t.norm()) ** 2).sum())
    return total / p1.shape[0]


def naive_moco_v3(q1, q2, k1, k2, t):
    """MoCo v3 Algorithm 1: ctr(q, k) = CE(q k^T / t, arange(N)) * 2t on normalized q, k; ctr(q1,k2)+ctr(q2,k1)."""

    def ctr(q, k):
        n = q.shape[0]
        total = 0.0
        for i in range(n):
            logits = [_cos(q[i], k[j]) / t for j in range(n)]
            total += -logits[i] + math.log(sum(math.exp(x) for x in logits))
        return total / n * 2 * t

    return ctr(q1, k2) + ctr(q2, k1)


def naive_vicreg(z1, z2, lam=25.0, mu=25.0, nu=1.0, eps=1e-4):
    """VICReg eqs. 1-6 written per dimension and per pair of dimensions."""
    n, d = z1.shape
    inv = sum(float((z1[b, j] - z2[b, j]) ** 2) for b in range(n) for j in range(d)) / (n * d)

    def stats(z):
        mean = [sum(float(z[b, j]) for b in range(n)) / n for j in range(d)]
        cov = [[sum((float(z[b, i]) - mean[i]) * (float(z[b, j]) - mean[j]) for b in range(n)) / (n - 1)
                for j in range(d)] for i in range(d)]
        v = sum(max(0.0, 1 - math.sqrt(cov[j][j] + eps)) for j in range(d)) / d
        c = sum(cov[i][j] ** 2 for i in range(d) for j in range(d) if i != j) / d
        return v, c

    v1, c1 = stats(z1)
    v2, c2 = stats(z2)
    return lam * inv + mu * (v1 + v2) / 2 + nu * (c1 + c2)


def naive_dino(students, teachers, center, tps, tpt, m=0.9):
    """DINO Algorithm 1 with multi-crop: H(t, s) = -sum softmax((t - C)/tpt) log softmax(s/tps), per image, averaged
    over images and over the (teacher view i, student view v != i) pairs; then C <- m C + (1 - m) mean(teachers)."""
    k = len(center)

    def softmax(xs):
        top = max(xs)
        e = [math.exp(x - top) for x in xs]
        return [x / sum(e) for x in e]

    def h(t, s):
        q = softmax([(float(t[j]) - center[j]) / tpt for j in range(k)])
        p = softmax([float(s[j]) / tps for j in range(k)])
        return -sum(q[j] * math.log(p[j]) for j in range(k))

    pairs = [(i, v) for i in range(len(teachers)) for v in range(len(students)) if v != i]
    n = teachers[0].shape[0]
    loss = sum(sum(h(teachers[i][b], students[v][b]) for b in range(n)) / n for i, v in pairs) / len(pairs)
    rows = [t[b] for t in teachers for b in range(n)]
    new_center = [m * center[j] + (1 - m) * sum(float(r[j]) for r in rows) / len(rows) for j in range(k)]
    return loss, new_center


def naive_barlow(z1, z2, lam=5e-3):
    """Barlow Twins eq. 1-2 on batch-standardized embeddings (BatchNorm without affine, biased variance)."""
    n, d = z1.shape

    def standardize(z):
        cols = []
        for j in range(d):
            col = [float(z[b, j]) for b in range(n)]
            m = sum(col) / n
            var = sum((x - m) ** 2 for x in col) / n
            cols.append([(x - m) / math.sqrt(var + 1e-5) for x in col])
        return cols

    a, b = standardize(z1), standardize(z2)
    loss = 0.0
    for i in range(d):
        for j in range(d):
            c = sum(a[i][k] * b[j][k] for k in range(n)) / n
            loss += (1 - c) ** 2 if i == j else lam * c ** 2
    return loss


@pytest.fixture
def pair():
    g = torch.Generator().manual_seed(0)
    return torch.randn(6, 5, generator=g, dtype=torch.float64), torch.randn(6, 5, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("t", [0.1, 0.5])
def test_nt_xent_matches_simclr_algorithm(pair, t):
    z1, z2 = pair
    assert NTXentLoss(t)(z1, z2).item() == pytest.approx(naive_nt_xent(z1, z2, t), rel=1e-5)


def test_nt_xent_is_low_for_matching_views_and_high_for_swapped(pair):
    z1, _ = pair
    loss = NTXentLoss(0.1)
    assert loss(z1, z1).item() < loss(z1, z1.roll(1, dims=0)).item()


def test_byol_matches_paper(pair):
    z1, z2 = pair
    t1, t2 = z1.flip(0), z2.flip(0)
    assert BYOLLoss()(z1, z2, t1, t2).item() == pytest.approx(naive_byol(z1, z2, t1, t2), rel=1e-6)


def test_byol_target_gets_no_gradient(pair):
    z1, z2 = pair
    t1, t2 = z1.clone().requires_grad_(), z2.clone().requires_grad_()
    p1 = z1.clone().requires_grad_()
    BYOLLoss()(p1, z2, t1, t2).backward()
    assert p1.grad is not None and t1.grad is None and t2.grad is None


def test_moco_v3_matches_algorithm(pair):
    z1, z2 = pair
    k1, k2 = z1 + 0.1, z2 - 0.2
    assert MoCoV3Loss(0.2)(z1, z2, k1, k2).item() == pytest.approx(naive_moco_v3(z1, z2, k1, k2, 0.2), rel=1e-5)


def test_vicreg_matches_paper(pair):
    z1, z2 = pair
    z1 = z1 * 0.3  # some dimensions below the variance target, so the hinge is active
    assert VICRegLoss()(z1, z2).item() == pytest.approx(naive_vicreg(z1, z2), rel=1e-6)


def test_barlow_twins_matches_paper(pair):
    z1, z2 = pair
    assert BarlowTwinsLoss()(z1, z2).item() == pytest.approx(naive_barlow(z1, z2), rel=1e-5)


def test_losses_reject_bad_temperatures():
    with pytest.raises(ValueError, match="temperature"):
        NTXentLoss(0.0)
    with pytest.raises(ValueError, match="temperature"):
        MoCoV3Loss(-1.0)


@pytest.mark.parametrize("num_local", [0, 2])
def test_dino_matches_algorithm_and_updates_center(num_local):
    g = torch.Generator().manual_seed(1)
    students = [torch.randn(4, 7, generator=g, dtype=torch.float64) for _ in range(2 + num_local)]
    teachers = [torch.randn(4, 7, generator=g, dtype=torch.float64) for _ in range(2)]
    loss = DINOLoss(7, student_temperature=0.1).double()
    start = torch.randn(1, 7, generator=g, dtype=torch.float64)
    loss.center.copy_(start)
    expected, center = naive_dino(students, teachers, start[0].tolist(), 0.1, 0.04)
    assert loss(students, teachers, 0.04).item() == pytest.approx(expected, rel=1e-6)
    assert loss.center[0].tolist() == pytest.approx(center, rel=1e-6)


def test_dino_center_tracks_teacher_mean_and_teacher_gets_no_gradient():
    g = torch.Generator().manual_seed(2)
    teachers = [torch.randn(8, 5, generator=g).requires_grad_() for _ in range(2)]
    students = [torch.randn(8, 5, generator=g).requires_grad_() for _ in range(2)]
    loss = DINOLoss(5, center_momentum=0.5)
    loss(students, teachers, 0.04).backward()
    assert all(s.grad is not None for s in students) and all(t.grad is None for t in teachers)
    for _ in range(40):  # the EMA converges to the batch mean of the teacher outputs
        loss(students, teachers, 0.04)
    torch.testing.assert_close(loss.center[0], torch.cat(teachers).mean(0).detach(), atol=1e-5, rtol=0)


def test_dino_loss_checks_its_inputs():
    with pytest.raises(ValueError, match="student_temperature"):
        DINOLoss(4, student_temperature=0.0)
    with pytest.raises(ValueError, match="teacher_temperature"):
        DINOLoss(4)([torch.randn(2, 4)] * 2, [torch.randn(2, 4)] * 2, 0.0)
    with pytest.raises(ValueError, match="at least two views"):
        DINOLoss(4)([torch.randn(2, 4)], [torch.randn(2, 4)], 0.04)
