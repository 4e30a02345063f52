"""Materials and mass attenuation coefficients (xraydb / Elam tables).

``mass_attenuation`` evaluates xraydb's ``mu_elam`` (Elam, Ravel & Sieber, Radiat Phys Chem 63(2)
2002; total cross-section including coherent scattering) directly at the requested energies and
mixes elements by mass fraction, (mu/rho)_mix = sum_i w_i (mu/rho)_i. xraydb interpolates its
tables log-log with each absorption edge stored on both sides, so the iodine K-edge at 33.169 keV
is a step, not a ramp: mu/rho(I) = 6.55 cm^2/g at 33.169 keV and 35.8 cm^2/g just above it.

Compositions are mass fractions from ICRU Report 44 (1989) as tabulated by NIST (Hubbell & Seltzer,
NISTIR 5632, 1995); iodinated blood is blood mixed with a contrast agent (iohexol by default),
see :func:`iodinated_blood`.

Nothing is computed at import: :data:`MATERIALS` is built on first use, and the ``mu_elam`` values
of each energy grid are kept on disk (``~/.cache/ddsa-sim/attenuation``, keyed by the xraydb version;
:func:`ddsa_sim.files.cache_dir`), so a process whose grids are cached never loads xraydb's database.
The values read back are the very float64 numbers xraydb returned.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from ddsa_sim import InputError
from ddsa_sim.checks import check_positive
from ddsa_sim.files import cache_dir
from ddsa_sim.physics.tables import ELAM_MAX_KEV

__all__ = [
    "AGENTS",
    "MATERIALS",
    "Material",
    "attenuation_matrix",
    "contrast_agent_material",
    "displaced_blood_g_per_mg_iodine",
    "formula_mass_fractions",
    "get_material",
    "iodinated_blood",
    "linear_attenuation_per_cm",
    "mass_attenuation",
]


@dataclass(frozen=True, eq=False)
class Material:
    """A material: elemental composition by mass fraction and a nominal density.

    Attributes
    ----------
    name : str
    composition : Mapping[str, float]
        Element symbol -> mass fraction; normalised to sum to 1.
    density_g_per_cc : float
        Nominal density, g/cm^3 (CT-derived densities replace it voxel by voxel).
    """

    name: str
    composition: Mapping[str, float]
    density_g_per_cc: float
    note: str = field(default="")

    def __post_init__(self) -> None:
        comp = _validate_composition(self.composition, f"material {self.name!r}")
        object.__setattr__(self, "composition", MappingProxyType(comp))
        check_positive(f"material {self.name!r} density_g_per_cc", self.density_g_per_cc)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "composition": dict(self.composition), "density_g_per_cc": self.density_g_per_cc}


#: Element symbols Z = 1-98 (all in xraydb's Elam tables): accepted without loading xraydb's database.
_ELEMENT_SYMBOLS = frozenset(
    "H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga Ge As Se Br Kr Rb Sr Y Zr "
    "Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce Pr Nd Pm Sm Eu Gd Tb Dy Ho Er Tm Yb Lu Hf Ta W Re Os Ir "
    "Pt Au Hg Tl Pb Bi Po At Rn Fr Ra Ac Th Pa U Np Pu Am Cm Bk Cf".split()
)


def _element_symbol(sym: str) -> str:
    s = str(sym).strip()
    s = s[:1].upper() + s[1:].lower()
    if s in _ELEMENT_SYMBOLS:
        return s
    import xraydb  # anything else (element names such as "Iodine") as xraydb judges it

    try:
        xraydb.atomic_number(s)
    except ValueError:
        raise InputError(f"unknown element {sym!r} in composition") from None
    return s


def _validate_composition(comp: Mapping[str, float], what: str) -> dict[str, float]:
    if not isinstance(comp, Mapping) or len(comp) == 0:
        raise InputError(f"{what} composition must be a non-empty {{element: mass fraction}} dict")
    out: dict[str, float] = {}
    for el, w in comp.items():
        sym = _element_symbol(el)
        wf = check_positive(f"{what} mass fraction of {el!r}", w, allow_zero=True)
        out[sym] = out.get(sym, 0.0) + wf
    total = sum(out.values())
    if total <= 0:
        raise InputError(f"{what} mass fractions sum to zero")
    return {k: v / total for k, v in out.items() if v > 0}


# ICRU 44 compositions (mass fractions) as tabulated by NIST (Hubbell & Seltzer 1995, Table 2).
_ICRU44: dict[str, tuple[dict[str, float], float]] = {
    "air": ({"C": 0.000124, "N": 0.755268, "O": 0.231781, "Ar": 0.012827}, 0.001205),
    "lung": (
        {"H": 0.103, "C": 0.105, "N": 0.031, "O": 0.749, "Na": 0.002, "P": 0.002, "S": 0.003, "Cl": 0.003,
         "K": 0.002},
        1.05,
    ),
    "adipose": (
        {"H": 0.114, "C": 0.598, "N": 0.007, "O": 0.278, "Na": 0.001, "S": 0.001, "Cl": 0.001},
        0.95,
    ),
    "soft tissue": (
        {"H": 0.102, "C": 0.143, "N": 0.034, "O": 0.708, "Na": 0.002, "P": 0.003, "S": 0.003, "Cl": 0.002,
         "K": 0.003},
        1.06,
    ),
    "muscle": (
        {"H": 0.102, "C": 0.143, "N": 0.034, "O": 0.710, "Na": 0.001, "P": 0.002, "S": 0.003, "Cl": 0.001,
         "K": 0.004},
        1.05,
    ),
    "blood": (
        {"H": 0.102, "C": 0.110, "N": 0.033, "O": 0.745, "Na": 0.001, "P": 0.001, "S": 0.002, "Cl": 0.003,
         "K": 0.002, "Fe": 0.001},
        1.06,
    ),
    "cortical bone": (
        {"H": 0.034, "C": 0.155, "N": 0.042, "O": 0.435, "Na": 0.001, "Mg": 0.002, "P": 0.103, "S": 0.003,
         "Ca": 0.225},
        1.92,
    ),
    "water": ({"H": 0.111898, "O": 0.888102}, 1.0),
    "iodine": ({"I": 1.0}, 4.93),
    "titanium": ({"Ti": 1.0}, 4.506),
    "iron": ({"Fe": 1.0}, 7.874),
    # CsI from the atomic masses (Cs 132.905, I 126.904 g/mol); crystal density 4.51 g/cm^3 (NIST)
    "cesium iodide": ({"Cs": 0.511549, "I": 0.488451}, 4.51),
    # 70 wt% nylon 6 (C6H11NO, 1.14 g/cm^3, NIST) + 30 wt% BaSO4 (4.50 g/cm^3): mass fractions from
    # the formulas; density 1 / (0.30 / 4.50 + 0.70 / 1.14) (volumes add)
    "catheter wall": ({"H": 0.068577, "C": 0.445804, "N": 0.086648, "O": 0.181234, "S": 0.041211, "Ba": 0.176526},
                      1.469),
}

_NOTES = {
    "air": "dry air near sea level (NIST)",
    "lung": "ICRU-44 lung tissue; density is the tissue's, inflated lung is ~0.26 g/cm^3 (use CT density)",
    "adipose": "ICRU-44 adipose tissue",
    "soft tissue": "ICRU-44 soft tissue",
    "muscle": "ICRU-44 skeletal muscle",
    "blood": "ICRU-44 whole blood",
    "cortical bone": "ICRU-44 cortical bone",
    "water": "liquid water",
    "iodine": "elemental iodine (solid density); used as a pure-iodine area-density channel",
    "titanium": "elemental titanium (implants, tools)",
    "iron": "elemental iron (steel tools such as K-wires; DeepDRR's K-wire material)",
    "cesium iodide": "CsI crystal, the scintillator of flat-panel detectors (Tl doping ignored)",
    "catheter wall": "angiographic catheter shaft: nylon 6 with 30 wt% BaSO4 radiopaque filler (docs/vessels.md)",
}


@functools.cache
def _build_materials() -> dict[str, Material]:
    mats = {name: Material(name, comp, rho, _NOTES[name]) for name, (comp, rho) in _ICRU44.items()}
    mats["bone"] = Material("bone", mats["cortical bone"].composition, 1.92, "alias of cortical bone (DeepDRR name)")
    return mats


class _Materials(Mapping[str, Material]):
    """Read-only name -> :class:`Material` table, built on first use (not at import)."""

    def __getitem__(self, name: str) -> Material:
        return _build_materials()[name]

    def __iter__(self):
        return iter(_build_materials())

    def __len__(self) -> int:
        return len(_build_materials())

    def __repr__(self) -> str:
        return repr(_build_materials())


#: Named materials (lower-case names with spaces). "bone" is an alias of "cortical bone".
MATERIALS: Mapping[str, Material] = _Materials()

_IODINATED_RE = re.compile(
    r"^iodinated[ _]blood(?:[ _:=@(]+([0-9.eE+-]+)\s*(?:mg ?i ?/ ?ml)?\)?)?"
    r"(?:\s*/\s*([a-z]+)[ _:=]+([0-9.eE+-]+)\s*(?:mg ?i ?/ ?ml)?)?$"
)


def _normalise_name(name: str) -> str:
    return re.sub(r"\s+", " ", str(name).strip().lower().replace("_", " "))


def get_material(material: str | Material | Mapping[str, float]) -> Material:
    """Resolve a material: a name in :data:`MATERIALS`, ``"iodinated blood:<mgI/ml>"`` (iohexol
    350 mgI/ml) or ``"iodinated blood:<mgI/ml>/<agent>:<agent mgI/ml>"`` (the name
    :func:`iodinated_blood` gives), a :class:`Material`, or a composition dict
    ``{element: mass fraction}`` (density 1 g/cm^3)."""
    if isinstance(material, Material):
        return material
    if isinstance(material, Mapping):
        return Material("custom", dict(material), 1.0)
    if not isinstance(material, str):
        raise InputError(f"material must be a name or a composition dict, got {type(material).__name__}")
    key = _normalise_name(material)
    if key in MATERIALS:
        return MATERIALS[key]
    m = _IODINATED_RE.match(str(material).strip().lower())
    if m:
        if m.group(1) is None:
            raise InputError(f"material {material!r}: give the concentration, e.g. 'iodinated blood:10' (mgI/ml)")
        if m.group(2) is None:
            return iodinated_blood(float(m.group(1)))
        return iodinated_blood(float(m.group(1)), m.group(2), float(m.group(3)))
    raise InputError(f"unknown material {material!r}; known: {sorted(MATERIALS)} or 'iodinated blood:<mgI/ml>'")


# --------------------------------------------------------------------------------------------------
# Mass attenuation
# --------------------------------------------------------------------------------------------------


@functools.cache
def _xraydb_version() -> str:
    """xraydb's version from the package metadata (reading it does not import xraydb)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("xraydb")
    except PackageNotFoundError:
        import xraydb

        return str(getattr(xraydb, "__version__", "unknown"))


class _MuTable:
    """``mu_elam`` (cm^2/g, one ``kind``) of elements on one energy grid (eV), mirrored in one ``.npz`` file."""

    def __init__(self, energies_ev: tuple[float, ...], kind: str = "total") -> None:
        self.energies_ev = energies_ev
        self.kind = kind
        self.key = json.dumps(["xraydb", _xraydb_version(), "mu_elam", kind, energies_ev])
        folder = cache_dir("attenuation")
        self.path = None if folder is None else folder / (hashlib.sha1(self.key.encode()).hexdigest()[:20] + ".npz")
        self.mu: dict[str, np.ndarray] = self._read()

    def _read(self) -> dict[str, np.ndarray]:
        """The cached elements, or nothing when the file is missing, stale or unreadable."""
        if self.path is None or not self.path.is_file():
            return {}
        try:
            with np.load(self.path) as data:
                if str(data["key"]) != self.key:
                    return {}
                return {name: _read_only(data[name]) for name in data.files if name != "key"}
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):
            return {}

    def get(self, symbols: Sequence[str]) -> list[np.ndarray]:
        """mu/rho of each symbol; computes (and stores) those not cached yet."""
        missing = [s for s in dict.fromkeys(symbols) if s not in self.mu]
        if missing:
            import xraydb

            e = np.asarray(self.energies_ev, dtype=np.float64)
            for s in missing:
                self.mu[s] = _read_only(np.atleast_1d(np.asarray(xraydb.mu_elam(s, e, kind=self.kind), dtype=np.float64)))
            self._write()
        return [self.mu[s] for s in symbols]

    def _write(self) -> None:
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(f".{os.getpid()}.tmp.npz")
            np.savez(tmp, key=np.array(self.key), **self.mu)
            os.replace(tmp, self.path)
        except OSError:  # read-only home etc.: the in-memory table still works
            pass


def _read_only(a: np.ndarray) -> np.ndarray:
    a = np.array(a, dtype=np.float64)
    a.setflags(write=False)
    return a


@functools.lru_cache(maxsize=256)
def _mu_table(energies_ev: tuple[float, ...], kind: str = "total") -> _MuTable:
    return _MuTable(energies_ev, kind)


#: Interaction kinds of :func:`mass_attenuation` (xraydb ``mu_elam`` kinds).
KINDS = ("total", "photo", "incoh", "coh")


def mass_attenuation(material: str | Material | Mapping[str, float], energies_kev: Any,
                     kind: str = "total") -> np.ndarray:
    """Mass attenuation coefficient mu/rho (cm^2/g): total (with coherent scattering) or one process.

    Parameters
    ----------
    material : str, Material or dict
        A named material, a :class:`Material`, or ``{element: mass fraction}``.
    energies_kev : array_like
        Photon energies, keV (1-433 keV, the range of the Elam tables).
    kind : {"total", "photo", "incoh", "coh"}
        All interactions, or photoabsorption, Compton (incoherent) or Rayleigh (coherent) only.

    Returns
    -------
    np.ndarray
        float64, same shape as ``energies_kev``. Evaluated directly at each energy (no resampling),
        so absorption edges are exact steps.
    """
    mat = get_material(material)
    e = np.asarray(energies_kev, dtype=np.float64)
    if e.size == 0:
        raise InputError("energies_kev is empty")
    if not np.all(np.isfinite(e)) or np.any(e < 1.0) or np.any(e > ELAM_MAX_KEV):
        raise InputError(f"energies_kev must lie in 1-{ELAM_MAX_KEV:g} keV (Elam tables)")
    if kind not in KINDS:
        raise InputError(f"attenuation kind {kind!r} unknown; use one of {KINDS}")
    key = tuple(float(x) for x in (e.reshape(-1) * 1000.0))
    out = np.zeros(e.size, dtype=np.float64)
    mus = _mu_table(key, kind).get(list(mat.composition))
    for w, mu in zip(mat.composition.values(), mus):
        out += w * mu
    return out.reshape(e.shape)


def linear_attenuation_per_cm(
    material: str | Material | Mapping[str, float], energies_kev: Any, density_g_per_cc: float | None = None
) -> np.ndarray:
    """mu (1/cm) = mu/rho * density (the material's nominal density unless given)."""
    mat = get_material(material)
    rho = mat.density_g_per_cc if density_g_per_cc is None else float(density_g_per_cc)
    return mass_attenuation(mat, energies_kev) * rho


def attenuation_matrix(materials: Sequence[str | Material | Mapping[str, float]], spectrum: Any) -> np.ndarray:
    """(M, B) float64 mu/rho (cm^2/g) of each material at the spectrum's bin energies."""
    if isinstance(materials, (str, Material, Mapping)):
        raise InputError("materials must be a sequence of material names")
    mats = list(materials)
    if not mats:
        raise InputError("materials is empty")
    energies = getattr(spectrum, "energies_kev", None)
    if energies is None:
        from ddsa_sim.physics.spectra import get_spectrum

        energies = get_spectrum(spectrum).energies_kev
    return np.stack([mass_attenuation(m, energies) for m in mats]).astype(np.float64)


# --------------------------------------------------------------------------------------------------
# Contrast agent and iodinated blood
# --------------------------------------------------------------------------------------------------


def formula_mass_fractions(formula: Mapping[str, float]) -> dict[str, float]:
    """Mass fractions from an atom-count formula, e.g. ``{"C": 19, "H": 26, "I": 3, "N": 3, "O": 9}``."""
    import xraydb

    masses = {_element_symbol(el): float(n) * xraydb.atomic_mass(_element_symbol(el)) for el, n in formula.items()}
    total = sum(masses.values())
    return {k: v / total for k, v in masses.items()}


@dataclass(frozen=True)
class ContrastAgent:
    """An iodinated contrast agent: molecule and the density of its commercial solutions.

    ``solution_density_g_per_ml`` maps the labelled iodine concentration (mgI/ml) to the solution
    density (g/ml); other concentrations are interpolated linearly.
    """

    name: str
    formula: Mapping[str, float]
    solution_density_g_per_ml: Mapping[float, float]

    @property
    def iodine_mass_fraction(self) -> float:
        return formula_mass_fractions(self.formula)["I"]

    def density_g_per_ml(self, agent_iodine_mg_per_ml: float) -> float:
        c = np.array(sorted(self.solution_density_g_per_ml))
        d = np.array([self.solution_density_g_per_ml[k] for k in c])
        if agent_iodine_mg_per_ml < c[0] or agent_iodine_mg_per_ml > c[-1]:
            raise InputError(
                f"agent_iodine_mg_per_ml={agent_iodine_mg_per_ml:g} outside {self.name} solutions {c[0]:g}-{c[-1]:g} mgI/ml"
            )
        return float(np.interp(agent_iodine_mg_per_ml, c, d))


#: Iohexol (Omnipaque), C19H26I3N3O9, M = 821.1 g/mol, 46.4 % iodine by mass. Densities at 20 C from
#: the Omnipaque label (GE Healthcare): 140: 1.164, 180: 1.209, 240: 1.280, 300: 1.349, 350: 1.406 g/ml.
AGENTS: dict[str, ContrastAgent] = {
    "iohexol": ContrastAgent(
        "iohexol",
        {"C": 19, "H": 26, "I": 3, "N": 3, "O": 9},
        {140.0: 1.164, 180.0: 1.209, 240.0: 1.280, 300.0: 1.349, 350.0: 1.406},
    ),
}


def _agent(agent: str) -> ContrastAgent:
    key = str(agent).strip().lower()
    if key not in AGENTS:
        raise InputError(f"contrast agent {agent!r} unknown; known: {sorted(AGENTS)}")
    return AGENTS[key]


def _agent_solution_masses(agent: ContrastAgent, agent_iodine_mg_per_ml: float) -> tuple[dict[str, float], float]:
    """Element masses (g) in 1 ml of agent solution (molecule + water excipient), and the total (g)."""
    rho = agent.density_g_per_ml(agent_iodine_mg_per_ml)
    molecule_g = agent_iodine_mg_per_ml / 1000.0 / agent.iodine_mass_fraction
    water_g = rho - molecule_g
    if water_g < 0:
        raise InputError(f"agent_iodine_mg_per_ml={agent_iodine_mg_per_ml:g} inconsistent with the solution density")
    masses: dict[str, float] = {}
    for el, w in formula_mass_fractions(agent.formula).items():
        masses[el] = masses.get(el, 0.0) + w * molecule_g
    for el, w in MATERIALS["water"].composition.items():
        masses[el] = masses.get(el, 0.0) + w * water_g
    return masses, rho


def contrast_agent_material(agent: str = "iohexol", agent_iodine_mg_per_ml: float = 350.0) -> Material:
    """The undiluted agent solution (molecule in water; minor excipients such as trometamol ignored)."""
    a = _agent(agent)
    c = check_positive("agent_iodine_mg_per_ml", agent_iodine_mg_per_ml)
    masses, rho = _agent_solution_masses(a, c)
    return Material(f"{a.name} {c:g} mgI/ml", masses, rho, "contrast agent solution")


def iodinated_blood(
    iodine_mg_per_ml: float, agent: str = "iohexol", agent_iodine_mg_per_ml: float = 350.0
) -> Material:
    """Blood mixed with contrast agent to a given iodine concentration.

    One ml of mix holds ``v = c / c_agent`` ml of agent solution and ``1 - v`` ml of blood (ideal
    volume mixing). Mass fractions follow from the element masses of both parts; the density is
    ``v * rho_agent + (1 - v) * rho_blood``.

    Parameters
    ----------
    iodine_mg_per_ml : float
        Iodine concentration in the mix, mgI/ml (0 gives blood); at most ``agent_iodine_mg_per_ml``.
    agent : str
        Contrast agent molecule (``"iohexol"``).
    agent_iodine_mg_per_ml : float
        Iodine concentration of the injected solution (e.g. 300 or 350 for Omnipaque).
    """
    c = check_positive("iodine_mg_per_ml", iodine_mg_per_ml, allow_zero=True)
    ca = check_positive("agent_iodine_mg_per_ml", agent_iodine_mg_per_ml)
    if c > ca:
        raise InputError(f"iodine_mg_per_ml={c:g} exceeds agent_iodine_mg_per_ml={ca:g}")
    a = _agent(agent)
    blood = MATERIALS["blood"]
    v = c / ca
    agent_masses, rho_agent = _agent_solution_masses(a, ca)
    masses = {el: w * (1 - v) * blood.density_g_per_cc for el, w in blood.composition.items()}
    for el, m in agent_masses.items():
        masses[el] = masses.get(el, 0.0) + v * m
    rho = v * rho_agent + (1 - v) * blood.density_g_per_cc
    return Material(f"iodinated blood:{c:g}/{a.name}:{ca:g}", masses, rho, f"blood + {a.name} {ca:g} mgI/ml, v={v:.4g}")


def displaced_blood_g_per_mg_iodine(
    agent_iodine_mg_per_ml: float = 350.0, blood_density_g_per_cc: float | None = None
) -> float:
    """Blood mass (g) displaced per mg of iodine injected: ``rho_blood / c_agent``.

    Each mg of iodine arrives in ``1 / c_agent`` ml of agent solution, which takes the place of that
    volume of blood (ideal mixing). For 350 mgI/ml and 1.06 g/ml blood: 3.03e-3 g blood per mg I.
    """
    ca = check_positive("agent_iodine_mg_per_ml", agent_iodine_mg_per_ml)
    rho = MATERIALS["blood"].density_g_per_cc if blood_density_g_per_cc is None else float(blood_density_g_per_cc)
    return rho / ca
