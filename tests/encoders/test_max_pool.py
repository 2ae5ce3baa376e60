"""The image encoder's 2x2 max-pooling against torch's ``max_pool2d`` and the maths, to the bit."""

import pytest
import torch
import torch.nn.functional as F

from crossfuse.encoders.image import ImageEncoder
from crossfuse.encoders.max_pool import max_pool_2x2


def with_ties(shape, seed=0):
    """Values on a coarse grid, so that many windows hold equal maxima (the case an index must get right)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.round(torch.randn(shape, generator=generator) * 2) / 2


@pytest.mark.parametrize("shape", [(4, 3, 8, 8), (4, 3, 7, 7), (2, 5, 6, 9), (3, 2, 1, 1), (2, 2, 5, 2)])
def test_values_and_gradients_equal_torch_including_ties(shape):
    x = with_ties(shape)
    ours, theirs = x.clone().requires_grad_(), x.clone().requires_grad_()
    pooled, expected = max_pool_2x2(ours), F.max_pool2d(theirs, 2, ceil_mode=True)
    assert torch.equal(pooled, expected)
    upstream = torch.randn(expected.shape, generator=torch.Generator().manual_seed(1))
    pooled.backward(upstream)
    expected.backward(upstream)
    assert torch.equal(ours.grad, theirs.grad)
    with torch.no_grad():
        assert torch.equal(max_pool_2x2(x), expected)


def test_against_the_windows_by_hand():
    x = torch.tensor([[[[1.0, 3.0, 2.0], [3.0, 0.0, 5.0], [-1.0, -2.0, 7.0]]]], requires_grad=True)
    pooled = max_pool_2x2(x)
    # windows: {1, 3, 3, 0} -> 3 (the first 3, top right); {2, 5} -> 5; {-1, -2} -> -1; {7} -> 7
    assert pooled.tolist() == [[[[3.0, 5.0], [-1.0, 7.0]]]]
    pooled.backward(torch.tensor([[[[10.0, 20.0], [30.0, 40.0]]]]))
    assert x.grad.tolist() == [[[[0.0, 10.0, 0.0], [0.0, 0.0, 20.0], [30.0, 0.0, 40.0]]]]


@pytest.mark.parametrize("side", [(13, 11), (16, 16), (28, 28)])
def test_image_encoder_equals_the_torch_layers_it_replaces(side):
    """Pooling before the ReLU, with our pooling, is the network conv-ReLU-pool, forward and backward;
    16x16 images skip the (then one-element) average pooling."""
    torch.manual_seed(0)
    encoder = ImageEncoder(in_channels=1, output_dim=8)
    reference = torch.nn.Sequential(
        encoder.conv[0], torch.nn.ReLU(), torch.nn.MaxPool2d(2, ceil_mode=True),
        encoder.conv[3], torch.nn.ReLU(), torch.nn.MaxPool2d(2, ceil_mode=True),
        torch.nn.AdaptiveAvgPool2d(4),
    )  # fmt: skip
    x = torch.randn(5, 1, *side)
    ours, theirs = encoder.conv(x), reference(x)
    assert torch.equal(ours, theirs)
    ours.square().sum().backward()
    ours_grads = [p.grad.clone() for p in encoder.conv.parameters()]
    encoder.conv.zero_grad()
    theirs.square().sum().backward()
    for mine, expected in zip(ours_grads, (p.grad for p in encoder.conv.parameters()), strict=True):
        assert torch.equal(mine, expected)
