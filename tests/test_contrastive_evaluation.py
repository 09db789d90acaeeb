"""kNN and linear-probe evaluation on features whose answer is known."""

import torch

from hfssl.contrastive.evaluation import knn_accuracy, linear_probe_accuracy


def _clusters(n_per_class=30, noise=0.1, seed=0):
    g = torch.Generator().manual_seed(seed)
    centers = torch.eye(4, 16) * 5
    labels = torch.arange(4).repeat_interleave(n_per_class)
    return centers[labels] + noise * torch.randn(len(labels), 16, generator=g), labels


def naive_weighted_knn(train, train_y, query, k, t):
    """Wu et al. 2018: cosine neighbours vote with weight exp(sim / t); loop over queries."""
    correct = 0
    for q, y in zip(*query):
        sims = [(float(torch.nn.functional.cosine_similarity(q, x, dim=0)), int(l)) for x, l in zip(train, train_y)]
        sims.sort(key=lambda s: -s[0])
        votes = {}
        for sim, label in sims[:k]:
            votes[label] = votes.get(label, 0.0) + float(torch.exp(torch.tensor(sim / t)))
        correct += max(votes, key=votes.get) == int(y)
    return correct / len(query[1])


def test_knn_separable_clusters_are_perfect_and_random_labels_are_not():
    x, y = _clusters()
    q, qy = _clusters(seed=1)
    assert knn_accuracy(x, y, q, qy) == 1.0
    shuffled = y[torch.randperm(len(y), generator=torch.Generator().manual_seed(0))]
    assert knn_accuracy(x, shuffled, q, qy) < 0.6


def test_knn_matches_naive_vote_on_noisy_data():
    x, y = _clusters(noise=3.0)
    q, qy = _clusters(noise=3.0, seed=2)
    assert knn_accuracy(x, y, q, qy, k=7, temperature=0.1, chunk=13) == naive_weighted_knn(x, y, (q, qy), 7, 0.1)


def test_linear_probe():
    x, y = _clusters(noise=1.0)
    q, qy = _clusters(noise=1.0, seed=3)
    assert linear_probe_accuracy(x, y, q, qy) > 0.95
    assert linear_probe_accuracy(torch.randn(120, 16), y, torch.randn(120, 16), qy) < 0.6
