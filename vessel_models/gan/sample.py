"""Vessel label volumes from a generator: seeded, with truncation / temperature.

Truncation ``psi``: the StyleGAN generator moves ``w`` towards its running mean, the WGAN generator
scales its latent ``z`` (a temperature); ``psi = 1`` samples the trained distribution, smaller values
trade variety for typical samples.

Sampling runs where the generator lives; :func:`sample_checkpoint` loads a checkpoint on the CPU, so a
sample is the same bits on every machine (a dataset worker regenerates it alone).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vessel_models.gan.config import check_sample_params
from vessel_models.gan.stylegan import StyleGenerator
from vessel_models.tree import VesselInputError

__all__ = ["generate_probabilities", "sample_checkpoint", "sample_labels"]


@torch.no_grad()
def generate_probabilities(generator: nn.Module, n: int, seed: int, truncation: float = 1.0) -> np.ndarray:
    """``(n, D, H, W)`` float32 vessel probabilities; the same seed gives the same volumes.

    Sample ``t`` draws its latent and noise from ``torch.Generator`` seeded with ``(seed, t)``, so a
    sample does not depend on ``n`` or ``batch_size``.
    """
    check_sample_params({"truncation": truncation}, where="sample")
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
    check_sample_params({"threshold": threshold}, where="sample")
    return generate_probabilities(generator, n, seed, truncation) >= threshold


@functools.lru_cache(maxsize=2)
def _cpu_generator(path: str, mtime_ns: int, size: int) -> tuple[nn.Module, float]:
    """(generator on the CPU, spacing mm) of a checkpoint file; the key changes when the file does."""
    from vessel_models.gan.checkpoint import load_generator

    generator, cfg = load_generator(path, "cpu")
    return generator, float(cfg.data.spacing_mm)


def sample_checkpoint(path: str | os.PathLike, seed: int, params: dict[str, Any] | None = None,
                      where: str = "params") -> tuple[np.ndarray, float]:
    """One label volume of a checkpoint's generator: a pure function of the file, ``seed`` and ``params``.

    Parameters
    ----------
    path : str or PathLike
        A vessel-GAN checkpoint (``best.pt``); loaded once per process while unchanged.
    seed : int
        The sample's seed (any non-negative integer, e.g. a dataset plan's 64-bit seed).
    params : dict, optional
        ``truncation``, ``threshold`` (:data:`~vessel_models.gan.config.SAMPLE_PARAMS`).
    where : str
        Name of ``params`` in error messages.

    Returns
    -------
    label : numpy.ndarray
        ``(D, H, W)`` bool vessel voxels (may be empty).
    spacing_mm : float
        Isotropic voxel size of the generator's training data (mm).
    """
    p = check_sample_params(dict(params or {}), where)
    file = Path(path).resolve()
    stat = file.stat() if file.is_file() else None
    if stat is None:
        raise VesselInputError(f"checkpoint not found: {path}")
    generator, spacing = _cpu_generator(str(file), stat.st_mtime_ns, stat.st_size)
    return sample_labels(generator, 1, seed, p["truncation"], p["threshold"])[0], spacing
