"""Scatter by kernel superposition (SKS) for a C-arm geometry, and an anti-scatter grid.

Model (parameters in :class:`ScatterParams`, geometry in :class:`ScatterGeometry`; fitted to and
validated against Monte Carlo photon transport by ``experiments/validate_scatter.py``, table and
sources in docs/physics.md):

* Each pixel's primary ``P`` (relative intensity) emits scatter of strength
  ``K(t, E) = K_10 (t / 10 cm) ** b (E_mean / 50 keV) ** q`` (t the water-equivalent thickness,
  E_mean the mean energy of the incident spectrum), from an *emission plane* a depth ``e * t``
  before the patient's exit surface. With the patient centred on the isocenter, that plane lies
  ``D(t) = (SDD - SID) - t / 2 + e * t`` before the detector: the air gap enters through D.
* The scatter leaves the emission plane with a ``cos^n`` angular distribution (n fitted; 1 =
  Lambertian), so its point-spread function on the detector is
  ``psf(r) = (n + 1) D^(n+1) / (2 pi (r^2 + D^2)^((n+3)/2))`` (unit integral over the plane). A
  uniform disc source of radius R sends ``1 - (D / sqrt(R^2 + D^2))^(n+1)`` of its scatter to its
  centre: the field-size dependence and the air-gap fall-off follow from the geometry.
* The emission plane sees the primary field demagnified by ``m = (SDD - D) / SDD`` about the
  principal point (image centre): the source image is resampled by m (total kept) before the
  convolution, so the scatter field is narrower than the primary field and an infinite uniform
  field gets ``SPR = K / m^2``.
* Thickness dependence (of K, D and m) by splitting the source with hat weights over a few
  thickness nodes, one demagnification and one FFT convolution per node (linear convolution,
  zero padding to 2H x 2W: scatter leaving the detector is lost, as on a real detector).

Units: primary and scatter are relative intensities (fractions of the unattenuated flat field).
The lower energy of scattered photons is in the fitted K (the MC scores detector energy).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ddsa_sim import InputError
from ddsa_sim.checks import check_array, check_integer, check_positive, check_range

__all__ = [
    "NO_GRID",
    "AntiScatterGrid",
    "ScatterGeometry",
    "ScatterParams",
    "add_scatter",
    "apply_grid",
    "emission_distance_mm",
    "scatter_kernel_superposition",
    "scatter_strength",
    "spr_uniform_disc",
    "water_equivalent_thickness_mm",
]

#: Reference energy of the strength's energy dependence (keV).
REFERENCE_ENERGY_KEV = 50.0


@dataclass(frozen=True)
class ScatterParams:
    """Parameters of the scatter model.

    Defaults of the five physical parameters: weighted least-squares fit to Monte Carlo photon
    transport (ompMC, water slabs 10-30 cm, fields 10-20 cm, 70-120 kVp, MobileCArm air gap; the 7
    ``FIT_CASES`` of ``experiments/validate_scatter.py --fit``, cached in
    ``experiments/data/scatter_mc.json``); agreement on the fit and held-out cases in docs/physics.md.

    Attributes
    ----------
    strength_at_10cm : float
        Scatter strength K behind 10 cm of water at E_mean = 50 keV (dimensionless).
    thickness_exponent : float
        b in ``K ~ t ** b``.
    energy_exponent : float
        q in ``K ~ (E_mean / 50 keV) ** q``.
    emission_depth_fraction : float
        e: the emission plane lies ``e * t`` before the exit surface (0 = at the exit surface).
    angular_exponent : float
        n of the ``cos^n`` emission (0 isotropic, 1 Lambertian; larger is more forward).
    n_nodes : int
        Number of thickness nodes.
    reference_spectrum : str
        Spectrum used to turn -ln(P) into water-equivalent thickness when none is given.
    max_downsample : int
        Largest block size (pixels) for computing the smooth scatter on a coarser grid; the block
        size f also stays <= D/8 (in pixels) and divides both image sides (f = 1 disables). Block
        sums and even redistribution keep the total exact.
    """

    strength_at_10cm: float = 1.326
    thickness_exponent: float = 1.327
    energy_exponent: float = 0.52
    emission_depth_fraction: float = 0.191
    angular_exponent: float = 3.49
    n_nodes: int = 6
    reference_spectrum: str = "90KV_AL40"
    max_downsample: int = 8

    def __post_init__(self) -> None:
        check_positive("scatter strength_at_10cm", self.strength_at_10cm)
        check_positive("scatter thickness_exponent", self.thickness_exponent)
        if not np.isfinite(self.energy_exponent):
            raise InputError(f"scatter energy_exponent must be finite, got {self.energy_exponent!r}")
        check_range("scatter emission_depth_fraction", self.emission_depth_fraction, 0.0, 1.0)
        check_positive("scatter angular_exponent", self.angular_exponent, allow_zero=True)
        for name in ("n_nodes", "max_downsample"):
            check_integer(f"scatter {name}", getattr(self, name), low=1)


@dataclass(frozen=True)
class ScatterGeometry:
    """Distances that set the air gap (mm); the patient is taken as centred on the isocenter.

    Defaults: DeepDRR's MobileCArm (SDD 1020 mm, source-isocenter 530 mm).
    """

    source_to_detector_mm: float = 1020.0
    source_to_isocenter_mm: float = 530.0

    def __post_init__(self) -> None:
        check_positive("scatter source_to_detector_mm", self.source_to_detector_mm)
        check_positive("scatter source_to_isocenter_mm", self.source_to_isocenter_mm)
        if self.source_to_isocenter_mm >= self.source_to_detector_mm:
            raise InputError("scatter geometry: source_to_isocenter_mm must be below source_to_detector_mm")


@dataclass(frozen=True)
class AntiScatterGrid:
    """Anti-scatter grid by its primary and scatter transmissions (Tp, Ts).

    Defaults describe a ratio-10 focused grid: Tp = 0.70, Ts = 0.10 (see docs/physics.md).
    """

    primary_transmission: float = 0.70
    scatter_transmission: float = 0.10
    ratio: float = 10.0

    def __post_init__(self) -> None:
        for name in ("primary_transmission", "scatter_transmission"):
            check_range(f"grid {name}", getattr(self, name), 0.0, 1.0, low_open=True)

    @property
    def selectivity(self) -> float:
        """Tp / Ts."""
        return self.primary_transmission / self.scatter_transmission


#: No grid: Tp = Ts = 1.
NO_GRID = AntiScatterGrid(1.0, 1.0, 0.0)


def _mean_energy_kev(spectrum: Any) -> float:
    from ddsa_sim.physics.spectra import get_spectrum

    return float(get_spectrum(spectrum).mean_energy_kev)


def scatter_strength(thickness_mm: Any, mean_energy_kev: float, params: ScatterParams | None = None) -> np.ndarray:
    """K(t, E) = K_10 (t / 100 mm) ** b (E / 50 keV) ** q (t clipped at 0)."""
    p = params or ScatterParams()
    t = np.maximum(np.asarray(thickness_mm, dtype=np.float64), 0.0)
    e = check_positive("mean_energy_kev", mean_energy_kev)
    return p.strength_at_10cm * (t / 100.0) ** p.thickness_exponent * (e / REFERENCE_ENERGY_KEV) ** p.energy_exponent


def emission_distance_mm(thickness_mm: Any, geometry: ScatterGeometry | None = None,
                         params: ScatterParams | None = None) -> np.ndarray:
    """D(t): emission plane to detector (mm) = (SDD - SID) - t/2 + e t, at least 1 mm."""
    g = geometry or ScatterGeometry()
    p = params or ScatterParams()
    t = np.maximum(np.asarray(thickness_mm, dtype=np.float64), 0.0)
    gap_to_centre = g.source_to_detector_mm - g.source_to_isocenter_mm
    return np.maximum(gap_to_centre - t / 2.0 + p.emission_depth_fraction * t, 1.0)


def spr_uniform_disc(thickness_mm: float, field_radius_detector_mm: float, mean_energy_kev: float,
                     geometry: ScatterGeometry | None = None, params: ScatterParams | None = None) -> float:
    """Closed-form SPR at the centre of a uniform slab and a circular field (radius at the detector).

    ``K / m^2 * (1 - (D / sqrt(R_e^2 + D^2))^(n+1))`` with ``R_e = m R`` the field radius on the
    emission plane.
    """
    g = geometry or ScatterGeometry()
    n = (params or ScatterParams()).angular_exponent
    d = float(emission_distance_mm(thickness_mm, g, params))
    m = (g.source_to_detector_mm - d) / g.source_to_detector_mm
    r_e = m * float(field_radius_detector_mm)
    k = float(scatter_strength(thickness_mm, mean_energy_kev, params))
    return k / m**2 * (1.0 - (d / np.hypot(r_e, d)) ** (n + 1.0))


def water_equivalent_thickness_mm(
    relative_intensity: Any, spectrum: Any = "90KV_AL40", mode: str = "energy", max_mm: float = 600.0
) -> np.ndarray:
    """Water thickness (mm) giving the same polychromatic I/I0 (beam hardening included).

    Inverts a table of I/I0 for 0..``max_mm`` of water (1 mm steps); beyond it extrapolates with
    the last slope of -ln(I) versus t.
    """
    from ddsa_sim.physics.attenuation import attenuation_matrix
    from ddsa_sim.physics.detector import integrate_spectrum, neglog
    from ddsa_sim.physics.spectra import get_spectrum

    spec = get_spectrum(spectrum)
    t_table = np.arange(0.0, float(max_mm) + 1.0, 1.0)
    mu = attenuation_matrix(["water"], spec)
    q_table = neglog(integrate_spectrum((t_table / 10.0)[:, None], mu, spec, mode))
    # a soft beam (e.g. mono:1) saturates -ln within the table: keep the part where it still rises
    flat = np.flatnonzero(np.diff(q_table) <= 0)
    if flat.size:
        t_table, q_table = t_table[:flat[0] + 1], q_table[:flat[0] + 1]
    q = neglog(relative_intensity)
    t = np.interp(q, q_table, t_table)
    slope = (t_table[-1] - t_table[-2]) / (q_table[-1] - q_table[-2])
    beyond = q > q_table[-1]
    if np.any(beyond):
        t = np.where(beyond, t_table[-1] + (q - q_table[-1]) * slope, t)
    return np.where(q < 0, 0.0, t)


def _demagnify(image: np.ndarray, m: float) -> np.ndarray:
    """``image(x / m) / m^2`` about the image centre (bilinear; zero outside): the total is kept."""
    from scipy.ndimage import map_coordinates

    if abs(m - 1.0) < 1e-12:
        return image
    h, w = image.shape
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    out = map_coordinates(image, [cy + (yy - cy) / m, cx + (xx - cx) / m], order=1, mode="constant", cval=0.0)
    total = image.sum()
    if total > 0 and out.sum() > 0:  # bilinear resampling keeps the total only approximately
        out *= total / out.sum()
    return out


def _psf_convolve(images: np.ndarray, distances_px: np.ndarray, n: float) -> np.ndarray:
    """Sum over k of images[k] convolved with the cos^n psf of distance distances_px[k].

    Linear convolution by FFT on a (2H, 2W) canvas with the psf sampled at pixel shifts below
    (H, W) and zero beyond: no wrap-around (the psf's r^-4 tail is long), scatter leaving the
    detector is lost.
    """
    _, h, w = images.shape
    dy = np.fft.fftfreq(2 * h, 1.0 / (2 * h))[:, None]
    dx = np.fft.fftfreq(2 * w, 1.0 / (2 * w))[None, :]
    r2 = dy * dy + dx * dx
    inside = (np.abs(dy) < h) & (np.abs(dx) < w)
    acc = np.zeros((2 * h, w + 1), dtype=np.complex128)
    for img, a in zip(images, distances_px):
        if not np.any(img):
            continue
        a2 = float(a) ** 2
        psf = np.where(inside, (n + 1.0) * a2 ** ((n + 1.0) / 2) / (2.0 * np.pi * (r2 + a2) ** ((n + 3.0) / 2)), 0.0)
        acc += np.fft.rfft2(img, s=(2 * h, 2 * w)) * np.fft.rfft2(psf)
    return np.fft.irfft2(acc, s=(2 * h, 2 * w))[:h, :w]


def scatter_kernel_superposition(
    primary_relative_intensity: Any,
    water_equivalent_thickness_mm: Any | None = None,
    pixel_mm: float = 1.0,
    params: ScatterParams | None = None,
    spectrum: Any | None = None,
    geometry: ScatterGeometry | None = None,
) -> np.ndarray:
    """Scatter image (relative-intensity units, before any grid) by kernel superposition.

    Parameters
    ----------
    primary_relative_intensity : array_like
        (H, W) primary I/I0 (noise-free), zero outside the collimated field.
    water_equivalent_thickness_mm : array_like or None
        (H, W) water-equivalent thickness (mm); None derives it from -ln(P) with ``spectrum``.
    pixel_mm : float
        Detector pixel pitch, mm.
    params : ScatterParams
    spectrum : Spectrum, str or dict, optional
        Incident spectrum (its mean energy sets the strength); default ``params.reference_spectrum``.
    geometry : ScatterGeometry, optional
        Source-detector and source-isocenter distances (default MobileCArm).

    Returns
    -------
    np.ndarray
        (H, W) float64 scatter S (the image centre is the principal point).
    """
    p = params or ScatterParams()
    g = geometry or ScatterGeometry()
    prim = np.asarray(primary_relative_intensity, dtype=np.float64)
    if prim.ndim != 2 or prim.size == 0:
        raise InputError(f"primary_relative_intensity must be a 2-D image, got shape {prim.shape}")
    check_array("primary_relative_intensity", prim)
    px = check_positive("pixel_mm", pixel_mm)
    spec = spectrum if spectrum is not None else p.reference_spectrum
    if water_equivalent_thickness_mm is None:
        t = water_equivalent_thickness_mm_from(prim, spec)
    else:
        t = np.asarray(water_equivalent_thickness_mm, dtype=np.float64)
        if t.shape != prim.shape:
            raise InputError(f"water_equivalent_thickness_mm shape {t.shape} differs from primary {prim.shape}")
        if not np.all(np.isfinite(t)):
            raise InputError("water_equivalent_thickness_mm must be finite")
        t = np.maximum(t, 0.0)
    source = prim * scatter_strength(t, _mean_energy_kev(spec), p)
    if not np.any(source > 0):
        return np.zeros_like(prim)
    lo, hi = float(t[source > 0].min()), float(t[source > 0].max())
    n = int(p.n_nodes) if hi - lo > 1e-6 else 1
    nodes = np.linspace(lo, hi, n) if n > 1 else np.array([lo])
    if n == 1:
        parts = source[None]
    else:
        # hat-function weights over the nodes; they sum to 1 at every pixel
        pos = np.clip((t - lo) / (hi - lo) * (n - 1), 0.0, n - 1)
        i0 = np.minimum(np.floor(pos).astype(int), n - 2)
        frac = pos - i0
        parts = np.zeros((n, *prim.shape), dtype=np.float64)
        rows, cols = np.indices(prim.shape)
        parts[i0, rows, cols] += source * (1.0 - frac)
        parts[i0 + 1, rows, cols] += source * frac
    distances_mm = emission_distance_mm(nodes, g, p)
    demag = (g.source_to_detector_mm - distances_mm) / g.source_to_detector_mm
    f = _block_factor(prim.shape, float(distances_mm.min() / px), int(p.max_downsample))
    if f > 1:
        n_parts, h, w = parts.shape
        parts = parts.reshape(n_parts, h // f, f, w // f, f).sum(axis=(2, 4))  # block sums
    parts = np.stack([_demagnify(part, m) for part, m in zip(parts, demag)])
    scatter = _psf_convolve(parts, distances_mm / (px * f), float(p.angular_exponent))
    if f > 1:
        scatter = np.repeat(np.repeat(scatter, f, axis=0), f, axis=1) / (f * f)
    return np.maximum(scatter, 0.0)


def _block_factor(shape: tuple[int, int], min_distance_px: float, max_factor: int) -> int:
    """Largest f <= min(max_factor, D/8) dividing both image sides (1 if none)."""
    target = min(max_factor, int(min_distance_px // 8))
    gcd = int(np.gcd(shape[0], shape[1]))
    for f in range(max(target, 1), 0, -1):
        if gcd % f == 0:
            return f
    return 1


# keep a name that does not clash with the keyword argument above
water_equivalent_thickness_mm_from = water_equivalent_thickness_mm


def apply_grid(primary: Any, scatter: Any, grid: AntiScatterGrid | None) -> tuple[np.ndarray, np.ndarray]:
    """Primary and scatter behind the grid: (Tp * P, Ts * S); None means no grid."""
    g = grid or NO_GRID
    return (
        np.asarray(primary, dtype=np.float64) * g.primary_transmission,
        np.asarray(scatter, dtype=np.float64) * g.scatter_transmission,
    )


def add_scatter(
    primary_relative_intensity: Any,
    pixel_mm: float,
    water_equivalent_thickness_mm: Any | None = None,
    params: ScatterParams | None = None,
    grid: AntiScatterGrid | None = None,
    spectrum: Any | None = None,
    geometry: ScatterGeometry | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Flat-field-normalised image with scatter, and the scatter part.

    The flat field (no object) is also taken through the grid, so after normalisation the image is
    ``P + (Ts / Tp) * S``: the grid lowers the SPR by its selectivity Tp/Ts.

    Returns
    -------
    (total, scatter) : tuple of np.ndarray
        ``total = P + (Ts/Tp) S`` and ``scatter = (Ts/Tp) S``, both relative to the flat field.
    """
    g = grid or NO_GRID
    prim = np.asarray(primary_relative_intensity, dtype=np.float64)
    s = scatter_kernel_superposition(prim, water_equivalent_thickness_mm, pixel_mm, params, spectrum, geometry)
    s_rel = s * (g.scatter_transmission / g.primary_transmission)
    return prim + s_rel, s_rel
