"""Noise injection on the mask part of a training input (the target stays clean).

For a clean mask part ``m = contrast_clean - dsa_target`` (-ln domain) the injected input is::

    counts ~ Poisson(N0 * exp(-m)),  N0 ~ U(photons_range)  (per sample; 1000 * U(50, 125) published)
    m_noisy = -ln(max(counts, 1) / N0)
    m_noisy = GaussianBlur(m_noisy, sigma ~ U(blur_sigma_range))   (correlates the noise)
    input   = m_noisy + dsa_target

The Gaussian blur is applied only to the noise-carrying mask part; the target is never touched.
"""

from __future__ import annotations

import torch
from kornia.filters import gaussian_blur2d


def _uniform(n: int, lo: float, hi: float, g: torch.Generator, device: torch.device) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g, device=device)


def poisson_log_noise(
    mask_part: torch.Tensor, photons: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """Poisson-sample ``photons * exp(-mask_part)`` and return it in the -ln domain.

    Parameters
    ----------
    mask_part
        ``(B, C, H, W)`` line integrals (-ln domain).
    photons
        ``(B,)`` incident photon counts per pixel N0.
    generator
        Random source (same device as ``mask_part``).
    """
    n0 = photons.view(-1, 1, 1, 1).to(mask_part)
    rate = n0 * torch.exp(-mask_part.float())
    counts = torch.poisson(rate, generator=generator)
    return -torch.log(counts.clamp_min(1.0) / n0)


def blur_per_sample(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Gaussian blur with one isotropic ``sigma`` per batch element (kernel 2*ceil(3*max sigma)+1)."""
    k = 2 * int(torch.ceil(3 * sigma.max()).item()) + 1
    k = max(k, 3)
    s = sigma.view(-1, 1).expand(-1, 2).to(x)
    return gaussian_blur2d(x, (k, k), s, border_type="reflect")


def inject_noise(
    mask_part: torch.Tensor,
    target: torch.Tensor,
    generator: torch.Generator,
    photons_range: tuple[float, float] = (50_000.0, 125_000.0),
    blur_sigma_range: tuple[float, float] = (0.3, 1.0),
    blur: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Noisy network input from a clean mask part and the (unchanged) target.

    Returns
    -------
    input, target
        ``input = blur(noisy(mask_part)) + target``; ``target`` is returned as is.
    """
    b = mask_part.shape[0]
    dev = mask_part.device
    photons = _uniform(b, *photons_range, generator, dev)
    noisy = poisson_log_noise(mask_part, photons, generator)
    if blur:
        sigma = _uniform(b, *blur_sigma_range, generator, dev)
        noisy = blur_per_sample(noisy, sigma)
    return noisy + target, target
