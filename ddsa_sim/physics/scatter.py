"""Scatter by kernel superposition (SKS), and an anti-scatter grid.

Model (all parameters in :class:`ScatterParams`, values and sources in docs/physics.md):

* Each pixel emits scatter in proportion to its primary signal and the scatter-to-primary ratio of
  its water-equivalent thickness t: ``source = P * SPR(t)``, with the power law
  ``SPR(t) = SPR_10 * (t / 10 cm) ** b``, ``b = log2(SPR_20 / SPR_10)`` (SPR_10 = 1.5, SPR_20 = 4.5
  without a grid, large field, 70-90 kVp, from published measurements).
* The source is spread over the detector by a broad Gaussian kernel whose width grows with the
  thickness, ``sigma(t) = sigma_0 + sigma_slope * t`` (mm at the detector). Thickness dependence
  is handled by splitting the source with linear (hat) weights over a few thickness nodes and
  convolving each part with the node's kernel (Ohnesorge et al. 1999; Sun & Star-Lack 2010).
* Convolution is done by FFT on the mirror-extended image (size 2H x 2W) with the Gaussian
  transfer function, whose zero-frequency value is 1. The mirror extension is symmetric and the
  kernel is symmetric, so scatter that would leave an edge is exactly balanced by scatter from the
  mirror image: **energy is conserved exactly**, ``sum(scatter) == sum(P * SPR(t))``, and a uniform
  slab gives exactly ``SPR(t)`` in every pixel (the literature SPR of a large field).

Units: primary and scatter are relative intensities (fractions of the unattenuated flat field).
The spectral shift of scattered photons is not modelled (SPR is defined on detector signal).
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
    "ScatterParams",
    "add_scatter",
    "apply_grid",
    "scatter_kernel_superposition",
    "spr_model",
    "water_equivalent_thickness_mm",
]


@dataclass(frozen=True)
class ScatterParams:
    """Parameters of the scatter model (defaults: no grid, large field, 70-90 kVp).

    Attributes
    ----------
    spr_at_10cm, spr_at_20cm : float
        Scatter-to-primary ratio behind 10 and 20 cm of water (no grid).
    sigma0_mm, sigma_slope_mm_per_cm : float
        Kernel standard deviation at the detector, ``sigma0_mm + sigma_slope_mm_per_cm * t_cm``.
    n_nodes : int
        Number of thickness nodes for the thickness-dependent kernel.
    reference_spectrum : str
        Spectrum used to turn -ln(P) into water-equivalent thickness when none is given.
    max_downsample : int
        Largest block size (pixels) for computing the smooth scatter on a coarser grid; the block
        size f also stays <= sigma/8 and divides both image sides (f = 1 disables). Block sums and
        even redistribution keep the total exact.
    """

    spr_at_10cm: float = 1.5
    spr_at_20cm: float = 4.5
    sigma0_mm: float = 30.0
    sigma_slope_mm_per_cm: float = 2.0
    n_nodes: int = 6
    reference_spectrum: str = "90KV_AL40"
    max_downsample: int = 8

    def __post_init__(self) -> None:
        for name in ("spr_at_10cm", "spr_at_20cm", "sigma0_mm"):
            check_positive(f"scatter {name}", getattr(self, name))
        check_positive("scatter sigma_slope_mm_per_cm", self.sigma_slope_mm_per_cm, allow_zero=True)
        for name in ("n_nodes", "max_downsample"):
            check_integer(f"scatter {name}", getattr(self, name), low=1)

    @property
    def exponent(self) -> float:
        """Power-law exponent b of SPR(t)."""
        return float(np.log2(self.spr_at_20cm / self.spr_at_10cm))

    def sigma_mm(self, thickness_mm: Any) -> np.ndarray:
        """Kernel standard deviation at the detector (mm) for a water-equivalent thickness (mm)."""
        return self.sigma0_mm + self.sigma_slope_mm_per_cm * np.asarray(thickness_mm, dtype=np.float64) / 10.0


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


def spr_model(thickness_mm: Any, params: ScatterParams | None = None) -> np.ndarray:
    """SPR(t) = SPR_10 (t / 100 mm) ** b for water-equivalent thickness t (mm, clipped at 0)."""
    p = params or ScatterParams()
    t = np.maximum(np.asarray(thickness_mm, dtype=np.float64), 0.0)
    return p.spr_at_10cm * (t / 100.0) ** p.exponent


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
    q = neglog(relative_intensity)
    t = np.interp(q, q_table, t_table)
    slope = (t_table[-1] - t_table[-2]) / (q_table[-1] - q_table[-2])
    beyond = q > q_table[-1]
    if np.any(beyond):
        t = np.where(beyond, t_table[-1] + (q - q_table[-1]) * slope, t)
    return np.where(q < 0, 0.0, t)


def _mirror_fft_gaussian(images: np.ndarray, sigmas_px: np.ndarray) -> np.ndarray:
    """Sum over k of images[k] convolved with a Gaussian of sigma sigmas_px[k] (mirror boundaries).

    One (2H, 2W) transform per part, accumulated in the frequency domain (bounded memory).
    """
    _, h, w = images.shape
    fy = np.fft.fftfreq(2 * h)[:, None]
    fx = np.fft.rfftfreq(2 * w)[None, :]
    f2 = fy * fy + fx * fx
    acc = np.zeros((2 * h, w + 1), dtype=np.complex128)
    for k, s in enumerate(sigmas_px):
        if not np.any(images[k]):
            continue
        ext = np.empty((2 * h, 2 * w), dtype=np.float64)  # symmetric (mirror) extension
        ext[:h, :w] = images[k]
        ext[h:, :w] = images[k][::-1, :]
        ext[:, w:] = ext[:, :w][:, ::-1]
        acc += np.fft.rfft2(ext) * np.exp(-2.0 * np.pi**2 * float(s) ** 2 * f2)
    out = np.fft.irfft2(acc, s=(2 * h, 2 * w))
    return out[:h, :w]


def scatter_kernel_superposition(
    primary_relative_intensity: Any,
    water_equivalent_thickness_mm: Any | None = None,
    pixel_mm: float = 1.0,
    params: ScatterParams | None = None,
    spectrum: Any | None = None,
) -> np.ndarray:
    """Scatter image (relative-intensity units, before any grid) by kernel superposition.

    Parameters
    ----------
    primary_relative_intensity : array_like
        (H, W) primary I/I0 (noise-free).
    water_equivalent_thickness_mm : array_like or None
        (H, W) water-equivalent thickness; None derives it from -ln(P) with ``spectrum``
        (default ``params.reference_spectrum``).
    pixel_mm : float
        Detector pixel pitch, mm.
    params : ScatterParams
    spectrum : Spectrum, str or dict, optional

    Returns
    -------
    np.ndarray
        (H, W) float64 scatter S with ``S.sum() == (P * SPR(t)).sum()`` (to rounding).
    """
    p = params or ScatterParams()
    prim = np.asarray(primary_relative_intensity, dtype=np.float64)
    if prim.ndim != 2 or prim.size == 0:
        raise InputError(f"primary_relative_intensity must be a 2-D image, got shape {prim.shape}")
    check_array("primary_relative_intensity", prim)
    px = check_positive("pixel_mm", pixel_mm)
    if water_equivalent_thickness_mm is None:
        t = water_equivalent_thickness_mm_from(prim, spectrum if spectrum is not None else p.reference_spectrum)
    else:
        t = np.asarray(water_equivalent_thickness_mm, dtype=np.float64)
        if t.shape != prim.shape:
            raise InputError(f"water_equivalent_thickness_mm shape {t.shape} differs from primary {prim.shape}")
        if not np.all(np.isfinite(t)):
            raise InputError("water_equivalent_thickness_mm must be finite")
        t = np.maximum(t, 0.0)
    source = prim * spr_model(t, p)
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
    sigmas_px = p.sigma_mm(nodes) / px
    f = _block_factor(prim.shape, float(sigmas_px.min()), int(p.max_downsample))
    if f > 1:
        n_parts, h, w = parts.shape
        coarse = parts.reshape(n_parts, h // f, f, w // f, f).sum(axis=(2, 4))  # block sums
        scatter_coarse = _mirror_fft_gaussian(coarse, sigmas_px / f)
        scatter = np.repeat(np.repeat(scatter_coarse, f, axis=0), f, axis=1) / (f * f)
    else:
        scatter = _mirror_fft_gaussian(parts, sigmas_px)
    return np.maximum(scatter, 0.0)


def _block_factor(shape: tuple[int, int], min_sigma_px: float, max_factor: int) -> int:
    """Largest f <= min(max_factor, sigma/8) dividing both image sides (1 if none)."""
    target = min(max_factor, int(min_sigma_px // 8))
    g = int(np.gcd(shape[0], shape[1]))
    for f in range(max(target, 1), 0, -1):
        if g % f == 0:
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
    s = scatter_kernel_superposition(prim, water_equivalent_thickness_mm, pixel_mm, params, spectrum)
    s_rel = s * (g.scatter_transmission / g.primary_transmission)
    return prim + s_rel, s_rel
