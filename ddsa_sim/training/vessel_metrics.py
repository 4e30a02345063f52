"""Vessel-aware image-quality metrics: what a DSA image shows on and off the vessels.

Whole-image PSNR rewards an image that is quiet everywhere (an all-zero image scores well where vessels
are thin), so the evaluation also looks at the vessel and background regions separately. All images are
``(H, W)`` arrays in the -ln domain on the target's scale; definitions and the reasons for the constants
are in ``docs/results.md`` ("Evaluation metrics").

Regions, from the store's ``vessel_mask`` ``V`` (projected iodine >= 0.1 mg/cm^2):

* ``V``: vessel pixels;
* ``D = dilate(V, disk of radius dilation_px)``: the vessels with a margin for noise correlation and the
  partial-volume edge;
* ``B = not D``: background.

Metrics of a prediction ``P`` against the target ``T``:

* ``vessel_nmse = sum_D (P - T)^2 / sum_D T^2``;
* ``vessel_psnr = 10 log10(data_range^2 / mean_D (P - T)^2)``;
* ``bg_fp_energy = sum_B max(P, 0)^2 / sum_D T^2`` (iodine-like signal where there is none, relative to
  the vessel signal energy);
* ``bg_fp_fraction = mean_B [P > threshold]``;
* ``vessel_cnr = (mean_V P - mean_B P) / std_B P`` (0 when both the difference and the std are 0);
* ``iodine_recovery = sum_V P / sum_V T``;
* ``psnr_background_exact = 10 log10(data_range^2 / (sum_D (P - T)^2 / N))`` over all ``N`` pixels: the
  whole-image PSNR of ``P`` with its background replaced by the target, what its error on ``D`` (the vessels
  and their margin) alone allows; ``psnr_vessels_exact`` the same with ``sum_B``: what its background error
  alone allows.
  Which of the two lies nearer the whole-image PSNR says where the image's error is.

A sample without vessel pixels has ``nan`` for the vessel metrics (left out of the means, see
:func:`ddsa_sim.training.metrics.summarize`).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from ddsa_sim.training.metrics import psnr_from_mse

__all__ = [
    "BG_THRESHOLD",
    "DILATION_PX",
    "HIGHER_IS_BETTER",
    "background_fp_energy",
    "background_fp_fraction",
    "iodine_recovery",
    "masked_nmse",
    "masked_psnr",
    "region_error_psnr",
    "vessel_cnr",
    "vessel_metrics",
    "vessel_regions",
    "win_counts",
]

#: dilation radius of the vessel mask in (binned) pixels: the 3x3 noise correlation plus one pixel of
#: partial-volume edge (docs/results.md)
DILATION_PX = 2
#: background false-positive threshold in -ln units (~5 mg/cm^2 iodine at 0.006-0.012 per mg/cm^2;
#: a third of a typical vessel's median signal; docs/results.md)
BG_THRESHOLD = 0.05
#: metric -> True where a larger value is better (for win counts)
HIGHER_IS_BETTER: dict[str, bool] = {
    "psnr": True,
    "ssim": True,
    "nmse": False,
    "mae": False,
    "vessel_psnr": True,
    "vessel_nmse": False,
    "bg_fp_energy": False,
    "bg_fp_fraction": False,
    "vessel_cnr": True,
    "psnr_background_exact": True,
    "psnr_vessels_exact": True,
}


def _disk(radius_px: int) -> np.ndarray:
    yy, xx = np.mgrid[-radius_px : radius_px + 1, -radius_px : radius_px + 1]
    return yy**2 + xx**2 <= radius_px**2


def vessel_regions(vessel_mask: np.ndarray, dilation_px: int = DILATION_PX) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vessel ``V``, dilated vessel ``D`` and background ``B = not D`` boolean masks.

    Parameters
    ----------
    vessel_mask
        ``(H, W)``, nonzero on vessel pixels.
    dilation_px
        Radius of the disk structuring element in pixels (0: ``D = V``).
    """
    if dilation_px < 0:
        raise ValueError(f"dilation_px must be >= 0, got {dilation_px}")
    v = np.asarray(vessel_mask) != 0
    d = ndimage.binary_dilation(v, _disk(dilation_px)) if dilation_px > 0 and v.any() else v.copy()
    return v, d, ~d


def masked_nmse(pred: np.ndarray, target: np.ndarray, region: np.ndarray) -> float:
    """``sum_region (pred - target)^2 / sum_region target^2`` (``nan`` for an empty or all-zero region)."""
    t = np.asarray(target, np.float64)[region]
    den = float((t**2).sum())
    if den == 0:
        return math.nan
    return float(((np.asarray(pred, np.float64)[region] - t) ** 2).sum()) / den


def masked_psnr(pred: np.ndarray, target: np.ndarray, region: np.ndarray, data_range: float) -> float:
    """``10 log10(data_range^2 / mean_region (pred - target)^2)`` in dB (``nan`` for an empty region)."""
    if data_range <= 0:
        raise ValueError("data_range must be > 0")
    if not region.any():
        return math.nan
    m = float(((np.asarray(pred, np.float64)[region] - np.asarray(target, np.float64)[region]) ** 2).mean())
    return psnr_from_mse(m, data_range)


def region_error_psnr(pred: np.ndarray, target: np.ndarray, region: np.ndarray, data_range: float) -> float:
    """Whole-image PSNR (dB) of ``pred`` with every pixel outside ``region`` set to the target's value:
    ``10 log10(data_range^2 / (sum_region (pred - target)^2 / N))``, ``N`` the image's pixel count."""
    err = np.asarray(pred, np.float64)[region] - np.asarray(target, np.float64)[region]
    return psnr_from_mse(float((err**2).sum()) / region.size, data_range)


def background_fp_energy(pred: np.ndarray, target: np.ndarray, dilated: np.ndarray, background: np.ndarray) -> float:
    """``sum_background max(pred, 0)^2 / sum_dilated target^2`` (``nan`` without vessel signal)."""
    den = float((np.asarray(target, np.float64)[dilated] ** 2).sum())
    if den == 0:
        return math.nan
    p = np.asarray(pred, np.float64)[background]
    return float((np.maximum(p, 0.0) ** 2).sum()) / den


def background_fp_fraction(pred: np.ndarray, background: np.ndarray, threshold: float = BG_THRESHOLD) -> float:
    """Fraction of background pixels where ``pred > threshold`` (``nan`` for an empty background)."""
    if not background.any():
        return math.nan
    return float((np.asarray(pred)[background] > threshold).mean())


def vessel_cnr(pred: np.ndarray, vessel: np.ndarray, background: np.ndarray) -> float:
    """``(mean_vessel pred - mean_background pred) / std_background pred`` (population std).

    ``nan`` when a region is empty; 0 when the difference and the std are both 0 (a flat image);
    ``+-inf`` for a nonzero difference over a flat background.
    """
    if not vessel.any() or not background.any():
        return math.nan
    p = np.asarray(pred, np.float64)
    diff = float(p[vessel].mean() - p[background].mean())
    sd = float(p[background].std())
    if sd == 0:
        return 0.0 if diff == 0 else math.copysign(math.inf, diff)
    return diff / sd


def iodine_recovery(pred: np.ndarray, target: np.ndarray, vessel: np.ndarray) -> float:
    """``sum_vessel pred / sum_vessel target``: the fraction of the true iodine signal the image shows."""
    den = float(np.asarray(target, np.float64)[vessel].sum())
    if den == 0:
        return math.nan
    return float(np.asarray(pred, np.float64)[vessel].sum()) / den


def vessel_metrics(
    pred: np.ndarray,
    target: np.ndarray,
    vessel_mask: np.ndarray,
    data_range: float,
    dilation_px: int = DILATION_PX,
    threshold: float = BG_THRESHOLD,
) -> dict[str, float]:
    """All vessel-aware metrics of one image (see the module docstring).

    Parameters
    ----------
    pred, target
        ``(H, W)`` DSA images, -ln domain.
    vessel_mask
        ``(H, W)`` store ``vessel_mask`` of the sample.
    data_range
        The PSNR peak (the evaluation's fixed per-split value).
    dilation_px
        Vessel-mask dilation radius, pixels.
    threshold
        Background false-positive threshold, -ln units.

    Returns
    -------
    dict
        ``vessel_psnr``, ``vessel_nmse``, ``bg_fp_energy``, ``bg_fp_fraction``, ``vessel_cnr``,
        ``iodine_recovery``, ``psnr_background_exact``, ``psnr_vessels_exact`` (the last two ``nan`` for a
        sample without vessel pixels, as the others but ``bg_fp_fraction``).
    """
    pred = np.asarray(pred)
    target = np.asarray(target)
    if pred.shape != target.shape or pred.shape != np.shape(vessel_mask) or pred.ndim != 2:
        raise ValueError(f"shapes differ or are not 2-D: {pred.shape}, {target.shape}, {np.shape(vessel_mask)}")
    v, d, b = vessel_regions(vessel_mask, dilation_px)
    return {
        "vessel_psnr": masked_psnr(pred, target, d, data_range),
        "vessel_nmse": masked_nmse(pred, target, d),
        "bg_fp_energy": background_fp_energy(pred, target, d, b),
        "bg_fp_fraction": background_fp_fraction(pred, b, threshold),
        "vessel_cnr": vessel_cnr(pred, v, b),
        "iodine_recovery": iodine_recovery(pred, target, v),
        "psnr_background_exact": region_error_psnr(pred, target, d, data_range) if v.any() else math.nan,
        "psnr_vessels_exact": region_error_psnr(pred, target, b, data_range) if v.any() else math.nan,
    }


def win_counts(rows: list[dict[str, float]], baseline_rows: list[dict[str, float]]) -> dict[str, int]:
    """Per metric of :data:`HIGHER_IS_BETTER`, the number of samples where ``rows`` is strictly better
    than ``baseline_rows`` (same sample order); samples where either value is ``nan`` are not counted.

    ``iodine_recovery`` counts the sample closer to 1 (``|r - 1|`` smaller).
    """
    if len(rows) != len(baseline_rows):
        raise ValueError(f"{len(rows)} rows vs {len(baseline_rows)} baseline rows")
    out: dict[str, int] = {}
    keys = [k for k in (*HIGHER_IS_BETTER, "iodine_recovery") if rows and k in rows[0]]
    for k in keys:
        n = 0
        for r, base in zip(rows, baseline_rows):
            a, b = r[k], base[k]
            if math.isnan(a) or math.isnan(b):
                continue
            if k == "iodine_recovery":
                n += abs(a - 1) < abs(b - 1)
            else:
                n += a > b if HIGHER_IS_BETTER[k] else a < b
        out[k] = int(n)
    return out
