"""Record one frame: primary intensity -> (+ scatter, anti-scatter grid) -> quantum noise ->
detector (blur, electronic noise, gain, quantisation) -> flat-field -> -ln.

Uses the physics engineer's models (:mod:`ddsa_sim.physics.scatter`, ``noise``, ``detector``);
definitions in docs/dsa.md §3.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from ddsa_sim import InputError
from ddsa_sim.geometry.carm import CArm
from ddsa_sim.physics.detector import Detector, neglog
from ddsa_sim.physics.noise import add_quantum_noise, photons_per_pixel_from_mas
from ddsa_sim.physics.scatter import (
    AntiScatterGrid,
    ScatterGeometry,
    ScatterParams,
    add_scatter,
    water_equivalent_thickness_mm,
)
from ddsa_sim.physics.spectra import Spectrum

#: DeepDRR's default photon count (``photon_count=10000``) per pixel of its 0.194 mm Cios detector,
#: as a fluence at the detector: 1e4 / 0.194^2 = 2.66e5 photons / mm^2 (the default exposure).
DEEPDRR_PHOTONS_PER_PIXEL = 1.0e4
DEEPDRR_PIXEL_MM = 0.194
DEFAULT_PHOTONS_PER_MM2 = DEEPDRR_PHOTONS_PER_PIXEL / DEEPDRR_PIXEL_MM**2


@dataclass(frozen=True)
class Exposure:
    """Exposure of one frame: unattenuated photons per detector pixel (N0).

    Exactly one way is used, in this order: ``mas``, ``photons_per_pixel``, ``photons_per_mm2``;
    with none given, DeepDRR's default of 1e4 photons per 0.194 mm pixel, i.e.
    :data:`DEFAULT_PHOTONS_PER_MM2` times the pixel area (9e4 for a 0.582 mm binned pixel).

    Attributes
    ----------
    photons_per_pixel : float or None
        N0 directly, photons per pixel at the detector with no object.
    photons_per_mm2 : float or None
        Fluence at the detector (photons / mm^2); N0 = fluence x pixel area.
    mas : float or None
        Tube current-time product per frame (mAs); N0 then follows from the SpekPy fluence of the
        scene's spectrum, the inverse-square law at the C-arm's source-to-detector distance and the
        pixel area (:func:`ddsa_sim.physics.noise.photons_per_pixel_from_mas`).
    """

    photons_per_pixel: float | None = None
    photons_per_mm2: float | None = None
    mas: float | None = None

    def __post_init__(self) -> None:
        for name in ("photons_per_pixel", "photons_per_mm2", "mas"):
            v = getattr(self, name)
            if v is not None and (not np.isfinite(v) or v <= 0):
                raise InputError(f"exposure {name} must be > 0, got {v!r}")

    def n0(self, spectrum: Spectrum, carm: CArm) -> float:
        """Photons per pixel (N0) for this spectrum and detector."""
        if self.mas is not None:
            s = spectrum.settings
            if "kvp" not in s:
                raise InputError(f"exposure mas needs a SpekPy spectrum (kVp known); {spectrum.name} has no settings")
            return photons_per_pixel_from_mas(
                self.mas, s["kvp"], carm.source_to_detector_distance, carm.pixel_mm,
                filter_al_mm=s.get("filter_al_mm", 2.5), filter_cu_mm=s.get("filter_cu_mm", 0.0),
                anode_angle_deg=s.get("anode_angle_deg", 12.0), min_kev=s.get("min_kev", 10.0))
        if self.photons_per_pixel is not None:
            return float(self.photons_per_pixel)
        fluence = DEFAULT_PHOTONS_PER_MM2 if self.photons_per_mm2 is None else float(self.photons_per_mm2)
        return fluence * carm.pixel_mm**2


@dataclass(frozen=True)
class ScatterSettings:
    """Scatter switch, model parameters and anti-scatter grid (None = no grid)."""

    enabled: bool = True
    params: ScatterParams = field(default_factory=ScatterParams)
    grid: AntiScatterGrid | None = field(default_factory=AntiScatterGrid)


def scatter_image(primary: np.ndarray, carm: CArm, spectrum: Spectrum, mode: str,
                  settings: ScatterSettings) -> np.ndarray:
    """Flat-field-normalised scatter behind the grid, ``(Ts/Tp) S`` (zeros when disabled).

    The water-equivalent thickness of each pixel is taken from the primary through the scene's
    spectrum and detector mode (beam hardening included); the air gap from the C-arm's distances
    (patient centred on the isocenter), the field from the image, kVp from the spectrum.
    """
    if not settings.enabled:
        return np.zeros(primary.shape)
    t = water_equivalent_thickness_mm(primary, spectrum, mode)
    geometry = ScatterGeometry(carm.source_to_detector_distance, carm.source_to_isocenter_vertical_distance)
    _, s = add_scatter(primary, carm.pixel_mm, water_equivalent_thickness_mm=t, params=settings.params,
                       grid=settings.grid, spectrum=spectrum, geometry=geometry)
    return s


def is_ideal(detector: Detector) -> bool:
    """True when recording without noise changes nothing (no blur, no quantisation)."""
    return detector.blur == "none" and detector.bit_depth is None


def check_detector_range(detector: Detector, n0: float) -> None:
    """Refuse a quantised detector whose flat field (gain x N0) would saturate."""
    if detector.bit_depth is not None and detector.gain * n0 > detector.max_value:
        raise InputError(f"detector: flat field gain*N0 = {detector.gain * n0:.4g} exceeds the {detector.bit_depth}-bit "
                         f"range {detector.max_value:.0f}; lower the gain or the exposure")


def gain_for_bit_depth(bit_depth: int, photons_per_pixel: float, headroom: float = 0.9) -> float:
    """Gain (digital units per photon) that puts the flat field at ``headroom`` of full scale."""
    return headroom * (2.0 ** int(bit_depth) - 1.0) / float(photons_per_pixel)


def record(total_intensity: np.ndarray, n0: float, detector: Detector, rng: np.random.Generator,
           noise: bool = True, correlation: str | float | None = "none") -> np.ndarray:
    """Recorded relative intensity I/I0 of one frame (float64).

    Parameters
    ----------
    total_intensity : (H, W)
        Expected primary + scatter, relative to the flat field.
    n0 : float
        Photons per pixel without object.
    detector : Detector
        Blur, electronic noise (std in photons), gain, bit depth. Its ``quantum_noise`` flag is
        ignored; ``noise`` decides.
    rng : numpy.random.Generator
    noise : bool
        Poisson quantum noise (correlated by ``correlation``) and Gaussian electronic noise.
        False: the expected counts are recorded; with an ideal detector the input is returned as is.
    correlation : {"none", "deepdrr3x3"} or float
        Noise-only correlation kernel (physics.noise).
    """
    i = np.asarray(total_intensity, dtype=np.float64)
    if not noise and is_ideal(detector):
        return i.copy()
    if noise:
        counts = add_quantum_noise(i, n0, rng, correlation) * n0
        np.maximum(counts, 0.0, out=counts)
    else:
        counts = i * n0
    det = replace(detector, quantum_noise=False,
                  electronic_noise_std=detector.electronic_noise_std if noise else 0.0)
    values = det.record(counts, rng)
    return det.flat_field(values, n0)


def to_neglog(intensity: np.ndarray) -> np.ndarray:
    """float32 ``-ln(I/I0)`` (floor 1e-10, see physics.detector.neglog)."""
    return neglog(intensity).astype(np.float32)
