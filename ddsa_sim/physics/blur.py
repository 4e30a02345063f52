"""Deterministic blur of a C-arm image: the focal spot's penumbra and the detector's light spread.

* **Focal spot.** A source of finite size ``f`` (nominal, mm; modelled as a Gaussian of that FWHM)
  images a point at distance ``z`` from the source with the geometric magnification
  ``M = SDD / z`` and a penumbra of ``f (M - 1)`` at the detector (FWHM). A 0.6 mm spot blurs an
  object at the isocenter of the Cios-like C-arm (SDD 1020 mm, source-isocenter 530 mm) by
  0.6 x 0.925 = 0.55 mm; objects nearer the source more. The scene blurs each volume's area
  densities at that volume's own depth (:func:`focal_spot_sigma_mm`).
* **Detector.** The light of a CsI:Tl scintillator spreads before it reaches the photodiodes:
  a Gaussian point spread of ``sigma = sqrt(ln 2 / 2) / (pi MTF50)`` has ``MTF(f) = exp(-2 pi^2
  sigma^2 f^2)``, which is 0.5 at ``MTF50`` (:data:`CSI_MTF50_CYCLES_PER_MM`, docs/physics.md).

Both are Gaussians integrated over each pixel (:func:`pixel_kernel`): a sampled Gaussian kernel
is wrong at the sub-pixel widths of binned detectors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ddsa_sim import InputError

__all__ = [
    "CSI_MTF50_CYCLES_PER_MM",
    "FOCAL_SPOT_MM",
    "FWHM_PER_SIGMA",
    "BlurSettings",
    "detector_sigma_mm",
    "focal_spot_sigma_mm",
    "gaussian_blur",
    "pixel_kernel",
    "support_radius_px",
]

#: FWHM of a Gaussian in units of its standard deviation, 2 sqrt(2 ln 2).
FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))

#: Default nominal focal spot (mm): the small spot of mobile and fixed C-arms (0.3-1.0 mm nominal).
FOCAL_SPOT_MM = 0.6

#: Default MTF50 (cycles/mm at the detector) of the CsI:Tl light spread alone (the pixel aperture comes on
#: top) of a C-arm flat panel (0.6 mm CsI, 0.194 mm pixels): fitted to a measured presampled MTF of 0.086
#: at 2.5 cycles/mm (Kuhls-Gilcrist et al., Proc SPIE 7622, 2010); docs/physics.md section 6.
CSI_MTF50_CYCLES_PER_MM = 1.46

#: Kernels end this many standard deviations from their centre (the tail left out is below 6e-7).
_SUPPORT_SIGMAS = 5.0


@dataclass(frozen=True)
class BlurSettings:
    """Focal-spot and detector blur of a scene (both on by default).

    Attributes
    ----------
    focal_spot_mm : float
        Nominal focal spot size (FWHM of the modelled Gaussian source, mm); 0 = a point source.
    detector_mtf50_cycles_per_mm : float or None
        MTF50 of the detector's light spread (cycles/mm at the detector); None = no detector blur.
    """

    focal_spot_mm: float = FOCAL_SPOT_MM
    detector_mtf50_cycles_per_mm: float | None = CSI_MTF50_CYCLES_PER_MM

    def __post_init__(self) -> None:
        if not (np.isfinite(self.focal_spot_mm) and self.focal_spot_mm >= 0):
            raise InputError(f"blur focal_spot_mm must be >= 0, got {self.focal_spot_mm!r}")
        m = self.detector_mtf50_cycles_per_mm
        if m is not None and not (np.isfinite(m) and m > 0):
            raise InputError(f"blur detector_mtf50_cycles_per_mm must be > 0 (or None for no blur), got {m!r}")

    def to_dict(self) -> dict:
        return {"focal_spot_mm": self.focal_spot_mm, "detector_mtf50_cycles_per_mm": self.detector_mtf50_cycles_per_mm}


def focal_spot_sigma_mm(focal_spot_mm: float, source_to_object_mm: float, source_to_detector_mm: float) -> float:
    """Standard deviation (mm, at the detector) of the focal-spot blur of an object at one depth.

    ``focal_spot_mm / FWHM_PER_SIGMA x (M - 1)`` with the magnification ``M = SDD / z``.

    Parameters
    ----------
    focal_spot_mm : float
        Nominal focal spot (Gaussian FWHM, mm).
    source_to_object_mm, source_to_detector_mm : float
        Distances from the source along the principal ray (mm); the object lies between them.
    """
    if not 0 < source_to_object_mm <= source_to_detector_mm:
        raise InputError(f"focal-spot blur: object at {source_to_object_mm:.1f} mm from the source is not between "
                         f"the source and the detector ({source_to_detector_mm:.1f} mm)")
    magnification = source_to_detector_mm / source_to_object_mm
    return focal_spot_mm / FWHM_PER_SIGMA * (magnification - 1.0)


def detector_sigma_mm(mtf50_cycles_per_mm: float) -> float:
    """Standard deviation (mm) of the Gaussian point spread whose MTF is 0.5 at ``mtf50_cycles_per_mm``."""
    return math.sqrt(math.log(2.0) / 2.0) / (math.pi * mtf50_cycles_per_mm)


def support_radius_px(sigma_px: float) -> int:
    """Half-width (pixels) of :func:`gaussian_blur`'s kernel: ``ceil(5 sigma)``, 0 without blur."""
    return int(math.ceil(_SUPPORT_SIGMAS * sigma_px)) if sigma_px > 0 else 0


def pixel_kernel(sigma_px: float) -> np.ndarray:
    """1D kernel of a Gaussian of ``sigma_px`` integrated over each pixel (unit sum, non-negative).

    ``k_n = Phi((n + 1/2) / sigma) - Phi((n - 1/2) / sigma)`` for ``|n| <= ceil(5 sigma)``: the
    continuous Gaussian applied to an image that is constant over each pixel, then sampled at the
    pixel centres. Unlike a sampled Gaussian it stays right at sub-pixel widths.
    """
    from scipy.special import ndtr

    r = support_radius_px(sigma_px)
    n = np.arange(-r, r + 1, dtype=np.float64)
    k = ndtr((n + 0.5) / sigma_px) - ndtr((n - 0.5) / sigma_px)
    return k / k.sum()


def gaussian_blur(image: np.ndarray, sigma_px: float) -> np.ndarray:
    """Isotropic Gaussian blur (:func:`pixel_kernel`) of the first two axes of ``image``.

    Parameters
    ----------
    image : (H, W) or (H, W, C) array
        Pixels (and channels, blurred independently).
    sigma_px : float
        Standard deviation in pixels; 0 returns a copy.

    Returns
    -------
    float64 array of ``image``'s shape. Edges are continued by reflection; a pixel farther than
    :func:`support_radius_px` from every non-zero input pixel stays exactly 0 (a sparse image such
    as a vessel volume's area densities stays sparse).
    """
    from scipy.ndimage import convolve1d

    img = np.asarray(image, dtype=np.float64)
    if sigma_px < 0 or not np.isfinite(sigma_px):
        raise InputError(f"blur sigma must be >= 0 pixels, got {sigma_px!r}")
    if sigma_px == 0 or img.size == 0:
        return img.copy()
    k = pixel_kernel(sigma_px)
    return convolve1d(convolve1d(img, k, axis=0, mode="reflect"), k, axis=1, mode="reflect")
