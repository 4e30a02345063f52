"""3D WGAN-GP networks (after Subramaniam et al. 2022): an up-sampling convolutional generator and a
spectrally normalised convolutional critic.

The generator up-samples (nearest, 2x) then convolves (3x3x3) instead of a transposed convolution:
no checkerboard artefacts, and the backward pass of ``conv_transpose3d`` is very slow on CPUs.

The generator maps ``z ~ N(0, I)`` to vessel-probability logits of ``shape``; the critic scores a
volume in [-1, 1] (``2 p - 1`` of a probability or label). Spectral normalisation (Miyato et al.
2018) bounds each critic layer's Lipschitz constant; the gradient penalty
(:func:`vessel_models.gan.losses.gradient_penalty`) enforces it on the whole critic.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

__all__ = ["WGANCritic", "WGANGenerator", "levels_for"]


def levels_for(shape: tuple[int, int, int], smallest: int = 4) -> int:
    """Number of 2x resolution steps from the smallest grid (each side >= ``smallest``) to ``shape``.

    Raises
    ------
    ValueError
        A side not divisible by ``2 ** levels`` or smaller than ``2 * smallest``.
    """
    levels = 0
    while min(shape) // 2 ** (levels + 1) >= smallest:
        levels += 1
    if levels == 0 or any(s % 2**levels for s in shape):
        raise ValueError(f"shape {tuple(shape)}: every side must be >= {2 * smallest} and divisible by 2^levels")
    return levels


def _channels(base: int, level: int, levels: int, cap: int) -> int:
    """Channels at ``level`` (0 = coarsest): ``base`` at the finest level, doubling towards the coarsest."""
    return min(base * 2 ** (levels - level), cap)


class WGANGenerator(nn.Module):
    """``z (B, latent_dim)`` -> logits ``(B, 1, *shape)``.

    Parameters
    ----------
    shape : tuple of int
        Output ``(D, H, W)``, each side divisible by ``2 ** levels``.
    latent_dim : int
    base_channels : int
        Channels at the finest level (doubling per coarser level, up to ``max_channels``).
    max_channels : int
    """

    def __init__(self, shape: tuple[int, int, int], latent_dim: int = 128, base_channels: int = 16,
                 max_channels: int = 256):
        super().__init__()
        self.shape, self.latent_dim = tuple(int(s) for s in shape), int(latent_dim)
        levels = levels_for(self.shape)
        self.start = tuple(s // 2**levels for s in self.shape)
        c0 = _channels(base_channels, 0, levels, max_channels)
        self.project = nn.Linear(latent_dim, c0 * self.start[0] * self.start[1] * self.start[2])
        blocks: list[nn.Module] = [nn.BatchNorm3d(c0), nn.ReLU(inplace=True)]
        for level in range(levels):
            cin = _channels(base_channels, level, levels, max_channels)
            cout = _channels(base_channels, level + 1, levels, max_channels)
            blocks += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv3d(cin, cout, 3, padding=1, bias=False),
                       nn.BatchNorm3d(cout), nn.ReLU(inplace=True)]
        blocks.append(nn.Conv3d(_channels(base_channels, levels, levels, max_channels), 1, 3, padding=1))
        self.body = nn.Sequential(*blocks)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.project(z).view(z.shape[0], -1, *self.start)
        return self.body(x)


class WGANCritic(nn.Module):
    """Volume ``(B, 1, *shape)`` in [-1, 1] -> score ``(B,)``; every conv and the head spectrally normalised.

    No batch normalisation: the gradient penalty is per sample.
    """

    def __init__(self, shape: tuple[int, int, int], base_channels: int = 16, max_channels: int = 256):
        super().__init__()
        levels = levels_for(tuple(shape))
        layers: list[nn.Module] = [spectral_norm(nn.Conv3d(1, base_channels, 3, padding=1)), nn.LeakyReLU(0.2)]
        for level in range(levels, 0, -1):
            cin = _channels(base_channels, level, levels, max_channels)
            cout = _channels(base_channels, level - 1, levels, max_channels)
            layers += [spectral_norm(nn.Conv3d(cin, cout, 4, stride=2, padding=1)), nn.LeakyReLU(0.2)]
        self.body = nn.Sequential(*layers)
        n_last = _channels(base_channels, 0, levels, max_channels) * int(
            torch.tensor([s // 2**levels for s in shape]).prod())
        self.head = spectral_norm(nn.Linear(n_last, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x).flatten(1)).squeeze(1)
