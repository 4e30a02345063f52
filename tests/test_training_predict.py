"""Test-time augmentation (ddsa_sim.training.predict): exact equivariance, the group, and no change for a
network that is already equivariant."""

import pytest
import torch

from ddsa_sim.training.config import ModelConfig
from ddsa_sim.training.normalization import Normalization
from ddsa_sim.training.predict import network_dsa, symmetries
from ddsa_sim.training.unet import UNet

IDENTITY = Normalization(offset=0.0, scale=1.0)


def _unet() -> UNet:
    torch.manual_seed(0)
    model = UNet(ModelConfig(base_channels=4, max_channels=16, depth=2))
    with torch.no_grad():  # batch-norm statistics away from their defaults, so eval mode is not trivial
        model(torch.randn(4, 1, 32, 32))
    return model.eval()


@pytest.mark.parametrize("shape, n", [((32, 32), 8), ((24, 40), 4)])
def test_symmetries_are_the_group_of_the_image_and_each_inverse_undoes_its_transform(shape, n):
    x = torch.randn(1, 1, *shape, generator=torch.Generator().manual_seed(1))  # no symmetry of its own
    pairs = symmetries(*shape)
    assert len(pairs) == n
    images = [g(x) for g, _ in pairs]
    assert torch.equal(images[0], x)  # identity first
    assert all(im.shape == x.shape for im in images)
    assert len({tuple(im.flatten().tolist()) for im in images}) == n  # n distinct transforms
    for g, g_inv in pairs:
        assert torch.equal(g_inv(g(x)), x)


@pytest.mark.parametrize("shape", [(32, 32), (24, 40)])
def test_tta_output_is_exactly_equivariant_and_the_plain_network_is_not(shape):
    model = _unet()
    x = 3.0 + torch.randn(1, 1, *shape, generator=torch.Generator().manual_seed(2))
    tta = network_dsa(model, IDENTITY, x, tta=True)
    plain_gaps, tta_gaps = [], []
    for g, _ in symmetries(*shape)[1:]:
        plain_gaps.append(float((network_dsa(model, IDENTITY, g(x)) - g(network_dsa(model, IDENTITY, x))).abs().max()))
        tta_gaps.append(float((network_dsa(model, IDENTITY, g(x), tta=True) - g(tta)).abs().max()))
    scale = float(tta.abs().max())
    assert min(plain_gaps) > 1e-3 * scale  # a random U-Net is not equivariant: the test can fail
    assert max(tta_gaps) < 1e-5 * scale


def test_tta_of_an_equivariant_network_is_the_network():
    """A pixel-wise network commutes with every symmetry, so averaging over them changes nothing."""
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 1), torch.nn.Tanh(), torch.nn.Conv2d(3, 1, 1)).eval()
    norm = Normalization(offset=2.0, scale=0.5)
    x = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(3))
    plain = network_dsa(model, norm, x)
    assert float(plain.std()) > 0
    torch.testing.assert_close(network_dsa(model, norm, x, tta=True), plain, rtol=1e-5, atol=1e-6)
