"""RotNet (hfssl/contrastive/rotation.py): the four rotations, their labels, and the loss against a naive version."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import ResNetConfig, ResNetModel

from hfssl.contrastive.augment import views_for_method
from hfssl.contrastive.encoder import ImageEncoder
from hfssl.contrastive.methods import build_method
from hfssl.contrastive.rotation import RotNet, rotate_four_ways


def tiny_encoder():
    torch.manual_seed(0)
    return ImageEncoder(ResNetModel(ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1],
                                                 layer_type="basic")))


def test_rotations_are_exact_quarter_turns_with_aligned_labels():
    images = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)
    rotated, labels = rotate_four_ways(images)
    assert rotated.shape == (8, 3, 4, 4) and labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    for row in range(8):
        k, i = divmod(row, 2)
        for c in range(3):  # numpy's rot90 on (H, W): counter-clockwise quarter turns
            np.testing.assert_array_equal(rotated[row, c].numpy(), np.rot90(images[i, c].numpy(), k))
    # a quarter turn moves the top-left pixel to the bottom-left, and four of them give the image back
    assert rotated[2, 0, -1, 0] == images[0, 0, 0, 0]
    torch.testing.assert_close(torch.rot90(rotated[6:8], 1, dims=(2, 3)), images)


def test_non_square_images_are_refused():
    with pytest.raises(ValueError, match="square"):
        rotate_four_ways(torch.zeros(2, 3, 4, 6))


def naive_rotnet_loss(model: RotNet, images: torch.Tensor) -> torch.Tensor:
    """The paper's eq. 1-2 written out: for every image and every rotation y, -log softmax(F(rot(X, y)))_y, averaged."""
    total, count = 0.0, 0
    for x in images:
        for y in range(4):
            rotated = torch.from_numpy(np.ascontiguousarray(np.rot90(x.numpy(), y, axes=(1, 2))))
            feats = model.encoder(rotated.unsqueeze(0))
            log_probs = torch.log_softmax(model.classifier(feats)[0], dim=0)
            total = total - log_probs[y]
            count += 1
    return total / count


@pytest.mark.parametrize("hidden_dim", [None, 16], ids=["linear", "mlp"])
def test_loss_equals_naive_implementation(hidden_dim):
    model = RotNet(tiny_encoder(), hidden_dim=hidden_dim).eval()  # eval: BatchNorm must not see the batch
    images = torch.rand(3, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(model(images), naive_rotnet_loss(model, images), rtol=1e-4, atol=1e-5)


def test_two_views_are_both_rotated():
    model = RotNet(tiny_encoder()).eval()
    v1, v2 = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        both = model(v1, v2)
        separate = (model(v1) + model(v2)) / 2  # equal sizes: the mean over 16 is the mean of the two means of 8
    torch.testing.assert_close(both, separate, rtol=1e-4, atol=1e-5)


def test_build_method_and_single_view_pipeline():
    model = build_method("rotnet", tiny_encoder(), hidden_dim=None, out_dim=128)
    assert isinstance(model, RotNet) and model.classifier.out_features == 4  # out_dim does not apply
    view, second = views_for_method("rotnet", 16, crop_min_scale=0.5, hflip_prob=0.0)
    assert second is None and view.jitter_prob == 0 and view.blur_prob == 0 and view.crop_scale == (0.5, 1.0)


def test_training_learns_to_tell_rotations_apart():
    torch.manual_seed(0)
    model = RotNet(tiny_encoder())
    # an "up" arrow-like pattern with a bar on top: each rotation puts the bar on a different side
    images = torch.rand(16, 3, 16, 16) * 0.2
    images[:, :, :3, :] = 1.0
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss = model(images)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[0] > 1.2 and losses[-1] < 0.5 * losses[0]
    model.eval()
    with torch.no_grad():
        logits, labels = model.logits_and_labels(images)
    assert (logits.argmax(1) == labels).float().mean() > 0.9
    assert F.cross_entropy(logits, labels) < 0.7
