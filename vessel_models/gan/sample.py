"""Vessel label volumes from a generator: seeded, with truncation / temperature.

Truncation ``psi``: the StyleGAN generator moves ``w`` towards its running mean, the WGAN generator
scales its latent ``z`` (a temperature); ``psi = 1`` samples the trained distribution, smaller values
trade variety for typical samples.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from vessel_models.gan.stylegan import StyleGenerator
from vessel_models.tree import VesselInputError

__all__ = ["generate_probabilities", "sample_labels"]


@torch.no_grad()
def generate_probabilities(generator: nn.Module, n: int, seed: int, truncation: float = 1.0) -> np.ndarray:
    """``(n, D, H, W)`` float32 vessel probabilities; the same seed gives the same volumes.

    Sample ``t`` draws its latent and noise from ``torch.Generator`` seeded with ``(seed, t)``, so a
    sample does not depend on ``n`` or ``batch_size``.
    """
    if not 0 < truncation <= 2:
        raise VesselInputError(f"truncation must be in (0, 2], got {truncation}")
    device = next(generator.parameters()).device
    was_training = generator.training
    generator.eval()
    out = []
    for t in range(int(n)):
        gen = torch.Generator(device=device)
        gen.manual_seed(int(np.random.SeedSequence([int(seed), t]).generate_state(1, dtype=np.uint64)[0] >> 1))
        z = torch.randn(1, generator.latent_dim, generator=gen, device=device)
        if isinstance(generator, StyleGenerator):
            logits = generator(z, truncation=truncation, generator=gen)
        else:
            logits = generator(z * truncation)
        out.append(torch.sigmoid(logits.float())[0, 0].cpu().numpy())
    generator.train(was_training)
    return np.stack(out).astype(np.float32) if out else np.zeros((0, *generator.shape), np.float32)


def sample_labels(generator: nn.Module, n: int, seed: int, truncation: float = 1.0,
                  threshold: float = 0.5) -> np.ndarray:
    """``(n, D, H, W)`` bool label volumes: probability >= ``threshold``."""
    if not 0 < threshold < 1:
        raise VesselInputError(f"threshold must be in (0, 1), got {threshold}")
    return generate_probabilities(generator, n, seed, truncation) >= threshold
