"""Quantum and electronic noise on flat-field-normalised images.

Exposure: photons per pixel at the detector either given directly (``N0``) or from the tube output
in mAs via SpekPy's absolute fluence (photons / mm^2 / mAs at 1 m), the inverse-square law and the
pixel area (:func:`photons_per_pixel_from_mas`).

Quantum noise: counts ~ Poisson(lambda), lambda the expected noise-equivalent quanta of each pixel
(detected photons, times the Swank factor for an energy-integrating panel; see
:func:`ddsa_sim.physics.detector.flat_field_quanta`), independently per pixel and per call (so a mask
and a contrast frame drawn with one generator are independent realisations). The signal is
``I Poisson(lambda) / lambda``: relative variance 1/lambda. The noise can then be correlated with a
kernel; the mean is untouched.

* ``"deepdrr3x3"``: DeepDRR's 3x3 kernel (Wang et al., Med Phys 41(7) 2014), see
  :data:`ddsa_sim.physics.detector.DEEPDRR_NOISE_KERNEL`; its squared weights sum to 0.9944, so
  the per-pixel variance is kept (at the image's edges too: the noise is drawn on a border as wide as the
  kernel's reach, not reflected).
* a float ``sigma`` (pixels): a Gaussian kernel normalised to unit *sum of squares*, so the
  per-pixel variance is kept and only the noise power spectrum narrows.

Detector blur that also acts on the signal is :class:`ddsa_sim.physics.detector.Detector` ``blur``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ddsa_sim import InputError
from ddsa_sim.checks import check_array, check_positive
from ddsa_sim.physics.detector import DEEPDRR_NOISE_KERNEL, apply_kernel
from ddsa_sim.physics.spectra import DEFAULT_FILTER_AL_MM

__all__ = [
    "add_electronic_noise",
    "add_quantum_noise",
    "noise_kernel",
    "photons_per_pixel_from_mas",
]


def photons_per_pixel_from_mas(
    mas: float,
    kvp: float,
    sid_mm: float,
    pixel_mm: float,
    filter_al_mm: float = DEFAULT_FILTER_AL_MM,
    filter_cu_mm: float = 0.0,
    anode_angle_deg: float = 12.0,
    min_kev: float = 10.0,
) -> float:
    """Expected unattenuated photons per detector pixel for an exposure (incident on the detector).

    ``N0 = F(1 m) * mAs * (1000 / SID_mm)^2 * pixel_mm^2``, with F the SpekPy fluence
    (photons / mm^2 / mAs at 1 m) above ``min_kev``. The detector's efficiency is its response's
    (:func:`ddsa_sim.physics.detector.flat_field_quanta`).

    Parameters
    ----------
    mas : float
        Tube current-time product per frame, mAs.
    kvp, filter_al_mm, filter_cu_mm, anode_angle_deg, min_kev
        Spectrum settings, as :func:`ddsa_sim.physics.spectra.spekpy_spectrum`.
    sid_mm : float
        Source-to-image (detector) distance, mm.
    pixel_mm : float
        Detector pixel pitch, mm (square pixels).
    """
    from ddsa_sim.physics.spectra import spekpy_spectrum

    mas = check_positive("mas", mas)
    sid = check_positive("sid_mm", sid_mm)
    px = check_positive("pixel_mm", pixel_mm)
    s = spekpy_spectrum(float(kvp), float(filter_al_mm), float(filter_cu_mm), float(anode_angle_deg), 1.0, float(min_kev))
    flu = s.photons_per_mm2_per_mas_at_1m
    assert flu is not None
    return float(flu * mas * (1000.0 / sid) ** 2 * px * px)


def noise_kernel(correlation: str | float | None) -> np.ndarray | None:
    """Noise-correlation kernel: None for ``"none"``/None/0, DeepDRR's 3x3, or a Gaussian (sigma px)
    normalised to unit sum of squares (variance preserving)."""
    if correlation is None:
        return None
    if isinstance(correlation, str):
        c = correlation.strip().lower()
        if c == "none":
            return None
        if c == "deepdrr3x3":
            return DEEPDRR_NOISE_KERNEL.copy()
        if c.startswith("gaussian"):
            try:
                sigma = float(c.split(":", 1)[1])
            except (IndexError, ValueError):
                raise InputError(f"correlation {correlation!r}: write 'gaussian:<sigma_px>'") from None
            return noise_kernel(sigma)
        raise InputError(f"correlation {correlation!r} unknown; use 'none', 'deepdrr3x3' or a sigma in pixels")
    try:
        sigma = float(correlation)
    except (TypeError, ValueError):
        raise InputError(f"correlation must be 'none', 'deepdrr3x3' or a number, got {correlation!r}") from None
    check_positive("correlation sigma_px", sigma, allow_zero=True)
    if sigma == 0:
        return None
    r = max(1, int(np.ceil(4 * sigma)))
    x = np.arange(-r, r + 1, dtype=np.float64)
    g = np.exp(-0.5 * (x / sigma) ** 2)
    k = np.outer(g, g)
    return k / np.sqrt(np.sum(k * k))


def add_quantum_noise(
    relative_intensity: Any,
    quanta: Any,
    rng: np.random.Generator,
    correlation: str | float | None = "none",
) -> np.ndarray:
    """Poisson quantum noise on a relative-intensity image.

    Parameters
    ----------
    relative_intensity : array_like
        (..., H, W) noise-free I/I0 (>= 0; scatter included if wanted).
    quanta : float or array_like
        Expected noise-equivalent quanta of each pixel (scalar or broadcastable to the image), >= 0.
        For an ideal photon counter ``N0 * I/I0``.
    rng : numpy.random.Generator
    correlation : {"none", "deepdrr3x3"} or float
        Noise correlation (see module docstring); a float is a Gaussian sigma in pixels.

    Returns
    -------
    np.ndarray
        float64 noisy I/I0 = I (lambda + correlated(Poisson(lambda) - lambda)) / lambda; pixels with
        lambda = 0 keep I. Relative variance 1 / lambda, so var(-ln(I/I0)) ~ 1 / lambda.
    """
    if not isinstance(rng, np.random.Generator):
        raise InputError("rng must be a numpy.random.Generator")
    i = np.asarray(relative_intensity, dtype=np.float64)
    check_array("relative_intensity", i)
    lam = np.broadcast_to(np.asarray(quanta, dtype=np.float64), i.shape)
    check_array("quanta", lam)
    kernel = noise_kernel(correlation)
    if kernel is None:
        noise = rng.poisson(lam).astype(np.float64) - lam
    else:
        if i.ndim < 2:
            raise InputError("noise correlation needs a 2-D image")
        # draws of their own on a border as wide as the kernel's reach, at the edge pixels' expected counts: every
        # pixel, edges included, sums independent draws (reflected edges count some twice: with DeepDRR's kernel
        # +13 % variance on an edge, +42 % in a corner)
        (r0, r1), (h, w) = (n // 2 for n in kernel.shape), i.shape[-2:]
        padded = np.pad(lam, [(0, 0)] * (i.ndim - 2) + [(r0, r0), (r1, r1)], mode="edge")
        noise = apply_kernel(rng.poisson(padded).astype(np.float64) - padded, kernel)[..., r0:r0 + h, r1:r1 + w]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(lam > 0, i * (1.0 + noise / lam), i)


def add_electronic_noise(
    relative_intensity: Any, std_photons: float, photons_per_pixel: float, rng: np.random.Generator
) -> np.ndarray:
    """Additive Gaussian detector (electronic) noise, std given in photons per pixel.

    Returns ``I + N(0, std_photons / N0)`` (relative-intensity units).
    """
    if not isinstance(rng, np.random.Generator):
        raise InputError("rng must be a numpy.random.Generator")
    n0 = check_positive("photons_per_pixel", photons_per_pixel)
    std = check_positive("std_photons", std_photons, allow_zero=True)
    i = np.asarray(relative_intensity, dtype=np.float64)
    if std == 0:
        return i.copy()
    return i + rng.normal(0.0, std / n0, size=i.shape)
