"""Render one sample of a dataset: the glue between a :class:`SampleSpec` and the physics.

Contract
--------
``render_sample(spec, cache) -> dict[str, np.ndarray]`` returns, for ``(H, W) = spec.image_shape``:

* the images of ``docs/store_format.md``: ``mask``, ``contrast``, ``contrast_clean``,
  ``dsa_target``, ``iodine_mg_per_cm2`` (float32, (H, W)) and ``vessel_mask`` (uint8, (H, W));
* ``isocenter_mm`` (float64, (3,), world LPS) and ``projection_matrix`` (float64, (3, 4),
  world mm -> pixel index of the stored, binned and cropped image).

It is a pure function of ``spec`` (and the CT files): every random choice comes from generators
seeded by ``spec.seed`` / ``spec.vessel_source["seed"]``, so a sample re-rendered alone on any worker
is bit-identical to the stored one.

Renderers are picked by ``spec.renderer`` from :data:`RENDERERS`:

* ``"scene"``: the physics (``ddsa_sim.scene``, :func:`_render_scene`). Per cached CT it memoises in
  ``LoadedCT.derived`` the CT's projector volume (materials refined by the label map when there is
  one), the structure table, placement regions, the virtual non-contrast CT of ``ct-labels``
  vessels, and an LRU of voxelized vessel trees (``renderer_options.vessel_cache_size``), since one
  tree is seen from many poses. Options: :data:`SCENE_OPTIONS`.
* ``"synthetic"``: TEMPORARY / TEST ONLY. Deterministic fake images made from a crude CT line
  integral and a random 2D vessel walk; fast; not physics. ``renderer_options.delay_s`` makes it
  sleep (used by the kill-and-resume test).

Memory per worker (see ``docs/export.md``): the :class:`CTCache` holds at most ``max_items`` CTs,
each ``4 bytes * voxels`` (float32 HU) plus ``1 byte * voxels`` (uint8 labels), plus one sample's
arrays (``6 * 4 * H * W`` bytes) and the renderer's own working memory. CTs with more than
``spec.max_ct_voxels`` voxels are refused before their voxels are read.
"""

from __future__ import annotations

import functools
import hashlib
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ddsa_sim import InputError
from ddsa_sim.export.plan import SampleSpec

IMAGE_ARRAYS: tuple[str, ...] = ("mask", "contrast", "contrast_clean", "dsa_target", "iodine_mg_per_cm2",
                                 "vessel_mask")
IMAGE_DTYPES: dict[str, np.dtype] = {name: np.dtype(np.float32) for name in IMAGE_ARRAYS[:-1]}
IMAGE_DTYPES["vessel_mask"] = np.dtype(np.uint8)


@dataclass
class LoadedCT:
    """A CT held in a worker's cache: HU volume (float32) and optional label map (uint8/uint16).

    ``derived`` is for a renderer's per-CT products (material maps, a projector volume, ...): they
    live and die with the cached CT, so memory stays bounded by the cache size. Anything put there
    must be a deterministic function of the CT (never of a sample), or regeneration breaks.
    """

    ct: Any  # ddsa_sim.volumes.volume.Volume
    labels: Any | None
    derived: dict[str, Any] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        n = self.ct.data.nbytes
        return n + (self.labels.data.nbytes if self.labels is not None else 0)


def _source_path(source: str) -> Path:
    from ddsa_sim.volumes.builtin import resolve_builtin

    return resolve_builtin(source) if source.startswith("builtin:") else Path(source)


def peek_voxels(source: str) -> int | None:
    """Voxel count of a CT from its headers only (NIfTI, DICOM), or None when that needs a full read."""
    path = _source_path(source)
    if not path.exists():
        raise InputError(f"{source}: no such file or folder")
    if path.is_file() and path.name.lower().endswith((".nii", ".nii.gz")):
        import nibabel as nib

        try:
            return int(np.prod(nib.load(str(path)).shape[:3]))
        except Exception as exc:
            raise InputError(f"{path}: cannot read NIfTI header ({exc.__class__.__name__}: {exc})") from None
    if path.is_dir() or path.suffix.lower() in (".dcm", ".ima"):
        return _dicom_voxels(path)
    return None


def _dicom_voxels(path: Path) -> int | None:
    """Voxel count of a DICOM file or series folder from the headers only (pixels not read)."""
    import pydicom

    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    total = 0
    for f in files:
        try:
            ds = pydicom.dcmread(f, stop_before_pixels=True)
        except Exception:
            continue  # not DICOM: the reader ignores it too
        if "Rows" in ds and "Columns" in ds:
            total += int(ds.Rows) * int(ds.Columns) * int(ds.get("NumberOfFrames", 1) or 1)
    return total or None


def _refuse_huge(source: str, n_voxels: int, max_voxels: int) -> None:
    if n_voxels > max_voxels:
        gib = n_voxels * 5 / 2**30
        raise InputError(f"{source}: CT has {n_voxels:,} voxels (about {gib:.1f} GiB as float32 + labels), above "
                         f"max_ct_voxels={max_voxels:,}; crop or resample it, or raise max_ct_voxels")


def load_ct(ct_source: str, labels_source: str | None, max_voxels: int) -> LoadedCT:
    """Read a CT (HU, float32) and its label map (uint8, or uint16 above 255 labels).

    Raises
    ------
    InputError
        Unreadable file, not a CT, label map on another grid, or more than ``max_voxels`` voxels
        (checked from the header before the voxels are read, where the format allows).
    """
    from ddsa_sim.volumes.readers import read_ct, read_volume

    n = peek_voxels(ct_source)
    if n is not None:
        _refuse_huge(ct_source, n, max_voxels)
    ct = read_ct(ct_source)
    _refuse_huge(ct_source, int(ct.data.size), max_voxels)
    if ct.data.dtype != np.float32:
        ct = ct.with_data(ct.data.astype(np.float32))
    labels = None
    if labels_source is not None:
        labels = read_volume(labels_source)
        if labels.shape != ct.shape:
            raise InputError(f"{labels_source}: label map shape {labels.shape} differs from CT {ct.shape}")
        top = float(labels.data.max()) if labels.data.size else 0.0
        labels = labels.with_data(np.rint(labels.data).astype(np.uint8 if top <= 255 else np.uint16))
    return LoadedCT(ct, labels)


class CTCache:
    """Per-worker LRU of loaded CTs, keyed by ``(ct_source, labels_source)``.

    Parameters
    ----------
    max_items : int
        CTs kept at once (memory: ``max_items * 5 bytes * voxels``).
    loader : callable, optional
        ``loader(ct_source, labels_source, max_voxels) -> LoadedCT``; :func:`load_ct` by default.
    """

    def __init__(self, max_items: int = 1, loader: Callable[[str, str | None, int], LoadedCT] | None = None):
        self.max_items = max(1, int(max_items))
        self.loader = loader or load_ct
        self.loads = 0  # how many times a CT was read (tests: once per CT per worker)
        self._items: OrderedDict[tuple[str, str | None], LoadedCT] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, ct_source: str, labels_source: str | None, max_voxels: int) -> LoadedCT:
        """The loaded CT, read on first use; the least recently used one is dropped when full."""
        key = (ct_source, labels_source)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            while len(self._items) >= self.max_items:
                self._items.popitem(last=False)  # free before loading the next
            item = self.loader(ct_source, labels_source, max_voxels)
            self.loads += 1
            self._items[key] = item
            return item

    def __len__(self) -> int:
        return len(self._items)


_WORKER_CACHE: CTCache | None = None


def worker_cache(max_items: int = 1) -> CTCache:
    """The CT cache of this process (one per worker process; created on first use)."""
    global _WORKER_CACHE
    if _WORKER_CACHE is None or _WORKER_CACHE.max_items != max(1, int(max_items)):
        _WORKER_CACHE = CTCache(max_items)
    return _WORKER_CACHE


# ----------------------------------------------------------------------------- geometry
def sample_carm(spec: SampleSpec, ct_center_mm: np.ndarray):
    """The C-arm of a sample: isocenter at CT centre + offset, binned detector."""
    from ddsa_sim.geometry.carm import CArm

    iso = np.asarray(ct_center_mm, dtype=np.float64) + np.asarray(spec.isocenter_offset_mm, dtype=np.float64)
    carm = CArm(isocenter_mm=tuple(float(x) for x in iso), alpha=spec.alpha_deg, beta=spec.beta_deg,
                gamma=spec.gamma_deg, sensor_height=spec.detector_rows, sensor_width=spec.detector_cols,
                pixel_size=spec.pixel_mm)
    return carm.binned(spec.binning)


def crop_origin(spec: SampleSpec) -> tuple[int, int]:
    """(row, col) of the stored image's first pixel in the binned detector (centre crop)."""
    hb, wb = spec.detector_rows // spec.binning, spec.detector_cols // spec.binning
    h, w = spec.image_shape
    return (hb - h) // 2, (wb - w) // 2


def sample_geometry(spec: SampleSpec, ct_center_mm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(isocenter_mm (3,), projection_matrix (3, 4))`` of the stored (binned, cropped) image."""
    carm = sample_carm(spec, ct_center_mm)
    r0, c0 = crop_origin(spec)
    shift = np.array([[1.0, 0.0, -c0], [0.0, 1.0, -r0], [0.0, 0.0, 1.0]])
    return np.asarray(carm.isocenter_mm, dtype=np.float64), shift @ carm.projection_matrix


# ----------------------------------------------------------------------------- renderers
#: ``renderer_options`` of the scene renderer and their defaults.
SCENE_OPTIONS: dict[str, Any] = {
    "vessel_spacing_mm": 0.25,  # voxel grid of a generated tree (mm)
    "method": "siddon",          # ray marching: siddon (exact) | trilinear
    "kvp_node_kv": 2.0,          # SpekPy spectra on a kVp grid of this step, interpolated (0: exact kVp)
    "vessel_cache_size": 8,      # voxelized vessel trees kept per cached CT
}


def scene_options(spec: SampleSpec) -> dict[str, Any]:
    """The scene renderer's options: :data:`SCENE_OPTIONS` updated by ``spec.renderer_options``.

    Raises
    ------
    InputError
        An unknown option or a bad value (the message names ``renderer_options.KEY``).
    """
    opts = dict(SCENE_OPTIONS)
    for key, value in spec.renderer_options.items():
        if key not in SCENE_OPTIONS:
            raise InputError(f"renderer_options.{key}: unknown for renderer 'scene'; known: "
                             f"{', '.join(sorted(SCENE_OPTIONS))}")
        opts[key] = value
    if opts["method"] not in ("siddon", "trilinear"):
        raise InputError(f"renderer_options.method: use siddon or trilinear, got {opts['method']!r}")
    for key in ("vessel_spacing_mm", "kvp_node_kv", "vessel_cache_size"):
        v = opts[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v) or v < 0 or (
                v == 0 and key != "kvp_node_kv"):
            raise InputError(f"renderer_options.{key}: expected a positive number, got {v!r}")
    return opts


@functools.lru_cache(maxsize=256)
def sample_spectrum(kvp: float, filter_al_mm: float, node_kv: float = 2.0):
    """Tube spectrum at ``kvp`` from SpekPy spectra on a kVp grid (step ``node_kv``), interpolated.

    A SpekPy call costs about 1 s, and a dataset draws a new kVp per sample, so spectra are computed
    at the grid nodes below and above ``kvp`` (cached in memory and on disk) and the photon fluence
    per energy bin is interpolated linearly in kVp (bins above the lower node's endpoint get only the
    upper node's share). ``node_kv = 0`` calls SpekPy at the exact kVp. A pure function of its
    arguments, so regeneration stays bit-identical.
    """
    from ddsa_sim.physics.spectra import Spectrum, spekpy_spectrum

    lo = float(np.floor(kvp / node_kv) * node_kv) if node_kv > 0 else float(kvp)
    if lo == kvp:
        return spekpy_spectrum(float(kvp), float(filter_al_mm))
    hi = lo + node_kv
    s_lo, s_hi = spekpy_spectrum(lo, float(filter_al_mm)), spekpy_spectrum(hi, float(filter_al_mm))
    w = (float(kvp) - lo) / node_kv
    a_lo, a_hi = s_lo.photons_per_mm2_per_mas_at_1m or 1.0, s_hi.photons_per_mm2_per_mas_at_1m or 1.0
    e = s_hi.energies_kev
    f_lo = np.interp(e, s_lo.energies_kev, s_lo.fluence, left=0.0, right=0.0)
    fluence = (1.0 - w) * a_lo * f_lo + w * a_hi * s_hi.fluence
    return Spectrum(e, fluence, f"spekpy:kvp={kvp:.4f} (interpolated {lo:g}-{hi:g}),al={filter_al_mm:g}",
                    (1.0 - w) * a_lo + w * a_hi, {**s_hi.settings, "kvp": float(kvp)})


def _structures(spec: SampleSpec, loaded: LoadedCT) -> dict[str, int]:
    """Structure name -> label id of the CT's label map (builtin table; else empty), memoised."""
    from ddsa_sim.imaging.sources import structure_table

    if "structures" not in loaded.derived:
        loaded.derived["structures"] = structure_table(spec.labels_source, spec.structures_source,
                                                       field="cts.structures")
    return loaded.derived["structures"]


def _ct_projector_volume(spec: SampleSpec, loaded: LoadedCT):
    """The CT's projector volume (density + materials, refined by the label map if any), memoised."""
    from ddsa_sim.imaging.sources import ct_with_label_materials
    from ddsa_sim.projector import ProjectorVolume

    if "ct_volume" not in loaded.derived:
        ct = loaded.ct
        if loaded.labels is not None:
            ct = ct_with_label_materials(ct, loaded.labels.data, _structures(spec, loaded))
        loaded.derived["ct_volume"] = ProjectorVolume.from_ct(ct, name="ct")
    return loaded.derived["ct_volume"]


def _region(spec: SampleSpec, loaded: LoadedCT, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(bool mask, target point mm) of a label-map structure for placement, memoised per name."""
    from ddsa_sim.imaging.placement import region_target_mm
    from ddsa_sim.imaging.sources import structure_ids
    from ddsa_sim.volumes.materials import labels_in

    key = ("region", name)
    if key not in loaded.derived:
        if loaded.labels is None:
            raise InputError(f"placement.root: '{name}' needs a label map for CT '{spec.ct_id}'")
        ids = structure_ids([name], _structures(spec, loaded), str(spec.labels_source), field="placement.root")
        region = labels_in(loaded.labels.data, ids)
        if not region.any():
            raise InputError(f"placement.root: structure '{name}' has no voxel in {spec.labels_source}")
        loaded.derived[key] = (region, region_target_mm(region, loaded.ct.affine))
    return loaded.derived[key]


def _tree_vessels(spec: SampleSpec, loaded: LoadedCT, spacing_mm: float):
    """Generate, place (rotation / offset of the plan) and voxelize a procedural tree."""
    from scipy.spatial.transform import Rotation

    from ddsa_sim.imaging.placement import place_at
    from ddsa_sim.imaging.sources import generated_tree
    from ddsa_sim.imaging.vessels import BolusParams, FractionVessels, TreeVessels

    vs = spec.vessel_source
    field = f"vessels.sources[{vs.get('source_index', 0)}]"
    tree = generated_tree(vs["name"], int(vs["seed"]), vs.get("params") or {}, field=field)
    rotation = Rotation.from_euler("xyz", vs["rotation_deg"], degrees=True).as_matrix()
    region = None
    if vs["root"] == "ct-center":
        target = np.asarray(loaded.ct.center_mm, dtype=np.float64)
    else:
        region, target = _region(spec, loaded, vs["root"])
    target = target + np.asarray(vs["offset_mm"], dtype=np.float64)
    placed = tree.transformed(place_at(tree.positions_mm, rotation, target, region, loaded.ct.affine))
    frac, affine = TreeVessels(placed, spacing_mm=float(spacing_mm), name=spec.vessel_id).fraction(None, BolusParams())
    return FractionVessels(frac, affine, name=spec.vessel_id)


def _file_vessels(spec: SampleSpec):
    """A vessel file: NIfTI fraction / mask volume, or a tree file (.vtp/.json), in world mm as is."""
    from ddsa_sim.imaging.sources import nifti_fraction
    from ddsa_sim.imaging.vessels import BolusParams, FractionVessels, TreeVessels

    vs = spec.vessel_source
    field = f"vessels.sources[{vs.get('source_index', 0)}].segmentation"
    path = Path(vs["name"])
    if path.name.lower().endswith((".nii", ".nii.gz")):
        return nifti_fraction(path, field=field)
    if path.suffix.lower() in (".vtp", ".json"):
        from vessel_models import load_tree

        if not path.is_file():
            raise InputError(f"{field}: {path}: no such file")
        frac, affine = TreeVessels(load_tree(path), name=spec.vessel_id).fraction(None, BolusParams())
        return FractionVessels(frac, affine, name=spec.vessel_id)
    raise InputError(f"{field}: {path}: unknown format (expected .nii, .nii.gz, .vtp or .json, or ct-labels)")


def _label_vessel_parts(spec: SampleSpec, loaded: LoadedCT):
    """(virtual non-contrast CT projector volume, lumen) of the CT's own labelled vessels, memoised."""
    from ddsa_sim.imaging.sources import label_vessels, structure_ids
    from ddsa_sim.projector import ProjectorVolume

    vs = spec.vessel_source
    field = f"vessels.sources[{vs.get('source_index', 0)}].structures"
    names = list(vs.get("structures") or [])
    if not names:
        raise InputError(f"{field}: segmentation 'ct-labels' needs a list of structure names")
    if loaded.labels is None:
        raise InputError(f"{field}: CT '{spec.ct_id}' has no label map")
    key = ("ct-labels", tuple(names))
    if key not in loaded.derived:
        structures = _structures(spec, loaded)
        ids = structure_ids(names, structures, str(spec.labels_source), field=field)
        vnc, lumen = label_vessels(loaded.ct, loaded.labels.data, structures, ids, ",".join(names), field=field)
        loaded.derived[key] = (ProjectorVolume.from_ct(vnc, name="ct"), lumen)
    return loaded.derived[key]


def _cached_vessels(loaded: LoadedCT, spec: SampleSpec, opts: dict[str, Any], build: Callable[[], Any]):
    """LRU of voxelized vessel sources in ``loaded.derived`` (a tree is seen from many poses).

    Keyed by the whole ``vessel_source`` (generator, params, seed, placement) and the voxel
    spacing: the cached volume is a pure function of the key and the CT, so a hit returns exactly
    what a fresh build would.
    """
    lru = loaded.derived.setdefault("vessels", OrderedDict())
    key = hashlib.sha256(json.dumps([spec.vessel_source, opts["vessel_spacing_mm"]], sort_keys=True,
                                    default=str).encode()).hexdigest()
    if key in lru:
        lru.move_to_end(key)
        return lru[key]
    while len(lru) >= int(opts["vessel_cache_size"]):
        lru.popitem(last=False)
    lru[key] = build()
    return lru[key]


def scene_parts(spec: SampleSpec, loaded: LoadedCT, opts: dict[str, Any]):
    """``(CT projector volume, vessel source)`` of a sample, from the per-CT memo where possible.

    Raises
    ------
    InputError
        Unknown generator or parameter, missing vessel file or structure, ``model`` sources (not
        implemented yet).
    """
    vs = spec.vessel_source
    if vs["kind"] == "segmentation" and vs["name"] == "ct-labels":
        return _label_vessel_parts(spec, loaded)
    if vs["kind"] == "segmentation":
        return _ct_projector_volume(spec, loaded), _cached_vessels(loaded, spec, opts, lambda: _file_vessels(spec))
    if vs["kind"] == "generator":
        return _ct_projector_volume(spec, loaded), _cached_vessels(
            loaded, spec, opts, lambda: _tree_vessels(spec, loaded, opts["vessel_spacing_mm"]))
    raise InputError(f"vessels.sources[{vs.get('source_index', 0)}].model: learned vessel models are not "
                     f"available in the scene renderer yet; use a generator or a segmentation")


def build_sample_scene(spec: SampleSpec, cache: CTCache):
    """The :class:`~ddsa_sim.scene.Scene` and C-arm of one sample (CT loaded through ``cache``)."""
    from ddsa_sim.imaging.motion import MotionParams
    from ddsa_sim.imaging.recording import Exposure, ScatterSettings
    from ddsa_sim.scene import Scene

    opts = scene_options(spec)
    loaded = cache.get(spec.ct_source, spec.labels_source, spec.max_ct_voxels)
    ct_volume, vessels = scene_parts(spec, loaded, opts)
    scene = Scene(loaded.ct, [vessels], spectrum=sample_spectrum(spec.kvp, spec.filter_al_mm, float(opts["kvp_node_kv"])),
                  exposure=Exposure(photons_per_pixel=spec.photons_per_pixel), iodine_mg_per_ml=spec.iodine_mg_per_ml,
                  noise=spec.noise, scatter=ScatterSettings(enabled=spec.scatter), motion=MotionParams(kind=spec.motion),
                  method=opts["method"], ct_volume=ct_volume)
    return scene, sample_carm(spec, loaded.ct.center_mm)


def crop_images(spec: SampleSpec, images: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The store's image arrays of a full binned-detector render, centre-cropped to ``spec.image_shape``."""
    r0, c0 = crop_origin(spec)
    h, w = spec.image_shape
    return {name: np.ascontiguousarray(images[name][r0:r0 + h, c0:c0 + w]) for name in IMAGE_ARRAYS}


def _render_scene(spec: SampleSpec, cache: CTCache) -> dict[str, np.ndarray]:
    """The physics path: :func:`build_sample_scene`, ``render_triplet`` with ``default_rng(spec.seed)``,
    the store's arrays centre-cropped, plus ``isocenter_mm`` / ``projection_matrix``."""
    from ddsa_sim.scene import render_triplet

    scene, carm = build_sample_scene(spec, cache)
    arrays = crop_images(spec, render_triplet(scene, carm, np.random.default_rng(spec.seed)))
    arrays["isocenter_mm"], arrays["projection_matrix"] = sample_geometry(spec, scene.ct.center_mm)
    return arrays


def _vessel_walk(vessel_seed: int, shape: tuple[int, int]) -> np.ndarray:
    """TEMPORARY: iodine path length (cm) of a random 2D vessel walk, fixed per tree seed."""
    h, w = shape
    rng = np.random.default_rng(vessel_seed)
    thick = np.zeros(shape, dtype=np.float64)
    yy, xx = np.mgrid[0:h, 0:w]
    n_branch = 2 + int(rng.integers(0, 3))
    for _ in range(n_branch):
        p = np.array([h * (0.3 + 0.4 * rng.random()), w * (0.3 + 0.4 * rng.random())])
        heading = 2 * np.pi * rng.random()
        radius_px = max(0.6, 0.03 * min(h, w) * (0.5 + rng.random()))
        for _ in range(max(4, (h + w) // 4)):
            heading += 0.4 * rng.standard_normal()
            p = p + np.array([np.sin(heading), np.cos(heading)]) * radius_px
            d2 = (yy - p[0]) ** 2 + (xx - p[1]) ** 2
            # radius_px pixels of ~1 mm: chord length through a cylinder, in cm
            thick = np.maximum(thick, 0.2 * np.sqrt(np.clip(radius_px**2 - d2, 0, None)) / 10)
            radius_px = max(0.6, radius_px * 0.985)
    return thick


def _render_synthetic(spec: SampleSpec, cache: CTCache) -> dict[str, np.ndarray]:
    """TEMPORARY / TEST ONLY: deterministic fake images (see module docstring). Not physics."""
    delay = float(spec.renderer_options.get("delay_s", 0.0))
    if delay > 0:
        time.sleep(delay)
    loaded = cache.get(spec.ct_source, spec.labels_source, spec.max_ct_voxels)
    ct = loaded.ct
    h, w = spec.image_shape
    rng = np.random.default_rng(spec.seed)
    density = np.clip(0.001029 * ct.data.astype(np.float64) + 1.03, 0.0, None)
    area = density.sum(axis=1) * float(ct.spacing_mm[1]) / 10.0  # g/cm^2, shape (I, K)
    # nearest-neighbour view of the line-integral image, shifted with the pose
    ri = ((np.arange(h) + 0.5) / h * area.shape[0] + spec.alpha_deg / 10.0).astype(int) % area.shape[0]
    ci = ((np.arange(w) + 0.5) / w * area.shape[1] + spec.beta_deg / 10.0).astype(int) % area.shape[1]
    mu_tissue = 0.2 * (70.0 / spec.kvp)  # cm^2/g, crude
    mask_clean = mu_tissue * area[np.ix_(ri, ci)]
    thick_cm = np.roll(_vessel_walk(int(spec.vessel_source["seed"]), (h, w)),
                       (int(spec.alpha_deg) % max(h, 1) // 8, int(spec.beta_deg) % max(w, 1) // 8), axis=(0, 1))
    iodine = spec.iodine_mg_per_ml * thick_cm  # mg/cm^2
    dsa_target = iodine * 0.03 * (70.0 / spec.kvp) ** 2  # -ln(I_c/I_m), crude mass attenuation of iodine
    mask_at_contrast = mask_clean
    if spec.motion != "none":
        mask_at_contrast = np.roll(mask_clean, tuple(int(v) for v in rng.integers(-2, 3, size=2)), axis=(0, 1))
    contrast_clean = mask_at_contrast + dsa_target

    def record(clean: np.ndarray) -> np.ndarray:
        if not spec.noise:
            return clean
        counts = rng.poisson(spec.photons_per_pixel * np.exp(-clean))
        return -np.log(np.maximum(counts, 1) / spec.photons_per_pixel)

    iso, proj = sample_geometry(spec, ct.center_mm)
    return {
        "mask": record(mask_clean).astype(np.float32),
        "contrast": record(contrast_clean).astype(np.float32),
        "contrast_clean": contrast_clean.astype(np.float32),
        "dsa_target": dsa_target.astype(np.float32),
        "iodine_mg_per_cm2": iodine.astype(np.float32),
        "vessel_mask": (iodine > 0).astype(np.uint8),
        "isocenter_mm": iso,
        "projection_matrix": proj,
    }


RENDERERS: dict[str, Callable[[SampleSpec, CTCache], dict[str, np.ndarray]]] = {
    "scene": _render_scene,
    "synthetic": _render_synthetic,
}


def check_sample(spec: SampleSpec, arrays: dict[str, np.ndarray]) -> None:
    """Raise RuntimeError when a renderer broke the contract (names, shapes, dtypes, finiteness)."""
    shapes = {name: tuple(spec.image_shape) for name in IMAGE_ARRAYS}
    shapes.update(isocenter_mm=(3,), projection_matrix=(3, 4))
    for name, shape in shapes.items():
        if name not in arrays:
            raise RuntimeError(f"renderer '{spec.renderer}' returned no '{name}' for sample {spec.index}")
        a = arrays[name]
        if a.shape != shape:
            raise RuntimeError(f"renderer '{spec.renderer}': '{name}' has shape {a.shape}, expected {shape}")
        if name in IMAGE_DTYPES and a.dtype != IMAGE_DTYPES[name]:
            raise RuntimeError(f"renderer '{spec.renderer}': '{name}' is {a.dtype}, expected {IMAGE_DTYPES[name]}")
        if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
            raise RuntimeError(f"renderer '{spec.renderer}': '{name}' of sample {spec.index} has NaN/inf")


def render_sample(spec: SampleSpec, cache: CTCache | None = None) -> dict[str, np.ndarray]:
    """Render one sample (see the module docstring for the returned arrays).

    Parameters
    ----------
    spec : SampleSpec
        The sample (from :func:`ddsa_sim.export.plan.plan_dataset`).
    cache : CTCache, optional
        This worker's CT cache (default: the process-wide one).

    Raises
    ------
    InputError
        Unknown renderer, unreadable or too large CT.
    """
    if spec.renderer not in RENDERERS:
        raise InputError(f"renderer: unknown '{spec.renderer}'; known: {', '.join(sorted(RENDERERS))}")
    cache = cache if cache is not None else worker_cache()
    arrays = RENDERERS[spec.renderer](spec, cache)
    check_sample(spec, arrays)
    return arrays
