"""Place a vessel tree in the patient: inside a region by a seeded random rigid affine, or a template
registered to the anatomy (:func:`place_cerebral`, :func:`place_coronary`).

Regions are boolean masks on the CT grid: a body mask (``CT > -300 HU``, largest connected
component) or TotalSegmentator organs from a label map. The placement (docs/dsa.md §2):

1. the target centre is the region's centroid, or, if that voxel lies outside a non-convex region,
   the region voxel nearest to it;
2. a uniformly random rotation (``scipy.spatial.transform.Rotation.random`` seeded from ``rng``) is
   applied about the tree's bounding-box centre, which is moved onto the target centre plus a small
   uniform jitter (``jitter_mm`` per axis);
3. the draw is accepted when the tree's root (node 0) lies inside the region; up to ``max_tries``
   draws, then the last rotation is kept and the tree is shifted so that its root sits on the
   region voxel nearest to the root (the tree is then no longer exactly centred; documented).

With a :class:`Feeding` the rotation of step 2 is not uniform: the tree's root-to-centroid direction
goes into a cone around a feeding direction (patient LPS) and the tree turns about it by an angle in a
set range (:func:`feeding_rotation`); the translations are unchanged, so the cone holds exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage
from scipy.spatial.transform import Rotation

from ddsa_sim import InputError
from ddsa_sim.scene.conform import (
    SignedDistance,
    along_tree_weights,
    in_grid,
    index_from_world,
    push_into_bands,
    sample,
    signed_distance_mm,
)
from ddsa_sim.volumes import Volume
from ddsa_sim.volumes.materials import labels_in

if TYPE_CHECKING:
    from vessel_models.tree import VesselTree

BODY_THRESHOLD_HU = -300.0


@dataclass(frozen=True)
class Feeding:
    """Where a generic tree's blood comes from: its root-to-centroid direction within ``cone_deg`` of
    ``direction`` (world LPS: +x left, +y posterior, +z superior; any length), turned about that
    direction by an angle uniform in ``roll_deg`` (lo, hi) degrees."""

    direction: tuple[float, float, float]
    cone_deg: float = 0.0
    roll_deg: tuple[float, float] = (0.0, 360.0)

    def validate(self, field: str = "feeding") -> "Feeding":
        """Raise InputError on a zero direction, a cone outside [0, 180] or a reversed roll range."""
        d = np.asarray(self.direction, dtype=np.float64)
        if d.shape != (3,) or not np.all(np.isfinite(d)) or np.linalg.norm(d) == 0:
            raise InputError(f"{field}: feeding direction must be 3 finite numbers, not all 0, got {self.direction!r}")
        if not 0.0 <= self.cone_deg <= 180.0:
            raise InputError(f"{field}: feeding cone must be within 0-180 deg, got {self.cone_deg!r}")
        lo, hi = self.roll_deg
        if not (np.isfinite(lo) and np.isfinite(hi) and lo <= hi):
            raise InputError(f"{field}: feeding roll range must be lo <= hi (deg), got {self.roll_deg!r}")
        return self


def _unit_rotation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """A rotation taking unit ``a`` onto unit ``b`` (half a turn about a perpendicular when opposite)."""
    axis = np.cross(a, b)
    s, c = float(np.linalg.norm(axis)), float(np.dot(a, b))
    if s < 1e-12:
        if c > 0:
            return np.eye(3)
        perp = np.cross(a, [1.0, 0.0, 0.0] if abs(a[0]) < 0.9 else [0.0, 1.0, 0.0])
        return Rotation.from_rotvec(np.pi * perp / np.linalg.norm(perp)).as_matrix()
    return Rotation.from_rotvec(axis / s * np.arctan2(s, c)).as_matrix()


def feeding_rotation(positions_mm: np.ndarray, feeding: Feeding, rng: np.random.Generator) -> np.ndarray:
    """3x3 rotation of a tree (node positions, root first) by a :class:`Feeding`.

    The tree's root-to-centroid direction goes onto a direction drawn uniformly on the spherical cap
    of half-angle ``cone_deg`` around the feeding direction, then the tree turns about that
    direction by an angle uniform in ``roll_deg``. Three draws from ``rng``.
    """
    pos = np.asarray(positions_mm, dtype=np.float64)
    own = pos.mean(axis=0) - pos[0]
    if np.linalg.norm(own) == 0:
        raise InputError("feeding placement: the tree's centroid is its root; it has no direction")
    f = np.asarray(feeding.direction, dtype=np.float64)
    f = f / np.linalg.norm(f)
    cos_t = 1.0 - rng.random() * (1.0 - np.cos(np.radians(feeding.cone_deg)))
    phi = 2 * np.pi * rng.random()
    e1 = np.cross(f, [1.0, 0.0, 0.0] if abs(f[0]) < 0.9 else [0.0, 1.0, 0.0])
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(f, e1)
    sin_t = np.sqrt(max(0.0, 1.0 - cos_t**2))
    d = cos_t * f + sin_t * (np.cos(phi) * e1 + np.sin(phi) * e2)
    roll = np.radians(rng.uniform(*feeding.roll_deg))
    return Rotation.from_rotvec(roll * d).as_matrix() @ _unit_rotation(own / np.linalg.norm(own), d)


def body_mask(ct: Volume, threshold_hu: float = BODY_THRESHOLD_HU) -> np.ndarray:
    """Boolean body mask: voxels above ``threshold_hu``, largest 6-connected component."""
    fg = np.asarray(ct.data) > threshold_hu
    if not fg.any():
        raise InputError(f"{ct.name}: no voxel above {threshold_hu:g} HU, cannot find the body")
    lab, n = ndimage.label(fg)
    if n > 1:
        sizes = np.bincount(lab.ravel())
        sizes[0] = 0
        fg = lab == int(np.argmax(sizes))
    return fg


def body_outline_mask(ct: Volume, threshold_hu: float = BODY_THRESHOLD_HU) -> np.ndarray:
    """:func:`body_mask` with what the skin encloses in each axial slice: the lungs and airways too.

    The slices are along the voxel axis closest to world z, so a chest's lungs (open to the slab's
    top and bottom in 3D) are enclosed by the chest wall in every slice.
    """
    body = body_mask(ct, threshold_hu)
    directions = np.abs(np.asarray(ct.affine, dtype=np.float64)[:3, :3])
    axial = int(np.argmax(directions[2] / np.linalg.norm(directions, axis=0)))
    in_slice = np.zeros((3, 3, 3), bool)
    in_slice[tuple(1 if a == axial else slice(None) for a in range(3))] = ndimage.generate_binary_structure(2, 1)
    return ndimage.binary_fill_holes(body, structure=in_slice)


def label_region(labels: np.ndarray, classes: dict[str, int], names: list[str], source: str = "labels",
                 field: str = "region") -> np.ndarray:
    """Boolean union of the named classes (or numeric ids) of a label map, e.g. ``["heart", "aorta"]``.

    Raises
    ------
    InputError
        An unknown structure, or none of the structures has a voxel (names ``field`` and ``source``).
    """
    from ddsa_sim.scene.sources import structure_ids

    region = labels_in(labels, structure_ids(names, classes, source, field=field))
    if not region.any():
        raise InputError(f"{field}: structures {', '.join(names)} have no voxel in {source}")
    return region


def _inside(region: np.ndarray, vox_from_world: np.ndarray, point_mm: np.ndarray) -> bool:
    ijk = np.rint(vox_from_world[:3, :3] @ point_mm + vox_from_world[:3, 3]).astype(int)
    if np.any(ijk < 0) or np.any(ijk >= region.shape):
        return False
    return bool(region[tuple(ijk)])


def _nearest_region_point(region: np.ndarray, affine: np.ndarray, point_mm: np.ndarray) -> np.ndarray:
    idx = np.argwhere(region)
    pts = idx @ affine[:3, :3].T + affine[:3, 3]
    return pts[int(np.argmin(np.sum((pts - point_mm) ** 2, axis=1)))]


def place_in_region(positions_mm: np.ndarray, region: np.ndarray, region_affine: np.ndarray,
                    rng: np.random.Generator, jitter_mm: float = 5.0, max_tries: int = 50,
                    rotate: bool = True, feeding: Feeding | None = None) -> np.ndarray:
    """4x4 rigid world transform that puts a tree (node positions, root first) inside a region.

    Parameters
    ----------
    positions_mm : (N, 3) float
        Tree node positions (mm), node 0 the root.
    region : (I, J, K) bool
        Target region on a grid.
    region_affine : (4, 4) float
        Region voxel index -> world mm (LPS).
    rng : numpy.random.Generator
        All random choices (rotation, jitter).
    jitter_mm : float
        Uniform jitter of the tree centre around the region centre, per axis (mm).
    max_tries : int
        Draws tried before falling back to snapping the root into the region.
    rotate : bool
        Draw a random rotation (True) or keep the tree's orientation.
    feeding : Feeding, optional
        Draw the rotation in a cone around a feeding direction (:func:`feeding_rotation`) instead of
        uniformly.

    Returns
    -------
    (4, 4) float64 transform (apply with ``VesselTree.transformed``).
    """
    region = np.asarray(region, dtype=bool)
    pos = np.asarray(positions_mm, dtype=np.float64)
    aff = np.asarray(region_affine, dtype=np.float64)
    inv = np.linalg.inv(aff)
    target = region_target_mm(region, aff)
    tree_center = 0.5 * (pos.min(axis=0) + pos.max(axis=0))
    m = np.eye(4)
    for _ in range(max(1, int(max_tries))):
        if feeding is not None:
            r = feeding_rotation(pos, feeding, rng)
        else:
            r = Rotation.random(random_state=rng).as_matrix() if rotate else np.eye(3)
        shift = target + rng.uniform(-jitter_mm, jitter_mm, size=3) - r @ tree_center
        m = np.eye(4)
        m[:3, :3] = r
        m[:3, 3] = shift
        root = r @ pos[0] + shift
        if _inside(region, inv, root):
            return m
    root = m[:3, :3] @ pos[0] + m[:3, 3]
    m[:3, 3] += _nearest_region_point(region, aff, root) - root
    return m


def region_target_mm(region: np.ndarray, region_affine: np.ndarray) -> np.ndarray:
    """Placement target of a region (world mm): its centroid, or the region voxel nearest to the
    centroid when that lies outside a non-convex region."""
    region = np.asarray(region, dtype=bool)
    if not region.any():
        raise InputError("placement region is empty")
    aff = np.asarray(region_affine, dtype=np.float64)
    target = np.argwhere(region).mean(axis=0) @ aff[:3, :3].T + aff[:3, 3]
    if not _inside(region, np.linalg.inv(aff), target):
        target = _nearest_region_point(region, aff, target)
    return target


def place_at(positions_mm: np.ndarray, rotation: np.ndarray, target_mm: np.ndarray,
             region: np.ndarray | None = None, region_affine: np.ndarray | None = None) -> np.ndarray:
    """4x4 rigid transform: rotate a tree about its bounding-box centre, move that centre to a target.

    The deterministic counterpart of :func:`place_in_region` (rotation and target given, e.g. drawn
    by a dataset plan). With a ``region``, a root (node 0) that lands outside it is shifted onto the
    region voxel nearest to it.

    Parameters
    ----------
    positions_mm : (N, 3) float
        Tree node positions (mm), node 0 the root.
    rotation : (3, 3) float
        Rotation matrix.
    target_mm : (3,) float
        Where the tree's bounding-box centre goes (world mm).
    region, region_affine : optional
        Region (bool grid) and its voxel -> world affine the root must lie in.

    Returns
    -------
    (4, 4) float64 transform (apply with ``VesselTree.transformed``).
    """
    pos = np.asarray(positions_mm, dtype=np.float64)
    r = np.asarray(rotation, dtype=np.float64)
    center = 0.5 * (pos.min(axis=0) + pos.max(axis=0))
    m = np.eye(4)
    m[:3, :3] = r
    m[:3, 3] = np.asarray(target_mm, dtype=np.float64) - r @ center
    if region is not None:
        aff = np.asarray(region_affine, dtype=np.float64)
        root = r @ pos[0] + m[:3, 3]
        if not _inside(np.asarray(region, dtype=bool), np.linalg.inv(aff), root):
            m[:3, 3] += _nearest_region_point(region, aff, root) - root
    return m


# ----------------------------------------------------------------------------- anatomical placement
#: Bone threshold of the skull (HU) and the HU window of brain / CSF inside it.
SKULL_HU = 300.0
INTRACRANIAL_HU = (-30.0, 100.0)
#: The smallest intracranial volume accepted as a head (ml; adults ~1200-1700 ml).
MIN_INTRACRANIAL_ML = 400.0
#: Radius (mm) of the opening that cuts the spinal canal (sagittal diameter 12-17 mm at C1-C2) from the cranial
#: cavity through the foramen magnum (about 35 x 30 mm).
FORAMEN_CUT_MM = 9.0
#: Ranges of the patient-to-template isotropic scale and of the placement jitter (docs/vessels.md §5).
TEMPLATE_SCALE_RANGE = (0.8, 1.25)
ANATOMICAL_JITTER_DEG = 3.0
ANATOMICAL_JITTER_MM = 2.0


def _superior_axis(affine: np.ndarray) -> int:
    """The voxel axis whose direction is closest to world superior (+z of LPS)."""
    cols = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    return int(np.argmax(np.abs(cols[2])))


def _fill_slices(mask: np.ndarray, axis: int) -> np.ndarray:
    """``mask`` with the holes of every slice across ``axis`` filled."""
    filled = np.zeros_like(mask)
    for k in range(mask.shape[axis]):
        index = [slice(None)] * 3
        index[axis] = k
        filled[tuple(index)] = ndimage.binary_fill_holes(mask[tuple(index)])
    return filled


def intracranial_mask(ct: Volume) -> np.ndarray | None:
    """The intracranial volume of a head CT: brain / CSF voxels enclosed by the skull.

    Bone (``> SKULL_HU``) is closed (sutures, thin gaps). A voxel of the brain / CSF window
    :data:`INTRACRANIAL_HU` is enclosed when, looking along the voxel axes both ways, it sees bone in at least
    five of the six directions: the cranial cavity has one large opening (the foramen magnum), so its voxels see
    bone everywhere but, above the foramen, downwards; the orbits, the face and the neck see air in two or more.
    The spinal canal below the foramen is enclosed too, and is cut off by an opening of
    :data:`FORAMEN_CUT_MM` (the canal is narrower than that ball, the foramen and the cavity wider); the largest
    piece left, grown back by that distance within the enclosed voxels, is the intracranial volume, down to the
    floors of the three fossae. (Filling the skull's axial sections, as before, stopped at the first level where
    the orbits or the face open the ring: the builtin heads' masks ended in a flat floor 40-60 mm above the
    posterior fossa.)

    Returns
    -------
    (I, J, K) bool or None
        None when no enclosed volume of at least :data:`MIN_INTRACRANIAL_ML` exists (no head).
    """
    data = np.asarray(ct.data)
    bone = ndimage.binary_closing(data > SKULL_HU, iterations=2)
    open_ways = np.zeros(data.shape, np.uint8)  # directions along the voxel axes in which a voxel sees no bone
    for axis in range(3):
        open_ways += ~np.flip(np.logical_or.accumulate(np.flip(bone, axis), axis=axis), axis)
        open_ways += ~np.logical_or.accumulate(bone, axis=axis)
    enclosed = ~bone & (open_ways <= 1) & (data > INTRACRANIAL_HU[0]) & (data < INTRACRANIAL_HU[1])
    voxel_mm = float(np.cbrt(abs(np.linalg.det(ct.affine[:3, :3]))))
    cut = max(1, int(round(FORAMEN_CUT_MM / voxel_mm)))
    lab, n = ndimage.label(ndimage.binary_erosion(enclosed, iterations=cut))
    if n == 0:
        return None
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    mask = ndimage.binary_dilation(lab == int(np.argmax(sizes)), iterations=cut + 1, mask=enclosed)
    if mask.sum() * voxel_mm**3 / 1000.0 < MIN_INTRACRANIAL_ML:
        return None
    return mask


def _world_points(mask: np.ndarray, affine: np.ndarray) -> np.ndarray:
    return np.argwhere(mask) @ affine[:3, :3].T + affine[:3, 3]


def _jitter_rotation(rng: np.random.Generator, jitter_deg: float) -> np.ndarray:
    return Rotation.from_euler("xyz", rng.uniform(-jitter_deg, jitter_deg, 3), degrees=True).as_matrix()


def _similarity(rotation: np.ndarray, scale: float, source_mm: np.ndarray, target_mm: np.ndarray) -> np.ndarray:
    """4x4 ``x -> scale * R x + t`` taking ``source_mm`` onto ``target_mm``."""
    m = np.eye(4)
    m[:3, :3] = scale * rotation
    m[:3, 3] = target_mm - scale * rotation @ source_mm
    return m


def place_cerebral(metadata: dict, intracranial: np.ndarray | None, ct: Volume, rng: np.random.Generator,
                   jitter_deg: float = ANATOMICAL_JITTER_DEG, jitter_mm: float = ANATOMICAL_JITTER_MM) -> np.ndarray:
    """4x4 transform registering the cerebral template (``cow``) to the CT's intracranial volume.

    The template is drawn in patient LPS, the CT's world frame, so its axes are the patient's axes
    whatever the voxel orientation of the affine; only a small rotation jitter (uniform
    ``+-jitter_deg`` about each axis) is added. Its brain ellipsoid (``metadata["brain_centre_mm"]``,
    ``["brain_semi_axes_mm"]``) is matched to the intracranial volume: centre onto its centroid (plus
    a uniform ``+-jitter_mm`` shift per axis), isotropic scale = geometric mean of the ratios of its
    semi-axes along the patient axes (``sqrt(5 variance)``, exact for a solid ellipsoid) to the
    template's, clipped to :data:`TEMPLATE_SCALE_RANGE`. ``intracranial`` is :func:`intracranial_mask` of ``ct``.

    Raises
    ------
    InputError
        The CT has no skull-enclosed brain (not a head CT).
    """
    mask = intracranial
    if mask is None:
        raise InputError(f"{ct.name}: no skull-enclosed brain found (bone > {SKULL_HU:g} HU around "
                         f"{INTRACRANIAL_HU[0]:g}..{INTRACRANIAL_HU[1]:g} HU); the cerebral template needs a "
                         "head CT (or use --place region)")
    pts = _world_points(mask, ct.affine)
    centre = np.asarray(metadata["brain_centre_mm"], dtype=np.float64)
    axes = np.asarray(metadata["brain_semi_axes_mm"], dtype=np.float64)
    semi = np.sqrt(5.0 * pts.var(axis=0))  # a solid ellipsoid's semi-axis a has variance a^2 / 5
    scale = float(np.clip(np.prod(semi / axes) ** (1.0 / 3.0), *TEMPLATE_SCALE_RANGE))
    target = pts.mean(axis=0) + rng.uniform(-jitter_mm, jitter_mm, 3)
    return _similarity(_jitter_rotation(rng, jitter_deg), scale, centre, target)


def _template_apex() -> np.ndarray:
    """Apex direction of the coronary template in LPS (:func:`vessel_models.coronary.heart_rotation`)."""
    from vessel_models.coronary import heart_rotation

    return -heart_rotation()[:, 2]


#: Where the coronary arteries' centrelines lie outside the heart label's surface (mm): in the epicardial fat of
#: the atrioventricular and interventricular grooves, a vessel's radius and a few mm of fat off the myocardium.
EPICARDIAL_BAND_MM = (0.0, 4.0)
#: A template node's misfit (mm) beyond which it counts no more (septal perforators dive into the septum).
FIT_OUTLIER_MM = 8.0
#: About this many of the template's nodes, evenly taken, enter the fit, on label distance maps of about this
#: voxel size (mm; the CT's voxels taken every few).
FIT_NODES = 300
FIT_GRID_MM = 1.5
#: How far the fit may turn the template about each axis (deg) and move it along each (mm) from the heart label's
#: centroid and principal axis: the long axis is known, the label's atria and the template's ellipsoid are not alike.
FIT_MAX_TURN_DEG = 20.0
FIT_MAX_SHIFT_MM = 25.0
#: The fit's global search: differential evolution with a population of this many members per parameter (7
#: parameters), for at most this many generations; Powell's local search then starts from its best and from the start.
FIT_POPULATION = 6
FIT_GENERATIONS = 20


def place_coronary(metadata: dict, ct: Volume, heart: np.ndarray | None, rng: np.random.Generator,
                   jitter_deg: float = ANATOMICAL_JITTER_DEG, jitter_mm: float = ANATOMICAL_JITTER_MM,
                   positions_mm: np.ndarray | None = None, aorta: np.ndarray | None = None) -> np.ndarray:
    """4x4 transform registering the coronary template to the heart.

    With a heart label (``heart``: bool on the CT grid) the template's centre goes to the label's
    centroid, its long axis (base -> apex) turns onto the label's principal axis (sign: towards the
    template's left-anterior-inferior apex) and its size is scaled to the label's volume (cube root of
    the volume ratio to the template's ellipsoid, clipped to :data:`TEMPLATE_SCALE_RANGE`; the label
    includes the atria, so its principal extents would oversize the ventricular ellipsoid). With an aorta
    label as well (``aorta``, and the template's nodes ``positions_mm``), that start is refined
    (:func:`fit_coronary`): the similarity that puts the template's nodes in the epicardial band
    (:data:`EPICARDIAL_BAND_MM` outside the heart label) and its ostia (``metadata["ostia_mm"]``) and ascending
    aorta (``metadata["feeding_path_mm"]``, which the catheter comes down to the aortic root) in the labelled aorta.

    Without one, a heuristic: the lungs (below -500 HU in the slice-wise filled body) bound the
    chest (2nd-98th percentiles); the heart centre is put 12 % of their width left of their mid-line,
    17 % of their depth anterior of their centre and 40 % of their height above their lowest level
    (fractions read off the labelled heart of the builtin chest CT, one patient: docs/vessels.md §5),
    with the template's own orientation and size. Both add the small jitter of :func:`place_cerebral`.
    """
    centre = np.asarray(metadata.get("heart_centre_mm", (0.0, 0.0, 0.0)), dtype=np.float64)
    apex_t = _template_apex()
    if heart is not None and heart.any():
        pts = _world_points(heart, ct.affine)
        target = pts.mean(axis=0)
        evals, evecs = np.linalg.eigh(np.cov((pts - target).T))
        long_axis = evecs[:, -1] if np.dot(evecs[:, -1], apex_t) > 0 else -evecs[:, -1]
        rotation = _unit_rotation(apex_t, long_axis)
        template_ml = 4.0 / 3.0 * np.pi * float(np.prod(metadata["heart_semi_axes_mm"])) / 1000.0
        label_ml = heart.sum() * abs(float(np.linalg.det(ct.affine[:3, :3]))) / 1000.0
        scale = float(np.clip((label_ml / template_ml) ** (1.0 / 3.0), *TEMPLATE_SCALE_RANGE))
        if aorta is not None and aorta.any() and positions_mm is not None and metadata.get("ostia_mm"):
            aortic = [*metadata["ostia_mm"].values(), *metadata.get("feeding_path_mm", [])]  # + the ascending aorta
            rotation, scale, target = fit_coronary(rotation, scale, centre, target, positions_mm,
                                                   np.asarray(aortic, dtype=np.float64).reshape(-1, 3), heart, aorta,
                                                   ct.affine)
    else:
        lungs = _fill_slices(body_mask(ct), _superior_axis(ct.affine)) & (np.asarray(ct.data) < -500.0)
        air_ml = lungs.sum() * abs(float(np.linalg.det(ct.affine[:3, :3]))) / 1000.0
        if air_ml < MIN_LUNG_ML:  # a head's sinuses and airway are air inside the body too
            raise InputError(f"{ct.name}: no heart label, and {air_ml:.0f} ml of air inside the body (< -500 HU) is no "
                             f"pair of lungs (at least {MIN_LUNG_ML:g} ml) to place the coronary template by; give a "
                             "chest CT, or a label map with 'heart'")
        pts = _world_points(lungs, ct.affine)
        lo, hi = np.percentile(pts, 2.0, axis=0), np.percentile(pts, 98.0, axis=0)
        target = np.array([0.5 * (lo[0] + hi[0]) + 0.12 * (hi[0] - lo[0]),
                           0.5 * (lo[1] + hi[1]) - 0.17 * (hi[1] - lo[1]),
                           lo[2] + 0.40 * (hi[2] - lo[2])])
        rotation, scale = np.eye(3), 1.0
    target = target + rng.uniform(-jitter_mm, jitter_mm, 3)
    return _similarity(_jitter_rotation(rng, jitter_deg) @ rotation, scale, centre, target)


#: Least air (ml, below -500 HU inside the body) the coronary template's heuristic takes for lungs: adult lungs hold
#: litres even at full expiration (residual volume 1-2.4 l), a child's from a few years on several hundred ml, while a
#: head's air (paranasal sinuses, pharynx) is some 10-80 ml.
MIN_LUNG_ML = 300.0


def fit_coronary(rotation: np.ndarray, scale: float, centre_mm: np.ndarray, target_mm: np.ndarray,
                 positions_mm: np.ndarray, aortic_mm: np.ndarray, heart: np.ndarray, aorta: np.ndarray,
                 affine: np.ndarray, margin_mm: float = 40.0) -> tuple[np.ndarray, float, np.ndarray]:
    """Refine the template's similarity ``x -> target + scale R (x - centre)`` to the heart and aorta labels.

    Minimises the mean over the template's nodes of their squared distance (mm) outside
    :data:`EPICARDIAL_BAND_MM` from the heart label's surface (a node counts at most :data:`FIT_OUTLIER_MM`, and that
    much beyond the CT: the fit does not escape the label by sliding the tree out of a region that cuts the heart)
    plus the mean squared distance of the aortic points ``aortic_mm`` (template frame: the ostia, the ascending
    aorta's axis) from the aorta label (0 inside it), over a rotation and a
    translation about the heart (within :data:`FIT_MAX_TURN_DEG` about each axis and :data:`FIT_MAX_SHIFT_MM`
    along each) and a change of scale within :data:`TEMPLATE_SCALE_RANGE`: scipy's differential evolution over that
    box (:data:`FIT_POPULATION`, :data:`FIT_GENERATIONS`), then Powell's method from its best and from the start, the
    lower minimum kept. Distances are
    read by trilinear interpolation from Euclidean distance maps of the labels on a grid of about
    :data:`FIT_GRID_MM`, in a box reaching ``margin_mm`` beyond the heart label (the aortic root's part of the aorta).

    Returns
    -------
    rotation : (3, 3), scale : float, target_mm : (3,)
        The refined similarity, in the arguments' form.
    """
    from scipy.optimize import differential_evolution, minimize

    box, grid, box_from_world = _around_heart(heart, affine, margin_mm)
    outside = signed_distance_mm(heart[box], grid)
    to_aorta = ndimage.distance_transform_edt(~aorta[box], sampling=grid)
    nodes = positions_mm[:: max(1, len(positions_mm) // FIT_NODES)] - centre_mm
    aortic = aortic_mm - centre_mm
    band_lo, band_hi = EPICARDIAL_BAND_MM
    ct_from_world = np.linalg.inv(affine)

    def pose(x: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:  # x: rotation (0.1 rad), shift (10 mm), log-scale
        r = Rotation.from_rotvec(0.1 * x[:3]).as_matrix() @ rotation
        return r, float(scale * np.exp(0.1 * x[6])), target_mm + 10.0 * x[3:6]

    def cost(x: np.ndarray) -> float:
        r, s, t = pose(x)
        placed = t + s * nodes @ r.T
        d = sample(outside, box_from_world, placed)
        miss = np.minimum(np.maximum(band_lo - d, 0.0) + np.maximum(d - band_hi, 0.0), FIT_OUTLIER_MM)
        miss = np.where(in_grid(placed, ct_from_world, heart.shape), miss, FIT_OUTLIER_MM)  # beyond a region's cut
        return float(np.mean(miss**2) + np.mean(sample(to_aorta, box_from_world, t + s * aortic @ r.T) ** 2))

    turn, shift = np.radians(FIT_MAX_TURN_DEG) / 0.1, FIT_MAX_SHIFT_MM / 10.0  # the start is right to this much
    sizes = [float(np.log(b / scale) / 0.1) for b in TEMPLATE_SCALE_RANGE]
    bounds = [(-turn, turn)] * 3 + [(-shift, shift)] * 3 + [(min(sizes[0], 0.0), max(sizes[1], 0.0))]
    # the cost has many local minima (an ellipsoid's arteries on a patient's heart, half a heart in a region), so
    # Powell searches from the start and from the best of a short global search (seeded: the fit is a function of
    # its inputs), and the lower of the two wins (docs/vessels.md section 5)
    search = differential_evolution(cost, bounds, popsize=FIT_POPULATION, maxiter=FIT_GENERATIONS, tol=1e-3, seed=0,
                                    polish=False, init="sobol", x0=np.zeros(7))
    best = min((minimize(cost, x0, method="Powell", bounds=bounds, options={"xtol": 1e-2, "ftol": 1e-4, "maxfev": 3000})
                for x0 in (np.zeros(7), search.x)), key=lambda result: result.fun)
    return pose(best.x)


#: Standard deviation (mm along the tree) of the smoothing of the moves onto the epicardium: an artery bends onto the
#: surface over centimetres and its branches move with it.
EPICARDIAL_SMOOTHING_MM = 8.0
#: The moves fade in over this length of artery from its ostium (mm): the ostia stay in the aortic root.
OSTIAL_FADE_MM = 10.0
#: Standard deviation (mm) of the smoothing of the distance map whose gradient gives the direction of the pushes: a
#: crease of the label (the atrioventricular groove) would part neighbouring nodes to either side.
EPICARDIAL_NORMAL_SMOOTHING_MM = 6.0
#: Most a node is pushed in one round (mm), and the rounds at most: the surface's normal is read anew after each;
#: the rounds end when no node free to move misses the band by more than :data:`EPICARDIAL_TOLERANCE_MM`.
EPICARDIAL_STEP_MM = 2.0
EPICARDIAL_ROUNDS = 400
EPICARDIAL_TOLERANCE_MM = 0.1


def lay_on_epicardium(tree: VesselTree, heart: np.ndarray, affine: np.ndarray) -> VesselTree:
    """The placed coronary template with its arteries laid in the epicardial band of the heart label.

    The template's heart is an ellipsoid; a patient's is not, so after the similarity of :func:`place_coronary`
    a quarter of the main arteries' nodes lie more than 2 mm inside the labelled myocardium and a fifth more than
    6 mm off it (builtin chest CT, seeds 0-7). Each node whose centreline lies less than its radius (its lumen in
    the myocardium) or more than :data:`EPICARDIAL_BAND_MM`'s outer edge outside the heart label is pushed along the
    label's normal (the gradient of its signed distance map smoothed by :data:`EPICARDIAL_NORMAL_SMOOTHING_MM`) to
    that range. A node moves by the Gaussian-weighted mean (:data:`EPICARDIAL_SMOOTHING_MM` along its own artery
    tree) of the pushes of its nodes, those in the range and those beyond the CT (a slab holds part of the heart;
    read each round) counting as zero, so an artery bends onto the surface smoothly, its branches go with it and a
    stretch whose heart is unknown is held by its own mass; in rounds of at most :data:`EPICARDIAL_STEP_MM`, the
    normal read anew each time. The septal perforators (:data:`~vessel_models.coronary.SEPTAL_PERFORATORS`) dive
    into the septum: they ride on their artery, neither pushing nor holding it. The first :data:`OSTIAL_FADE_MM`
    from the ostia (the tree's root and the ends of its virtual connectors, which join two arteries' trees in the
    template's frame but not in the smoothing) push nothing and follow their artery's moves faded in (smoothstep),
    so the ostia stay in the aorta and the proximal artery bends from there. Distances are read
    as in :func:`fit_coronary`, from the label's voxel centres on a grid of about :data:`FIT_GRID_MM` (the CT's
    voxels taken every few): the label's surface is known to half a voxel.
    """
    from vessel_models.coronary import SEPTAL_PERFORATORS

    heart = np.asarray(heart, dtype=bool)
    if not heart.any():
        return tree.copy()
    surface = SignedDistance(heart, affine, _around_heart(heart, affine, 3.0 * EPICARDIAL_SMOOTHING_MM)[0],
                             EPICARDIAL_NORMAL_SMOOTHING_MM)
    if surface.flat:  # no surface to read a normal from
        return tree.copy()
    n, parents = tree.n_nodes, tree.parents
    septal = np.isin(tree.node_labels(), SEPTAL_PERFORATORS)  # a distal twig is its named artery's
    virtual = np.isin(tree.branch_ids, tree.metadata.get("virtual_branches", []))
    child = np.nonzero((parents >= 0) & ~virtual)[0]  # a virtual connector's edge is no artery's
    edge = np.linalg.norm(tree.positions_mm[child] - tree.positions_mm[parents[child]], axis=1)
    from_ostium = np.zeros(n)
    for i, e in zip(child, edge):
        from_ostium[i] = from_ostium[parents[i]] + e
    f = np.clip(from_ostium / OSTIAL_FADE_MM, 0.0, 1.0)
    fade = np.where(virtual, 0.0, f * f * (3.0 - 2.0 * f))  # smoothstep
    # 0 beyond 3 sigma, and between the two trees; a septal branch rides on its artery: it neither pushes nor holds
    # it back
    gauss = along_tree_weights(tree.positions_mm, parents, EPICARDIAL_SMOOTHING_MM, edges=~virtual, riders=septal)
    # the ostial stretch follows its artery, faded, and the septal branches ride on theirs: they push nothing
    which = np.where(~septal & (fade == 1.0), 0, -1)
    pos = push_into_bands(tree.positions_mm, [surface], which, np.maximum(EPICARDIAL_BAND_MM[0], tree.radii_mm),
                          np.full(n, EPICARDIAL_BAND_MM[1]), gauss, fade, np.linalg.inv(affine), heart.shape,
                          EPICARDIAL_STEP_MM, EPICARDIAL_ROUNDS, EPICARDIAL_TOLERANCE_MM)
    out = tree.copy()
    out.positions_mm = pos
    return out


def _around_heart(heart: np.ndarray, affine: np.ndarray, margin_mm: float
                  ) -> tuple[tuple[slice, ...], np.ndarray, np.ndarray]:
    """The heart label's box grown by ``margin_mm``, on a grid of about :data:`FIT_GRID_MM` (the CT's voxels taken
    every few): its slices into the CT grid, its voxel size (mm) and its voxel-from-world 4x4 matrix."""
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    pad = np.ceil(margin_mm / spacing).astype(int)
    around = ndimage.find_objects(heart.view(np.uint8))[0]  # the heart's box (not the descending aorta's length)
    lo = np.maximum([b.start for b in around] - pad, 0)
    hi = np.minimum([b.stop for b in around] + pad, heart.shape)
    stride = np.maximum(1, np.floor(FIT_GRID_MM / spacing)).astype(int)  # a coarser grid: the fit needs no finer
    box = tuple(slice(a, b, k) for a, b, k in zip(lo, hi, stride))
    return box, spacing * stride, index_from_world(box, affine)
