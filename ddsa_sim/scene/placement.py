"""Place a vessel tree inside a region of the patient by a seeded random rigid affine.

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
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.spatial.transform import Rotation

from ddsa_sim import InputError
from ddsa_sim.volumes import Volume
from ddsa_sim.volumes.materials import labels_in

BODY_THRESHOLD_HU = -300.0


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
                    rotate: bool = True) -> np.ndarray:
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
