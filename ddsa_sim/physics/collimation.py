"""Collimation: lead blades (and an optional circular iris) near the source shape the X-ray field.

* **Geometry.** Four independent rectangular blades, each covering a fraction of the detector side
  from its edge (:class:`Collimator` ``left``/``right`` along the columns, ``top``/``bottom`` along the
  rows), and an optional circular iris centred on the principal point (the image centre) with a
  diameter given as a fraction of the detector's smaller side. Positions are stated where they are
  seen, at the detector plane; the collimator itself sits ``source_to_collimator_mm`` from the focal
  spot (its opening is the detector field demagnified by ``SCollD / SID``).
* **Penumbra.** A focal spot of size ``f`` (nominal; the Gaussian of that FWHM of
  :mod:`ddsa_sim.physics.blur`) projects a blade edge at ``SCollD`` onto the detector at ``SID`` with
  the penumbra ``w = f (SID - SCollD) / SCollD`` (:func:`penumbra_width_mm`): the edge's line spread
  is that Gaussian scaled by ``(SID - SCollD) / SCollD``, so ``w`` is its FWHM and equals the
  12 %-88 % rise distance of the edge (Phi(1.1774) = 0.8805). The edge profile is that of a
  straight edge, ``Phi((x - x_edge) / sigma)``, averaged over each pixel exactly
  (:func:`_edge_pixel_mean`); the iris's circular edge is averaged over 4 x 4 points per pixel.
* **Leakage.** The blades transmit :attr:`Collimator.leakage` of the primary (default
  :data:`LEAD_LEAKAGE`: 2 mm of lead, 5e-4 of the energy fluence of a 90 kVp / 4 mm Al spectrum,
  8e-4 at 125 kVp; docs/physics.md section 8), so the transmission map is
  ``leakage + (1 - leakage) * open_fraction``.

The scene multiplies every frame's primary by the map (photons and their second moment alike, so
the quantum noise follows the fluence); the scatter model sees only the irradiated primary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ddsa_sim import InputError
from ddsa_sim.physics.blur import FWHM_PER_SIGMA

__all__ = [
    "EXPOSED_OPEN_FRACTION",
    "LEAD_LEAKAGE",
    "MAX_BLADE_FRACTION",
    "SOURCE_TO_COLLIMATOR_MM",
    "Collimator",
    "open_fraction",
    "penumbra_sigma_mm",
    "penumbra_width_mm",
    "transmission",
]

#: Energy-fluence transmission of the blades: 2 mm of lead behind a 90 kVp, 4 mm Al spectrum
#: (xraydb; 5e-4, and 8e-4 at 125 kVp, 1e-7 at 60 kVp).
LEAD_LEAKAGE = 5.0e-4

#: Default focal-spot-to-collimator distance (mm): the blades of a C-arm's collimator sit at the
#: tube port, 10-25 cm from the focal spot; 200 mm puts the penumbra of a 0.6 mm spot at the
#: 1020 mm detector at 2.46 mm.
SOURCE_TO_COLLIMATOR_MM = 200.0

#: A blade covers less than this fraction of the detector side (it stops short of the centre line).
MAX_BLADE_FRACTION = 0.5

#: A pixel belongs to the exposed field when at least this fraction of the focal spot sees it
#: through the opening (the geometric field edge): there the targets are defined, outside they are 0.
EXPOSED_OPEN_FRACTION = 0.5

#: Points per pixel side averaging the iris's circular edge.
_IRIS_SUPERSAMPLING = 4


@dataclass(frozen=True)
class Collimator:
    """Blade positions, iris, distance from the source and leakage of a collimator.

    Attributes
    ----------
    left, right, top, bottom : float
        Fraction of the detector width (left: first columns, right: last columns) or height (top:
        first rows, bottom: last rows) each blade covers at the detector plane, 0 (out of the
        field: the open beam overfills the detector) to below :data:`MAX_BLADE_FRACTION`.
    iris_diameter : float
        Diameter of a circular iris centred on the image centre, as a fraction of the detector's
        smaller side (1: the inscribed circle; up to sqrt(2) for a square detector's diagonal);
        0 = no iris.
    source_to_collimator_mm : float
        Focal spot to blades (mm); sets the penumbra.
    leakage : float
        Primary transmission of the blades, 0 <= leakage < 1.
    """

    left: float = 0.0
    right: float = 0.0
    top: float = 0.0
    bottom: float = 0.0
    iris_diameter: float = 0.0
    source_to_collimator_mm: float = SOURCE_TO_COLLIMATOR_MM
    leakage: float = LEAD_LEAKAGE

    def __post_init__(self) -> None:
        for name in ("left", "right", "top", "bottom"):
            v = getattr(self, name)
            if not (np.isfinite(v) and 0.0 <= v < MAX_BLADE_FRACTION):
                raise InputError(f"collimator {name} must be in [0, {MAX_BLADE_FRACTION}) (fraction of the "
                                 f"detector side), got {v!r}")
        if not (np.isfinite(self.iris_diameter) and 0.0 <= self.iris_diameter <= math.sqrt(2.0)):
            raise InputError(f"collimator iris_diameter must be in [0, 1.414] (fraction of the smaller detector "
                             f"side; 0 = no iris), got {self.iris_diameter!r}")
        if not (np.isfinite(self.source_to_collimator_mm) and self.source_to_collimator_mm > 0):
            raise InputError(f"collimator source_to_collimator_mm must be > 0, got {self.source_to_collimator_mm!r}")
        if not (np.isfinite(self.leakage) and 0.0 <= self.leakage < 1.0):
            raise InputError(f"collimator leakage must be in [0, 1), got {self.leakage!r}")

    @property
    def is_open(self) -> bool:
        """True when no blade and no iris reaches into the field."""
        return self.left == self.right == self.top == self.bottom == self.iris_diameter == 0.0

    def to_dict(self) -> dict:
        return {"left": self.left, "right": self.right, "top": self.top, "bottom": self.bottom,
                "iris_diameter": self.iris_diameter, "source_to_collimator_mm": self.source_to_collimator_mm,
                "leakage": self.leakage}


def penumbra_width_mm(focal_spot_mm: float, source_to_collimator_mm: float, source_to_detector_mm: float) -> float:
    """Geometric penumbra of a blade edge at the detector (mm): ``f (SID - SCollD) / SCollD``."""
    if not 0 < source_to_collimator_mm < source_to_detector_mm:
        raise InputError(f"collimator at {source_to_collimator_mm:.1f} mm from the source is not between the "
                         f"source and the detector ({source_to_detector_mm:.1f} mm)")
    return float(focal_spot_mm) * (source_to_detector_mm - source_to_collimator_mm) / source_to_collimator_mm


def penumbra_sigma_mm(focal_spot_mm: float, source_to_collimator_mm: float, source_to_detector_mm: float) -> float:
    """Standard deviation (mm) of the edge's Gaussian line spread: the penumbra width / FWHM_PER_SIGMA."""
    return penumbra_width_mm(focal_spot_mm, source_to_collimator_mm, source_to_detector_mm) / FWHM_PER_SIGMA


def _edge_pixel_mean(x0: np.ndarray, x1: np.ndarray, sigma: float) -> np.ndarray:
    """Mean of ``Phi(x / sigma)`` over [x0, x1] (exact): ``sigma (G(x1/s) - G(x0/s)) / (x1 - x0)``,
    ``G(z) = z Phi(z) + phi(z)``; a hard step for ``sigma = 0``."""
    from scipy.special import ndtr

    if sigma == 0:
        return (np.clip(x1, 0.0, None) - np.clip(x0, 0.0, None)) / (x1 - x0)

    def g(z: np.ndarray) -> np.ndarray:
        return z * ndtr(z) + np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)

    return sigma * (g(x1 / sigma) - g(x0 / sigma)) / (x1 - x0)


def _slit(n: int, pixel_mm: float, low: float, high: float, sigma: float) -> np.ndarray:
    """Open fraction of each of ``n`` pixels between two blades covering ``low`` and ``high`` of the side."""
    edges = np.arange(n + 1, dtype=np.float64) * pixel_mm
    a, b = low * n * pixel_mm, (1.0 - high) * n * pixel_mm
    # the opening (a, b) convolved with the Gaussian: Phi((x - a)/s) - Phi((x - b)/s), pixel-averaged;
    # a blade at 0 is out of the field (the open beam overfills the detector)
    out = np.ones(n) if low == 0 else _edge_pixel_mean(edges[:-1] - a, edges[1:] - a, sigma)
    if high > 0:
        out = out - _edge_pixel_mean(edges[:-1] - b, edges[1:] - b, sigma)
    return out


def open_fraction(collimator: Collimator, shape: tuple[int, int], pixel_mm: float, focal_spot_mm: float,
                  source_to_detector_mm: float) -> np.ndarray:
    """Fraction of the focal spot each pixel sees through the opening (0..1, (H, W) float64), leakage aside.

    Parameters
    ----------
    collimator : Collimator
    shape : (H, W)
        Detector rows and columns (pixels).
    pixel_mm : float
        Detector pixel pitch (mm).
    focal_spot_mm : float
        Nominal focal spot (FWHM of the modelled Gaussian source, mm); 0 = point source.
    source_to_detector_mm : float
        SID (mm).
    """
    h, w = (int(shape[0]), int(shape[1]))
    if h < 1 or w < 1 or not pixel_mm > 0:
        raise InputError(f"collimation: detector shape {shape} and pixel {pixel_mm!r} mm must be positive")
    sigma = penumbra_sigma_mm(focal_spot_mm, collimator.source_to_collimator_mm, source_to_detector_mm)
    out = np.outer(_slit(h, pixel_mm, collimator.top, collimator.bottom, sigma),
                   _slit(w, pixel_mm, collimator.left, collimator.right, sigma))
    if collimator.iris_diameter > 0:
        from scipy.special import ndtr

        k = _IRIS_SUPERSAMPLING
        sub = (np.arange(k) + 0.5) / k
        ys = ((np.arange(h)[:, None] + sub[None, :]).ravel() - h / 2.0) * pixel_mm
        xs = ((np.arange(w)[:, None] + sub[None, :]).ravel() - w / 2.0) * pixel_mm
        radius = 0.5 * collimator.iris_diameter * min(h, w) * pixel_mm
        r = np.hypot(ys[:, None], xs[None, :])
        inside = ndtr((radius - r) / sigma) if sigma > 0 else (r <= radius).astype(np.float64)
        out *= inside.reshape(h, k, w, k).mean(axis=(1, 3))
    return np.clip(out, 0.0, 1.0)


def transmission(collimator: Collimator, open_fraction_map: np.ndarray) -> np.ndarray:
    """Primary transmission per pixel, ``leakage + (1 - leakage) * open_fraction_map`` (:func:`open_fraction`)."""
    return collimator.leakage + (1.0 - collimator.leakage) * np.asarray(open_fraction_map, dtype=np.float64)
