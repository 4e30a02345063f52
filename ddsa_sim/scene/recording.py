"""Record one frame: primary intensity -> (+ scatter, anti-scatter grid) -> quantum noise (the
noise-equivalent quanta behind the patient) -> detector (blur, electronic noise, gain, quantisation)
-> flat-field -> -ln. Also the exposure: N0 from photons, mAs or automatic exposure control.

Uses the physics engineer's models (:mod:`ddsa_sim.physics.scatter`, ``noise``, ``detector``);
definitions in docs/dsa.md §3.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from ddsa_sim import InputError
from ddsa_sim.geometry.carm import CArm
from ddsa_sim.physics.detector import Detector, flat_field_quanta, neglog
from ddsa_sim.physics.noise import add_quantum_noise, photons_per_pixel_from_mas
from ddsa_sim.physics.scatter import (
    AntiScatterGrid,
    ScatterGeometry,
    ScatterParams,
    add_scatter,
    water_equivalent_thickness_mm,
)
from ddsa_sim.physics.spectra import DEFAULT_FILTER_AL_MM, Spectrum, air_kerma_per_photon, air_kerma_ugy

#: DeepDRR's default photon count (``photon_count=10000``) per pixel of its 0.194 mm Cios detector,
#: as a fluence at the detector: 1e4 / 0.194^2 = 2.66e5 photons / mm^2 (the default exposure).
DEEPDRR_PHOTONS_PER_PIXEL = 1.0e4
DEEPDRR_PIXEL_MM = 0.194
DEFAULT_PHOTONS_PER_MM2 = DEEPDRR_PHOTONS_PER_PIXEL / DEEPDRR_PIXEL_MM**2


#: Fraction of the field width (centred square) over which automatic exposure measures the detector
#: air kerma behind the patient, like the central chamber of an exposure control.
AEC_FIELD_FRACTION = 0.3


@dataclass(frozen=True)
class Exposure:
    """Exposure of one frame: unattenuated photons per detector pixel (N0) at the detector plane.

    Exactly one way is used, in this order: ``target_detector_air_kerma_ugy`` (automatic exposure),
    ``mas``, ``photons_per_pixel``, ``photons_per_mm2``; with none given, DeepDRR's default of 1e4
    photons per 0.194 mm pixel, i.e. :data:`DEFAULT_PHOTONS_PER_MM2` times the pixel area (9e4 for a
    0.582 mm binned pixel).

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
    target_detector_air_kerma_ugy : float or None
        Automatic exposure: N0 (and the mAs) such that the air kerma at the detector plane behind the
        patient, averaged over the central :data:`AEC_FIELD_FRACTION` of the mask frame (its exposed
        pixels when collimated), is this many uGy per frame (DSA: typically 1-5 uGy).
    """

    photons_per_pixel: float | None = None
    photons_per_mm2: float | None = None
    mas: float | None = None
    target_detector_air_kerma_ugy: float | None = None

    def __post_init__(self) -> None:
        for name in ("photons_per_pixel", "photons_per_mm2", "mas", "target_detector_air_kerma_ugy"):
            v = getattr(self, name)
            if v is not None and (not np.isfinite(v) or v <= 0):
                raise InputError(f"exposure {name} must be > 0, got {v!r}")

    @property
    def automatic(self) -> bool:
        """True when N0 follows from the patient (:meth:`n0` needs ``kerma_transmission``)."""
        return self.target_detector_air_kerma_ugy is not None

    def n0(self, spectrum: Spectrum, carm: CArm, kerma_transmission: float | None = None) -> float:
        """Photons per pixel (N0) for this spectrum and detector.

        ``kerma_transmission``: the fraction of the air kerma that reaches the detector behind the
        patient in the exposure-control field (:func:`aec_kerma_transmission`); automatic exposure only.
        """
        if self.target_detector_air_kerma_ugy is not None:
            if kerma_transmission is None or not kerma_transmission > 0:
                raise InputError("automatic exposure: the patient blocks the whole exposure-control field")
            per_pixel = air_kerma_ugy(spectrum, 1.0 / carm.pixel_mm**2) * kerma_transmission
            return float(self.target_detector_air_kerma_ugy / per_pixel)
        if self.mas is not None:
            s = spectrum.settings
            if "kvp" not in s:
                raise InputError(f"exposure mas needs a SpekPy spectrum (kVp known); {spectrum.name} has no settings")
            return photons_per_pixel_from_mas(
                self.mas, s["kvp"], carm.source_to_detector_distance, carm.pixel_mm,
                filter_al_mm=s.get("filter_al_mm", DEFAULT_FILTER_AL_MM), filter_cu_mm=s.get("filter_cu_mm", 0.0),
                anode_angle_deg=s.get("anode_angle_deg", 12.0), min_kev=s.get("min_kev", 10.0))
        if self.photons_per_pixel is not None:
            return float(self.photons_per_pixel)
        fluence = DEFAULT_PHOTONS_PER_MM2 if self.photons_per_mm2 is None else float(self.photons_per_mm2)
        return fluence * carm.pixel_mm**2


def aec_kerma_transmission(area_density: np.ndarray, mu_over_rho: np.ndarray, spectrum: Spectrum,
                           exposed: np.ndarray | None = None) -> float:
    """Air-kerma transmission of the patient, averaged over the exposure-control field.

    ``sum_b p_b E_b (mu_en/rho)_air,b T_b / sum_b p_b E_b (mu_en/rho)_air,b`` per pixel (the kerma a
    free-in-air chamber at the detector would read, relative to no patient), averaged over the
    central :data:`AEC_FIELD_FRACTION` of the image; with a collimator only over its exposed pixels
    there, as a C-arm's dose control measures within the collimated field (its blades' shadow would
    read as an opaque patient and drive the dose up). The centre of the detector is always exposed
    (each blade covers less than half of its side; an iris is centred).

    Parameters
    ----------
    area_density : (H, W, M) float
        Area densities of the mask frame (g/cm^2).
    mu_over_rho : (M, B)
        Mass attenuation of those materials at the spectrum's bins (cm^2/g).
    spectrum : Spectrum
    exposed : (H, W) bool or None
        The collimated field's exposed pixels (:meth:`~ddsa_sim.scene.Scene.collimation`); None: all.
    """
    h, w = area_density.shape[:2]
    dh, dw = max(1, int(round(h * AEC_FIELD_FRACTION / 2))), max(1, int(round(w * AEC_FIELD_FRACTION / 2)))
    rows, cols = slice(h // 2 - dh, h // 2 + dh), slice(w // 2 - dw, w // 2 + dw)
    centre = area_density[rows, cols]
    centre = centre.reshape(-1, area_density.shape[-1]) if exposed is None else centre[exposed[rows, cols]]
    kerma_weights = spectrum.fluence * air_kerma_per_photon(spectrum.energies_kev)
    t = np.exp(-np.asarray(centre, dtype=np.float64) @ mu_over_rho) @ kerma_weights / kerma_weights.sum()
    return float(t.mean())


def mas_for(n0: float, spectrum: Spectrum, carm: CArm) -> float:
    """The mAs that gives ``n0`` photons per pixel (NaN when the spectrum has no absolute fluence)."""
    flu = spectrum.photons_per_mm2_per_mas_at_1m
    if flu is None:
        return float("nan")
    return float(n0 / (flu * (1000.0 / carm.source_to_detector_distance) ** 2 * carm.pixel_mm**2))


@dataclass(frozen=True)
class ScatterSettings:
    """Scatter switch, model parameters and anti-scatter grid (None = no grid)."""

    enabled: bool = True
    params: ScatterParams = field(default_factory=ScatterParams)
    grid: AntiScatterGrid | None = field(default_factory=AntiScatterGrid)


def scatter_image(primary: np.ndarray, carm: CArm, spectrum: Spectrum, mode: str,
                  settings: ScatterSettings, field: np.ndarray | None = None) -> np.ndarray:
    """Flat-field-normalised scatter behind the grid, ``(Ts/Tp) S`` (zeros when disabled).

    The water-equivalent thickness of each pixel is taken from the (uncollimated) primary through
    the scene's spectrum and detector mode (beam hardening included); the air gap from the C-arm's
    distances (patient centred on the isocenter), kVp from the spectrum. ``field``: the collimator's
    transmission (:meth:`~ddsa_sim.scene.Scene.collimation`); only the irradiated primary
    ``primary * field`` scatters (None: the whole detector is irradiated).
    """
    if not settings.enabled:
        return np.zeros(primary.shape)
    t = water_equivalent_thickness_mm(primary, spectrum, mode)
    geometry = ScatterGeometry(carm.source_to_detector_distance, carm.source_to_isocenter_vertical_distance)
    irradiated = primary if field is None else primary * field
    _, s = add_scatter(irradiated, carm.pixel_mm, water_equivalent_thickness_mm=t, params=settings.params,
                       grid=settings.grid, spectrum=spectrum, geometry=geometry)
    return s


def grid_primary_transmission(settings: ScatterSettings) -> float:
    """Tp of the grid in the beam (1 without one). The grid is in the beam when scatter is modelled
    and a grid is given; a scatter-free scene is the idealised no-scatter, no-grid acquisition."""
    return settings.grid.primary_transmission if settings.enabled and settings.grid is not None else 1.0


def frame_quanta(spectrum: Spectrum, detector: Detector, n0: float, settings: ScatterSettings) -> float:
    """Noise-equivalent quanta of the flat field behind the grid: ``Tp N0 eta Swank``."""
    return grid_primary_transmission(settings) * flat_field_quanta(spectrum, detector.response, n0)


def is_ideal(detector: Detector) -> bool:
    """True when recording without noise changes nothing (no blur, no quantisation)."""
    return detector.blur == "none" and detector.bit_depth is None


def check_detector_range(detector: Detector, quanta: float | np.ndarray) -> None:
    """Refuse an exposure whose flat field holds less than one noise-equivalent quantum per pixel (``-ln`` floors
    a recorded frame at one quantum, :func:`to_neglog`: every pixel would read less attenuation than air), and a
    quantised detector whose flat field (gain x flat-field quanta, at its brightest pixel) would saturate."""
    if float(np.max(quanta)) < 1.0:
        raise InputError(f"exposure: {float(np.max(quanta)):.3g} noise-equivalent quanta per pixel in the flat field, "
                         "below one: no image; raise the exposure (photons, mAs or detector dose)")
    brightest = detector.gain * float(np.max(quanta))
    if detector.bit_depth is not None and brightest > detector.max_value:
        raise InputError(f"detector: flat field gain*quanta = {brightest:.4g} exceeds the "
                         f"{detector.bit_depth}-bit range {detector.max_value:.0f}; lower the gain or the exposure")


def gain_for_bit_depth(bit_depth: int, quanta: float | np.ndarray, headroom: float = 0.9) -> float:
    """Gain (digital units per quantum) that puts the flat field (``quanta``: one number, or each pixel's, whose
    brightest counts) at ``headroom`` of full scale."""
    return headroom * (2.0 ** int(bit_depth) - 1.0) / float(np.max(quanta))


def record(primary: np.ndarray, second_moment: np.ndarray, scatter: np.ndarray, quanta: float | np.ndarray,
           detector: Detector, rng: np.random.Generator, noise: bool = True,
           correlation: str | float | None = "none") -> np.ndarray:
    """Recorded relative intensity I/I0 of one frame without lag (float64): :func:`read_out` of :func:`detect`.

    Parameters
    ----------
    primary : (H, W)
        Expected primary signal relative to the flat field, ``P = M1(T) / M1(0)``.
    second_moment : (H, W)
        ``Q = M2(T) / M2(0)`` of the primary (:func:`ddsa_sim.physics.detector.integrate_spectrum`).
    scatter : (H, W)
        Scatter signal behind the grid relative to the flat field (zeros when off).
    quanta : float or (H, W)
        Noise-equivalent quanta of the flat field behind the grid (:func:`frame_quanta`), or each pixel's
        (``Scene.flat_field_quanta``: fewer off the central ray and toward the anode).
    detector : Detector
        Blur, electronic noise (std in quanta), gain, bit depth. Its ``quantum_noise`` flag is
        ignored; ``noise`` decides.
    rng : numpy.random.Generator
        Draws the quantum noise, then the electronic noise.
    noise : bool
        Poisson quantum noise (correlated by ``correlation``) and Gaussian electronic noise.
        False: the expected signal is recorded; with an ideal detector ``P + S`` is returned as is.
    correlation : {"none", "deepdrr3x3"} or float
        Noise-only correlation kernel (physics.noise).
    """
    charge = detect(primary, second_moment, scatter, quanta, rng, noise, correlation)
    return read_out(charge, quanta, detector, rng, noise)


def detect(primary: np.ndarray, second_moment: np.ndarray, scatter: np.ndarray, quanta: float | np.ndarray,
           rng: np.random.Generator, noise: bool = True, correlation: str | float | None = "none") -> np.ndarray:
    """The charge one frame generates, relative to the flat field's (float64; parameters as :func:`record`).

    Notes
    -----
    A pixel's expected quanta are ``quanta * (P / Q) * (P + S)``: the primary's ``quanta P^2 / Q``
    (photon-number transmission, efficiency and Swank factor of the spectrum behind the patient),
    and the scatter at the same quanta per unit signal as the primary (docs/physics.md). Without
    ``noise`` the expected ``P + S``.
    """
    p = np.asarray(primary, dtype=np.float64)
    i = p + np.asarray(scatter, dtype=np.float64)
    if not noise:
        return i
    q = np.asarray(second_moment, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        lam = np.where(q > 0, quanta * p / q * i, 0.0)
    return np.maximum(add_quantum_noise(i, lam, rng, correlation), 0.0)


def read_out(charge: np.ndarray, quanta: float | np.ndarray, detector: Detector, rng: np.random.Generator,
             noise: bool = True) -> np.ndarray:
    """Recorded I/I0 of a frame's charge read out (:func:`detect`, with the lag of the frames before it
    where the detector has lag): the detector's blur, electronic noise (with ``noise``), gain and
    quantisation, flat-field corrected; with an ideal detector and no noise ``charge`` as is."""
    if not noise and is_ideal(detector):
        return charge
    det = replace(detector, quantum_noise=False,
                  electronic_noise_std=detector.electronic_noise_std if noise else 0.0)
    return det.flat_field(det.record(charge * quanta, rng), quanta)


def to_neglog(intensity: np.ndarray, quanta: float | np.ndarray | None = None) -> np.ndarray:
    """float32 ``-ln(I/I0)``; with ``quanta`` (noise-equivalent quanta of the flat field, one number or one per
    pixel) ``I/I0`` is floored at one quantum, ``1 / quanta`` (a recorded frame: below one quantum per pixel, as
    in a collimated border or behind metal, the signal cannot be told from none), else at 1e-10
    (physics.detector.neglog).
    """
    return (neglog(intensity) if quanta is None else neglog(intensity, 1.0 / quanta)).astype(np.float32)
