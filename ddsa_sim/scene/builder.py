"""The one scene builder: a typed :class:`~ddsa_sim.scene.spec.SceneSpec` -> a :class:`~ddsa_sim.scene.Scene`.

``ddsa-sim dsa`` and the dataset exporter both build their scenes here, so label-map checks, generator
names, parameter coercion and placement rules exist once. A :class:`Patient` holds a loaded CT, its
label map and what the builder derives from them (material maps refined by the labels, the CT's
projector volume, structure table, placement regions, the virtual non-contrast CT of labelled vessels,
an LRU of voxelized static vessel sources): everything in it is a deterministic function of the CT
and the key it is stored under, so a scene built from a warm patient equals one built from a cold one,
bit for bit.
"""

from __future__ import annotations

import hashlib
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ddsa_sim import InputError
from ddsa_sim.projector import ProjectorVolume
from ddsa_sim.scene.catheter import Catheter, build_catheter, catheter_centerline
from ddsa_sim.scene.catheter_route import FEEDING_ARTERIES, ArteryRoutes
from ddsa_sim.scene.conform import TISSUE_HU, SignedDistance, cerebral_compartments, conform_cerebral
from ddsa_sim.scene.model_source import lumen_points, model_volume
from ddsa_sim.scene.motion import CARDIAC_KINDS, RESPIRATORY_KINDS
from ddsa_sim.scene.perfusion import CEREBRAL_BOLUS, blush_source
from ddsa_sim.scene.placement import (
    body_mask,
    body_outline_mask,
    feeding_rotation,
    intracranial_mask,
    label_region,
    lay_on_epicardium,
    place_at,
    place_cerebral,
    place_coronary,
    place_in_region,
    region_target_mm,
)
from ddsa_sim.scene.scene import Scene
from ddsa_sim.scene.sources import (
    ct_with_label_materials,
    generated_tree,
    label_vessels,
    nifti_fraction,
    structure_ids,
    structure_table,
)
from ddsa_sim.scene.spec import CTSpec, PlacementSpec, SceneSpec, VesselSpec
from ddsa_sim.scene.vessels import BolusParams, FractionVessels, TreeVessels, VesselSource
from ddsa_sim.volumes import Volume, virtual_non_contrast
from ddsa_sim.volumes.augment import pseudo_patient
from ddsa_sim.volumes.distractors import add_distractors
from ddsa_sim.volumes.materials import labels_in
from ddsa_sim.volumes.readers import read_ct_with_labels
from ddsa_sim.volumes.vnc import enhanced_vessel_mask

if TYPE_CHECKING:
    from vessel_models.tree import VesselTree

__all__ = ["Patient", "build_scene", "load_patient", "place_vessels"]

TREE_SUFFIXES = (".vtp", ".json")
NIFTI_SUFFIXES = (".nii", ".nii.gz")


@dataclass
class Patient:
    """A loaded CT (HU, float32), its optional label map (uint8/uint16) and the builder's memo.

    ``derived`` lives and dies with the patient (e.g. in an exporter's CT cache), so memory stays
    bounded by how many patients are kept.
    """

    ct: Volume
    labels: Volume | None
    spec: CTSpec
    derived: dict[Any, Any] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        """Bytes of the CT and label voxels."""
        return self.ct.data.nbytes + (self.labels.data.nbytes if self.labels is not None else 0)


def load_patient(ct: CTSpec) -> Patient:
    """Read the CT and label map of ``ct`` (:func:`ddsa_sim.volumes.readers.read_ct_with_labels`); with
    ``ct.variant``, its virtual non-contrast version (``ct.vnc``) made into that pseudo-patient, then
    ``ct.distractors`` added to it."""
    volume, labels = read_ct_with_labels(ct.source, ct.labels, ct.max_voxels, labels_field=ct.labels_field)
    patient = Patient(volume, labels, ct)
    if ct.variant is None:
        return patient
    lumen = _vnc_mask(patient)
    if lumen is not None:
        volume, _ = virtual_non_contrast(volume, lumen)
    anatomy, labels = pseudo_patient(volume, labels, ct.variant)
    if ct.distractors is None:
        return Patient(anatomy, labels, ct)
    volume, labels = add_distractors(anatomy, labels, ct.distractors)
    patient = Patient(volume, labels, ct)
    # distractors are clutter, not anatomy: where the brain lies is read from the pseudo-patient before them
    # (an air cavity through the skull or a bone rod across the brain would break or split it); keep only
    # the HU they painted over, a few per cent of the voxels
    painted = np.flatnonzero(volume.data != anatomy.data)
    patient.derived["hu_under_distractors"] = (painted, anatomy.data.ravel()[painted])
    return patient


def _anatomy(patient: Patient) -> Volume:
    """The patient's CT without its pseudo-patient's distractors (:func:`load_patient`)."""
    if "hu_under_distractors" not in patient.derived:
        return patient.ct
    painted, hu = patient.derived["hu_under_distractors"]
    data = np.array(patient.ct.data, dtype=np.float32)
    data.ravel()[painted] = hu
    return Volume(data, patient.ct.affine, {}, patient.ct.name)


def _vnc_mask(patient: Patient) -> np.ndarray | None:
    """The blood voxels a pseudo-patient's virtual non-contrast clears (``CTSpec.vnc``), or None."""
    ct = patient.spec
    if ct.vnc == "off" or (ct.vnc == "auto" and patient.labels is None):
        return None
    if ct.vnc == "auto":
        return enhanced_vessel_mask(patient.ct, patient.labels.data, _structures(patient))
    labels = _labels(patient, ct.vnc_field)
    ids = structure_ids(list(ct.vnc), _structures(patient), str(ct.labels), field=ct.vnc_field)
    return np.isin(labels, ids)


def build_scene(spec: SceneSpec, patient: Patient | None = None, vessel_cache_size: int = 0) -> Scene:
    """Build the Scene of ``spec``.

    Parameters
    ----------
    spec : SceneSpec
    patient : Patient, optional
        The loaded CT of ``spec.ct`` (e.g. from a cache, with its memo); default: read now.
    vessel_cache_size : int
        Static vessel sources (``fill="static"``) kept voxelized in the patient's memo (a tree seen
        from many poses is voxelized once); 0 keeps none.

    Raises
    ------
    InputError
        A missing file or structure, an unknown generator or parameter, a label map that does not
        fit the CT; one line naming the option or config field.
    """
    patient = patient if patient is not None else load_patient(spec.ct)
    vs = spec.vessels
    catheter = None
    if vs.kind == "labels":
        if spec.catheter is not None:
            raise InputError(f"{spec.catheter.field}: a catheter needs a vessel tree, not the CT's labelled vessels")
        ct, ct_volume, vessels = _label_vessel_parts(vs, patient)
    elif vs.kind in ("generator", "file", "model"):
        ct, ct_volume = patient.ct, _ct_projector_volume(patient)
        vessels, catheter = _vessel_source(spec, patient, vessel_cache_size)
    else:
        raise InputError(f"{vs.field}: unknown vessel source kind {vs.kind!r}; use generator, file, labels or model")
    sources, bolus = [vessels], BolusParams()
    if isinstance(vessels, TreeVessels) and "venous_branches" in vessels.tree.metadata:
        # a circulation with a venous phase: every compartment fills and washes out, the brain blushes
        bolus = CEREBRAL_BOLUS
        sources.append(blush_source(vessels.tree, _intracranial(patient), patient.ct.affine,
                                    name=f"{vessels.name} blush"))
    ex, fx = spec.exposure, spec.effects
    heart = None  # the CT's heart beats with the tree (scene/beating_heart.py), where the labels say it is
    if fx.motion.kind in CARDIAC_KINDS and patient.labels is not None and "heart" in _structures(patient):
        heart, _ = _region(patient, ("heart",), spec.ct.labels_field)
    motion = fx.motion
    if motion.kind in RESPIRATORY_KINDS and motion.diaphragm_z_mm is None:
        motion = replace(motion, diaphragm_z_mm=_region_dome_z_mm(patient))
    return Scene(ct, sources, catheter=catheter, heart=heart, spectrum=ex.spectrum, detector=ex.detector,
                 exposure=ex.exposure, iodine_mg_per_ml=ex.iodine_mg_per_ml, bolus=bolus, noise=fx.noise,
                 scatter=fx.scatter, blur=fx.blur, collimator=fx.collimator, motion=motion, method=fx.method,
                 device=fx.device, backend=fx.backend, supersample=fx.supersample, ct_volume=ct_volume)


def place_vessels(spec: SceneSpec, patient: Patient | None = None) -> tuple[VesselSource, Catheter | None]:
    """The vessel source of a generator, file or model ``spec`` and its catheter, placed as :func:`build_scene`
    places them, without the CT's projector volume (to draw or measure a placed tree).

    Parameters
    ----------
    spec : SceneSpec
    patient : Patient, optional
        The loaded CT of ``spec.ct``; default: read now.
    """
    if spec.vessels.kind not in ("generator", "file", "model"):
        raise InputError(f"{spec.vessels.field}: only a generator, file or model source is placed, "
                         f"not {spec.vessels.kind!r}")
    return _placed_source(spec, patient if patient is not None else load_patient(spec.ct))


def _region_dome_z_mm(patient: Patient) -> float | None:
    """The diaphragm dome's world z of a region cut from a CT (``builtin:NAME[box]``): found on the whole CT, which
    the box keeps in place, once per patient (a slab of the upper chest holds no diaphragm and a box through the
    lungs cuts them at its border, where the lung finder takes them for outside air); a pseudo-patient of the region
    takes its source's, before its own scaling. None for a CT as it is: the scene finds it there."""
    from ddsa_sim.scene.cardiorespiratory import diaphragm_level_mm
    from ddsa_sim.volumes.readers import read_volume, split_voxel_box

    name, box = split_voxel_box(patient.spec.source)
    if box is None:
        return None
    if "dome_z_mm" not in patient.derived:
        patient.derived["dome_z_mm"] = diaphragm_level_mm(read_volume(name))
    return patient.derived["dome_z_mm"]


# ----------------------------------------------------------------------------- the patient's memo
def _structures(patient: Patient) -> dict[str, int]:
    """Structure name -> label id of the patient's label map (builtin table, a CSV, or empty)."""
    if "structures" not in patient.derived:
        ct = patient.spec
        patient.derived["structures"] = structure_table(ct.labels, ct.structures, field=ct.structures_field)
    return patient.derived["structures"]


def _cerebral_compartments(patient: Patient) -> list[SignedDistance]:
    """The maps of :func:`~ddsa_sim.scene.conform.cerebral_compartments` of the CT without its distractors,
    memoised (a patient's trees share them)."""
    if "cerebral compartments" not in patient.derived:
        ct = _anatomy(patient)
        patient.derived["cerebral compartments"] = cerebral_compartments(ct, _intracranial(patient),
                                                                         body_mask(ct, TISSUE_HU))
    return patient.derived["cerebral compartments"]


def _intracranial(patient: Patient) -> np.ndarray | None:
    """The CT's intracranial volume (:func:`~ddsa_sim.scene.placement.intracranial_mask`) without its
    distractors, memoised."""
    if "intracranial" not in patient.derived:
        patient.derived["intracranial"] = intracranial_mask(_anatomy(patient))
    return patient.derived["intracranial"]


def _labels(patient: Patient, field: str) -> np.ndarray:
    if patient.labels is None:
        raise InputError(f"{field}: needs a label map ({patient.spec.labels_field}) for CT {patient.spec.source}")
    return patient.labels.data


def _ct_projector_volume(patient: Patient) -> ProjectorVolume:
    """The CT's projector volume (density + materials, refined by the label map if any)."""
    if "ct_volume" not in patient.derived:
        ct = patient.ct
        if patient.labels is not None:
            ct = ct_with_label_materials(ct, patient.labels.data, _structures(patient))
        patient.derived["ct_volume"] = ProjectorVolume.from_ct(ct, name="ct")
    return patient.derived["ct_volume"]


def _region(patient: Patient, names: tuple[str, ...], field: str) -> tuple[np.ndarray, np.ndarray]:
    """(bool mask on the CT grid, placement target in world mm) of ``("body",)`` or label structures."""
    key = ("region", names)
    if key not in patient.derived:
        if names == ("body",):
            region = body_mask(patient.ct)
        else:
            region = label_region(_labels(patient, field), _structures(patient), list(names),
                                  str(patient.spec.labels), field=field)
        patient.derived[key] = (region, region_target_mm(region, patient.ct.affine))
    return patient.derived[key]


def _label_vessel_parts(vs: VesselSpec, patient: Patient) -> tuple[Volume, ProjectorVolume, FractionVessels]:
    """(virtual non-contrast CT, its projector volume, the lumen) of the CT's own labelled vessels."""
    if not vs.structures:
        raise InputError(f"{vs.field}: the CT's labelled vessels need a list of structure names")
    key = ("labels", vs.structures, vs.display_name)
    if key not in patient.derived:
        labels = _labels(patient, vs.field)
        ids = structure_ids(list(vs.structures), _structures(patient), str(patient.spec.labels), field=vs.field)
        name = vs.display_name or ",".join(vs.structures)
        vnc, lumen = label_vessels(patient.ct, labels, _structures(patient), ids, name, field=vs.field)
        patient.derived[key] = (vnc, ProjectorVolume.from_ct(vnc, name="ct"), lumen)
    return patient.derived[key]


# ----------------------------------------------------------------------------- trees, files, models
def _vessel_source(spec: SceneSpec, patient: Patient, cache_size: int) -> tuple[VesselSource, Catheter | None]:
    """The placed tree or fraction volume and its catheter; static sources through the patient's LRU."""
    if spec.vessels.fill != "static" or cache_size <= 0:
        return _placed_source(spec, patient)
    lru = patient.derived.setdefault("vessels", OrderedDict())
    key = hashlib.sha256(repr((spec.vessels, spec.placement, spec.catheter)).encode()).hexdigest()
    if key in lru:
        lru.move_to_end(key)
        return lru[key]
    while len(lru) >= cache_size:
        lru.popitem(last=False)
    lru[key] = _placed_source(spec, patient)
    return lru[key]


def _placed_source(spec: SceneSpec, patient: Patient) -> tuple[VesselSource, Catheter | None]:
    vs, place = spec.vessels, spec.placement
    name = vs.display_name or vs.name
    is_tree = vs.kind == "generator" or Path(vs.name).suffix.lower() in TREE_SUFFIXES
    if spec.catheter is not None and not is_tree:
        raise InputError(f"{spec.catheter.field}: a catheter needs a vessel tree (generator, .vtp or .json), "
                         f"got {vs.name or vs.kind!r}")
    if vs.kind == "model":  # a sampled label grid, placed rigidly like a tree: a new affine
        frac, affine = model_volume(vs.name, vs.seed, vs.params, field=vs.field)
        transform = _placement(lumen_points(frac, affine), {}, vs, place, patient)
        return FractionVessels(frac, affine if transform is None else transform @ affine, name=name), None
    if vs.kind == "file":
        path = Path(vs.name)
        if path.name.lower().endswith(NIFTI_SUFFIXES):
            return nifti_fraction(path, field=vs.field), None
        if path.suffix.lower() not in TREE_SUFFIXES:
            raise InputError(f"{vs.field}: {path}: unknown format (expected .nii, .nii.gz, .vtp or .json)")
        if not path.is_file():
            raise InputError(f"{vs.field}: {path}: no such file")
        from vessel_models import load_tree
        from vessel_models.tree import VesselInputError

        try:
            tree = load_tree(path)
        except VesselInputError as exc:
            raise InputError(f"{vs.field}: {str(exc).splitlines()[0]}") from None
    else:
        tree = generated_tree(vs.name, vs.seed, vs.params, field=vs.field, params_field=vs.params_field)
    transform = _placement(tree.positions_mm, tree.metadata, vs, place, patient)
    if transform is not None:
        tree = tree.transformed(transform)
        for key in TEMPLATE_POINTS:  # template metadata is in the template's frame: it moves with the tree
            if tree.metadata.get(key):
                tree.metadata[key] = (np.asarray(tree.metadata[key], float) @ transform[:3, :3].T
                                      + transform[:3, 3]).tolist()
        template = _template(vs, place, tree.metadata)
        heart = _heart(patient, place.field) if template == "coronary" else None
        if heart is not None:  # the similarity puts an ellipsoid's arteries on this heart: lay them on its surface
            tree = lay_on_epicardium(tree, heart, patient.ct.affine)
        if template == "cow":  # and an ellipsoid's head in this one: each vessel into its compartment
            tree = conform_cerebral(tree, _cerebral_compartments(patient), patient.ct.affine, patient.ct.shape)
    catheter = None
    if spec.catheter is not None:
        if "body outline" not in patient.derived:  # the catheter may cross the lungs on its way in
            patient.derived["body outline"] = body_outline_mask(patient.ct)
        route, onward = _way_in(patient, tree)
        if route is not None:  # the catheter follows the feeding path on from where the way in joins it
            tree.metadata["feeding_path_mm"] = onward.tolist()
        centerline = catheter_centerline(tree, patient.derived["body outline"], patient.ct.affine,
                                         spec.catheter.tip_offset_mm, route=route)
        if centerline is None:
            warnings.warn(f"{spec.catheter.field}: the injection site (the tree's root) lies outside the CT or at its "
                          "edge, where the catheter's path inside is no longer than its tip offset: no catheter drawn",
                          stacklevel=2)
        else:
            catheter = build_catheter(centerline, spec.catheter)
    trees = TreeVessels(tree, spacing_mm=float(vs.spacing_mm), name=name)
    if vs.fill == "bolus":
        return trees, catheter
    frac, affine = trees.fraction(None, BolusParams())
    return FractionVessels(frac, affine, name=name), catheter


def _feeding_lumen(patient: Patient) -> np.ndarray:
    """Bool mask on the CT grid: the union of the label map's :data:`FEEDING_ARTERIES` (all False without labels)."""
    structures = _structures(patient) if patient.labels is not None else {}
    names = [n for n in FEEDING_ARTERIES if n in structures]
    if not names:
        return np.zeros(patient.ct.shape, dtype=bool)
    return labels_in(patient.labels.data, structure_ids(names, structures, str(patient.spec.labels)))


#: Spacing (mm) of the points along a feeding path where the catheter's way in may join it.
JOIN_STEP_MM = 10.0


def _way_in(patient: Patient, tree: VesselTree) -> tuple[np.ndarray | None, np.ndarray]:
    """The catheter's way in through the CT's labelled arteries (:data:`FEEDING_ARTERIES`) and the feeding path on from
    where it joins: the first point, every :data:`JOIN_STEP_MM` along the tree's feeding path, that the way reaches
    going the path's way on (one that arrives across the aortic arch's bend at the top of the ascending aorta is no
    way down it); at the path's last point, where the tip turns into the root, the way the path arrives there (a way
    up from a slab's bottom to a coronary ostium's height is no way down the ascending aorta). (None, the whole path):
    no label, no feeding path, or no such point near the labels; the routes memoised per patient."""
    feeding = np.asarray(tree.metadata.get("feeding_path_mm") or np.empty((0, 3)), dtype=np.float64).reshape(-1, 3)
    if not len(feeding):
        return None, feeding
    if "artery routes" not in patient.derived:  # a region cut from a CT may hold none of them
        lumen = _feeding_lumen(patient)
        patient.derived["artery routes"] = ArteryRoutes(lumen, patient.ct.affine) if lumen.any() else None
    routes = patient.derived["artery routes"]
    if routes is None:
        return None, feeding
    path = np.vstack([feeding, tree.positions_mm[:1]])
    for k in range(len(feeding)):
        step = path[k + 1] - path[k]
        length = float(np.linalg.norm(step))
        last = k == len(feeding) - 1
        heading = path[k] - path[k - 1] if last and k > 0 else step
        for along in np.arange(0.0, max(length, 1e-9), JOIN_STEP_MM) if not last else [0.0]:
            join = path[k] + step * (along / max(length, 1e-9))
            route = routes.route(join, heading)
            if route is not None:
                return route, np.vstack([join, feeding[k + 1:]])
    return None, feeding


#: Generators whose trees are anatomical templates, placed by registration to the CT's anatomy.
TEMPLATES = ("cow", "coronary")


def _template(vs: VesselSpec, place: PlacementSpec, metadata: dict) -> str | None:
    """The template (:data:`TEMPLATES`) a generated tree is, where its placement is anatomical (or auto); else None."""
    template = metadata.get("generator") if vs.kind == "generator" else None
    return template if template in TEMPLATES and place.mode in ("auto", "anatomical") else None


def _heart(patient: Patient, field: str) -> np.ndarray | None:
    """The patient's heart label (bool, CT grid), or None where its label map has none."""
    if patient.labels is None or "heart" not in _structures(patient):
        return None
    return _region(patient, ("heart",), field)[0]


def _aorta(patient: Patient) -> np.ndarray | None:
    """The patient's aorta label (bool, CT grid; empty where this CT or region holds none of it, as a slab may), or
    None where its label map has none: the coronary fit puts the ostia on the aortic root. Once per patient."""
    if patient.labels is None or "aorta" not in _structures(patient):
        return None
    if "aorta" not in patient.derived:
        patient.derived["aorta"] = labels_in(patient.labels.data, structure_ids(["aorta"], _structures(patient),
                                                                                str(patient.spec.labels)))
    return patient.derived["aorta"]


#: Points (mm) of a template's metadata, in its frame until placed: the catheter's feeding path, the cerebral
#: template's brain centre (where ``dsa`` aims by default).
TEMPLATE_POINTS = ("feeding_path_mm", "brain_centre_mm")


def _placement(positions_mm: np.ndarray, metadata: dict, vs: VesselSpec, place: PlacementSpec,
               patient: Patient) -> np.ndarray | None:
    """4x4 world transform of a tree (node positions, root first, and the tree's metadata) or of a
    sampled vessel grid (its lumen points, :func:`~ddsa_sim.scene.spec.PlacementSpec`); None: left as it is."""
    mode = place.mode
    if mode not in ("pose", "region", "as-is", "auto", "anatomical"):
        raise InputError(f"{place.field}: use auto, anatomical, region, as-is or pose, got {mode!r}")
    template = _template(vs, place, metadata)
    if mode == "auto" and template is not None:
        mode = "anatomical"
    if mode == "as-is":
        return None
    if mode == "anatomical":
        if template is None:
            raise InputError(f"{place.field}: anatomical placement needs a template generator "
                             f"({', '.join(TEMPLATES)}), got {vs.name or vs.kind!r}")
        rng = np.random.default_rng(place.seed)
        if template == "cow":
            return place_cerebral(metadata, _intracranial(patient), patient.ct, rng)
        return place_coronary(metadata, patient.ct, _heart(patient, place.field), rng, positions_mm=positions_mm,
                              aorta=_aorta(patient))
    if mode == "pose":
        from scipy.spatial.transform import Rotation

        if place.feeding is not None:
            rotation = feeding_rotation(positions_mm, place.feeding.validate(place.field),
                                        np.random.default_rng(place.seed))
        else:
            rotation = Rotation.from_euler("xyz", place.rotation_deg, degrees=True).as_matrix()
        region = None
        if place.root == "ct-center":
            target = np.asarray(patient.ct.center_mm, dtype=np.float64)
        else:
            region, target = _region(patient, (place.root,), place.field)
        target = target + np.asarray(place.offset_mm, dtype=np.float64)
        return place_at(positions_mm, rotation, target, region, patient.ct.affine)
    region, _ = _region(patient, place.region, place.field)
    if mode == "auto" and vs.kind == "file":  # a tree file whose root is inside the region stays as it is
        inv = np.linalg.inv(patient.ct.affine)
        ijk = np.rint(inv[:3, :3] @ positions_mm[0] + inv[:3, 3]).astype(int)
        if np.all(ijk >= 0) and np.all(ijk < region.shape) and region[tuple(ijk)]:
            return None
    feeding = place.feeding.validate(place.field) if place.feeding is not None else None
    return place_in_region(positions_mm, region, patient.ct.affine, np.random.default_rng(place.seed), feeding=feeding)
