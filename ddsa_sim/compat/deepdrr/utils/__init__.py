"""``deepdrr.utils``: DeepDRR's image post-processing (the min-max ``neglog``) and ``image_utils``."""

from __future__ import annotations

import numpy as np

from ddsa_sim.compat.deepdrr.utils import image_utils

__all__ = ["image_utils", "neglog"]


def neglog(image: np.ndarray, epsilon: float = 0.01) -> np.ndarray:
    """DeepDRR's display transform of intensity images: NOT quantitative.

    Per image (2-D, or each of N stacked): ``x = I + min(I) + epsilon`` (DeepDRR adds the minimum,
    it does not subtract it), ``y = -ln(x)``, then ``(y - min y) / (max y - min y)`` in [0, 1]; a
    constant image becomes all zeros. Because of the per-image min-max, two images' values cannot be
    compared; ``Projector(..., quantitative=True)`` gives ``-ln(I/I0)`` instead.

    Parameters
    ----------
    image : (H, W) or (N, H, W)
        Intensities (DeepDRR: keV per photon).
    epsilon : float
        Offset before the logarithm, in the image's units.
    """
    image = np.array(image, dtype=np.float32)
    stack = image[None] if image.ndim == 2 else image
    y = -np.log(stack + stack.min(axis=(1, 2), keepdims=True) + np.float32(epsilon))
    lo, hi = y.min(axis=(1, 2), keepdims=True), y.max(axis=(1, 2), keepdims=True)
    span = hi - lo
    out = np.where(span > 0, (y - lo) / np.where(span > 0, span, 1), 0).astype(np.float32)
    return out[0] if image.ndim == 2 else out
