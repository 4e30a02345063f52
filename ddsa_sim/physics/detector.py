"""Detector response: spectral integration, -ln, and recording (noise, blur, gain, quantisation).

A :class:`DetectorResponse` says what one photon of energy E adds to a pixel's signal:

* energy-integrating (``kind="energy"``): ``E eta(E)``, the energy absorbed in the scintillator;
* photon-counting (``kind="photon"``): ``eta(E)`` for E at or above the energy threshold, else 0;

with ``eta(E) = 1 - exp(-(mu/rho)_photo(E) rho t)`` the photoabsorption probability in a CsI layer of
thickness t (xraydb; each absorbed photon deposits E, K-fluorescence escape and Compton scattering in
the layer neglected). ``scintillator_mm=None`` is the ideal detector, ``eta = 1``: DeepDRR's model
(``"energy"`` and ``"photon"`` as plain strings mean these ideal responses). Then

    I / I0 = sum_b w_b exp(-sum_m (mu/rho)_mb A_m) / sum_b w_b,    w_b = p_b x response(E_b),

with ``A_m`` the area densities (g/cm^2) and ``p_b`` the photon probabilities. Results are relative to
the unattenuated beam, so no per-image scaling is ever needed: ``-ln(I/I0)`` is the flat-field-
normalised line integral. The quantum noise of the signal follows from the same sums
(:func:`flat_field_quanta`, docs/physics.md "Quantum noise").
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Literal

import numba
import numpy as np

from ddsa_sim import InputError
from ddsa_sim._bitcast import float32_from_bits
from ddsa_sim._openmp import numba_threads  # also sets the OpenMP wait policy
from ddsa_sim.checks import check_array, check_integer, check_positive
from ddsa_sim.physics.lag import check_lag

__all__ = [
    "DEEPDRR_NOISE_KERNEL",
    "DEFAULT_SCINTILLATOR_MM",
    "MODES",
    "NEGLOG_FLOOR",
    "Detector",
    "DetectorResponse",
    "apply_kernel",
    "blur_kernel",
    "detector_response",
    "flat_field_quanta",
    "integrate_spectrum",
    "neglog",
    "spectral_weights",
]

MODES = ("energy", "photon")

#: CsI:Tl thickness (mm) of the default energy-integrating panel: a common thickness of C-arm
#: flat-panel scintillators (0.5-0.6 mm).
DEFAULT_SCINTILLATOR_MM = 0.6

#: Smallest relative intensity passed to the log: -ln(1e-10) = 23.03, far beyond any clinical
#: attenuation (30 cm of bone is ~ -ln I = 15) and avoids inf where the beam is fully blocked.
NEGLOG_FLOOR = 1e-10

#: The 3x3 noise-correlation kernel DeepDRR uses (from A. S. Wang et al., "Low-dose preview for
#: patient-specific, task-specific technique selection in cone-beam CT", Med Phys 41(7) 2014).
#: Its weights sum to 1.42 but their squares sum to 0.9944, so correlating a white noise field with
#: it keeps the per-pixel variance (to 0.6 %) and only shapes the noise power spectrum.
DEEPDRR_NOISE_KERNEL = np.array(
    [[0.03, 0.06, 0.02], [0.11, 0.98, 0.11], [0.02, 0.06, 0.03]],
    dtype=np.float64,
)


def _check_mode(mode: str) -> str:
    m = str(mode).strip().lower()
    if m not in MODES:
        raise InputError(f"detector mode {mode!r} unknown; use 'energy' or 'photon'")
    return m


@functools.lru_cache(maxsize=64)
def _csi_efficiency(energies_kev: tuple[float, ...], thickness_mm: float) -> np.ndarray:
    from ddsa_sim.physics.attenuation import MATERIALS, mass_attenuation

    csi = MATERIALS["cesium iodide"]
    mu = mass_attenuation(csi, np.asarray(energies_kev), kind="photo") * csi.density_g_per_cc  # 1/cm
    eta = -np.expm1(-mu * thickness_mm / 10.0)
    eta.setflags(write=False)
    return eta


@dataclass(frozen=True)
class DetectorResponse:
    """What one photon adds to a pixel's signal (module docstring).

    Attributes
    ----------
    kind : {"energy", "photon"}
        Energy-integrating (signal = absorbed energy) or photon-counting (signal = counts).
    scintillator_mm : float or None
        CsI:Tl thickness, mm (solid CsI; a columnar layer of fill factor f acts as f times its
        thickness). None: ideal absorber, every photon detected (DeepDRR parity).
    threshold_kev : float
        Photon counting: photons below this energy are not counted (0: all).
    """

    kind: Literal["energy", "photon"] = "energy"
    scintillator_mm: float | None = DEFAULT_SCINTILLATOR_MM
    threshold_kev: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", _check_mode(self.kind))
        if self.scintillator_mm is not None:
            object.__setattr__(self, "scintillator_mm", check_positive("detector scintillator_mm",
                                                                       self.scintillator_mm))
        object.__setattr__(self, "threshold_kev", check_positive("detector threshold_kev", self.threshold_kev,
                                                                 allow_zero=True))
        if self.threshold_kev > 0 and self.kind != "photon":
            raise InputError("detector threshold_kev applies to a photon-counting detector (mode 'photon') only")

    def efficiency(self, energies_kev: Any) -> np.ndarray:
        """Fraction of incident photons of each energy that is detected (absorbed and counted)."""
        e = np.asarray(energies_kev, dtype=np.float64)
        eta = (np.ones(e.shape) if self.scintillator_mm is None
               else _csi_efficiency(tuple(e.reshape(-1).tolist()), self.scintillator_mm).reshape(e.shape))
        return eta * (e >= self.threshold_kev)

    def moments(self, spectrum: Any) -> tuple[np.ndarray, np.ndarray]:
        """Per-bin signal weights and squared signal weights per incident photon, (B,) each.

        Signal ``p_b eta_b E_b`` and ``p_b eta_b E_b^2`` (energy-integrating; E in keV) or
        ``p_b eta_b`` twice (counting: every count adds 1).
        """
        p = np.asarray(spectrum.fluence, dtype=np.float64)
        e = np.asarray(spectrum.energies_kev, dtype=np.float64)
        pe = p * self.efficiency(e)
        if self.kind == "photon":
            return pe, pe
        return pe * e, pe * e * e


def detector_response(mode: str | DetectorResponse) -> DetectorResponse:
    """A :class:`DetectorResponse`; the strings ``"energy"``/``"photon"`` are the ideal detectors."""
    if isinstance(mode, DetectorResponse):
        return mode
    return DetectorResponse(_check_mode(mode), None)


def _moments(spectrum: Any, response: DetectorResponse) -> tuple[np.ndarray, np.ndarray]:
    """:meth:`DetectorResponse.moments`, refused where the detector sees none of the spectrum."""
    w1, w2 = response.moments(spectrum)
    if w1.sum() <= 0:
        top = float(np.max(np.asarray(spectrum.energies_kev)[np.asarray(spectrum.fluence) > 0], initial=0.0))
        raise InputError(f"spectrum {getattr(spectrum, 'name', '')!s} (photons up to {top:g} keV) has no fluence the "
                         f"detector responds to (energy threshold {response.threshold_kev:g} keV)")
    return w1, w2


def spectral_weights(spectrum: Any, mode: str | DetectorResponse = "energy") -> np.ndarray:
    """(B,) detector signal weights per bin, normalised to sum 1 (module docstring)."""
    w1 = _moments(spectrum, detector_response(mode))[0]
    return w1 / w1.sum()


def flat_field_quanta(spectrum: Any, mode: str | DetectorResponse, photons_per_pixel: float) -> float:
    """Noise-equivalent quanta of the flat field: ``N0 (sum w1)^2 / sum w2`` = N0 x efficiency x Swank.

    With ``w1, w2`` the per-photon signal and squared signal weights (:meth:`DetectorResponse.moments`),
    a pixel's signal over N0 incident photons has relative variance ``sum w2 / (N0 (sum w1)^2)``.
    For photon counting this is N0 times the detected fraction; for an energy-integrating panel it is
    also times the Swank factor ``M1^2 / (M0 M2)`` of the absorbed-energy distribution.
    """
    n0 = check_positive("photons_per_pixel", photons_per_pixel)
    w1, w2 = _moments(spectrum, detector_response(mode))
    return float(n0 * w1.sum() ** 2 / w2.sum())


def integrate_spectrum(
    area_density_g_per_cm2: Any, mu_over_rho: Any, spectrum: Any, mode: str | DetectorResponse = "energy",
    dtype: type = np.float64, threads: int | None = None, second_moment: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Relative detected intensity I/I0 in [0, 1] (and, if asked, the relative second moment).

    Parameters
    ----------
    area_density_g_per_cm2 : array_like
        (..., M) area density of each material along each ray, g/cm^2.
    mu_over_rho : array_like
        (M, B) mass attenuation coefficients, cm^2/g, at the spectrum's bins
        (:func:`ddsa_sim.physics.attenuation.attenuation_matrix`).
    spectrum : Spectrum or sequence of K Spectrum
        One spectrum, or several on the same energy bins (e.g. the heel effect's bands): all of
        them in one pass that shares the exponentials, each relative to its own flat field.
    mode : {"energy", "photon"} or DetectorResponse
        The detector's response (strings: ideal energy-integrating or photon-counting).
    dtype : {np.float64, np.float32}
        float64 (default): exact to rounding, accumulated per pixel with no (pixels x bins)
        temporary. float32: for images kept in float32 (the projector's); SIMD over blocks of
        pixels with a float32 exp (:func:`_exp_f32`), about 5x faster, relative error below 1e-5;
        terms below exp(-60) are dropped (a relative intensity under 1e-26 reads 0).
    threads : int, optional
        Threads for either path (default: numba's current thread count). Results do not depend on it.
    second_moment : bool
        Also return ``Q = sum_b w2_b T_b / sum_b w2_b`` with ``w2`` the squared signal weights and
        ``T_b`` the bin's transmission, from the same exponentials (one spectral pass): the expected
        noise-equivalent quanta of a pixel are ``flat_field_quanta * I^2 / Q``.

    Returns
    -------
    np.ndarray or (np.ndarray, np.ndarray)
        (...) of ``dtype``: I, or (I, Q) with ``second_moment``; (K, ...) each for a sequence of spectra.
    """
    a = np.asarray(area_density_g_per_cm2, dtype=np.float64)
    mu = np.asarray(mu_over_rho, dtype=np.float64)
    if mu.ndim != 2:
        raise InputError(f"mu_over_rho must be (M, B), got shape {mu.shape}")
    n_mat, n_bins = mu.shape
    several = isinstance(spectrum, (list, tuple))
    spectra = list(spectrum) if several else [spectrum]
    for spec in spectra:
        if n_bins != len(spec.energies_kev):
            raise InputError(f"mu_over_rho has {n_bins} bins but the spectrum has {len(spec.energies_kev)}")
    if a.ndim == 0 or a.shape[-1] != n_mat:
        raise InputError(f"area_density_g_per_cm2 last axis must have {n_mat} materials, got shape {a.shape}")
    if dtype not in (np.float64, np.float32):
        raise InputError(f"integrate_spectrum dtype must be float64 or float32, got {dtype}")
    response = detector_response(mode)
    rows = []
    for spec in spectra:  # rows: w1 of each spectrum, then w2 of each
        w1, w2 = _moments(spec, response)
        rows.append((w1 / w1.sum(), w2 / w2.sum()))
    w = np.stack([r[0] for r in rows] + ([r[1] for r in rows] if second_moment else []))
    flat = np.ascontiguousarray(a.reshape(-1, n_mat))
    with numba_threads(threads):
        if dtype == np.float32:
            out = np.empty((w.shape[0], flat.shape[0]), dtype=np.float32)
            _beer_lambert_f32(flat, np.ascontiguousarray(mu, dtype=np.float32), w.astype(np.float32), out)
        else:
            out = np.empty((w.shape[0], flat.shape[0]), dtype=np.float64)
            _beer_lambert_sum(flat, np.ascontiguousarray(mu), np.ascontiguousarray(w, dtype=np.float64), out)
    k = len(spectra)
    shaped = out.reshape(w.shape[0], *a.shape[:-1])
    i, q = (shaped[:k], shaped[k:]) if several else (shaped[0], shaped[1] if second_moment else None)
    return (i, q) if second_moment else i


#: Exponents below this give a zero term. exp(-60) = 9e-27, sixteen orders under the -ln floor
#: (:data:`NEGLOG_FLOOR`), and the cut keeps w_b exp(-x) out of float32 subnormals, which cost
#: about 100x a normal multiply.
_EXP_CUTOFF = -60.0

#: Pixels per block of the float32 path: the block's area densities, exponents and sums stay in
#: the L1 cache (~24 KB).
_BLOCK = 1024


@numba.njit(inline="always", cache=True)
def _exp_f32(x):
    """exp(x) in float32, within 2 ulp, 0 below :data:`_EXP_CUTOFF`.

    numba can vectorise this where it cannot vectorise ``math.exp`` (that needs Intel SVML, which
    pip's llvmlite lacks), and NumPy's float32 exp ran at ~2 ns a value on the benchmark machine
    (AVX2): 3-4x slower than this. The method and coefficients are Cephes ``expf``
    (S. L. Moshier): x = n ln2 + r with |r| <= ln2/2 (ln2 split in two for exactness),
    exp(r) by a degree-6 polynomial, 2^n built in the exponent bits.
    """
    y = np.float32(_EXP_CUTOFF) if x < np.float32(_EXP_CUTOFF) else x  # keeps 2^n in range
    y = np.float32(88.0) if y > np.float32(88.0) else y
    n = np.floor(y * np.float32(1.44269504088896341) + np.float32(0.5))
    r = y - n * np.float32(0.693359375)
    r = r + n * np.float32(2.12194440e-4)
    p = np.float32(1.9875691500e-4)
    p = p * r + np.float32(1.3981999507e-3)
    p = p * r + np.float32(8.3334519073e-3)
    p = p * r + np.float32(4.1665795894e-2)
    p = p * r + np.float32(1.6666665459e-1)
    p = p * r + np.float32(5.0000001201e-1)
    p = p * (r * r) + r + np.float32(1.0)
    e = p * float32_from_bits(np.int32((np.int32(n) + np.int32(127)) << np.int32(23)))
    return np.float32(0.0) if x < np.float32(_EXP_CUTOFF) else e


@numba.njit(parallel=True, cache=True, fastmath={"contract"})
def _beer_lambert_f32(area, mu, w, out):
    """out[k, p] = sum_b w[k, b] exp(-sum_m area[p, m] mu[m, b]) in float32, parallel over blocks of pixels.

    Within a block the pixels are innermost, so every loop is a SIMD loop over pixels; each pixel's
    arithmetic is the same whatever the block or thread, so results do not depend on the thread count.
    The K weight rows share one exponential per bin and pixel.
    """
    n_pix = area.shape[0]
    n_mat, n_bins = mu.shape
    n_w = w.shape[0]
    for blk in numba.prange((n_pix + _BLOCK - 1) // _BLOCK):
        lo = blk * _BLOCK
        n = min(_BLOCK, n_pix - lo)
        a = np.empty((n_mat, n), dtype=np.float32)
        line = np.empty(n, dtype=np.float32)
        total = np.zeros((n_w, n), dtype=np.float32)
        for p in range(n):
            for m in range(n_mat):
                a[m, p] = area[lo + p, m]
        for b in range(n_bins):
            used = False
            for k in range(n_w):
                used = used or w[k, b] != 0
            if not used:
                continue
            mu0 = mu[0, b]
            for p in range(n):
                line[p] = a[0, p] * mu0
            for m in range(1, n_mat):
                mub = mu[m, b]
                for p in range(n):
                    line[p] += a[m, p] * mub
            if n_w == 1:
                wb = w[0, b]
                for p in range(n):
                    total[0, p] += wb * _exp_f32(-line[p])
            else:
                for p in range(n):
                    line[p] = _exp_f32(-line[p])
                for k in range(n_w):
                    wkb = w[k, b]
                    for p in range(n):
                        total[k, p] += wkb * line[p]
        for k in range(n_w):
            for p in range(n):
                out[k, lo + p] = total[k, p]


@numba.njit(parallel=True, cache=True)
def _beer_lambert_sum(area, mu, w, out):
    """out[k, p] = sum_b w[k, b] exp(-sum_m mu[m, b] area[p, m]), parallel over pixels (no temporaries)."""
    n_mat, n_bins = mu.shape
    n_w = w.shape[0]
    for p in numba.prange(area.shape[0]):
        for k in range(n_w):
            out[k, p] = 0.0
        for b in range(n_bins):
            line = 0.0
            for m in range(n_mat):
                line += mu[m, b] * area[p, m]
            e = math.exp(-line)
            for k in range(n_w):
                out[k, p] += w[k, b] * e


def neglog(relative_intensity: Any, floor: float | np.ndarray = NEGLOG_FLOOR) -> np.ndarray:
    """-ln(I/I0), with I/I0 clipped below at ``floor`` (default 1e-10, i.e. at most 23.03; or an array
    broadcasting to ``relative_intensity``, one floor per pixel).

    Values above 1 (noise in an unattenuated region) are kept, giving small negative results, so
    noise statistics stay unbiased.
    """
    floor = check_array("neglog floor", np.asarray(floor, dtype=np.float64), positive=True)
    x = np.asarray(relative_intensity, dtype=np.float64)
    return -np.log(np.maximum(x, floor))


def blur_kernel(kind: str, sigma_px: float = 0.0) -> np.ndarray | None:
    """Detector blur kernel normalised to unit sum (an MTF with MTF(0) = 1), or None for "none".

    ``"deepdrr3x3"`` is :data:`DEEPDRR_NOISE_KERNEL` / its sum; ``"gaussian"`` a sampled Gaussian of
    standard deviation ``sigma_px`` pixels, truncated at 4 sigma.
    """
    k = str(kind).strip().lower()
    if k == "none":
        return None
    if k == "deepdrr3x3":
        return DEEPDRR_NOISE_KERNEL / DEEPDRR_NOISE_KERNEL.sum()
    if k == "gaussian":
        s = check_positive("gaussian blur sigma_px", sigma_px)
        r = max(1, int(np.ceil(4 * s)))
        x = np.arange(-r, r + 1, dtype=np.float64)
        g = np.exp(-0.5 * (x / s) ** 2)
        g2 = np.outer(g, g)
        return g2 / g2.sum()
    raise InputError(f"blur {kind!r} unknown; use 'none', 'deepdrr3x3' or 'gaussian'")


def apply_kernel(image: np.ndarray, kernel: np.ndarray | None) -> np.ndarray:
    """2-D correlation with a small kernel, edges extended by reflection (float64)."""
    img = np.asarray(image, dtype=np.float64)
    if kernel is None:
        return img.copy()
    from scipy import ndimage

    if img.ndim == 2:
        return ndimage.correlate(img, kernel, mode="reflect")
    if img.ndim < 2:
        raise InputError(f"image must be at least 2-D, got shape {img.shape}")
    flat = img.reshape(-1, *img.shape[-2:])
    out = np.stack([ndimage.correlate(f, kernel, mode="reflect") for f in flat])
    return out.reshape(img.shape)


@dataclass
class Detector:
    """A flat-panel detector that turns expected photon counts into stored pixel values.

    Attributes
    ----------
    mode : {"energy", "photon"}
        Energy-integrating or photon-counting.
    scintillator_mm : float or None
        CsI:Tl thickness (mm) of the absorber (:class:`DetectorResponse`); None: ideal detector
        (every photon detected, DeepDRR's model).
    threshold_kev : float
        Energy threshold of a photon-counting detector, keV.
    gain : float
        Digital units per detected photon (or photon-equivalent for an energy-integrating panel).
    bit_depth : int or None
        Stored bit depth (e.g. 12 -> values 0..4095, rounded and clipped); None keeps floats.
    electronic_noise_std : float
        Additive Gaussian noise, standard deviation in photons per pixel (before gain).
    blur : {"none", "deepdrr3x3", "gaussian"}
        Detector blur applied to the recorded image (signal and quantum noise), unit-sum kernel.
    sigma_px : float
        Gaussian blur standard deviation in pixels (``blur="gaussian"``).
    quantum_noise : bool
        Draw Poisson counts; False records the expected counts (noise-free reference).
    lag : tuple of float
        Frame lags ``L_1 .. L_M``: fractions of a frame's charge read out 1 .. M frames later
        (:mod:`ddsa_sim.physics.lag`; a-Si:H panels about 0.02-0.10, 0.007, 0.004, 0.003). Empty: none.
        Applied across the frames of a run (:func:`ddsa_sim.scene.render_frames`), not by :meth:`record`.

    Notes
    -----
    :meth:`record` draws Poisson counts of the expected values it is given; the scene's recording
    passes noise-equivalent quanta (detected photons, times the Swank factor for an
    energy-integrating panel: :func:`flat_field_quanta`).
    """

    mode: Literal["energy", "photon"] = "energy"
    scintillator_mm: float | None = DEFAULT_SCINTILLATOR_MM
    threshold_kev: float = 0.0
    gain: float = 1.0
    bit_depth: int | None = None
    electronic_noise_std: float = 0.0
    blur: str = "none"
    sigma_px: float = 0.0
    quantum_noise: bool = True
    lag: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        self.mode = _check_mode(self.mode)  # type: ignore[assignment]
        self._response = DetectorResponse(self.mode, self.scintillator_mm, self.threshold_kev)
        check_positive("detector gain", self.gain)
        if self.bit_depth is not None:
            self.bit_depth = check_integer("detector bit_depth (or None)", self.bit_depth, 1, 32)
        check_positive("detector electronic_noise_std", self.electronic_noise_std, allow_zero=True)
        self.lag = check_lag(self.lag)
        self._kernel = blur_kernel(self.blur, self.sigma_px)

    @property
    def max_value(self) -> float | None:
        """Largest stored value (2**bit_depth - 1), or None without quantisation."""
        return None if self.bit_depth is None else float(2**self.bit_depth - 1)

    @property
    def response(self) -> DetectorResponse:
        """The spectral response (mode, scintillator, threshold)."""
        return self._response

    def relative_intensity(self, area_density_g_per_cm2: Any, mu_over_rho: Any, spectrum: Any) -> np.ndarray:
        """:func:`integrate_spectrum` with this detector's response."""
        return integrate_spectrum(area_density_g_per_cm2, mu_over_rho, spectrum, self.response)

    def record(self, expected_photons_image: Any, rng: np.random.Generator) -> np.ndarray:
        """Stored pixel values from expected photon counts per pixel.

        Steps: Poisson(expected) (if ``quantum_noise``) -> blur -> + Gaussian electronic noise ->
        x gain -> round and clip to [0, 2**bit_depth - 1] (if ``bit_depth``).

        Parameters
        ----------
        expected_photons_image : array_like
            (..., H, W) expected detected photons per pixel (``N0 * I/I0``), >= 0.
        rng : numpy.random.Generator

        Returns
        -------
        np.ndarray
            float64 stored values (integers when quantised).
        """
        if not isinstance(rng, np.random.Generator):
            raise InputError("rng must be a numpy.random.Generator")
        lam = np.asarray(expected_photons_image, dtype=np.float64)
        check_array("expected_photons_image", lam)
        counts = rng.poisson(lam).astype(np.float64) if self.quantum_noise else lam.copy()
        counts = apply_kernel(counts, self._kernel) if self._kernel is not None else counts
        if self.electronic_noise_std > 0:
            counts = counts + rng.normal(0.0, self.electronic_noise_std, size=counts.shape)
        values = counts * self.gain
        if self.bit_depth is not None:
            values = np.clip(np.rint(values), 0.0, self.max_value)
        return values

    def flat_field(self, recorded: Any, photons_per_pixel: float | np.ndarray) -> np.ndarray:
        """Recorded values back to relative intensity: ``recorded / (gain * N0)``, at least the
        detector's floor ``max(1, electronic_noise_std) / N0`` (``N0`` one number, or one per pixel: a
        gain map's flat field).

        A pixel that counted no photon reports one quantum (or the electronic noise level, when
        larger), as offset-corrected detectors clip, so ``-ln`` stays finite at ``ln(N0)`` (11.5 for
        N0 = 1e5) instead of the 23.03 of :data:`NEGLOG_FLOOR`.
        """
        n0 = check_array("photons_per_pixel", np.asarray(photons_per_pixel, dtype=np.float64), positive=True)
        floor = max(1.0, float(self.electronic_noise_std)) / n0
        return np.maximum(np.asarray(recorded, dtype=np.float64) / (self.gain * n0), floor)

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "scintillator_mm": self.scintillator_mm,
            "threshold_kev": self.threshold_kev,
            "gain": self.gain,
            "bit_depth": self.bit_depth,
            "electronic_noise_std": self.electronic_noise_std,
            "blur": self.blur,
            "sigma_px": self.sigma_px,
            "quantum_noise": self.quantum_noise,
            "lag": list(self.lag),
        }
