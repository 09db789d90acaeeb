import numpy as np
import pytest
import torch
from PIL import Image
from transformers import ConvNextImageProcessorPil, ViTImageProcessorPil

from hfssl.config import ConfigError
from hfssl.contrastive.augment import normalize, to_float
from hfssl.contrastive.encoder import IMAGE_MEAN, IMAGE_STD, make_image_processor, processor_geometry


def _our_pixels(processor, image: np.ndarray) -> torch.Tensor:
    """What image_finetune's collate feeds the model for an image already at the processor's size."""
    _, mean, std = processor_geometry(processor)
    return normalize(to_float(torch.from_numpy(image.transpose(2, 0, 1)).unsqueeze(0)), mean, std)


@pytest.mark.parametrize("processor", [
    ViTImageProcessorPil(size={"height": 16, "width": 16}),  # mean = std = 0.5, as google/vit-* ship
    make_image_processor(16),  # hfssl's own (ImageNet statistics)
    ViTImageProcessorPil(size={"height": 16, "width": 16}, do_normalize=False),
], ids=["vit-0.5", "hfssl", "no-normalize"])
def test_pixels_match_the_processor_itself(processor):
    image = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    expected = torch.as_tensor(np.asarray(processor(images=Image.fromarray(image))["pixel_values"]))
    side, _, _ = processor_geometry(processor)
    assert side == 16
    torch.testing.assert_close(_our_pixels(processor, image), expected.float(), atol=1e-5, rtol=1e-5)


def test_hfssl_processors_give_hfssl_statistics():
    side, mean, std = processor_geometry(make_image_processor(32))
    assert side == 32 and mean == pytest.approx(IMAGE_MEAN) and std == pytest.approx(IMAGE_STD)


def test_shortest_edge_processors_give_their_edge_and_own_statistics():
    processor = ConvNextImageProcessorPil(size={"shortest_edge": 224}, image_mean=[0.1, 0.2, 0.3], image_std=[0.4, 0.5, 0.6])
    side, mean, std = processor_geometry(processor)
    assert side == 224 and mean == pytest.approx((0.1, 0.2, 0.3)) and std == pytest.approx((0.4, 0.5, 0.6))


def test_dict_sizes_and_an_unusable_size_raise_a_clear_error():
    class Legacy:  # a processor object from older code: plain dicts
        size = {"shortest_edge": 48}
        image_mean, image_std, do_normalize = 0.5, 0.5, True
    assert processor_geometry(Legacy()) == (48, (0.5,) * 3, (0.5,) * 3)

    class NoSize:
        size = {"longest_edge": 100}
    with pytest.raises(ConfigError, match="input size"):
        processor_geometry(NoSize())
