"""Render one sample of a dataset: :class:`SampleSpec` -> scene builder -> arrays.

Contract
--------
``render_sample(spec, cache) -> dict[str, np.ndarray]`` returns, for ``(H, W) = spec.image_shape``:

* the images of ``docs/store_format.md``: ``mask``, ``contrast``, ``contrast_clean``,
  ``dsa_target``, ``iodine_mg_per_cm2`` (float32, (H, W)) and ``vessel_mask`` (uint8, (H, W));
  for a sequence (``spec.frames`` = T >= 1) all but ``mask`` are (T, H, W), and ``frame_times_s``
  (float64, (T,)) and ``mask_time_s`` (float64) say when each frame was taken;
* ``isocenter_mm`` (float64, (3,), world LPS) and ``projection_matrix`` (float64, (3, 4),
  world mm -> pixel index of the stored, binned and cropped image);
* optionally ``motion_applied`` (a JSON string: each contrast frame's motion as drawn while rendering), which the
  store records in ``params_json``.

It is a pure function of ``spec`` (and the CT files): every random choice comes from generators
seeded by ``spec.seed`` / ``spec.vessel_source["seed"]``, so a sample re-rendered alone on any worker
is bit-identical to the stored one.

The renderer is picked by ``spec.renderer`` (:mod:`ddsa_sim.export.renderers`): ``"scene"`` is
:func:`render_scene_sample`, which turns the spec into a :class:`~ddsa_sim.scene.SceneSpec`, builds
the scene with :func:`ddsa_sim.scene.build_scene` on the worker's cached :class:`~ddsa_sim.scene.Patient`
(whose memo keeps the CT's projector volume, regions, the virtual non-contrast CT and an LRU of
voxelized trees, ``renderer_options.vessel_cache_size``, since one tree is seen from many poses) and
renders it with :func:`ddsa_sim.scene.render_frames`. Options: :data:`SCENE_OPTIONS`. The config's
``device: cuda`` runs the scene on the torch GPU backend, on this worker's own GPU
(:mod:`ddsa_sim.export.devices`); the CT is uploaded once per worker process.

Memory per worker (see ``docs/export.md``): the :class:`CTCache` holds at most ``max_items`` CTs,
each ``4 bytes * voxels`` (float32 HU) plus ``1 byte * voxels`` (uint8 labels), plus one sample's
arrays (``6 * 4 * H * W`` bytes; ``(1 + 5 T) * 4 * H * W`` for a sequence of T frames) and the
renderer's own working memory. CTs with more than ``spec.max_ct_voxels`` voxels are refused before
their voxels are read.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from ddsa_sim import InputError
from ddsa_sim.export.devices import this_worker_device
from ddsa_sim.export.format import IMAGE_ARRAYS, IMAGE_DTYPES, V2_META_ARRAYS, image_sample_shape
from ddsa_sim.export.plan import SampleSpec
from ddsa_sim.export.renderers import resolve_renderer


def ct_spec(spec: SampleSpec):
    """The :class:`~ddsa_sim.scene.CTSpec` of a sample's CT (config field names for errors), with its
    pseudo-patient (``spec.ct_variant``) if any."""
    from ddsa_sim.scene import CTSpec
    from ddsa_sim.volumes.augment import PseudoPatient
    from ddsa_sim.volumes.distractors import Distractors

    variant, vnc, distractors = None, "off", None
    if spec.ct_variant is not None:
        v = spec.ct_variant
        texture = {} if "bone_texture" not in v else {"texture_amplitude": v["bone_texture"]["amplitude"],
                                                      "texture_sigma_mm": v["bone_texture"]["sigma_mm"]}
        variant = PseudoPatient(seed=int(v["seed"]), deform_mm=v["deform_mm"], smooth_mm=v["smooth_mm"],
                                scale=tuple(v["scale"]), rotate_deg=tuple(v["rotate_deg"]), hu_offset=v["hu_offset"],
                                hu_scale=v["hu_scale"], fov_mm=v["fov_mm"], **texture)
        vnc = v["vnc"] if isinstance(v["vnc"], str) else tuple(v["vnc"])
        if "distractors" in v:
            distractors = Distractors(**{n: tuple(x) if isinstance(x, list) else x
                                         for n, x in v["distractors"].items()})
    where = ct_field(spec)
    return CTSpec(spec.ct_source, spec.labels_source, spec.structures_source, spec.max_ct_voxels,
                  labels_field=f"{where}.labels", structures_field=f"{where}.structures", variant=variant, vnc=vnc,
                  vnc_field=f"{where}.variants.vnc", distractors=distractors)


def ct_field(spec: SampleSpec) -> str:
    """The config entry of a sample's CT, as errors name it: ``cts.N`` (``cts`` for a spec made without the plan)."""
    return "cts" if spec.ct_index is None else f"cts.{spec.ct_index}"


def ct_key(spec: SampleSpec) -> tuple[str, str | None, str]:
    """What identifies a sample's loaded patient: CT, label map and pseudo-patient parameters."""
    return spec.ct_source, spec.labels_source, json.dumps(spec.ct_variant, sort_keys=True)


class CTCache:
    """Per-worker LRU of loaded patients (:class:`~ddsa_sim.scene.Patient`), keyed by :func:`ct_key`.

    Parameters
    ----------
    max_items : int
        CTs kept at once (memory: ``max_items * 5 bytes * voxels``).
    loader : callable, optional
        ``loader(SampleSpec) -> Patient``; :func:`ddsa_sim.scene.load_patient` of :func:`ct_spec` by default.
    """

    def __init__(self, max_items: int = 1, loader: Callable[[SampleSpec], Any] | None = None):
        self.max_items = max(1, int(max_items))
        self.loader = loader or _load_patient
        self.loads = 0  # how many times a CT was read (tests: once per CT per worker)
        self._items: OrderedDict[tuple[str, str | None, str], Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, spec: SampleSpec):
        """The patient of ``spec``, read on first use; the least recently used one is dropped when full."""
        key = ct_key(spec)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            while len(self._items) >= self.max_items:
                self._items.popitem(last=False)  # free before loading the next
            item = self.loader(spec)
            self.loads += 1
            self._items[key] = item
            return item

    def __len__(self) -> int:
        return len(self._items)


def _load_patient(spec: SampleSpec):
    from ddsa_sim.scene import load_patient

    return load_patient(ct_spec(spec))


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
    carm = CArm(isocenter_mm=tuple(float(x) for x in iso), alpha_deg=spec.alpha_deg, beta_deg=spec.beta_deg,
                gamma_deg=spec.gamma_deg, sensor_height=spec.detector_rows, sensor_width=spec.detector_cols,
                pixel_mm=spec.pixel_mm)
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


def sample_collimator(spec: SampleSpec):
    """The :class:`~ddsa_sim.physics.collimation.Collimator` of a sample (None: open): the plan's
    blades and iris, fractions of the stored image, turned into fractions of the binned detector (a
    blade at 0 stays out of the field; the iris is centred on the detector, within half a pixel of
    the image centre)."""
    from ddsa_sim.physics.collimation import Collimator

    c = spec.collimation
    if c is None:
        return None
    hb, wb = spec.detector_rows // spec.binning, spec.detector_cols // spec.binning
    (h, w), (r0, c0) = spec.image_shape, crop_origin(spec)

    def at_detector(fraction: float, before: int, size: int, total: int) -> float:
        return 0.0 if fraction == 0 else (before + fraction * size) / total

    return Collimator(left=at_detector(c["left"], c0, w, wb), right=at_detector(c["right"], wb - c0 - w, w, wb),
                      top=at_detector(c["top"], r0, h, hb), bottom=at_detector(c["bottom"], hb - r0 - h, h, hb),
                      iris_diameter=c["iris_diameter"] * min(h, w) / min(hb, wb),
                      source_to_collimator_mm=c["source_to_collimator_mm"], leakage=c["leakage"])


#: Voxels of the aim structures tried (golden-ratio steps from ``aim_u``) before falling back to the CT centre.
AIM_TRIES = 16


def aim_point_mm(spec: SampleSpec, patient, scene) -> np.ndarray:
    """The world point (mm) the sample's isocenter jitter is added to: the CT centre, or with
    ``spec.aim`` a voxel of those label-map structures (shell patterns), the ``floor(u n)``-th of their
    ``n`` voxels in C order for ``u = aim_u``. A voxel from which the vessels would be entirely out
    of view is skipped (their volumes' boxes outside the detector; in a collimated sample, no vessel voxel
    inside the exposed field: :func:`vessels_in_field`): ``u`` steps by the golden ratio (mod 1), up to
    :data:`AIM_TRIES` voxels, then the CT centre. A pure function of the spec and the CT.

    Raises
    ------
    InputError
        No structure of the label map matches ``pose.aim``.
    """
    import fnmatch

    from ddsa_sim.scene.sources import structure_table

    centre = np.asarray(patient.ct.center_mm, dtype=np.float64)
    if spec.aim is None:
        return centre
    key = ("aim", spec.aim)
    if key not in patient.derived:
        table = structure_table(spec.labels_source, spec.structures_source, field=f"{ct_field(spec)}.structures")
        ids = [i for name, i in table.items() if any(fnmatch.fnmatchcase(name, p) for p in spec.aim)]
        ids += [int(p) for p in spec.aim if p.isdigit()]
        if not ids:
            raise InputError(f"pose.aim: no structure of {spec.labels_source} matches {list(spec.aim)}")
        patient.derived[key] = np.flatnonzero(np.isin(patient.labels.data, ids))
    voxels = patient.derived[key]
    if voxels.size == 0:
        return centre
    lumen = vessel_points_mm(scene) if spec.collimation is not None else None
    for t in range(AIM_TRIES):
        u = (spec.aim_u + t * 0.6180339887498949) % 1.0
        point = patient.ct.voxel_to_world(np.array(np.unravel_index(voxels[int(u * voxels.size)], patient.ct.shape),
                                                   dtype=np.float64))
        try:
            scene.check_view(sample_carm(spec, point))
        except InputError:
            continue
        if lumen is None or vessels_in_field(spec, point, lumen):
            return point
    return centre


#: Most vessel voxels :func:`vessel_points_mm` keeps (an even subset): enough to find a vessel in a field.
MAX_VESSEL_POINTS = 200_000


def vessel_points_mm(scene) -> np.ndarray:
    """World positions (mm, (N, 3)) of the voxels of the scene's vessel sources (fully filled; the catheter's lumen
    is no vessel), an even subset of at most :data:`MAX_VESSEL_POINTS`."""
    points = []
    for name in scene.vessel_names[:len(scene.vessels)]:
        vol = scene.projector.volumes[name]
        idx = np.argwhere(vol.density_g_per_cc > 0).astype(np.float64)
        points.append(idx @ vol.world_from_voxel[:3, :3].T + vol.world_from_voxel[:3, 3])
    points = np.concatenate(points)
    return points[:: max(1, len(points) // MAX_VESSEL_POINTS)]


def vessels_in_field(spec: SampleSpec, target_mm: np.ndarray, points_mm: np.ndarray) -> bool:
    """Whether a vessel voxel (``points_mm``, :func:`vessel_points_mm`) projects, with the sample's isocenter at
    ``target_mm`` plus its jitter, onto a stored pixel inside the sample's collimated field
    (:func:`ddsa_sim.export.format.exposed_field`; the whole image for an open field)."""
    from ddsa_sim.export.format import COLLIMATION_META, exposed_field

    _, matrix = sample_geometry(spec, target_mm)
    h = points_mm @ matrix[:, :3].T + matrix[:, 3]
    h = h[h[:, 2] > 0]  # in front of the source
    col, row = np.floor(h[:, 0] / h[:, 2]), np.floor(h[:, 1] / h[:, 2])
    rows, cols = spec.image_shape
    on = (row >= 0) & (row < rows) & (col >= 0) & (col < cols)
    c = spec.collimation
    field = exposed_field(None if c is None else [c[k] for k in COLLIMATION_META], (rows, cols))
    return bool(field[row[on].astype(int), col[on].astype(int)].any())


# ----------------------------------------------------------------------------- the scene renderer
#: ``renderer_options`` of the scene renderer and their defaults.
SCENE_OPTIONS: dict[str, Any] = {
    "vessel_spacing_mm": 0.25,  # voxel grid of a generated tree (mm)
    "method": "trilinear",       # ray marching: trilinear (smooth, default) | siddon (exact voxels, slice bands)
    "kvp_node_kv": 2.0,          # SpekPy spectra on a kVp grid of this step, interpolated (0: exact kVp)
    "vessel_cache_size": 8,      # voxelized vessel trees kept per cached CT
    "backend": "numba",          # numba | torch: the kernel on the CPU (a GPU device is always torch)
    "supersample": 1,            # rays per stored pixel side, intensities averaged over the pixel (cost: its square)
}


def scene_options(options: dict[str, Any], device: str = "cpu") -> dict[str, Any]:
    """The scene renderer's options: :data:`SCENE_OPTIONS` updated by ``options`` (``renderer_options``),
    with ``method`` resolved for ``device`` (the config's ``device``).

    Raises
    ------
    InputError
        An unknown option or a bad value (the message names ``renderer_options.KEY``), or ``method:
        siddon`` on the torch backend.
    """
    opts = dict(SCENE_OPTIONS)
    for key, value in options.items():
        if key not in SCENE_OPTIONS:
            hint = " (the device is the config's top-level device:)" if key == "device" else ""
            raise InputError(f"renderer_options.{key}: unknown for renderer 'scene'{hint}; known: "
                             f"{', '.join(sorted(SCENE_OPTIONS))}")
        opts[key] = value
    if opts["backend"] not in ("numba", "torch"):
        raise InputError(f"renderer_options.backend: use numba or torch, got {opts['backend']!r}")
    torch_backend = device != "cpu" or opts["backend"] == "torch"
    if opts["method"] not in ("siddon", "trilinear"):
        raise InputError(f"renderer_options.method: use siddon or trilinear, got {opts['method']!r}")
    if torch_backend and opts["method"] != "trilinear":
        raise InputError(f"renderer_options.method: the torch backend (device {device!r}, backend "
                         f"{opts['backend']!r}) marches trilinear only; drop method or set method: trilinear")
    k = opts["supersample"]
    if isinstance(k, bool) or not isinstance(k, (int, float)) or not np.isfinite(k) or k != int(k) or k < 1:
        raise InputError(f"renderer_options.supersample: expected an integer >= 1, got {k!r}")
    opts["supersample"] = int(k)
    for key in ("vessel_spacing_mm", "kvp_node_kv", "vessel_cache_size"):
        v = opts[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v) or v < 0 or (
                v == 0 and key != "kvp_node_kv"):
            raise InputError(f"renderer_options.{key}: expected a positive number, got {v!r}")
    return opts


def scene_spec(spec: SampleSpec, opts: dict[str, Any]):
    """The :class:`~ddsa_sim.scene.SceneSpec` of a sample (the plan's drawn values; trees fill with the
    bolus in a sequence and stay trees under cardiac motion (re-voxelized per frame), else they are
    static: full lumen, voxelized once per tree and CT)."""
    from ddsa_sim.physics.blur import BlurSettings
    from ddsa_sim.physics.detector import Detector
    from ddsa_sim.physics.scatter import AntiScatterGrid
    from ddsa_sim.physics.spectra import spectrum_at_kvp
    from ddsa_sim.scene import (
        CARDIAC_KINDS,
        CatheterSpec,
        EffectsSpec,
        Exposure,
        ExposureSpec,
        Feeding,
        MotionParams,
        PlacementSpec,
        ScatterSettings,
        SceneSpec,
        VesselSpec,
    )

    vs = spec.vessel_source
    field = f"vessels.sources.{vs.get('source_index', 0)}"
    spacing = float(opts["vessel_spacing_mm"])
    fill = "bolus" if spec.frames or spec.motion in CARDIAC_KINDS else "static"  # a beating tree: nodes move
    catheter = None
    feeding = None if "feeding" not in vs else Feeding(tuple(vs["feeding"]["direction"]), vs["feeding"]["cone_deg"],
                                                       tuple(vs["feeding"]["roll_deg"]))
    if vs["kind"] == "generator":
        vessels = VesselSpec("generator", vs["name"], dict(vs.get("params") or {}), int(vs["seed"]),
                             spacing_mm=spacing, fill=fill, display_name=spec.vessel_id, field=field)
        if spec.catheter is not None:  # generated trees only: a catheter needs a tree to follow
            catheter = CatheterSpec(**spec.catheter, field="catheter")
        if vs.get("placement") == "anatomical":
            placement = PlacementSpec("anatomical", seed=int(vs["seed"]), field="placement.mode")
        else:
            placement = PlacementSpec("pose", root=vs["root"], rotation_deg=tuple(vs["rotation_deg"]),
                                      offset_mm=tuple(vs["offset_mm"]), seed=int(vs["seed"]), feeding=feeding,
                                      field="placement.root")
    elif vs["kind"] == "segmentation" and vs["name"] == "ct-labels":
        vessels = VesselSpec("labels", structures=tuple(vs.get("structures") or ()), fill="static",
                             field=f"{field}.structures")
        placement = PlacementSpec("as-is")
    elif vs["kind"] == "segmentation":
        vessels = VesselSpec("file", vs["name"], spacing_mm=spacing, fill=fill, display_name=spec.vessel_id,
                             field=f"{field}.segmentation")
        placement = PlacementSpec("as-is")
    elif vs["kind"] == "model":  # a label volume sampled with the tree's seed, placed like a tree
        vessels = VesselSpec("model", vs["name"], dict(vs.get("params") or {}), int(vs["seed"]), fill="static",
                             display_name=spec.vessel_id, field=field)
        placement = PlacementSpec("pose", root=vs["root"], rotation_deg=tuple(vs["rotation_deg"]),
                                  offset_mm=tuple(vs["offset_mm"]), seed=int(vs["seed"]), feeding=feeding,
                                  field="placement.root")
    else:
        raise InputError(f"{field}: unknown vessel source kind {vs['kind']!r}")
    exposure = ExposureSpec(spectrum_at_kvp(spec.kvp, spec.filter_al_mm, float(opts["kvp_node_kv"]), spec.filter_cu_mm),
                            Exposure(photons_per_pixel=spec.photons_per_pixel, mas=spec.mas,
                                     target_detector_air_kerma_ugy=spec.detector_air_kerma_ugy),
                            Detector(electronic_noise_std=spec.electronic_noise, lag=spec.detector_lag),
                            iodine_mg_per_ml=spec.iodine_mg_per_ml)
    effects = EffectsSpec(noise=spec.noise,
                          scatter=ScatterSettings(enabled=spec.scatter, grid=AntiScatterGrid() if spec.grid else None),
                          blur=BlurSettings(detector_mtf50_cycles_per_mm=spec.detector_mtf50_cycles_per_mm),
                          collimator=sample_collimator(spec),
                          motion=MotionParams(kind=spec.motion, **spec.motion_params), method=opts["method"],
                          device=this_worker_device(spec.device),
                          backend=opts["backend"], supersample=opts["supersample"])
    return SceneSpec(ct_spec(spec), vessels, placement, exposure, effects, catheter)


def render_scene_sample(spec: SampleSpec, cache: CTCache) -> dict[str, np.ndarray]:
    """The physics: :func:`scene_spec` -> :func:`ddsa_sim.scene.build_scene` -> ``render_frames`` with
    ``default_rng(spec.seed)``; the store's arrays centre-cropped, plus ``isocenter_mm`` / ``projection_matrix``,
    the exposure meta values (``photons_per_pixel``, ``mas``, ``air_kerma_ugy``, ``detector_air_kerma_ugy``),
    the frame times and ``motion_applied`` (JSON: each contrast frame's motion as drawn, ``DSAFrames.motion``)."""
    from ddsa_sim.scene import bolus_times, build_scene, render_frames
    from ddsa_sim.scene.recording import gain_for_bit_depth

    opts = scene_options(spec.renderer_options, spec.device)
    patient = cache.get(spec)
    scene = build_scene(scene_spec(spec, opts), patient, vessel_cache_size=int(opts["vessel_cache_size"]))
    target = aim_point_mm(spec, patient, scene)
    carm = sample_carm(spec, target)
    if spec.bit_depth is not None:  # the flat field at 90 % of full scale (as ddsa-sim dsa --bit-depth)
        spectrum = scene.projector.spectrum
        quanta = scene.flat_field_quanta(scene.projector, carm, scene.exposure.n0(spectrum, carm))
        scene.detector = replace(scene.detector, bit_depth=spec.bit_depth,
                                 gain=gain_for_bit_depth(spec.bit_depth, quanta))
    if spec.frames:
        times = list(spec.frame_times_s) if spec.frame_times_s is not None else bolus_times(scene, spec.frames)
    else:
        times = [None]
    frames = render_frames(scene, carm, np.random.default_rng(spec.seed), times, mask_time_s=spec.mask_time_s)
    arrays = crop_images(spec, frames.sequence() if spec.frames else frames.frame(0))
    arrays["frame_times_s"] = np.asarray(frames.times_s, dtype=np.float64)
    arrays["mask_time_s"] = np.float64(frames.mask_time_s)
    arrays["isocenter_mm"], arrays["projection_matrix"] = sample_geometry(spec, target)
    exposure = frames.exposure_dict()
    arrays.update({name: np.float64(exposure[name]) for name in ("photons_per_pixel", *V2_META_ARRAYS)})
    arrays["motion_applied"] = np.str_(json.dumps(frames.motion))  # drawn while rendering: params_json records it
    return arrays


def crop_images(spec: SampleSpec, images: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The store's image arrays of a full binned-detector render (frames first), centre-cropped to
    ``spec.image_shape``."""
    r0, c0 = crop_origin(spec)
    h, w = spec.image_shape
    return {name: np.ascontiguousarray(images[name][..., r0:r0 + h, c0:c0 + w]) for name in IMAGE_ARRAYS}


def check_sample(spec: SampleSpec, arrays: dict[str, np.ndarray]) -> None:
    """Raise RuntimeError when a renderer broke the contract (names, shapes, dtypes, finiteness)."""
    shapes = {name: image_sample_shape(name, spec.image_shape, spec.frames) for name in IMAGE_ARRAYS}
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
    renderer = resolve_renderer(spec.renderer)
    cache = cache if cache is not None else worker_cache()
    arrays = renderer(spec, cache)
    check_sample(spec, arrays)
    return arrays
