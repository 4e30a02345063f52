"""X-ray tube spectra: SpekPy-modelled, DeepDRR-named presets, and user-tabulated spectra.

A :class:`Spectrum` is a list of energy bin centres (keV) with the *photon* probability of each bin
(summing to 1). Energy weighting for an energy-integrating detector is applied later, in
:func:`ddsa_sim.physics.detector.integrate_spectrum`.

SpekPy (Poludniowski et al., Med Phys 48(7) 2021) models a tungsten reflection target; we call it with
the tube potential, anode angle and added filtration, with SpekPy's own bin width ``dk = bin_kev``,
and drop the bins below ``min_kev`` (their photons are absorbed in the first millimetres of tissue
and contribute nothing measurable; the remaining fluence is renormalised).

DeepDRR's named spectra are MC-GPU tables ``60kVp_3.5mmAl.spc``, ``90kVp_4.0mmAl.spc`` and
``120kVp_4.3mmAl.spc`` (DeepDRR maps ``"90KV_AL40"`` to ``90kVp_4.0mmAl.spc``). The name states
the tube potential and the total aluminium filtration, so the presets here are SpekPy spectra with
exactly that kVp and that Al filtration, 12 degree tungsten anode, no copper (see docs/physics.md).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ddsa_sim import InputError
from ddsa_sim.checks import check_array, check_finite, check_positive
from ddsa_sim.physics.tables import ELAM_MAX_KEV

__all__ = [
    "DEFAULT_FILTER_AL_MM",
    "PRESETS",
    "air_kerma_per_photon",
    "air_kerma_ugy",
    "Spectrum",
    "get_spectrum",
    "load_spectrum_file",
    "mono_spectrum",
    "preset_spectrum",
    "spectrum_at_kvp",
    "spekpy_spectrum",
    "tabulated_spectrum",
]


@dataclass(frozen=True, eq=False)
class Spectrum:
    """A binned X-ray photon spectrum.

    Attributes
    ----------
    energies_kev : np.ndarray
        (B,) float64 bin centres in keV, strictly increasing, all > 0.
    fluence : np.ndarray
        (B,) float64 photon probability per bin, non-negative, summing to 1.
    name : str
        Human-readable identifier (``"90KV_AL40"``, ``"spekpy:kvp=90,al=4,..."``, ``"user"``).
    photons_per_mm2_per_mas_at_1m : float or None
        Absolute photon fluence of the binned spectrum (only the bins kept), photons / mm^2 / mAs at
        1 m from the focal spot, as SpekPy models it. None for tabulated spectra.
    settings : dict
        The generating settings (SpekPy arguments), empty for tabulated spectra.
    """

    energies_kev: np.ndarray
    fluence: np.ndarray
    name: str = "user"
    photons_per_mm2_per_mas_at_1m: float | None = None
    settings: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        e = np.array(self.energies_kev, dtype=np.float64).reshape(-1)
        p = np.array(self.fluence, dtype=np.float64).reshape(-1)
        if e.size == 0:
            raise InputError("spectrum energies_kev is empty")
        if p.shape != e.shape:
            raise InputError(f"spectrum fluence has {p.size} bins but energies_kev has {e.size}")
        check_array("spectrum energies_kev", e, positive=True)
        if np.any(np.diff(e) <= 0):
            raise InputError("spectrum energies_kev must be strictly increasing")
        check_array("spectrum fluence", p)
        total = p.sum()
        if total <= 0:
            raise InputError("spectrum fluence sums to zero")
        p = p / total
        e.setflags(write=False)
        p.setflags(write=False)
        object.__setattr__(self, "energies_kev", e)
        object.__setattr__(self, "fluence", p)

    @property
    def n_bins(self) -> int:
        """Number of energy bins."""
        return int(self.energies_kev.size)

    @property
    def mean_energy_kev(self) -> float:
        """Photon-fluence-weighted mean energy, keV."""
        return float(np.dot(self.energies_kev, self.fluence))

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form; :func:`get_spectrum` accepts it back."""
        return {
            "name": self.name,
            "energies_kev": [float(x) for x in self.energies_kev],
            "fluence": [float(x) for x in self.fluence],
            "photons_per_mm2_per_mas_at_1m": self.photons_per_mm2_per_mas_at_1m,
            "settings": dict(self.settings),
        }

    def __repr__(self) -> str:
        return (
            f"Spectrum(name={self.name!r}, bins={self.n_bins}, "
            f"{self.energies_kev[0]:.2f}-{self.energies_kev[-1]:.2f} keV, mean={self.mean_energy_kev:.2f} keV)"
        )


# --------------------------------------------------------------------------------------------------
# SpekPy
# --------------------------------------------------------------------------------------------------

#: Total aluminium filtration (mm) wherever none is given: library, ``dsa`` and the export config
#: (DeepDRR's 90 kV spectrum ``90kVp_4.0mmAl`` has the same).
DEFAULT_FILTER_AL_MM = 4.0

#: DeepDRR spectrum name -> SpekPy settings (kVp, total Al filtration in mm; W anode at 12 deg).
PRESETS: dict[str, dict[str, float]] = {
    "60KV_AL35": {"kvp": 60.0, "filter_al_mm": 3.5, "filter_cu_mm": 0.0, "anode_angle_deg": 12.0},
    "90KV_AL40": {"kvp": 90.0, "filter_al_mm": 4.0, "filter_cu_mm": 0.0, "anode_angle_deg": 12.0},
    "120KV_AL43": {"kvp": 120.0, "filter_al_mm": 4.3, "filter_cu_mm": 0.0, "anode_angle_deg": 12.0},
}

_SPEKPY_ARG_ALIASES = {
    "kvp": "kvp",
    "kv": "kvp",
    "al": "filter_al_mm",
    "filter_al_mm": "filter_al_mm",
    "cu": "filter_cu_mm",
    "filter_cu_mm": "filter_cu_mm",
    "angle": "anode_angle_deg",
    "th": "anode_angle_deg",
    "anode_angle_deg": "anode_angle_deg",
    "bin": "bin_kev",
    "dk": "bin_kev",
    "bin_kev": "bin_kev",
    "min": "min_kev",
    "min_kev": "min_kev",
}


def _cache_dir() -> Path | None:
    """On-disk cache directory: $DDSA_SIM_CACHE_DIR, else ~/.cache/ddsa-sim; "" or "off" disables."""
    env = os.environ.get("DDSA_SIM_CACHE_DIR")
    if env is not None:
        if env.strip().lower() in ("", "off", "none", "0"):
            return None
        return Path(env) / "spectra"
    return Path.home() / ".cache" / "ddsa-sim" / "spectra"


def _run_spekpy(kvp: float, al: float, cu: float, angle: float, dk: float,
                x_cm: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """SpekPy energies (keV) and fluence per keV (photons/cm^2/keV/mAs at 100 cm, ``x_cm`` off axis)."""
    import spekpy as sp

    try:
        s = sp.Spek(kvp=kvp, th=angle, dk=dk, x=x_cm, z=100.0)
        if al > 0:
            s.filter("Al", al)
        if cu > 0:
            s.filter("Cu", cu)
        k, f = s.get_spectrum()
    except Exception as exc:  # noqa: BLE001 - SpekPy raises bare Exceptions for out-of-range settings
        raise InputError(f"SpekPy rejected kvp={kvp:g}, anode_angle_deg={angle:g}, bin_kev={dk:g}: {exc}") from None
    return np.asarray(k, dtype=np.float64), np.asarray(f, dtype=np.float64)


def _read_cache(path: Path, key: str) -> tuple[np.ndarray, np.ndarray] | None:
    """A cached (k, f) pair, or None when the entry is missing, stale or unreadable."""
    if not path.is_file():
        return None
    try:
        with np.load(path) as data:
            if str(data["key"]) != key:
                return None
            return data["k"].copy(), data["f"].copy()
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):
        return None


@functools.cache
def _spekpy_version() -> str:
    """SpekPy's version from the package metadata: a cache hit never imports SpekPy (~1 s of tables)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("spekpy")
    except PackageNotFoundError:
        import spekpy as sp

        return getattr(sp, "__version__", "unknown")


def _disk_cached(key: str, compute: Callable[[], tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """``compute()``'s pair of arrays, read from the on-disk cache under ``key`` where it holds them, else computed
    and written there (atomically; a read-only cache folder only loses the saving)."""
    directory = _cache_dir()
    path = None
    if directory is not None:
        path = directory / (hashlib.sha1(key.encode()).hexdigest()[:20] + ".npz")
        cached = _read_cache(path, key)
        if cached is not None:
            return cached
    k, f = compute()
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
            np.savez(tmp, key=np.array(key), k=k, f=f)
            os.replace(tmp, path)
        except OSError:  # read-only home etc.: the in-memory cache still works
            pass
    return k, f


def _spekpy_cached(kvp: float, al: float, cu: float, angle: float, dk: float,
                   x_cm: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """SpekPy call with an optional on-disk cache (keyed by settings and SpekPy version)."""
    key = json.dumps([_spekpy_version(), kvp, al, cu, angle, dk] + ([x_cm] if x_cm else []))
    return _disk_cached(key, lambda: _run_spekpy(kvp, al, cu, angle, dk, x_cm))


@functools.lru_cache(maxsize=128)
def spekpy_spectrum(
    kvp: float,
    filter_al_mm: float = DEFAULT_FILTER_AL_MM,
    filter_cu_mm: float = 0.0,
    anode_angle_deg: float = 12.0,
    bin_kev: float = 1.0,
    min_kev: float = 10.0,
    offaxis_x_cm: float = 0.0,
) -> Spectrum:
    """Tungsten-anode spectrum from SpekPy, cached per setting.

    Parameters
    ----------
    kvp : float
        Tube potential, kV (SpekPy's tungsten model covers about 30-150 kV).
    filter_al_mm, filter_cu_mm : float
        Total aluminium / copper filtration, mm.
    anode_angle_deg : float
        Anode (target) angle, degrees.
    bin_kev : float
        Energy bin width, keV (passed to SpekPy as ``dk``).
    min_kev : float
        Bins with centre below this energy are dropped and the rest renormalised.
    offaxis_x_cm : float
        Off-axis position along the anode-cathode axis at 100 cm from the focal spot (cm; SpekPy's
        ``x``, negative toward the anode): the heel effect (physics.heel).

    Returns
    -------
    Spectrum
        Photon probabilities per bin; ``photons_per_mm2_per_mas_at_1m`` holds SpekPy's absolute
        fluence of the kept bins.
    """
    kvp = check_positive("kvp", kvp)
    al = check_positive("filter_al_mm", filter_al_mm, allow_zero=True)
    cu = check_positive("filter_cu_mm", filter_cu_mm, allow_zero=True)
    angle = check_positive("anode_angle_deg", anode_angle_deg)
    dk = check_positive("bin_kev", bin_kev)
    emin = check_positive("min_kev", min_kev, allow_zero=True)
    if kvp > ELAM_MAX_KEV:
        raise InputError(f"kvp={kvp:g} is above {ELAM_MAX_KEV:g} kV, the top of the attenuation tables (clinical C-arms: "
                         "40-150 kVp)")
    if dk > kvp / 4:
        raise InputError(f"bin_kev={dk:g} is too coarse for kvp={kvp:g}")
    if emin >= kvp:
        raise InputError(f"min_kev={emin:g} must be below kvp={kvp:g}")
    x_cm = float(offaxis_x_cm)
    if not np.isfinite(x_cm):
        raise InputError(f"offaxis_x_cm must be finite, got {offaxis_x_cm!r}")
    k, f_per_kev = _spekpy_cached(kvp, al, cu, angle, dk, x_cm)
    keep = (k >= emin) & (f_per_kev > 0)
    if not np.any(keep):
        raise InputError(f"SpekPy spectrum kvp={kvp:g} has no photons above min_kev={emin:g}")
    k, f_per_kev = k[keep], f_per_kev[keep]
    photons_per_cm2 = float(np.sum(f_per_kev) * dk)  # per mAs at 100 cm
    name = f"spekpy:kvp={kvp:g},al={al:g},cu={cu:g},angle={angle:g},bin={dk:g},min={emin:g}"
    settings = {
        "kvp": kvp,
        "filter_al_mm": al,
        "filter_cu_mm": cu,
        "anode_angle_deg": angle,
        "bin_kev": dk,
        "min_kev": emin,
    }
    if x_cm:
        name += f",x={x_cm:g}"
        settings["offaxis_x_cm"] = x_cm
    return Spectrum(k, f_per_kev, name, photons_per_cm2 / 100.0, settings)


def preset_spectrum(name: str) -> Spectrum:
    """DeepDRR-named spectrum ("60KV_AL35", "90KV_AL40", "120KV_AL43") made with SpekPy.

    The names are kVp and total Al filtration in tenths of a mm (MC-GPU's ``90kVp_4.0mmAl.spc``);
    we use SpekPy with the same kVp and filtration, a 12 degree W anode, 1 keV bins from 10 keV.
    """
    key = str(name).strip().upper()
    if key not in PRESETS:
        raise InputError(f"spectrum preset {name!r} unknown; choose one of {sorted(PRESETS)}")
    s = spekpy_spectrum(**PRESETS[key])
    return Spectrum(s.energies_kev, s.fluence, key, s.photons_per_mm2_per_mas_at_1m, dict(s.settings))


# --------------------------------------------------------------------------------------------------
# Tabulated spectra
# --------------------------------------------------------------------------------------------------


def tabulated_spectrum(energies_kev: Any, fluence: Any, name: str = "user") -> Spectrum:
    """A user-supplied spectrum: bin centres (keV) and relative photon counts per bin.

    The fluence is normalised to sum to 1. Unsorted energies are sorted; duplicates are an error.
    """
    try:
        e = np.asarray(energies_kev, dtype=np.float64).reshape(-1)
        p = np.asarray(fluence, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise InputError("spectrum energies_kev and fluence must be numeric arrays") from None
    if e.size == 0:
        raise InputError("spectrum energies_kev is empty")
    if p.shape != e.shape:
        raise InputError(f"spectrum fluence has {p.size} bins but energies_kev has {e.size}")
    order = np.argsort(e, kind="stable")
    return Spectrum(e[order], p[order], str(name))


def load_spectrum_file(path: str | os.PathLike) -> Spectrum:
    """Read a two-column (energy keV, relative photon count) text or CSV file.

    Comma, semicolon, tab or space separated; ``#`` comments and non-numeric header lines are skipped.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"spectrum file {str(p)!r} not found")
    rows: list[tuple[float, float]] = []
    for lineno, raw in enumerate(p.read_text().splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = [x for x in re.split(r"[,;\s]+", line) if x]
        try:
            values = [float(x) for x in parts]
        except ValueError:
            if rows:
                raise InputError(f"spectrum file {p.name} line {lineno}: not numeric: {raw.strip()!r}") from None
            continue  # header line
        if len(values) < 2:
            raise InputError(f"spectrum file {p.name} line {lineno}: needs two columns")
        rows.append((values[0], values[1]))
    if not rows:
        raise InputError(f"spectrum file {p.name} has no data rows")
    arr = np.asarray(rows)
    return tabulated_spectrum(arr[:, 0], arr[:, 1], name=p.stem)


def mono_spectrum(energy_kev: float) -> Spectrum:
    """A monoenergetic beam (one bin at ``energy_kev``): attenuation checkable by hand, ``"mono:40"``."""
    e = check_positive("mono spectrum energy_kev", energy_kev)
    if not 1.0 <= e <= ELAM_MAX_KEV:
        raise InputError(f"mono spectrum energy {e:g} keV outside 1-{ELAM_MAX_KEV:g} keV (attenuation tables)")
    return Spectrum(np.array([e]), np.array([1.0]), f"mono:{e:g}", None, {"mono_kev": e})


#: J per keV
_J_PER_KEV = 1.602176634e-16


@functools.lru_cache(maxsize=256)
def _muen_air(energies_kev: tuple[float, ...]) -> np.ndarray:
    """SpekPy's ``(mu_en/rho)_air`` (cm^2/g) at these energies, through the on-disk cache as the spectra: a process
    whose spectra and energy grids are cached never imports SpekPy."""

    def compute() -> tuple[np.ndarray, np.ndarray]:
        from spekpy.DataTables import MuEnAirData

        e = np.array(energies_kev, dtype=np.float64)
        return e, np.asarray(MuEnAirData("pene_muen_air.dat").get_muen_over_rho_air(e), dtype=np.float64)

    key = json.dumps([_spekpy_version(), "pene_muen_air", list(energies_kev)])
    muen = _disk_cached(key, compute)[1]
    muen.flags.writeable = False  # shared by every caller of the in-memory cache
    return muen


def air_kerma_per_photon(energies_kev: Any) -> np.ndarray:
    """Air kerma (uGy) of one photon per mm^2 at each energy: ``E (mu_en/rho)_air(E)``.

    SpekPy's mass energy-absorption coefficients of air (the table its ``get_kerma`` uses).
    """
    e = np.asarray(energies_kev, dtype=np.float64)
    muen = _muen_air(tuple(e.reshape(-1).tolist())).reshape(e.shape)
    return e * _J_PER_KEV * muen * 1e3 * 100.0 * 1e6  # keV -> J; cm^2/g -> m^2/kg; per mm^2 -> per cm^2; Gy -> uGy


def air_kerma_ugy(spectrum: Spectrum, photons_per_mm2: float) -> float:
    """Air kerma (uGy) of a fluence of ``photons_per_mm2`` photons with this spectrum's shape.

    ``K = Phi sum_b p_b E_b (mu_en/rho)_air(E_b)`` (:func:`air_kerma_per_photon`), so a SpekPy
    spectrum's kerma per mAs equals SpekPy's own ``get_kerma`` (for the bins kept, see ``min_kev``).
    """
    phi = check_positive("photons_per_mm2", photons_per_mm2, allow_zero=True)
    return phi * float(np.dot(spectrum.fluence, air_kerma_per_photon(spectrum.energies_kev)))


# --------------------------------------------------------------------------------------------------
# One entry point
# --------------------------------------------------------------------------------------------------


def _spekpy_from_mapping(args: Mapping[str, Any]) -> Spectrum:
    kwargs: dict[str, float] = {}
    for key, value in args.items():
        k = str(key).strip().lower()
        if k in ("type", "kind", "source") and str(value).lower() == "spekpy":
            continue
        if k not in _SPEKPY_ARG_ALIASES:
            raise InputError(f"spectrum field {key!r} unknown; use {sorted(set(_SPEKPY_ARG_ALIASES))}")
        kwargs[_SPEKPY_ARG_ALIASES[k]] = check_finite(f"spectrum {key}", value)
    if "kvp" not in kwargs:
        raise InputError("spectrum field 'kvp' is required for a SpekPy spectrum")
    return spekpy_spectrum(**kwargs)


def get_spectrum(spec: str | Spectrum | Mapping[str, Any]) -> Spectrum:
    """Resolve a spectrum specification.

    Accepted forms: a :class:`Spectrum`; a preset name (``"90KV_AL40"``); ``"spekpy:kvp=90,al=4"``
    (keys kvp, al, cu, angle, bin, min or the full argument names of :func:`spekpy_spectrum`);
    ``"mono:<keV>"`` (one energy); ``"file:<path>"`` or an existing two-column file path; a dict of SpekPy arguments; a dict with
    ``"preset"``; or :meth:`Spectrum.to_dict` output (``energies_kev`` + ``fluence``).
    """
    if isinstance(spec, Spectrum):
        return spec
    if isinstance(spec, Mapping):
        if "energies_kev" in spec or "fluence" in spec:
            if "energies_kev" not in spec or "fluence" not in spec:
                raise InputError("spectrum dict needs both 'energies_kev' and 'fluence'")
            flu = spec.get("photons_per_mm2_per_mas_at_1m")
            return Spectrum(
                np.asarray(spec["energies_kev"], dtype=np.float64),
                np.asarray(spec["fluence"], dtype=np.float64),
                str(spec.get("name", "user")),
                None if flu is None else float(flu),
                dict(spec.get("settings", {}) or {}),
            )
        if "preset" in spec:
            return preset_spectrum(str(spec["preset"]))
        return _spekpy_from_mapping(spec)
    if isinstance(spec, (str, os.PathLike)):
        text = str(spec).strip()
        if text.upper() in PRESETS:
            return preset_spectrum(text)
        low = text.lower()
        if low.startswith(("spekpy:", "spekpy(")):
            body = text.split(":", 1)[1] if low.startswith("spekpy:") else text[7:].rstrip(")")
            args: dict[str, str] = {}
            for part in filter(None, (x.strip() for x in body.split(","))):
                if "=" not in part:
                    raise InputError(f"spectrum {text!r}: expected key=value, got {part!r}")
                k, v = part.split("=", 1)
                args[k.strip()] = v.strip()
            return _spekpy_from_mapping(args)
        if low.startswith("mono:"):
            try:
                kev = float(text[5:])
            except ValueError:
                raise InputError(f"spectrum {text!r}: write 'mono:<keV>', e.g. 'mono:40'") from None
            return mono_spectrum(kev)
        if low.startswith("file:"):
            return load_spectrum_file(text[5:])
        if Path(text).is_file():
            return load_spectrum_file(text)
        raise InputError(
            f"spectrum {text!r} unknown; use a preset {sorted(PRESETS)}, 'spekpy:kvp=..,al=..', 'mono:<keV>' or a file"
        )
    raise InputError(f"spectrum must be a name, dict or Spectrum, got {type(spec).__name__}")


@functools.lru_cache(maxsize=256)
def spectrum_at_kvp(kvp: float, filter_al_mm: float = DEFAULT_FILTER_AL_MM, node_kv: float = 2.0,
                    filter_cu_mm: float = 0.0) -> Spectrum:
    """Tube spectrum at any ``kvp`` from SpekPy spectra on a kVp grid (step ``node_kv``), interpolated.

    A SpekPy call costs about 1 s, and a dataset draws a new kVp per sample, so spectra are computed
    at the grid nodes below and above ``kvp`` (cached in memory and on disk) and the photon fluence
    per energy bin is interpolated linearly in kVp (bins above the lower node's endpoint get only the
    upper node's share). ``node_kv = 0`` calls SpekPy at the exact kVp. A pure function of its
    arguments, so regeneration stays bit-identical.

    Parameters
    ----------
    kvp : float
        Tube voltage (kV).
    filter_al_mm : float
        Aluminium filtration (mm).
    node_kv : float
        Grid step of the SpekPy nodes (kV); 0 = exact.
    filter_cu_mm : float
        Added copper filtration (mm).
    """
    lo = float(np.floor(kvp / node_kv) * node_kv) if node_kv > 0 else float(kvp)
    if lo == kvp:
        return spekpy_spectrum(float(kvp), float(filter_al_mm), float(filter_cu_mm))
    hi = lo + node_kv
    s_lo = spekpy_spectrum(lo, float(filter_al_mm), float(filter_cu_mm))
    s_hi = spekpy_spectrum(hi, float(filter_al_mm), float(filter_cu_mm))
    w = (float(kvp) - lo) / node_kv
    a_lo, a_hi = s_lo.photons_per_mm2_per_mas_at_1m or 1.0, s_hi.photons_per_mm2_per_mas_at_1m or 1.0
    e = s_hi.energies_kev
    f_lo = np.interp(e, s_lo.energies_kev, s_lo.fluence, left=0.0, right=0.0)
    fluence = (1.0 - w) * a_lo * f_lo + w * a_hi * s_hi.fluence
    cu = f",cu={filter_cu_mm:g}" if filter_cu_mm else ""
    return Spectrum(e, fluence, f"spekpy:kvp={kvp:.4f} (interpolated {lo:g}-{hi:g}),al={filter_al_mm:g}{cu}",
                    (1.0 - w) * a_lo + w * a_hi, {**s_hi.settings, "kvp": float(kvp)})
