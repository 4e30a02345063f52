"""Image-quality metrics against the DSA target, in the -ln domain on the target's own scale.

All functions take numpy arrays or tensors of shape ``(H, W)`` (one image) and return floats.

* ``psnr = 10 log10(data_range^2 / MSE)``. ``data_range`` is passed **explicitly**; the evaluation
  uses one fixed value per evaluated split: ``max(dsa_target) - min(dsa_target)`` over all its samples
  (``min`` is 0 for a DSA target, so this is the largest iodine line integral), reported in the output.
* ``ssim``: Gaussian-window SSIM (win 11, sigma 1.5, K=(0.01, 0.03)) via ``pytorch_msssim`` with
  the same ``data_range``.
* ``nmse = sum((pred - target)^2) / sum(target^2)``.
* ``mae = mean(|pred - target|)``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from pytorch_msssim import ssim as _ssim


def _t(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).double()
    if t.ndim != 2:
        raise ValueError(f"metrics expect a 2-D image, got shape {tuple(t.shape)}")
    return t


def mse(pred: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor) -> float:
    """Mean squared error."""
    return float(((_t(pred) - _t(target)) ** 2).mean())


def psnr_from_mse(mse_value: float, data_range: float) -> float:
    """``10 log10(data_range^2 / mse_value)`` in dB (``inf`` for no error): the one PSNR formula of the metrics."""
    if data_range <= 0:
        raise ValueError("data_range must be > 0")
    return math.inf if mse_value == 0 else 10.0 * math.log10(data_range**2 / mse_value)


def psnr(pred: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor, data_range: float) -> float:
    """Peak signal-to-noise ratio in dB for the given ``data_range`` (``inf`` for identical images)."""
    return psnr_from_mse(mse(pred, target), data_range)


def ssim(pred: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor, data_range: float) -> float:
    """Structural similarity (Gaussian window 11 / sigma 1.5); images must be at least 11x11."""
    p = _t(pred)[None, None].float()
    t = _t(target)[None, None].float()
    return float(_ssim(p, t, data_range=data_range, win_size=11, size_average=True))


def nmse(pred: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor) -> float:
    """Normalised MSE ``sum((pred - target)^2) / sum(target^2)``."""
    t = _t(target)
    den = float((t**2).sum())
    if den == 0:
        return math.inf
    return float(((_t(pred) - t) ** 2).sum()) / den


def mae(pred: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor) -> float:
    """Mean absolute error."""
    return float((_t(pred) - _t(target)).abs().mean())


def all_metrics(
    pred: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor, data_range: float
) -> dict[str, float]:
    """``{"psnr", "ssim", "nmse", "mae"}`` of one image."""
    return {
        "psnr": psnr(pred, target, data_range),
        "ssim": ssim(pred, target, data_range),
        "nmse": nmse(pred, target),
        "mae": mae(pred, target),
    }


def summarize(rows: list[dict[str, float]]) -> dict[str, float]:
    """Means of each metric plus ``<name>_std`` (population std) and ``<name>_median``.

    ``nan`` values (a metric undefined for a sample, e.g. a vessel metric without vessel pixels) are left
    out; a metric that is ``nan`` for every sample stays ``nan``.
    """
    out: dict[str, float] = {}
    if not rows:
        return out
    for k in rows[0]:
        v = np.array([r[k] for r in rows], dtype=np.float64)
        v = v[~np.isnan(v)]
        with np.errstate(invalid="ignore"):  # a metric infinite for every sample (an exact image's PSNR): std nan
            stats = (np.mean(v), np.std(v), np.median(v)) if v.size else (math.nan,) * 3
        for suffix, value in zip(("", "_std", "_median"), stats):
            out[f"{k}{suffix}"] = float(value)
    return out
