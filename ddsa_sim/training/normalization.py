"""Global intensity normalisation, computed once from the training split and stored with the model.

Input and target share one affine map so the additive relation ``input = mask + target`` survives::

    input_n  = (input - offset) / scale
    target_n = target / scale

``offset`` and ``scale`` are the mean and standard deviation of the training ``contrast`` images.
``target_min`` / ``target_max`` (over the sampled training targets) are kept for SSIM losses and display.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from tqdm import tqdm


@dataclass(frozen=True)
class Normalization:
    """Affine intensity normalisation shared by input and target."""

    offset: float = 0.0
    scale: float = 1.0
    target_min: float = 0.0
    target_max: float = 1.0

    def norm_input(self, x: torch.Tensor) -> torch.Tensor:
        """-ln-domain input -> network units."""
        return (x - self.offset) / self.scale

    def norm_target(self, y: torch.Tensor) -> torch.Tensor:
        """-ln-domain target -> network units."""
        return y / self.scale

    def denorm_target(self, y: torch.Tensor) -> torch.Tensor:
        """Network output -> -ln-domain DSA."""
        return y * self.scale

    @property
    def target_range_n(self) -> float:
        """Target data range in network units (for SSIM losses)."""
        return max((self.target_max - self.target_min) / self.scale, 1e-6)

    def to_dict(self) -> dict[str, float]:
        """Plain dict (checkpoint-safe)."""
        return {k: float(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Normalization:
        """Inverse of :meth:`to_dict`."""
        return cls(**{k: float(d[k]) for k in ("offset", "scale", "target_min", "target_max")})


def compute_normalization(dataset: Any, max_samples: int = 256, seed: int = 0, progress: bool = True) -> Normalization:
    """Statistics of ``contrast`` and ``dsa_target`` over (a seeded subset of) a dataset.

    Parameters
    ----------
    dataset
        Indexable returning dicts with ``contrast`` and ``dsa_target`` tensors.
    max_samples
        At most this many samples are read (chosen with ``numpy.random.default_rng(seed)``).
    seed
        Subset seed.
    progress
        Show a tqdm bar (from 32 samples on).
    """
    n = len(dataset)
    if n == 0:
        raise ValueError("cannot compute normalisation statistics from an empty dataset")
    idx = np.arange(n)
    if n > max_samples:
        idx = np.sort(np.random.default_rng(seed).choice(n, size=max_samples, replace=False))
    s = s2 = count = 0.0
    tmin, tmax = np.inf, -np.inf
    for i in tqdm(idx, desc="normalisation stats", leave=False, disable=not progress or len(idx) < 32):
        item = dataset[int(i)]
        x = item["contrast"].double()
        t = item["dsa_target"]
        s += float(x.sum())
        s2 += float((x * x).sum())
        count += x.numel()
        tmin = min(tmin, float(t.min()))
        tmax = max(tmax, float(t.max()))
    mean = s / count
    std = float(np.sqrt(max(s2 / count - mean * mean, 0.0)))
    return Normalization(offset=mean, scale=max(std, 1e-6), target_min=tmin, target_max=tmax)
