"""Validate the scatter model (ddsa_sim.physics.scatter) against Monte Carlo photon transport.

Reference: ompMC (``pip install ompmc``; EGSnrc photon physics with XCOM photoabsorption, Compton and
Rayleigh cross sections shipped in the package; GPL-3, so a ``bench`` extra only, never imported by
the library). Geometry: the MobileCArm (source-detector 1020 mm, source-isocenter 530 mm), a water
slab of thickness t centred on the isocenter, a square field of side F at the isocenter (collimated
on the slab's entrance face), vacuum air gap, and a thin detector slab (0.27 g/cm^2 of tin, the mass
thickness of 0.6 mm CsI; tin is the medium of this engine with the nearest K-edge, its NaI and Pb
media crash it) scored in 1 cm voxels. Per case:

* ``broad``: the field with the slab -> detector energy E_tot(x, y) per history;
* ``pencil``: a 1 mm beam at the centre with and without the slab -> primary transmission T of the
  detector signal (scatter from a 1 mm beam into the central 2 x 2 cm is < 1e-3 of the primary);
* primary of the broad field = T x (energy per history of the unattenuated pencil) x (bin area /
  field area at the detector); scatter S = E_tot - primary. SPR = mean S / mean P over the central
  4 x 4 cm; the scatter profile (central 4 cm strips along x and y, folded) gives the width (FWHM).

The model is run on the same detector bins with the library's defaults; the grid-on numbers use
the library's grid model (the grid itself is not transported). The MC results are cached in
``experiments/data/scatter_mc.json`` (reused by ``--fit``; ``--quick`` reruns its subset).

Usage::

    nice -n 10 python experiments/validate_scatter.py --quick      # 4 cases, < 10 min on 2 cores
    nice -n 10 python experiments/validate_scatter.py              # all 27 cases, writes the cache
    python experiments/validate_scatter.py --fit                   # fit the model to the cache

The last line printed is one JSON object with ``spr_rel_err_max`` and ``width_rel_err_max``.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

SDD_CM, SID_CM = 102.0, 53.0
BIN_CM = 1.0
HALF_CM = 32.0
DET_G_PER_CM2 = 0.6 * 0.451  # 0.6 mm CsI
CENTRE_CM = 2.0  # half side of the central SPR region
KVPS = (70.0, 90.0, 120.0)
THICKNESSES_CM = (10.0, 20.0, 30.0)
FIELDS_CM = (10.0, 15.0, 20.0)
ALL_CASES = list(itertools.product(KVPS, THICKNESSES_CM, FIELDS_CM))
#: cases the model parameters were fitted to; every other case is held out
FIT_CASES = [(70.0, 10.0, 20.0), (90.0, 20.0, 15.0), (120.0, 30.0, 10.0), (70.0, 30.0, 20.0),
             (120.0, 10.0, 10.0), (90.0, 10.0, 10.0), (90.0, 30.0, 20.0)]
QUICK_CASES = [(90.0, 20.0, 15.0), (70.0, 20.0, 10.0), (120.0, 30.0, 20.0), (90.0, 10.0, 20.0)]
CACHE = Path(__file__).resolve().parent / "data" / "scatter_mc.json"
FILTER_AL_MM = 4.0


def case_key(kvp: float, t_cm: float, field_cm: float) -> str:
    return f"kvp{kvp:g}_t{t_cm:g}_f{field_cm:g}"


# ------------------------------------------------------------------------------------------------
# Monte Carlo (ompMC)
# ------------------------------------------------------------------------------------------------


def _mc_spectrum(kvp: float):
    import ompmc

    from ddsa_sim.physics.spectra import spekpy_spectrum

    s = spekpy_spectrum(kvp, FILTER_AL_MM)
    e = s.energies_kev
    return ompmc.Spectrum.from_histogram((e + 0.5) / 1000.0, s.fluence, e_min=(e[0] - 0.5) / 1000.0)


@contextlib.contextmanager
def _quiet_stdout():
    sys.stdout.flush()
    saved = os.dup(1)
    with open(os.devnull, "wb") as null:
        os.dup2(null.fileno(), 1)
        try:
            yield
        finally:
            os.dup2(saved, 1)
            os.close(saved)


def _mc_detector_energy(t_cm: float, half_field_iso_cm: float, patient: bool, kvp: float,
                        n_hist: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean energy per history (MeV) in the detector voxels, and its relative uncertainty."""
    import ompmc

    edges = np.arange(-HALF_CM, HALF_CM + 1e-9, BIN_CM)
    z_entry = SID_CM - t_cm / 2.0
    z_bounds = np.array([0.0, t_cm, SDD_CM - z_entry, SDD_CM - z_entry + DET_G_PER_CM2 / 4.51])
    shape = (edges.size - 1, edges.size - 1, 3)
    material = np.zeros(shape, dtype=np.int32, order="F")
    density = np.zeros(shape, dtype=np.float64, order="F")
    material[:, :, 2], density[:, :, 2] = 2, 4.51
    if patient:
        material[:, :, 0], density[:, :, 0] = 1, 1.0
    geometry = ompmc.Geometry(edges, edges, z_bounds, ["H2O700ICRU", "SN700ICRU"], density, material)
    h = half_field_iso_cm * z_entry / SID_CM  # opening on the entrance face
    source = ompmc.CollimatedSource(ssd=z_entry, x_min=-h, x_max=h, y_min=-h, y_max=h)
    physics = ompmc.Physics(n_split=1, seeds=(seed, 33))
    spectrum = _mc_spectrum(kvp)
    with _quiet_stdout():  # the engine logs to C stdout; the last line printed must be the JSON
        dose, unc = ompmc.calc_cube(geometry, source, spectrum, physics, n_histories=int(n_hist), n_batches=10,
                                    output_dose=False)
    return dose[:, :, 2], unc[:, :, 2]


def _fold(img: np.ndarray) -> np.ndarray:
    """Mean over the 8 symmetries of the square (the geometry has them all)."""
    parts = [img, img[::-1], img[:, ::-1], img[::-1, ::-1]]
    return np.mean(parts + [p.T for p in parts], axis=0)


def mc_case(kvp: float, t_cm: float, field_cm: float, n_broad: int, seed: int = 97) -> dict:
    """Run one MC case; returns primary transmission, central SPR and the scatter profile."""
    n_pencil = int(n_broad * 0.3 * (t_cm / 10.0) ** 1.5)
    t0 = time.time()
    e_tot, u_tot = _mc_detector_energy(t_cm, field_cm / 2.0, True, kvp, n_broad, seed)
    c = slice(int((HALF_CM - 1) / BIN_CM), int((HALF_CM + 1) / BIN_CM))  # central 2 x 2 cm
    pencil_flat = _mc_detector_energy(t_cm, 0.05, False, kvp, max(n_pencil // 20, 20000), seed + 1)[0][c, c].sum()
    pen, pen_u = _mc_detector_energy(t_cm, 0.05, True, kvp, n_pencil, seed + 2)
    pencil_prim = pen[c, c].sum()
    transmission = pencil_prim / pencil_flat
    field_det_cm = field_cm * SDD_CM / SID_CM
    edges = np.arange(-HALF_CM, HALF_CM + 1e-9, BIN_CM)
    overlap = np.clip(np.minimum(edges[1:], field_det_cm / 2) - np.maximum(edges[:-1], -field_det_cm / 2), 0, None)
    area_frac = np.outer(overlap, overlap) / field_det_cm**2
    primary = pencil_prim * area_frac  # energy per history, same normalisation as e_tot
    scatter = _fold(e_tot - primary)
    prim_f = _fold(primary)
    k = int(CENTRE_CM / BIN_CM)
    mid = int(HALF_CM / BIN_CM)
    cc = slice(mid - k, mid + k)
    spr = float(scatter[cc, cc].mean() / prim_f[cc, cc].mean())
    rel_unc = float(np.sqrt(np.sum((u_tot[cc, cc] * e_tot[cc, cc]) ** 2)) / e_tot[cc, cc].sum() / np.sqrt(8))
    profile = scatter[:, cc].mean(axis=1) / prim_f[cc, cc].mean()  # SPR units
    return {"kvp": kvp, "t_cm": t_cm, "field_cm": field_cm, "n_broad": int(n_broad), "n_pencil": n_pencil,
            "transmission": float(transmission), "spr": spr,
            "spr_rel_unc": float(np.hypot(rel_unc * (1 + spr) / spr, float(pen_u[c, c].mean()) / np.sqrt(4))),
            "profile": [float(v) for v in profile], "bin_cm": BIN_CM, "seconds": round(time.time() - t0, 1)}


def fwhm_cm(profile: np.ndarray, bin_cm: float) -> float:
    """Full width at half of the central value (linear interpolation between bin centres)."""
    p = np.asarray(profile, dtype=np.float64)
    mid = p.size // 2
    half = 0.5 * p[mid - 1:mid + 1].mean()
    right = p[mid:]
    below = np.nonzero(right < half)[0]
    if below.size == 0:
        return float(p.size * bin_cm)
    j = int(below[0])
    x0, x1 = j - 1 + 0.5, j + 0.5  # bin centres right of the middle (cm units of bins)
    y0, y1 = right[j - 1], right[j]
    x = x0 + (half - y0) / (y1 - y0) * (x1 - x0)
    return float(2.0 * x * bin_cm)


# ------------------------------------------------------------------------------------------------
# Model
# ------------------------------------------------------------------------------------------------


def model_case(kvp: float, t_cm: float, field_cm: float, params=None) -> dict:
    """The library's scatter model on the MC's detector bins."""
    from ddsa_sim.physics.attenuation import attenuation_matrix
    from ddsa_sim.physics.detector import integrate_spectrum
    from ddsa_sim.physics.scatter import ScatterGeometry, scatter_kernel_superposition
    from ddsa_sim.physics.spectra import spekpy_spectrum

    spec = spekpy_spectrum(kvp, FILTER_AL_MM)
    pixel_mm = 5.0
    n = int(2 * HALF_CM * 10 / pixel_mm)
    centres = (np.arange(n) + 0.5) * pixel_mm - HALF_CM * 10
    half_det_mm = field_cm * 10 * SDD_CM / SID_CM / 2
    inside = np.abs(centres) < half_det_mm
    t_prim = float(integrate_spectrum(np.array([[t_cm]]), attenuation_matrix(["water"], spec), spec)[0])
    primary = np.where(np.outer(inside, inside), t_prim, 0.0)
    thickness = np.full(primary.shape, t_cm * 10.0)
    geom = ScatterGeometry(source_to_detector_mm=SDD_CM * 10, source_to_isocenter_mm=SID_CM * 10)
    s = scatter_kernel_superposition(primary, thickness, pixel_mm, params=params, spectrum=spec, geometry=geom)
    f = int(BIN_CM * 10 / pixel_mm)
    sb = s.reshape(n // f, f, n // f, f).mean(axis=(1, 3))
    pb = primary.reshape(n // f, f, n // f, f).mean(axis=(1, 3))
    k, mid = int(CENTRE_CM / BIN_CM), sb.shape[0] // 2
    cc = slice(mid - k, mid + k)
    spr = float(sb[cc, cc].mean() / pb[cc, cc].mean())
    profile = sb[:, cc].mean(axis=1) / pb[cc, cc].mean()
    return {"spr": spr, "profile": profile, "transmission": t_prim}


# ------------------------------------------------------------------------------------------------


def _load_cache() -> dict:
    return json.loads(CACHE.read_text()) if CACHE.exists() else {}


def _save_cache(cache: dict) -> None:
    from ddsa_sim.files import atomic_output

    CACHE.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(CACHE) as tmp:
        Path(tmp).write_text(json.dumps(cache, indent=1))


def run_mc(cases: list[tuple[float, float, float]], n_broad: int, use_cache: bool) -> dict:
    from tqdm import tqdm

    cache = _load_cache()
    out = {}
    for case in tqdm(cases, desc="Monte Carlo cases", file=sys.stderr):
        key = case_key(*case)
        if use_cache and key in cache and cache[key]["n_broad"] >= n_broad:
            out[key] = cache[key]
            continue
        out[key] = mc_case(*case, n_broad=n_broad)
        if use_cache:
            cache = _load_cache()
            cache[key] = out[key]
            _save_cache(cache)
    return out


def compare(mc: dict, params=None) -> list[dict]:
    from ddsa_sim.physics.scatter import AntiScatterGrid

    grid = AntiScatterGrid()
    rows = []
    for key, r in mc.items():
        m = model_case(r["kvp"], r["t_cm"], r["field_cm"], params)
        w_mc, w_model = fwhm_cm(np.array(r["profile"]), r["bin_cm"]), fwhm_cm(m["profile"], BIN_CM)
        case = (r["kvp"], r["t_cm"], r["field_cm"])
        for grid_on in (False, True):
            ratio = grid.scatter_transmission / grid.primary_transmission if grid_on else 1.0
            spr_mc, spr_model = r["spr"] * ratio, m["spr"] * ratio
            rows.append({"case": key, "kvp": r["kvp"], "t_cm": r["t_cm"], "field_cm": r["field_cm"],
                         "grid": grid_on, "fitted": case in FIT_CASES,
                         "spr_mc": spr_mc, "spr_mc_unc": r["spr_rel_unc"] * spr_mc, "spr_model": spr_model,
                         "spr_rel_err": spr_model / spr_mc - 1.0, "width_mc_cm": w_mc, "width_model_cm": w_model,
                         "width_rel_err": w_model / w_mc - 1.0,
                         "transmission_mc": r["transmission"], "transmission_model": m["transmission"]})
    return rows


def fit(mc: dict) -> None:
    """Least-squares fit of the free model parameters to the FIT_CASES (log SPR and log width)."""
    from dataclasses import fields, replace

    from scipy.optimize import least_squares

    from ddsa_sim.physics.scatter import ScatterParams

    names = ["strength_at_10cm", "thickness_exponent", "energy_exponent", "emission_depth_fraction",
             "angular_exponent"]
    bounds = ([0.01, 0.1, -3.0, 0.0, 0.0], [100.0, 4.0, 3.0, 1.0, 20.0])
    base = ScatterParams()
    fit_mc = {k: v for k, v in mc.items() if (v["kvp"], v["t_cm"], v["field_cm"]) in FIT_CASES}

    def resid(x):
        p = replace(base, **dict(zip(names, x)))
        res = []
        for row in compare(fit_mc, p):
            if not row["grid"]:
                res += [np.log(row["spr_model"] / row["spr_mc"]), np.log(row["width_model_cm"] / row["width_mc_cm"])]
        return res

    x0 = [getattr(base, n) for n in names]
    sol = least_squares(resid, x0, bounds=bounds, x_scale="jac", diff_step=1e-3)
    print(json.dumps(dict(zip(names, [round(float(v), 4) for v in sol.x]))))
    assert {f.name for f in fields(ScatterParams)} >= set(names)


def table(rows: list[dict]) -> str:
    lines = ["| kVp | t (cm) | field (cm) | grid | fit | SPR MC | SPR model | err | width MC (cm) | width model (cm) | err |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['kvp']:g} | {r['t_cm']:g} | {r['field_cm']:g} | {'on' if r['grid'] else 'off'} | "
                     f"{'fit' if r['fitted'] else 'held out'} | {r['spr_mc']:.3f} ± {r['spr_mc_unc']:.3f} | "
                     f"{r['spr_model']:.3f} | {100 * r['spr_rel_err']:+.0f} % | {r['width_mc_cm']:.1f} | "
                     f"{r['width_model_cm']:.1f} | {100 * r['width_rel_err']:+.0f} % |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="4 cases, fewer histories, no cache (< 10 min, 2 cores)")
    ap.add_argument("--fit", action="store_true", help="fit the model parameters to the cached MC and print them")
    ap.add_argument("--histories", type=int, default=None, help="histories of the broad-field run per case")
    ap.add_argument("--threads", type=int, default=2, help="OpenMP threads of the MC (default 2)")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    if args.fit:
        fit(_load_cache())
        return 0
    if args.quick:
        mc = run_mc(QUICK_CASES, args.histories or 600_000, use_cache=False)
    else:
        mc = run_mc(ALL_CASES, args.histories or 1_500_000, use_cache=True)
    rows = compare(mc)
    print(table(rows))
    held = [r for r in rows if not r["fitted"]]
    summary = {
        "cases": len(mc), "spr_rel_err_max": max(abs(r["spr_rel_err"]) for r in rows),
        "width_rel_err_max": max(abs(r["width_rel_err"]) for r in rows),
        "held_out_cases": len({r["case"] for r in held}),
        "held_out_spr_rel_err_max": max((abs(r["spr_rel_err"]) for r in held), default=None),
        "held_out_width_rel_err_max": max((abs(r["width_rel_err"]) for r in held), default=None),
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
