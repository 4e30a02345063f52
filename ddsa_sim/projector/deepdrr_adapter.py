"""DeepDRR 1.2.2 backend: the same scene as DeepDRR objects, rendered by DeepDRR's own projector.

Two layers:

* :func:`deepdrr_scene_spec` (pure numpy, no DeepDRR import, tested in CI) translates our scene into
  plain data: one density volume with the iodine burned in, DeepDRR material masks and names, the
  volume placement, ``MobileCArm`` keyword arguments, the spectrum, the step.
* :func:`render_with_deepdrr` imports DeepDRR lazily, builds ``Volume`` / ``MobileCArm`` /
  ``Projector`` from the spec and renders. It needs DeepDRR, CuPy and an NVIDIA GPU
  (``import deepdrr`` itself needs CuPy).

Why the iodine is burned into the CT: DeepDRR 1.2.2 composites volumes by priority, and a
higher-priority volume replaces every lower one inside its whole bounding box (its kernel counts a
volume as present wherever the ray is inside its box), so a vessel volume would erase the CT around
the vessels. Instead the fine iodine volume is resampled onto the CT grid and carried by the CT
itself:

* resampling is mass-conserving splatting: every fine voxel, split into ``ss^3`` sub-voxels, adds
  its iodine mass to the CT voxel containing each sub-voxel centre, so the total iodine mass is
  kept exactly (less any mass outside the CT grid, reported). The fine resolution is LOST: a
  0.2 mm vessel becomes a partial-volume CT voxel (e.g. 0.7 x 0.7 x 2.5 mm); DeepDRR then
  interpolates that coarse iodine trilinearly, so thin vessels look wider and fainter, with the
  same integrated iodine.
* a CT voxel holding iodine mass ``c`` (g/cm^3) becomes "iodinated blood": its non-iodine mass is
  the CT density less the blood the iodine displaces, ``b = rho - k c``. DeepDRR gives one material
  per voxel, so ``iodine_levels`` mixtures of blood and iodine (iodine mass fractions ``w_j`` on a
  geometric ladder spanning the voxels' ``c / (b + c)``) are defined as DeepDRR compound materials;
  each voxel takes the nearest level and the density ``c / w_j``. Iodine mass is therefore exact in
  every voxel; the voxel's non-iodine mass becomes ``c (1 - w_j) / w_j`` instead of ``b`` (error at
  most half a ladder step, reported as ``base_mass_error``) and is blood, whatever the CT said.

Geometry: our world is LPS mm, as DeepDRR's with ``anatomical_coordinate_system="LPS"`` and an
identity ``world_from_anatomical``; ``anatomical_from_IJK`` is the CT's voxel -> world affine.
``MobileCArm`` takes the isocenter in its DEVICE frame and its ``world_from_device`` defaults to the
identity, so both are passed explicitly (ours defaults to a supine patient).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from ddsa_sim import InputError
from ddsa_sim.geometry.carm import CArm
from ddsa_sim.physics.attenuation import MATERIALS, get_material
from ddsa_sim.physics.spectra import get_spectrum
from ddsa_sim.projector.volumes import ProjectorVolume

#: our material names that DeepDRR 1.2.2 knows by name (its material table / name map)
DEEPDRR_NAMED = ("air", "soft tissue", "bone", "blood", "lung", "muscle", "titanium")
#: spectra DeepDRR 1.2.2 ships (MC-GPU tables)
DEEPDRR_SPECTRA = ("60KV_AL35", "90KV_AL40", "120KV_AL43")
#: DeepDRR's default step (world mm along the ray, despite "voxels" in its docstring)
DEEPDRR_STEP_MM = 0.1
MISSING_MESSAGE = ("the deepdrr backend needs DeepDRR 1.2.2, CuPy and an NVIDIA GPU: "
                   "pip install -e .[deepdrr] (and the CuPy wheel for your CUDA, e.g. cupy-cuda12x)")


def compound_string(composition: dict[str, float]) -> str:
    """DeepDRR compound-material string (``"H0.10200000C0.14300000..."``), mass fractions summing to 1."""
    items = [(el, float(w)) for el, w in composition.items() if w > 0]
    total = sum(w for _, w in items)
    if total <= 0:
        raise InputError("a compound needs at least one element with a positive mass fraction")
    return "".join(f"{el}{w / total:.8f}" for el, w in items)


def deepdrr_material(name: str) -> tuple[str, str | None]:
    """Our material name -> (DeepDRR material name, compound string or None when DeepDRR knows it)."""
    if name in DEEPDRR_NAMED:
        return name, None
    mat = get_material(name)
    return name, compound_string(dict(mat.composition))


def splat_onto_grid(fine: ProjectorVolume, shape: tuple[int, int, int], world_from_voxel: np.ndarray,
                    ss: int = 2) -> tuple[np.ndarray, float]:
    """Mass-conserving resampling of ``fine``'s density onto another grid.

    Returns
    -------
    density : float64 (shape), g/cm^3 on the target grid
    dropped_g : float
        Mass (g) of sub-voxels falling outside the target grid.
    """
    if ss < 1:
        raise InputError(f"supersampling must be >= 1, got {ss}")
    dens = np.asarray(fine.density_g_per_cc, dtype=np.float64)
    nz = np.argwhere(dens > 0)
    vol_f_cc = abs(np.linalg.det(fine.world_from_voxel[:3, :3])) / 1000.0
    vol_t_cc = abs(np.linalg.det(np.asarray(world_from_voxel, dtype=np.float64)[:3, :3])) / 1000.0
    out = np.zeros(int(np.prod(shape)), dtype=np.float64)
    if nz.size == 0:
        return out.reshape(shape), 0.0
    mass = dens[tuple(nz.T)] * vol_f_cc / ss**3
    t_from_f = np.linalg.inv(world_from_voxel) @ fine.world_from_voxel
    offs = (np.arange(ss) + 0.5) / ss - 0.5
    dropped = 0.0
    n = np.array(shape)
    for a in offs:
        for b in offs:
            for c in offs:
                ijk = np.column_stack([nz + [a, b, c], np.ones(len(nz))]) @ t_from_f[:3].T
                idx = np.floor(ijk + 0.5).astype(np.int64)
                ok = np.all((idx >= 0) & (idx < n), axis=1)
                dropped += float(mass[~ok].sum())
                flat = np.ravel_multi_index(tuple(idx[ok].T), shape)
                out += np.bincount(flat, weights=mass[ok], minlength=out.size)
    return (out / vol_t_cc).reshape(shape), dropped


def carm_kwargs(carm: CArm) -> dict[str, Any]:
    """``deepdrr.MobileCArm(**kwargs)`` arguments reproducing ``carm`` (angles in degrees)."""
    iso_device = (carm.device_from_world @ np.append(np.asarray(carm.isocenter_mm, dtype=np.float64), 1.0))[:3]
    return {
        "world_from_device": np.asarray(carm.world_from_device, dtype=np.float64).copy(),
        "isocenter": iso_device,
        "alpha": float(carm.alpha_deg), "beta": float(carm.beta_deg), "gamma": float(carm.gamma_deg), "degrees": True,
        "min_alpha": float(carm.min_alpha_deg), "max_alpha": float(carm.max_alpha_deg),
        "min_beta": float(carm.min_beta_deg), "max_beta": float(carm.max_beta_deg),
        "source_to_detector_distance": float(carm.source_to_detector_distance),
        "source_to_isocenter_vertical_distance": float(carm.source_to_isocenter_vertical_distance),
        "source_to_isocenter_horizontal_offset": float(carm.source_to_isocenter_horizontal_offset),
        "sensor_height": int(carm.sensor_height), "sensor_width": int(carm.sensor_width),
        "pixel_size": float(carm.pixel_mm), "rotate_camera_left": bool(carm.rotate_camera_left),
        "enforce_isocenter_bounds": False,
    }


def spectrum_spec(spectrum: Any) -> dict[str, Any]:
    """DeepDRR spectrum name (when it has one) and our spectrum as DeepDRR's (N, 2) array [eV, fluence]."""
    s = get_spectrum(spectrum)
    name = s.name.upper() if s.name.upper() in DEEPDRR_SPECTRA else None
    arr = np.column_stack([np.asarray(s.energies_kev, dtype=np.float64) * 1000.0,
                           np.asarray(s.fluence, dtype=np.float64)])
    return {"deepdrr_name": name, "array_ev": arr, "ours": s.name}


def deepdrr_scene_spec(ct: ProjectorVolume, iodine: ProjectorVolume | None, carm: CArm,
                       spectrum: Any = "90KV_AL40", step_mm: float = DEEPDRR_STEP_MM, iodine_levels: int = 8,
                       supersample: int = 2) -> dict[str, Any]:
    """Our scene as plain data for DeepDRR 1.2.2 (no DeepDRR import).

    Parameters
    ----------
    ct : ProjectorVolume
        The CT (density g/cm^3, labels, materials, voxel -> world LPS affine).
    iodine : ProjectorVolume or None
        A single-material iodine volume (density = g iodine / cm^3) on any grid; its ``displaces``
        (``{"blood": k}`` g/g) is applied. Burned into the CT (module docstring).
    carm : CArm
        The view.
    spectrum : str, dict or Spectrum
    step_mm : float
        DeepDRR ray step (world mm).
    iodine_levels : int
        Number of iodinated-blood mixtures (DeepDRR materials) used for the iodine voxels.
    supersample : int
        Sub-voxels per axis when splatting the iodine onto the CT grid.

    Returns
    -------
    dict with keys ``density`` (float32 (I,J,K)), ``materials`` (DeepDRR name -> bool mask, exclusive
    and complete), ``compounds`` (DeepDRR name -> compound string for names DeepDRR lacks),
    ``anatomical_from_ijk``, ``world_from_anatomical`` (4x4), ``anatomical_coordinate_system``,
    ``carm`` (MobileCArm kwargs), ``spectrum`` (:func:`spectrum_spec`), ``step``, ``iodine`` (mass
    book-keeping: ``source_g``, ``burned_g``, ``dropped_g``, ``levels``, ``base_mass_error``).
    """
    if not step_mm > 0:
        raise InputError(f"step_mm must be positive, got {step_mm}")
    if iodine_levels < 1:
        raise InputError(f"iodine_levels must be >= 1, got {iodine_levels}")
    density = ct.density_g_per_cc.astype(np.float64).copy()
    names, compounds = [], {}
    for m in ct.materials:
        dname, comp = deepdrr_material(m)
        names.append(dname)
        if comp is not None:
            compounds[dname] = comp
    unique = list(dict.fromkeys(names))  # two of ours may share one DeepDRR name
    labels = np.asarray([unique.index(n) for n in names], dtype=np.int64)[ct.labels]
    names = unique
    info: dict[str, Any] = {"source_g": 0.0, "burned_g": 0.0, "dropped_g": 0.0, "levels": [], "base_mass_error": 0.0}
    if iodine is not None:
        if len(iodine.materials) != 1 or iodine.materials[0] != "iodine":
            raise InputError(f"volume '{iodine.name}': the iodine volume must have the single material 'iodine', "
                             f"got {iodine.materials}")
        vol_ct_cc = abs(np.linalg.det(ct.world_from_voxel[:3, :3])) / 1000.0
        vol_f_cc = abs(np.linalg.det(iodine.world_from_voxel[:3, :3])) / 1000.0
        info["source_g"] = float(iodine.density_g_per_cc.astype(np.float64).sum() * vol_f_cc)
        c, info["dropped_g"] = splat_onto_grid(iodine, ct.shape, ct.world_from_voxel, supersample)
        sel = c > 0
        if sel.any():
            k = float(iodine.displaces.get("blood", 0.0))
            cs = c[sel]
            base = np.maximum(density[sel] - k * cs, 0.0)
            w = cs / (base + cs)
            lo, hi = float(w.min()), float(w.max())
            ladder = np.geomspace(lo, hi, iodine_levels) if hi > lo * (1 + 1e-9) else np.array([lo])
            j = np.abs(np.log(w)[:, None] - np.log(ladder)[None, :]).argmin(axis=1)
            blood = dict(MATERIALS["blood"].composition)
            n_base = len(names)
            for n_level, wl in enumerate(ladder):
                mix = {el: (1 - wl) * f for el, f in blood.items()}
                mix["I"] = mix.get("I", 0.0) + wl
                name = f"iodinated blood {n_level}"
                names.append(name)
                compounds[name] = compound_string(mix)
            new_density = cs / ladder[j]
            new_base = new_density - cs
            info["base_mass_error"] = float(np.abs(new_base - base).sum() / max(base.sum(), 1e-30))
            density[sel] = new_density
            labels = labels.copy()
            labels[sel] = n_base + j
            info["burned_g"] = float((new_density * ladder[j]).sum() * vol_ct_cc)
            info["levels"] = [float(x) for x in ladder]
    materials = {n: labels == i for i, n in enumerate(names)}
    return {
        "density": density.astype(np.float32),
        "materials": materials,
        "compounds": compounds,
        "anatomical_from_ijk": np.asarray(ct.world_from_voxel, dtype=np.float64).copy(),
        "world_from_anatomical": np.eye(4),
        "anatomical_coordinate_system": "LPS",
        "carm": carm_kwargs(carm),
        "spectrum": spectrum_spec(spectrum),
        "step": float(step_mm),
        "iodine": info,
    }


# --------------------------------------------------------------------------------------- DeepDRR
def import_deepdrr():
    """``import deepdrr`` or a one-line :class:`InputError` naming what is missing."""
    try:
        import deepdrr
    except Exception as exc:  # ImportError, CUDA driver errors from cupy
        raise InputError(f"{MISSING_MESSAGE} ({type(exc).__name__}: {exc})") from exc
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() < 1:
            raise RuntimeError("no CUDA device")
    except Exception as exc:
        raise InputError(f"{MISSING_MESSAGE} (no usable GPU: {exc})") from exc
    return deepdrr


@contextlib.contextmanager
def _registered_compounds(compounds: dict[str, str], transparent: tuple[str, ...] = ()) -> Iterator[None]:
    """Register our compound materials with DeepDRR; optionally make some materials transparent.

    DeepDRR reads material tables when its Projector is initialised, so the override only needs to
    hold during ``initialize()``. Transparent materials (mu/rho ~ 0) isolate one material's area density.
    """
    from deepdrr.material import CoefficientEntry, Material

    saved = dict(Material._cache)
    saved_map = dict(Material._custom_map)
    try:
        for name, comp in compounds.items():
            Material.from_string(comp, compound_string=True)
            Material.register_map({name: comp})
        for name in transparent:
            key = Material._custom_map.get(name, name)
            ref = Material.from_string(name)
            Material._cache[key] = Material(key, [CoefficientEntry(e.energy, 1e-12, 1e-12) for e in ref.coefficients])
        yield
    finally:
        Material._cache.clear()
        Material._cache.update(saved)
        Material._custom_map.clear()
        Material._custom_map.update(saved_map)


def render_with_deepdrr(spec: dict[str, Any], spectrum: str | np.ndarray | None = None,
                        transparent: tuple[str, ...] = (), photon_count: int = 10000) -> np.ndarray:
    """Render a :func:`deepdrr_scene_spec` with DeepDRR 1.2.2 (GPU): intensity in keV per photon, (H, W).

    Parameters
    ----------
    spec : dict
        From :func:`deepdrr_scene_spec`.
    spectrum : str, ndarray or None
        DeepDRR spectrum name, an (N, 2) [eV, fluence] array, or None for ours (``spec["spectrum"]``).
    transparent : tuple of str
        DeepDRR material names made non-attenuating (to isolate one material, see parity script).

    Returns
    -------
    ndarray (H, W) float32: DeepDRR's un-normalised intensity ``sum_b E_b p_b exp(-...)`` (keV),
    no noise, no scatter, no neglog. Divide by ``sum_b E_b p_b`` for I/I0.
    """
    deepdrr = import_deepdrr()
    spec_arr = spec["spectrum"]["array_ev"] if spectrum is None else spectrum
    with _registered_compounds(spec["compounds"], transparent):
        volume = deepdrr.Volume(spec["density"], spec["materials"], spec["anatomical_from_ijk"],
                                spec["world_from_anatomical"],
                                anatomical_coordinate_system=spec["anatomical_coordinate_system"])
        carm = deepdrr.MobileCArm(**spec["carm"])
        projector = deepdrr.Projector(volume, device=carm, step=spec["step"], spectrum=spec_arr,
                                      add_noise=False, photon_count=photon_count, neglog=False,
                                      intensity_upper_bound=None)
        projector.initialize()
    try:
        image = projector.project()
    finally:
        projector.free()
    return np.asarray(image, dtype=np.float32)


def mean_energy_kev(spectrum_array_ev: np.ndarray) -> float:
    """``sum E p / sum p`` (keV) of a DeepDRR (N, 2) [eV, fluence] spectrum: DeepDRR's flat-field intensity."""
    arr = np.asarray(spectrum_array_ev, dtype=np.float64)
    return float((arr[:, 0] / 1000.0 * arr[:, 1]).sum() / arr[:, 1].sum())
