"""Heel effect: the tube spectrum changes along the anode-cathode axis of the field.

Photons leaving toward the anode side cross more tungsten in the target: fewer of them, harder
(SpekPy, 90 kVp, 4 mm Al, 102 cm: 31 % less air kerma 15 cm toward the anode than 15 cm toward
the cathode, mean energy 51.0 vs 48.2 keV). SpekPy models it through its off-axis position ``x``
(:func:`ddsa_sim.physics.spectra.spekpy_spectrum` ``offaxis_x_cm``). The field is rendered with a
few such spectra ("bands") at evenly spaced positions along the anode direction on the detector,
each pixel's intensity interpolated linearly between the two bands around it; the intensity of each
band is relative to its own flat field (a gain-corrected detector), so the heel effect shows as the
beam hardening of the local spectrum. The fluence drop toward the anode is in
:attr:`HeelBands.relative_fluence`: it sets each pixel's photon count, hence its quantum noise
(``Scene.flat_field_quanta``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ddsa_sim import InputError
from ddsa_sim.physics.detector import DetectorResponse, integrate_spectrum
from ddsa_sim.physics.spectra import Spectrum, spekpy_spectrum

__all__ = ["ANODE_DIRECTIONS", "HeelBands", "HeelSettings", "heel_bands", "heel_intensity"]

#: Detector directions the anode can lie in: along the columns (u) or rows (v), either sign.
ANODE_DIRECTIONS = ("+u", "-u", "+v", "-v")


@dataclass(frozen=True)
class HeelSettings:
    """Heel effect switch, the detector direction toward the anode and the number of spectral bands.

    Attributes
    ----------
    enabled : bool
        Render the heel effect (needs a SpekPy spectrum; tabulated spectra have no off-axis model).
    anode : {"+u", "-u", "+v", "-v"}
        Detector direction (u: columns, v: rows, increasing index = "+") in which the anode lies.
        Default "-v": the anode toward the first row.
    bands : int
        Spectra across the field (>= 2), interpolated linearly in between.
    """

    enabled: bool = True
    anode: str = "-v"
    bands: int = 5

    def __post_init__(self) -> None:
        if self.anode not in ANODE_DIRECTIONS:
            raise InputError(f"heel anode must be one of {', '.join(ANODE_DIRECTIONS)}, got {self.anode!r}")
        if isinstance(self.bands, bool) or not isinstance(self.bands, int) or self.bands < 2:
            raise InputError(f"heel bands must be an integer >= 2, got {self.bands!r}")

    def to_dict(self) -> dict:
        return {"enabled": self.enabled, "anode": self.anode, "bands": self.bands}


@dataclass(frozen=True)
class HeelBands:
    """Spectra at positions along the anode direction, on the central spectrum's energy bins.

    Attributes
    ----------
    positions_mm : (K,) float64
        Distance from the principal point toward the anode, at the detector (mm), increasing.
    spectra : tuple of K Spectrum
        Photon spectra at those positions, all on the energies of the central spectrum, each with its absolute
        fluence (:attr:`photons_per_mm2_per_mas_at_1m`).
    relative_fluence : (K,) float64
        Each band's fluence over the central spectrum's (1 on the central ray).
    """

    positions_mm: np.ndarray
    spectra: tuple[Spectrum, ...]
    relative_fluence: np.ndarray

    @property
    def photons_per_mm2_per_mas_at_1m(self) -> np.ndarray:
        """(K,) SpekPy's absolute fluence at each position (drops toward the anode), the bands' own."""
        return np.array([s.photons_per_mm2_per_mas_at_1m for s in self.spectra])

    def weights(self, positions_mm: np.ndarray) -> np.ndarray:
        """(N, K) linear-interpolation weights of each position (held constant beyond the end bands)."""
        p = np.clip(np.asarray(positions_mm, dtype=np.float64).reshape(-1), self.positions_mm[0],
                    self.positions_mm[-1])
        k = np.clip(np.searchsorted(self.positions_mm, p, side="right") - 1, 0, len(self.positions_mm) - 2)
        t = (p - self.positions_mm[k]) / (self.positions_mm[k + 1] - self.positions_mm[k])
        w = np.zeros((p.size, len(self.positions_mm)))
        rows = np.arange(p.size)
        w[rows, k] = 1.0 - t
        w[rows, k + 1] += t
        return w


def heel_bands(spectrum: Spectrum, half_field_mm: float, source_to_detector_mm: float,
               bands: int = 5, node_kv: float = 2.0) -> HeelBands | None:
    """Spectra at ``bands`` positions from ``-half_field_mm`` (cathode) to ``+half_field_mm`` (anode).

    Each band is ``spectrum`` times SpekPy's off-axis / central fluence ratio per energy bin, taken
    at the kVp node ``ceil(kvp / node_kv) node_kv`` (a dataset draws a new kVp per sample and a
    SpekPy call costs about 1 s; SpekPy's calls are cached on disk). The ratio depends mostly on
    energy: 1 kV off the node the edge-to-edge fluence ratio stays within 2 % of SpekPy's (5 kV off:
    3 %, tests/test_physics_heel.py). At a node kVp the bands are SpekPy's off-axis spectra. Returns None
    for a spectrum without SpekPy settings (tabulated: no off-axis model).
    """
    s = dict(spectrum.settings)
    if "kvp" not in s:
        return None
    s.pop("offaxis_x_cm", None)
    anode_angle = float(s.get("anode_angle_deg", 12.0))
    edge_deg = float(np.degrees(np.arctan2(half_field_mm, source_to_detector_mm)))
    if edge_deg >= anode_angle:  # beyond the anode angle the target shadows the whole beam: no photons
        raise InputError(f"heel: the detector edge is {edge_deg:.1f} deg off axis toward the anode, beyond the "
                         f"{anode_angle:g} deg anode angle (no beam there); use a smaller detector or pixels, or a "
                         f"longer source-detector distance (in the API also HeelSettings(enabled=False))")
    s["kvp"] = float(np.ceil(s["kvp"] / node_kv - 1e-9) * node_kv) if node_kv > 0 else float(s["kvp"])
    central = spekpy_spectrum(**s)
    energies = spectrum.energies_kev

    def absolute(spec: Spectrum) -> np.ndarray:  # photons per bin at this spectrum's energies
        return np.interp(energies, spec.energies_kev, spec.fluence * spec.photons_per_mm2_per_mas_at_1m,
                         left=0.0, right=0.0)

    base = absolute(central)
    own = spectrum.photons_per_mm2_per_mas_at_1m or 1.0
    positions = np.linspace(-half_field_mm, half_field_mm, int(bands))
    spectra, relative = [], []
    for p in positions:
        # SpekPy's x at 100 cm from the focal spot, negative toward the anode
        off = spekpy_spectrum(**s, offaxis_x_cm=round(-100.0 * p / source_to_detector_mm, 9))
        ratio = np.divide(absolute(off), base, out=np.zeros_like(base), where=base > 0)
        f = spectrum.fluence * ratio  # spectrum.fluence sums to 1, so f sums to the relative fluence
        spectra.append(Spectrum(energies, f, f"{spectrum.name}@{p:+.1f}mm", own * f.sum(), spectrum.settings))
        relative.append(f.sum())
    return HeelBands(positions, tuple(spectra), np.array(relative))


def heel_intensity(area_density: np.ndarray, mu_cm2_per_g: np.ndarray, bands: HeelBands, weights: np.ndarray,
                   mode: str | DetectorResponse = "energy", threads: int | None = None,
                   second_moment: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Relative intensity (float32, shape of ``area_density[..., 0]``) with each pixel's local spectrum.

    All bands in one spectral pass (:func:`~ddsa_sim.physics.detector.integrate_spectrum` shares the
    exponentials), each pixel's value interpolated between the two bands around it.

    Parameters
    ----------
    area_density : (..., M) g/cm^2
    mu_cm2_per_g : (M, B) mass attenuation at the bands' energies
    bands : HeelBands
    weights : (N, K)
        Each pixel's interpolation weights, :meth:`HeelBands.weights` of its distance toward the
        anode (a scene computes them once per detector and keeps them).
    mode : {"energy", "photon"} or DetectorResponse
    threads : int, optional
        Threads of the spectral pass (results do not depend on it).
    second_moment : bool
        Also return the relative second signal moment ``Q`` of each pixel's local spectrum
        (the noise model's, :func:`~ddsa_sim.physics.detector.integrate_spectrum`), interpolated
        between the bands like ``I``.
    """
    a = np.asarray(area_density)
    w = np.asarray(weights, dtype=np.float32).T  # (K, N)
    n_pix = int(np.prod(a.shape[:-1]))
    if w.shape != (len(bands.spectra), n_pix):
        raise InputError(f"heel: weights of shape {w.T.shape} for {n_pix} pixels and {len(bands.spectra)} bands")
    out = integrate_spectrum(a.reshape(-1, a.shape[-1]), mu_cm2_per_g, list(bands.spectra), mode, np.float32,
                             threads, second_moment)
    i, q = out if second_moment else (out, None)
    i = np.einsum("kn,kn->n", w, i).reshape(a.shape[:-1])
    return (i, np.einsum("kn,kn->n", w, q).reshape(a.shape[:-1])) if second_moment else i
