"""Frozen-feature evaluation of an image encoder: weighted kNN and a linear probe.

kNN follows Wu et al. "Unsupervised Feature Learning via Non-Parametric Instance Discrimination" (CVPR 2018),
the protocol DINO and solo-learn report: cosine similarity to the training features, the top ``k`` neighbours
vote with weight ``exp(sim / T)``. The linear probe is multinomial logistic regression on standardized frozen
features (scikit-learn's L-BFGS), which is what "linear evaluation" measures without a long SGD schedule.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from .augment import normalize, to_float


@torch.no_grad()
def extract_features(encoder: torch.nn.Module, loader: DataLoader, device: torch.device,
                     max_samples: int | None = None, autocast=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Features (float32, CPU) and labels of every image ``loader`` yields, with ``encoder`` in eval mode."""
    was_training = encoder.training
    encoder.eval()
    feats, labels, seen = [], [], 0
    for batch in loader:
        pixels = normalize(to_float(batch["pixel_values"].to(device)))
        if autocast is not None:
            with autocast():
                out = encoder(pixels)
        else:
            out = encoder(pixels)
        feats.append(out.float().cpu())
        labels.append(batch["labels"])
        seen += pixels.shape[0]
        if max_samples and seen >= max_samples:
            break
    encoder.train(was_training)
    feats_t, labels_t = torch.cat(feats), torch.cat(labels)
    if max_samples:
        feats_t, labels_t = feats_t[:max_samples], labels_t[:max_samples]
    return feats_t, labels_t


def knn_accuracy(train_feats: torch.Tensor, train_labels: torch.Tensor, query_feats: torch.Tensor,
                 query_labels: torch.Tensor, k: int = 20, temperature: float = 0.07, chunk: int = 1024) -> float:
    """Weighted kNN accuracy of ``query`` against the ``train`` memory bank (cosine similarity)."""
    train = F.normalize(train_feats.float(), dim=1)
    num_classes = int(max(train_labels.max(), query_labels.max())) + 1
    k = min(k, train.shape[0])
    correct = 0
    for start in range(0, query_feats.shape[0], chunk):
        query = F.normalize(query_feats[start:start + chunk].float(), dim=1)
        sims, idx = (query @ train.T).topk(k, dim=1)
        votes = torch.zeros(query.shape[0], num_classes)
        votes.scatter_add_(1, train_labels[idx], torch.exp(sims / temperature))
        correct += int((votes.argmax(1) == query_labels[start:start + chunk]).sum())
    return correct / max(query_feats.shape[0], 1)


def linear_probe_accuracy(train_feats: torch.Tensor, train_labels: torch.Tensor, val_feats: torch.Tensor,
                          val_labels: torch.Tensor, max_iter: int = 1000, seed: int = 0) -> float:
    """Accuracy of logistic regression trained on frozen ``train`` features, measured on ``val``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(train_feats.numpy())
    clf = LogisticRegression(max_iter=max_iter, random_state=seed)
    clf.fit(scaler.transform(train_feats.numpy()), train_labels.numpy())
    pred = clf.predict(scaler.transform(val_feats.numpy()))
    return float(np.mean(pred == val_labels.numpy()))


def evaluate_frozen(encoder: torch.nn.Module, loaders: dict[str, DataLoader], device: torch.device, *,
                    max_samples: int | None, k: int, temperature: float, linear_probe: bool, seed: int = 0,
                    autocast=None) -> dict[str, float]:
    """kNN (and linear-probe) accuracy: ``loaders["train"]`` is the memory bank, ``loaders["validation"]`` the queries."""
    bank = extract_features(encoder, loaders["train"], device, max_samples, autocast)
    query = extract_features(encoder, loaders["validation"], device, max_samples, autocast)
    results = {"knn_accuracy": knn_accuracy(*bank, *query, k=k, temperature=temperature)}
    if linear_probe:
        results["linear_probe_accuracy"] = linear_probe_accuracy(*bank, *query, seed=seed)
    return results
