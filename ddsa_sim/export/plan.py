"""Dataset plan: config + seed -> one :class:`SampleSpec` per sample (a pure function).

Determinism rules
-----------------
* Sample ``i`` draws its pose, spectrum, exposure and contrast from
  ``default_rng(SeedSequence([seed, i]))``; its own render seed ``SampleSpec.seed`` is the first
  uint64 of the same sequence's state. Nothing depends on workers, order or time.
* CTs are listed in config order (globs sorted). Sample ``i`` belongs to CT ``floor(i * n_ct / N)``
  (contiguous blocks, so a worker that gets consecutive indices loads few CTs).
* Vessel tree ``k`` of a CT (``k = position in the CT's block mod vessels.per_ct``) is drawn from
  ``SeedSequence([seed, VESSEL_TAG, crc32(ct_id), k])``: every pose of a tree sees the same tree. Its
  first draw picks the source by weight among the sources drawn for the CT (``vessels.sources.N.cts``).
* Splits are by CT (patient): CTs are ordered by ``sha256(ct_id)`` and the first
  ``round(train * n)`` go to train, the next ``round(val * n)`` to val, the rest to test. A CT's
  split depends on its id and the fractions only (not on the seed); ``split:`` in a CT source forces it.
* A CT source with ``variants: {count: N, ...}`` gives N pseudo-patients per CT, ids
  ``<ct_id>~p<k>``, listed in place of the CT; they take their source CT's split (assigned as above on
  the source ids). Variant ``k`` draws its parameters from
  ``SeedSequence([seed, VARIANT_TAG, crc32(ct_id), k])`` (scale x, y, z, rotation x, y, z, deformation,
  HU scale, HU offset, field of view, then with ``bone_texture`` its amplitude and kernel, in that
  order; the displacement's and the texture's seed is the sequence's first uint64).
  With ``distractors``, its counts (shells, bones, cavities, foams, in that order; the foam fields are
  left out where it draws none) and the seed of its
  structures (the first uint64) come from ``SeedSequence([seed, DISTRACTOR_TAG, crc32(ct_id), k])``;
  a variant without them plans as before.
"""

from __future__ import annotations

import fnmatch
import glob
import hashlib
import json
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ddsa_sim import InputError
from ddsa_sim.export.config import (
    CORTEX_FIELDS,
    DISTRACTOR_COUNTS,
    EXPOSURE_FIELDS,
    FOAM_FIELDS,
    PHYSIOLOGICAL_MOTION_FIELDS,
    DatasetConfig,
    Dist,
    DistractorConfig,
    Grid,
    Range,
)
from ddsa_sim.export.format import COLLIMATION_META, PSEUDO_PATIENT_SEPARATOR
from ddsa_sim.physics.blur import CSI_MTF50_CYCLES_PER_MM

VESSEL_TAG = 0x7E55E1
VARIANT_TAG = 0x9A71E7
DISTRACTOR_TAG = 0xD157AC


@dataclass(frozen=True)
class CTEntry:
    """One resolved CT: id, volume source, optional label map (and its structure table), split;
    ``variant`` (a pseudo-patient, :func:`draw_variant`) or None for the CT as it is."""

    ct_id: str
    source: str
    labels: str | None
    split: str
    structures: str | None = None
    variant: dict[str, Any] | None = None


@dataclass(frozen=True)
class SampleSpec:
    """Everything needed to render sample ``index`` alone, on any worker, bit for bit.

    Angles in degrees, lengths in mm. ``isocenter_offset_mm`` is added to the CT centre (world LPS).
    ``vessel_source`` is a JSON-compatible dict: ``kind`` (generator | segmentation | model),
    ``name``, ``params`` (drawn values), ``structures``, ``seed`` (the tree's own seed), ``root``,
    ``offset_mm`` and ``rotation_deg`` (placement of the tree in the CT), and where they apply
    ``design_point`` (index into the V-System published grid) and ``placement: anatomical`` (a
    template registered to the anatomy, seeded by ``seed``; the pose values are then unused).
    Exposure: one of ``photons_per_pixel``, ``mas`` and ``detector_air_kerma_ugy`` (automatic
    exposure, uGy per frame behind the patient) is set, the others are None; ``electronic_noise`` is
    the detector's electronic noise (std, noise-equivalent quanta per pixel). ``ct_variant``: the
    pseudo-patient of the CT (:func:`draw_variant`), None for the CT as it is. ``filter_cu_mm``
    (added copper, mm), ``grid`` (anti-scatter grid in the beam when ``scatter``),
    ``detector_mtf50_cycles_per_mm`` (detector light spread; None: none) and ``bit_depth`` (None:
    float signal): the exposure randomisation (:func:`detector_draws`). ``aim``: label-map structure
    patterns the isocenter is aimed at and ``aim_u`` in [0, 1), which picks the voxel
    (:func:`ddsa_sim.export.sample.aim_point_mm`); None: the CT centre.
    ``detector_rows``/``detector_cols``/``pixel_mm`` are physical; images are binned by ``binning``
    and centre-cropped to ``image_shape``. ``device`` is the config's (``cuda`` maps to each worker's
    own GPU, :func:`ddsa_sim.export.devices.this_worker_device`). ``frames``: 0 for one fully filled
    contrast frame, T >= 1 for a sequence with bolus times ``frame_times_s`` (None: the arterial
    filling of the sample's trees) and mask frame time ``mask_time_s``; ``motion_params``: the
    drawn :class:`~ddsa_sim.scene.MotionParams` values of a physiological motion kind. ``collimation``:
    the sample's collimator (:func:`collimation_draw`: blades and iris as fractions of the stored image,
    source-to-collimator distance, leakage); None: the whole detector exposed. ``detector_lag``: the
    detector's frame lags (:class:`~ddsa_sim.physics.detector.Detector` ``lag``; empty: none).
    ``ct_index``: the position of the sample's CT source in the config's ``cts`` (an error names ``cts.N``); where a
    value comes from, not what is rendered, so it is not part of :meth:`to_dict` (nor of the plan fingerprint).
    """

    index: int
    seed: int
    ct_id: str
    ct_source: str
    labels_source: str | None
    split: str
    vessel_id: str
    vessel_source: dict[str, Any]
    alpha_deg: float
    beta_deg: float
    gamma_deg: float
    isocenter_offset_mm: tuple[float, float, float]
    kvp: float
    filter_al_mm: float
    photons_per_pixel: float | None
    iodine_mg_per_ml: float
    noise: bool
    scatter: bool
    motion: str
    detector_rows: int
    detector_cols: int
    pixel_mm: float
    binning: int
    image_shape: tuple[int, int]
    crop: tuple[int, int] | None
    renderer: str = "scene"
    renderer_options: dict[str, Any] = field(default_factory=dict)
    max_ct_voxels: int = 600 * 512 * 512
    structures_source: str | None = None
    device: str = "cpu"
    mas: float | None = None
    detector_air_kerma_ugy: float | None = None
    electronic_noise: float = 0.0
    catheter: dict[str, float] | None = None
    ct_variant: dict[str, Any] | None = None
    filter_cu_mm: float = 0.0
    grid: bool = True
    detector_mtf50_cycles_per_mm: float | None = CSI_MTF50_CYCLES_PER_MM
    bit_depth: int | None = None
    aim: tuple[str, ...] | None = None
    aim_u: float | None = None
    frames: int = 0
    frame_times_s: tuple[float, ...] | None = None
    mask_time_s: float = 0.0
    motion_params: dict[str, float] = field(default_factory=dict)
    collimation: dict[str, float] | None = None
    detector_lag: tuple[float, ...] = ()
    ct_index: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible dict of all fields, less ``ct_index`` and those of :data:`OMITTED_AT_DEFAULT` at their
        default."""
        d = json.loads(json.dumps(asdict(self)))
        return {k: v for k, v in d.items() if k != "ct_index"
                and not (k in OMITTED_AT_DEFAULT and v == OMITTED_AT_DEFAULT[k])}


#: Fields added after the first plans: left out of :meth:`SampleSpec.to_dict` at their default, so
#: the plan fingerprint of a config without them is unchanged (a store made before resumes).
OMITTED_AT_DEFAULT: dict[str, Any] = {"mas": None, "detector_air_kerma_ugy": None, "electronic_noise": 0.0,
                                      "catheter": None, "ct_variant": None, "filter_cu_mm": 0.0, "grid": True,
                                      "detector_mtf50_cycles_per_mm": CSI_MTF50_CYCLES_PER_MM, "bit_depth": None,
                                      "aim": None, "aim_u": None, "frames": 0, "frame_times_s": None,
                                      "mask_time_s": 0.0, "motion_params": {}, "collimation": None,
                                      "detector_lag": []}


def draw(d: Dist, rng: np.random.Generator) -> float:
    """One value of a :data:`Dist`. Always consumes exactly one draw, so later draws do not shift
    when a field changes from fixed to random."""
    u = rng.random()
    if isinstance(d, Range):
        return float(d.min + (d.max - d.min) * u)
    if isinstance(d, Grid):
        return float(d.grid[min(int(u * len(d.grid)), len(d.grid) - 1)])
    return float(d)


def draw_count(d: Dist, rng: np.random.Generator) -> int:
    """One whole number of a count :data:`Dist` (whole-number bounds): ``{min, max}`` uniform on the
    whole numbers from min to max inclusive; one draw, as :func:`draw`."""
    if isinstance(d, Range):
        u = rng.random()
        return int(d.min) + min(int(u * (int(d.max) - int(d.min) + 1)), int(d.max) - int(d.min))
    return int(draw(d, rng))


def detector_draws(config: DatasetConfig, rng: np.random.Generator) -> dict[str, Any]:
    """Copper filtration, grid, detector MTF50 and bit depth of a sample: one draw each, in that order,
    after all earlier fields (a config without them plans the same values as before)."""
    cu = draw(config.spectrum.filter_cu_mm, rng)
    grid = bool(rng.random() < config.effects.grid_fraction)
    # a null field (no blur, float signal) still takes its draw: 0 stands for None
    mtf50 = draw(config.detector.mtf50_cycles_per_mm or 0.0, rng) or None
    bit_depth = int(draw(config.detector.bit_depth or 0, rng)) or None
    return {"filter_cu_mm": cu, "grid": grid, "detector_mtf50_cycles_per_mm": mtf50, "bit_depth": bit_depth}


def aim_draw(config: DatasetConfig, rng: np.random.Generator) -> dict[str, Any]:
    """``aim`` and ``aim_u`` of a sample: one draw, taken also without ``pose.aim`` (then both None)."""
    u = rng.random()
    return {"aim": tuple(config.pose.aim), "aim_u": u} if config.pose.aim else {"aim": None, "aim_u": None}


def collimation_draw(config: DatasetConfig, rng: np.random.Generator) -> dict[str, Any]:
    """``collimation`` of a sample: with ``effects.collimation``, seven draws (collimated or not, the
    four blades, iris or not, its diameter), the last of a sample's draws; without it none (a config
    without collimation plans as before). Blades and iris are fractions of the stored image."""
    c = config.effects.collimation
    if c is None:
        return {"collimation": None}
    on = rng.random() < c.probability
    blades = [draw(c.blade, rng) for _ in range(4)]
    iris = rng.random() < c.iris_probability
    diameter = draw(c.iris_diameter, rng)
    if not on:
        return {"collimation": None}
    return {"collimation": {**dict(zip(COLLIMATION_META[:4], blades)),
                            "iris_diameter": diameter if iris else 0.0,
                            "source_to_collimator_mm": c.source_to_collimator_mm, "leakage": c.leakage}}


def motion_draws(config: DatasetConfig, rng: np.random.Generator) -> dict[str, float]:
    """The :class:`~ddsa_sim.scene.MotionParams` values of a sample's physiological motion: one draw per field of
    :data:`PHYSIOLOGICAL_MOTION_FIELDS` of its kind, then, for a breathing kind, the config's fixed
    ``effects.diaphragm_z_mm`` where given (no draw: a config without it plans as before)."""
    fx = config.effects
    names = PHYSIOLOGICAL_MOTION_FIELDS.get(fx.motion, ())
    out = {name: draw(getattr(fx, name), rng) for name in names}
    if "diaphragm_amplitude_mm" in names and fx.diaphragm_z_mm is not None:
        out["diaphragm_z_mm"] = float(fx.diaphragm_z_mm)
    return out


def exposure(config: DatasetConfig, rng: np.random.Generator) -> dict[str, float | None]:
    """The exposure fields of a sample: the config's exposure field drawn (one draw), the others None."""
    return {k: draw(getattr(config, k), rng) if k == config.exposure_field else None for k in EXPOSURE_FIELDS}


def _stem(path: str) -> str:
    name = Path(path).name
    for ext in (".nii.gz", ".nii", ".dcm"):
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return name


def resolve_cts(config: DatasetConfig) -> list[tuple[str, str, str | None, str | None, str | None, int]]:
    """Expand CT sources into ``(ct_id, source, labels, forced_split, structures, source_index)`` in
    deterministic order (``source_index``: position in ``cts``).

    Raises
    ------
    InputError
        A glob that matches nothing, or two CTs with the same id.
    """
    out = []
    for i, src in enumerate(config.cts):
        if src.path.startswith("builtin:"):
            out.append((src.id or src.path.removeprefix("builtin:"), src.path, src.labels, src.split,
                        src.structures, i))
            continue
        if glob.has_magic(src.path):
            matches = sorted(glob.glob(src.path))
            if not matches:
                raise InputError(f"cts.{i}.path: glob '{src.path}' matches no file")
            if src.id is not None:
                raise InputError(f"cts.{i}.id: an id cannot be given for a glob (ids are file stems)")
            for m in matches:
                stem = _stem(m)
                labels = src.labels.replace("{stem}", stem) if src.labels else None
                out.append((stem, m, labels, src.split, src.structures, i))
        else:
            out.append((src.id or _stem(src.path), src.path, src.labels, src.split, src.structures, i))
    seen: dict[str, str] = {}
    for ct_id, source, *_ in out:
        if ct_id in seen:
            raise InputError(f"cts: two CTs have the id '{ct_id}' ({seen[ct_id]}, {source}); give each an id")
        seen[ct_id] = source
    return out


def _id_hash(ct_id: str) -> str:
    return hashlib.sha256(ct_id.encode()).hexdigest()


def assign_splits(ct_ids: list[str], train: float, val: float, forced: dict[str, str] | None = None) -> dict[str, str]:
    """CT id -> split (train / val / test), patient level; deterministic by CT id (see module doc)."""
    forced = forced or {}
    free = sorted((c for c in ct_ids if c not in forced), key=_id_hash)
    n = len(free)
    n_train = round(train * n)
    n_val = min(round(val * n), n - n_train)
    out = dict(forced)
    for j, c in enumerate(free):
        out[c] = "train" if j < n_train else ("val" if j < n_train + n_val else "test")
    return out


def draw_variant(config: DatasetConfig, source_index: int, ct_id: str, k: int) -> dict[str, Any]:
    """The parameters of pseudo-patient ``k`` of CT ``ct_id`` (``cts[source_index].variants``), JSON-compatible:
    the fields of :class:`ddsa_sim.volumes.augment.PseudoPatient` plus ``source`` (the CT id), ``index``
    and ``vnc``. A pure function of the config's seed, the CT id and ``k`` (module doc)."""
    v = config.cts[source_index].variants
    ss = np.random.SeedSequence([config.seed, VARIANT_TAG, zlib.crc32(ct_id.encode()), k])
    rng = np.random.default_rng(ss)
    scale = [draw(v.scale, rng) for _ in range(3)]
    rotate = [draw(v.rotate_deg, rng) for _ in range(3)]
    deform, hu_scale, hu_offset = draw(v.deform_mm, rng), draw(v.hu_scale, rng), draw(v.hu_offset, rng)
    fov = draw(v.fov_mm, rng) if v.fov_mm is not None else None
    # drawn last, so that a config without it draws the other fields as before it existed
    texture = None if v.bone_texture is None else {"amplitude": draw(v.bone_texture.amplitude, rng),
                                                   "sigma_mm": draw(v.bone_texture.sigma_mm, rng)}
    return {"source": ct_id, "index": k, "seed": int(ss.generate_state(1, dtype=np.uint64)[0]),
            "deform_mm": deform, "smooth_mm": float(v.smooth_mm), "scale": scale, "rotate_deg": rotate,
            "hu_offset": hu_offset, "hu_scale": hu_scale, "fov_mm": fov,
            "vnc": v.vnc if isinstance(v.vnc, str) else list(v.vnc),
            **({} if texture is None else {"bone_texture": texture}),
            **({} if v.distractors is None else {"distractors": draw_distractors(v.distractors, ct_id, k, config.seed)})}


def draw_distractors(d: DistractorConfig, ct_id: str, k: int, seed: int) -> dict[str, Any]:
    """The distractors of pseudo-patient ``k`` of CT ``ct_id``, JSON-compatible: the fields of
    :class:`ddsa_sim.volumes.distractors.Distractors` (module doc for the draw)."""
    ss = np.random.SeedSequence([seed, DISTRACTOR_TAG, zlib.crc32(ct_id.encode()), k])
    rng = np.random.default_rng(ss)
    counts = {name: draw_count(getattr(d, name), rng) for name in DISTRACTOR_COUNTS}
    out = {"seed": int(ss.generate_state(1, dtype=np.uint64)[0]), **counts,
           **{n: list(v) if isinstance(v, tuple) else v for n, v in d.ranges().items()}}
    # a pseudo-patient without foams or cortices plans as before they existed (its store resumes)
    unused = (() if counts["foams"] else FOAM_FIELDS) + (() if d.cortical else CORTEX_FIELDS)
    return {n: v for n, v in out.items() if n not in unused}


def resolve_ct_entries(config: DatasetConfig) -> list[CTEntry]:
    """Resolved CTs with their splits, in plan order; a source with ``variants`` gives its pseudo-patients
    (ids ``<ct_id>~p<k>``) in place of each CT, in the split of that CT."""
    raw = resolve_cts(config)
    forced = {ct_id: s for ct_id, _, _, s, _, _ in raw if s is not None}
    splits = assign_splits([r[0] for r in raw], config.split.train, config.split.val, forced)
    out = []
    for ct_id, source, labels, _, structures, i in raw:
        variants = config.cts[i].variants
        if variants is None:
            out.append(CTEntry(ct_id, source, labels, splits[ct_id], structures))
            continue
        out.extend(CTEntry(f"{ct_id}{PSEUDO_PATIENT_SEPARATOR}{k}", source, labels, splits[ct_id], structures,
                           draw_variant(config, i, ct_id, k)) for k in range(variants.count))
    return out


def sources_for(config: DatasetConfig, ct_id: str) -> list[int]:
    """Indices of the vessel sources drawn for CT ``ct_id`` (the id in ``cts``; a pseudo-patient's
    source CT id): those whose ``cts`` patterns match it, or that have none."""
    return [i for i, s in enumerate(config.vessels.sources)
            if s.cts is None or any(_id_matches(ct_id, p) for p in s.cts)]


def _id_matches(ct_id: str, pattern: str) -> bool:
    """``pattern`` (a ``cts:`` entry) is the id itself or a glob matching it: the id of a builtin's voxel box,
    ``head-phantom-0[20:160,20:220,60:200]``, holds brackets that a glob reads as a character class."""
    return ct_id == pattern or fnmatch.fnmatchcase(ct_id, pattern)


def _vessel(config: DatasetConfig, ct_id: str, source_ct_id: str, k: int, dataset_seed: int) -> dict[str, Any]:
    ss = np.random.SeedSequence([dataset_seed, VESSEL_TAG, zlib.crc32(ct_id.encode()), k])
    rng = np.random.default_rng(ss)
    eligible = sources_for(config, source_ct_id)
    weights = np.array([config.vessels.sources[i].weight for i in eligible], dtype=np.float64)
    u = rng.random()
    pick = int(min(np.searchsorted(np.cumsum(weights) / weights.sum(), u, side="right"), len(eligible) - 1))
    which = eligible[pick]
    src = config.vessels.sources[which]
    jitter = config.placement.jitter_mm
    offset = [float(jitter * (2 * rng.random() - 1)) for _ in range(3)]
    rotation = [draw(config.placement.rotation_deg, rng) for _ in range(3)]
    extra: dict[str, Any] = {}
    if src.params == "published-grid":
        from vessel_models.lsystem import published_grid

        grid = published_grid()
        extra["design_point"] = int(rng.integers(len(grid)))
        params = {k: v for k, v in grid[extra["design_point"]].items() if k != "seed"}
    else:
        params = {name: d if isinstance(d, str) else draw(d, rng) for name, d in sorted(src.params.items())}
    mode = config.placement.mode
    if src.kind == "generator" and mode != "pose":
        from ddsa_sim.scene.builder import TEMPLATES

        if src.name in TEMPLATES:
            extra["placement"] = "anatomical"
        elif mode == "anatomical":
            raise InputError(f"placement.mode: anatomical needs template generators ({', '.join(TEMPLATES)}), "
                             f"vessels source {which} is {src.name!r}")
    p = config.placement
    if p.feeding_direction is not None and src.kind in ("generator", "model") and "placement" not in extra:
        extra["feeding"] = {"direction": list(p.feeding_direction), "cone_deg": p.feeding_cone_deg,
                            "roll_deg": list(p.feeding_roll_deg)}
    return {
        "kind": src.kind,
        "name": src.name,
        "source_index": which,
        "params": params,
        "structures": list(src.structures) if src.structures else None,
        "seed": int(ss.generate_state(1, dtype=np.uint64)[0]),
        "root": config.placement.root,
        "offset_mm": offset,
        "rotation_deg": rotation,
        **extra,
    }


def _check_labels_needed(config: DatasetConfig, cts: list[CTEntry]) -> None:
    """Every CT that something of the config reads labels from has them: the ``ct-labels`` sources drawn for it (a
    source's ``cts`` limits it to the CTs it matches), ``placement.root`` and ``pose.aim`` (every CT)."""
    everywhere = []
    if config.placement.root != "ct-center":
        everywhere.append(f"placement.root '{config.placement.root}'")
    if config.pose.aim:
        everywhere.append("pose.aim")
    for ct in cts:
        if ct.labels is not None:
            continue
        needs = everywhere + [f"vessels.sources.{i} (segmentation 'ct-labels')" for i in sources_for(config, _source_ct_id(ct))
                              if config.vessels.sources[i].segmentation == "ct-labels"]
        if needs:
            raise InputError(f"cts: CT '{ct.ct_id}' has no labels, needed by {' and '.join(needs)}")


def _source_ct_id(ct: CTEntry) -> str:
    return ct.variant["source"] if ct.variant else ct.ct_id


def _check_source_cts(config: DatasetConfig, cts: list[CTEntry]) -> None:
    ids = sorted({_source_ct_id(ct) for ct in cts})
    for i, src in enumerate(config.vessels.sources):
        for pattern in src.cts or ():
            if not any(_id_matches(c, pattern) for c in ids):
                raise InputError(f"vessels.sources.{i}.cts: '{pattern}' matches no CT id ({', '.join(ids)})")
    for c in ids:
        if not sources_for(config, c):
            raise InputError(f"vessels.sources: no source is drawn for CT '{c}' (every source's cts leaves it out)")


def plan_dataset(config: DatasetConfig) -> list[SampleSpec]:
    """All samples of a dataset, in index order (a pure function of ``config``, seed included).

    Raises
    ------
    InputError
        A glob matching nothing, duplicate CT ids, a CT without labels where the vessels or the
        placement need its label map, a vessel source's ``cts`` pattern matching no CT, or a CT that
        no vessel source is drawn for.
    """
    cts = resolve_ct_entries(config)
    ct_index = {ct_id: i for ct_id, *_, i in resolve_cts(config)}  # a CT (a pseudo-patient's source) -> cts.N
    _check_labels_needed(config, cts)
    _check_source_cts(config, cts)
    n, n_ct = config.count, len(cts)
    block_start = [-(-c * n // n_ct) for c in range(n_ct)]  # first index i with floor(i*n_ct/n) == c
    vessels: dict[tuple[str, int], dict[str, Any]] = {}
    jit = config.pose.isocenter_jitter_mm
    specs = []
    for i in range(n):
        c = (i * n_ct) // n
        ct = cts[c]
        k = (i - block_start[c]) % config.vessels.per_ct
        if (ct.ct_id, k) not in vessels:
            vessels[(ct.ct_id, k)] = _vessel(config, ct.ct_id, _source_ct_id(ct), k, config.seed)
        source = config.vessels.sources[vessels[(ct.ct_id, k)]["source_index"]]
        ss = np.random.SeedSequence([config.seed, i])
        rng = np.random.default_rng(ss)
        specs.append(SampleSpec(
            index=i,
            seed=int(ss.generate_state(1, dtype=np.uint64)[0]),
            ct_id=ct.ct_id,
            ct_source=ct.source,
            labels_source=ct.labels,
            structures_source=ct.structures,
            split=ct.split,
            vessel_id=f"{ct.ct_id}/v{k}",
            vessel_source=vessels[(ct.ct_id, k)],
            alpha_deg=draw(config.pose.alpha_deg, rng),
            beta_deg=draw(config.pose.beta_deg, rng),
            gamma_deg=draw(config.pose.gamma_deg, rng),
            isocenter_offset_mm=tuple(float(jit * (2 * rng.random() - 1)) for _ in range(3)),  # type: ignore
            kvp=draw(config.spectrum.kvp, rng),
            filter_al_mm=draw(config.spectrum.filter_al_mm, rng),
            **exposure(config, rng),
            iodine_mg_per_ml=draw(config.iodine_mg_per_ml, rng),
            electronic_noise=draw(config.electronic_noise, rng),
            **detector_draws(config, rng),
            **aim_draw(config, rng),
            motion_params=motion_draws(config, rng),  # last: earlier draws keep their values
            **collimation_draw(config, rng),  # after the motion draws: earlier draws keep their values
            frames=config.sequence.frames if config.sequence else 0,
            frame_times_s=config.sequence.times() if config.sequence else None,
            mask_time_s=config.sequence.mask_time_s if config.sequence else 0.0,
            noise=config.effects.noise,
            scatter=config.effects.scatter,
            motion=config.effects.motion,
            detector_rows=config.detector.rows,
            detector_cols=config.detector.cols,
            pixel_mm=config.detector.pixel_mm,
            binning=config.detector.binning,
            detector_lag=tuple(config.detector.lag),
            image_shape=config.image_shape,
            crop=tuple(config.output.crop) if config.output.crop else None,  # type: ignore
            renderer=config.renderer,
            renderer_options=dict(config.renderer_options),
            catheter=config.catheter.model_dump() if config.catheter is not None and source.catheter
            and source.generator else None,  # a catheter follows a generated tree's feeding artery
            max_ct_voxels=config.max_ct_voxels,
            device=config.device,
            ct_variant=ct.variant,
            ct_index=ct_index[_source_ct_id(ct)],
        ))
    return specs


def plan_fingerprint(specs: list[SampleSpec]) -> str:
    """sha256 of the whole plan (what a resumed run must match)."""
    h = hashlib.sha256()
    for s in specs:
        h.update(json.dumps(s.to_dict(), sort_keys=True).encode())
    return h.hexdigest()
