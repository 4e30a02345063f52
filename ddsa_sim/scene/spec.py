"""The typed description of a DSA scene: what :func:`ddsa_sim.scene.build_scene` turns into a Scene.

A :class:`SceneSpec` names the CT, one vessel source, how the vessels are placed, the exposure and the
effects, in plain values (paths, names, numbers), so ``ddsa-sim dsa`` and the dataset exporter build
their scenes the same way. Every spec part carries the option or config field it came from
(``field``), named in the one-line errors of the builder.

Units: lengths in mm, angles in degrees, iodine in mgI/ml; world coordinates LPS.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from ddsa_sim.physics.blur import BlurSettings
from ddsa_sim.physics.collimation import Collimator
from ddsa_sim.physics.detector import Detector
from ddsa_sim.physics.spectra import Spectrum
from ddsa_sim.scene.catheter import CatheterSpec
from ddsa_sim.scene.motion import MotionParams
from ddsa_sim.scene.placement import Feeding
from ddsa_sim.scene.recording import Exposure, ScatterSettings
from ddsa_sim.volumes.augment import PseudoPatient
from ddsa_sim.volumes.distractors import Distractors

__all__ = ["CTSpec", "EffectsSpec", "ExposureSpec", "PlacementSpec", "SceneSpec", "VesselSpec"]


@dataclass(frozen=True)
class CTSpec:
    """The patient: a CT and, optionally, its label map.

    Parameters
    ----------
    source : str
        NIfTI file, DICOM series folder or ``builtin:`` name (HU).
    labels : str, optional
        Label map on the CT grid (same shape and affine).
    structures : str, optional
        CSV ``structure,id`` naming the labels (``builtin:chest-ct-labels`` has a builtin table).
    max_voxels : int, optional
        Refuse larger CTs (checked from the header where the format allows).
    variant : PseudoPatient, optional
        Make a pseudo-patient of the CT and its labels (:func:`ddsa_sim.volumes.augment.pseudo_patient`).
    vnc : {"auto", "off"} or tuple of str
        Virtual non-contrast before the pseudo-patient's resampling (with a ``variant`` only):
        ``"auto"`` clears the enhanced blood structures the label map names
        (:func:`ddsa_sim.volumes.vnc.enhanced_vessel_mask`), a tuple names the structures, ``"off"``
        keeps the HU.
    distractors : Distractors, optional
        Procedural bone and air structures added to the pseudo-patient (with a ``variant`` only;
        :func:`ddsa_sim.volumes.distractors.add_distractors`).
    labels_field, structures_field, vnc_field : str
        Option / config field names of ``labels``, ``structures`` and ``vnc`` in error messages.
    """

    source: str
    labels: str | None = None
    structures: str | None = None
    max_voxels: int | None = None
    labels_field: str = "labels"
    structures_field: str = "structures"
    variant: PseudoPatient | None = None
    vnc: str | tuple[str, ...] = "off"
    vnc_field: str = "vnc"
    distractors: Distractors | None = None


@dataclass(frozen=True)
class VesselSpec:
    """One vessel source.

    Parameters
    ----------
    kind : {"generator", "file", "labels", "model"}
        A seeded procedural tree (``vessel_models.generators``), a file (tree ``.vtp`` / ``.json`` in
        world mm, or a NIfTI lumen fraction / mask volume), the CT's own labelled vessels (the CT
        becomes its virtual non-contrast version), or a label volume sampled from a learned generator
        (``vessel_models.gan`` checkpoint; always static).
    name : str
        Generator name, file or checkpoint path (ignored for ``labels``).
    params : dict
        Generator parameters (coerced to the generator's field types); for ``model`` its sampling
        parameters ``truncation`` and ``threshold`` (``vessel_models.gan.config.SAMPLE_PARAMS``).
    seed : int
        The tree's own seed (``generator``), the sample's seed (``model``).
    structures : tuple of str
        Label names or numeric ids of the vessels (``labels``).
    spacing_mm : float
        Voxel spacing of the grid a tree is voxelized on (mm).
    fill : {"bolus", "static"}
        ``"bolus"``: a tree fills over time (sequences); ``"static"``: always the full lumen, voxelized
        once (a cached static source is rescaled per iodine concentration).
    display_name : str, optional
        Name of the source in scene descriptions (default: ``name``).
    field : str
        Option / config field named in error messages.
    params_field : str, optional
        Option / config field of ``params`` in error messages (default: ``field + ".params"``).
    """

    kind: Literal["generator", "file", "labels", "model"]
    name: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    structures: tuple[str, ...] = ()
    spacing_mm: float = 0.25
    fill: Literal["bolus", "static"] = "bolus"
    display_name: str | None = None
    field: str = "vessels"
    params_field: str | None = None


@dataclass(frozen=True)
class PlacementSpec:
    """Where a tree goes in the patient (files and label vessels are in world mm already).

    Parameters
    ----------
    mode : {"pose", "region", "as-is", "anatomical", "auto"}
        ``"pose"``: a given rotation about the tree's centre, moved onto ``root`` + ``offset_mm``
        (root kept inside the region; :func:`ddsa_sim.scene.placement.place_at`). ``"region"``: a
        seeded random rigid placement inside ``region`` (:func:`~ddsa_sim.scene.placement.place_in_region`).
        ``"as-is"``: unchanged. ``"anatomical"``: a template generator (``cow``, ``coronary``) registered
        to the CT's anatomy (intracranial volume / heart; :func:`~ddsa_sim.scene.placement.place_cerebral`,
        :func:`~ddsa_sim.scene.placement.place_coronary`), seeded jitter. ``"auto"``: templates as
        ``"anatomical"``, other generated trees as ``"region"``, tree files as-is when their root lies
        inside the region, else as ``"region"``.
    region : tuple of str
        ``("body",)`` (CT above -300 HU) or label-map structure names (``region`` / ``auto`` modes).
    root : str
        ``"ct-center"`` or a label-map structure whose centre is the target (``pose`` mode).
    rotation_deg : (3,) float
        Extrinsic x, y, z Euler angles (``pose`` mode).
    offset_mm : (3,) float
        Added to the target (``pose`` mode).
    seed : int
        Seed of the random placement (``region`` / ``anatomical`` / ``auto`` modes; ``pose`` with ``feeding``).
    feeding : Feeding, optional
        A feeding direction (LPS) with a cone and a roll range for trees placed by ``region`` or
        ``pose`` (then instead of ``rotation_deg``), and by ``auto`` for non-template trees
        (:func:`~ddsa_sim.scene.placement.feeding_rotation`); ignored by templates.
    field : str
        Option / config field named in error messages.
    """

    mode: Literal["pose", "region", "as-is", "anatomical", "auto"] = "auto"
    region: tuple[str, ...] = ("body",)
    root: str = "ct-center"
    rotation_deg: tuple[float, float, float] = (0.0, 0.0, 0.0)
    offset_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    seed: int = 0
    feeding: Feeding | None = None
    field: str = "place"


@dataclass(frozen=True)
class ExposureSpec:
    """Tube, detector and contrast: spectrum, photons, detector model, iodine concentration."""

    spectrum: str | dict | Spectrum = "90KV_AL40"
    exposure: Exposure = field(default_factory=Exposure)
    detector: Detector = field(default_factory=Detector)
    iodine_mg_per_ml: float = 100.0


@dataclass(frozen=True)
class EffectsSpec:
    """Noise, scatter, focal-spot and detector blur, collimation (None: the whole detector exposed),
    patient motion and the projector's ray-marching method, device, backend and rays per pixel side
    (:class:`~ddsa_sim.scene.Scene`'s ``supersample``)."""

    noise: bool = True
    scatter: ScatterSettings = field(default_factory=ScatterSettings)
    blur: BlurSettings = field(default_factory=BlurSettings)
    collimator: Collimator | None = None
    motion: MotionParams = field(default_factory=MotionParams)
    method: Literal["siddon", "trilinear"] = "trilinear"
    device: str = "cpu"
    backend: Literal["numba", "torch"] = "numba"
    supersample: int = 1


@dataclass(frozen=True)
class SceneSpec:
    """Everything :func:`ddsa_sim.scene.build_scene` needs to make a :class:`~ddsa_sim.scene.Scene`.

    ``catheter``: a catheter along the tree's feeding artery up to its root (trees only; None: none).
    """

    ct: CTSpec
    vessels: VesselSpec
    placement: PlacementSpec = field(default_factory=PlacementSpec)
    exposure: ExposureSpec = field(default_factory=ExposureSpec)
    effects: EffectsSpec = field(default_factory=EffectsSpec)
    catheter: CatheterSpec | None = None
