"""Anatomical distractors: procedural dense-bone and air structures added to a pseudo-patient's CT.

A network trained on one patient's CT learns to suppress that patient's anatomy; sharp curved bone and
air edges it never saw (a skull, orbits, sinus walls) it may draw as vessels. Domain randomisation adds
such edges to every pseudo-patient (:mod:`ddsa_sim.volumes.augment`), so the data teaches that they are
background. Each structure is defined in world mm by an implicit surface:

* ``shell``: an ellipsoidal bone shell (skull / cortex-like): the region inside the ellipsoid of
  semi-axes ``a`` and outside the one of semi-axes ``a - t`` (thickness ``t``), optionally cut by a
  half-space (an open shell, a plate);
* ``ellipsoid``: a solid ellipsoid (a vertebral body, a bone end; with air HU: a sinus or gas cavity);
* ``cylinder``: a solid finite cylinder of radius ``r`` and length ``L`` (a long bone, a rib segment);
  with a cortex of thickness ``t``, a bone (ellipsoid or cylinder) is a cortical one with a core of
  semi-axes ``a - t`` painted over it at the core's HU (cancellous bone or marrow), as real bones are: a
  solid bone of vessel width has a vessel's profile in projection (1500 HU bone attenuates as blood with
  50 mg/ml iodine at 55 keV), a cortical one is brighter at its edges than at its centre;
* ``foam``: the air cells of a pneumatised bone (ethmoid labyrinth, mastoid): the ellipsoid of semi-axes
  ``a`` cut into the Voronoi cells of ``seeds``, with septa of thickness ``t`` centred on the cells'
  boundaries left of what lies beneath (a foam of air painted into bone leaves bony septa).

Partial volume: the occupancy of a voxel is ``clip(1/2 - d / W, 0, 1)``, with ``d`` the signed distance
to the surface (first-order: ``(g - 1) / |grad g|`` for an ellipsoid's ``g = |y / a|``, exact for planes
and the cylinder's sides) and ``W = |M^T n|`` the width of a voxel along the surface normal ``n`` (``M`` the
affine's 3 x 3 part: a linear ramp of that width has the variance of the voxel's box response along
``n``) times ``edge_voxels``. The ramp is symmetric about the surface, so the occupancies sum to the
analytic volume to first order. A shell's occupancy is ``w_outer (1 - w_inner) w_plane``; a cylinder's
``w_side w_ends``; a foam's ``w_ellipsoid (1 - w_septum)``, where a septum is the slab ``|u| <= t / 2``
about the bisector plane of the nearest two seeds (``u`` the signed distance to it) and its occupancy the
difference of the two half-spaces' ramps, which integrates to ``t`` across the septum however thin it is.

Composition, structure by structure: ``HU <- HU + b w (HU_s - HU)``, ``b`` the body mask of the
variant before any structure (voxels above :data:`BODY_MIN_HU`, holes filled in each axial slice so the
lungs and airways count as body): nothing is added in the air outside the patient. Bone structures and
shells are centred on a random body voxel, air cavities on a random soft-tissue voxel
(:data:`SOFT_TISSUE_HU`). Voxels a structure occupies by more than half get label 0: their material follows
from their HU (bone above 350 HU, air at or below -800 HU, :mod:`ddsa_sim.volumes.materials`), not from
the structure the label map named there (a ``lung`` label would otherwise make a bone shell lung), and no
distractor voxel keeps a vessel label.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from ddsa_sim import InputError
from ddsa_sim.volumes.volume import Volume

__all__ = ["BODY_MIN_HU", "MAX_FOAM_CELLS", "SOFT_TISSUE_HU", "Distractors", "Structure", "add_distractors", "body_mask",
           "draw_structures", "occupancy", "paint"]

#: Voxels above this HU are body (the variant's air outside the patient is at about -1000 HU).
BODY_MIN_HU = -500.0
#: HU range of the soft tissue an air cavity is centred in.
SOFT_TISSUE_HU = (-200.0, 200.0)
#: Most air cells of one foam distractor (a 30 mm foam of 3 mm cells would have 8000).
MAX_FOAM_CELLS = 2000

Interval = tuple[float, float]


@dataclass(frozen=True)
class Distractors:
    """How many structures of each kind a variant gets and the uniform ranges their parameters are drawn
    from (defaults and their sources: ``docs/export.md``, section "Anatomical distractors").

    Attributes
    ----------
    seed : int
        Seed of the draw (centres, orientations, sizes, HU).
    shells, bones, cavities, foams : int
        Number of bone shells, solid bones (ellipsoid or cylinder, equally likely), air cavities and
        air-cell foams (a bone ellipsoid honeycombed by air cells).
    shell_semi_axis_mm, shell_thickness_mm, shell_hu : (float, float)
        Semi-axes (each drawn), wall thickness (mm) and HU of the shells.
    shell_open_fraction : float
        Probability that a shell is cut by a random half-space (an open shell or plate).
    bone_radius_mm, bone_length_mm, bone_hu : (float, float)
        Semi-axes of solid ellipsoids and radius of cylinders (mm), cylinder length (mm), bone HU (with a
        cortex: the cortex's HU).
    bone_cortex_mm, bone_core_hu : (float, float)
        Cortical thickness of the bones (mm, min > 0; at most half the smallest semi-axis; ``(0, 0)``: solid
        bones) and the HU of the core inside the cortex.
    cavity_semi_axis_mm, cavity_hu : (float, float)
        Semi-axes (mm) and HU of the air cavities (and of a foam's cells).
    foam_semi_axis_mm, foam_cell_mm, foam_septum_mm, foam_hu : (float, float)
        A foam's semi-axes, mean cell diameter, septum (and outer wall) thickness (mm) and bone HU.
    edge_voxels : float
        Width of the partial-volume edge in voxels along the surface normal (module docstring).
    """

    seed: int = 0
    shells: int = 0
    bones: int = 0
    cavities: int = 0
    foams: int = 0
    shell_semi_axis_mm: Interval = (20.0, 90.0)
    shell_thickness_mm: Interval = (2.0, 10.0)
    shell_hu: Interval = (800.0, 1900.0)
    shell_open_fraction: float = 0.5
    bone_radius_mm: Interval = (3.0, 25.0)
    bone_length_mm: Interval = (20.0, 200.0)
    bone_hu: Interval = (300.0, 1500.0)
    bone_cortex_mm: Interval = (0.0, 0.0)
    bone_core_hu: Interval = (100.0, 400.0)
    cavity_semi_axis_mm: Interval = (5.0, 40.0)
    cavity_hu: Interval = (-1000.0, -800.0)
    foam_semi_axis_mm: Interval = (8.0, 30.0)
    foam_cell_mm: Interval = (3.0, 10.0)
    foam_septum_mm: Interval = (0.3, 1.5)
    foam_hu: Interval = (800.0, 1900.0)
    edge_voxels: float = 1.0

    def __post_init__(self) -> None:
        for name in ("shells", "bones", "cavities", "foams"):
            if getattr(self, name) < 0:
                raise InputError(f"distractors.{name}: must be >= 0, got {getattr(self, name)}")
        for name in ("shell_semi_axis_mm", "shell_thickness_mm", "bone_radius_mm", "bone_length_mm",
                     "cavity_semi_axis_mm", "foam_semi_axis_mm", "foam_cell_mm", "foam_septum_mm", "shell_hu",
                     "bone_hu", "bone_core_hu", "cavity_hu", "foam_hu", "bone_cortex_mm"):
            lo, hi = getattr(self, name)
            if name == "bone_cortex_mm":  # (0, 0): solid bones
                if not (lo == hi == 0 or 0 < lo <= hi):
                    raise InputError(f"distractors.{name}: need 0 < min <= max (or 0: solid bones), got [{lo}, {hi}]")
            elif hi < lo or (name.endswith("_mm") and lo <= 0):
                raise InputError(f"distractors.{name}: need min <= max{' and min > 0' * name.endswith('_mm')}, "
                                 f"got [{lo}, {hi}]")
        if self.shell_thickness_mm[1] >= self.shell_semi_axis_mm[0]:
            raise InputError(f"distractors.shell_thickness_mm: max {self.shell_thickness_mm[1]} must be below "
                             f"shell_semi_axis_mm min {self.shell_semi_axis_mm[0]} (the shell needs a cavity)")
        if self.foam_septum_mm[1] >= self.foam_semi_axis_mm[0]:
            raise InputError(f"distractors.foam_septum_mm: max {self.foam_septum_mm[1]} must be below "
                             f"foam_semi_axis_mm min {self.foam_semi_axis_mm[0]} (the foam needs cells)")
        if not 0 <= self.shell_open_fraction <= 1:
            raise InputError(f"distractors.shell_open_fraction: must lie in [0, 1], got {self.shell_open_fraction}")
        if not self.edge_voxels > 0:
            raise InputError(f"distractors.edge_voxels: must be > 0, got {self.edge_voxels}")


@dataclass(frozen=True, eq=False)
class Structure:
    """One drawn structure (module docstring for the kinds).

    Attributes
    ----------
    kind : {"shell", "ellipsoid", "cylinder", "foam"}
    center_mm : (3,) float
        World centre, mm.
    rotation : (3, 3) float
        Columns: the structure's local axes in world coordinates.
    semi_axes_mm : (3,) float
        Ellipsoid / shell semi-axes along the local axes, mm; a cylinder's ``(r, r, L / 2)`` (axis: local z).
    hu : float
        HU of the structure.
    thickness_mm : float
        Shell wall or foam septum thickness, mm (shells and foams only).
    clip : (4,) float or None
        A shell's half-space ``n . y <= h`` in local coordinates ``y``: ``(n_x, n_y, n_z, h)``, ``n`` unit.
    seeds_mm : (n, 3) float or None
        A foam's cell seeds in local coordinates, mm (foams only).
    """

    kind: str
    center_mm: np.ndarray
    rotation: np.ndarray
    semi_axes_mm: np.ndarray
    hu: float
    thickness_mm: float = 0.0
    clip: np.ndarray | None = None
    seeds_mm: np.ndarray | None = None

    def half_extent_mm(self) -> np.ndarray:
        """Half extent (3,) along each world axis of the box holding the structure."""
        if self.kind == "cylinder":  # the axis' projection plus the end disc's
            along = np.abs(self.rotation[:, 2])
            return along * self.semi_axes_mm[2] + self.semi_axes_mm[0] * np.sqrt(np.clip(1 - along**2, 0, None))
        return np.sqrt(((self.rotation * self.semi_axes_mm[None, :]) ** 2).sum(axis=1))


def _ramp(d: np.ndarray, width: np.ndarray) -> np.ndarray:
    return np.clip(0.5 - d / width, 0.0, 1.0)


def _normal_width(n_world: np.ndarray, m_edge: np.ndarray) -> np.ndarray:
    """Edge width ``|M^T n|`` (mm) for unit world normals ``n`` (3, ...)."""
    return np.sqrt((np.tensordot(m_edge.T, n_world, axes=1) ** 2).sum(axis=0))


def _ellipsoid_occupancy(y: np.ndarray, axes: np.ndarray, rotation: np.ndarray, m_edge: np.ndarray) -> np.ndarray:
    """Occupancy of the ellipsoid ``|y / axes| <= 1`` at local points ``y`` (3, ...)."""
    a = axes.reshape((3,) + (1,) * (y.ndim - 1))
    g = np.sqrt(((y / a) ** 2).sum(axis=0))
    grad = y / a**2  # grad of g, times g
    norm = np.maximum(np.sqrt((grad**2).sum(axis=0)), 1e-12)
    d = (g - 1.0) * g / norm
    n_world = np.tensordot(rotation, grad / norm, axes=1)  # unit normal, world
    return _ramp(d, _normal_width(n_world, m_edge))


def _septum_occupancy(y: np.ndarray, s: Structure, m_edge: np.ndarray) -> np.ndarray:
    """Occupancy of a foam's septa at local points ``y`` (3, ...): slabs of thickness ``s.thickness_mm``
    centred on the bisector plane of each point's nearest two seeds (module docstring)."""
    seeds = np.asarray(s.seeds_mm, float).reshape(-1, 3)
    if len(seeds) < 2:
        return np.zeros(y.shape[1:])
    points = y.reshape(3, -1).T
    dist, idx = cKDTree(seeds).query(points, k=2)
    gap = seeds[idx[:, 1]] - seeds[idx[:, 0]]
    length = np.maximum(np.linalg.norm(gap, axis=1), 1e-12)
    u = (dist[:, 1] ** 2 - dist[:, 0] ** 2) / (2 * length)  # distance to the bisector plane, >= 0
    width = _normal_width(s.rotation @ (gap / length[:, None]).T, m_edge)
    half = s.thickness_mm / 2
    return (_ramp(u - half, width) - _ramp(u + half, width)).reshape(y.shape[1:])


def occupancy(structure: Structure, ct: Volume, edge_voxels: float = 1.0
              ) -> tuple[tuple[slice, slice, slice], np.ndarray]:
    """Partial-volume occupancy in [0, 1] of ``structure`` on the voxels of ``ct`` (module docstring).

    Parameters
    ----------
    structure : Structure
    ct : Volume
        The grid (its data is not read).
    edge_voxels : float
        Edge width in voxels along the surface normal.

    Returns
    -------
    box : tuple of slice
        The voxel box holding the structure (clipped to the grid; empty slices when it misses it).
    weight : ndarray
        float64 occupancy on ``box``.
    """
    m = ct.affine[:3, :3]
    reach = edge_voxels * float(np.linalg.norm(m, axis=0).max())  # beyond it the ramp is 0
    half = structure.half_extent_mm() + reach
    corners = structure.center_mm + half * np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1)
                                                     for sz in (-1, 1)])
    ijk = ct.world_to_voxel(corners)
    lo = np.clip(np.floor(ijk.min(axis=0)).astype(int), 0, ct.shape)
    hi = np.clip(np.ceil(ijk.max(axis=0)).astype(int) + 1, 0, ct.shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    grid = np.stack(np.meshgrid(*(np.arange(s.start, s.stop, dtype=np.float64) for s in box), indexing="ij"))
    # local coordinates y = R^T (x - c) of the voxel centres x, in one product (a large shell's box holds millions)
    y = np.tensordot(structure.rotation.T @ m, grid, axes=1)
    y += (structure.rotation.T @ (ct.affine[:3, 3] - structure.center_mm))[:, None, None, None]
    del grid
    return box, _local_occupancy(structure, y, edge_voxels * m)


def _local_occupancy(s: Structure, y: np.ndarray, m_edge: np.ndarray) -> np.ndarray:
    """Occupancy at local points ``y`` (3, ...); ``m_edge``: the affine's 3 x 3 part times ``edge_voxels``."""
    r, axes = s.rotation, s.semi_axes_mm
    if s.kind == "ellipsoid":
        return _ellipsoid_occupancy(y, axes, r, m_edge)
    if s.kind == "shell":
        w = _ellipsoid_occupancy(y, axes, r, m_edge)
        w *= 1.0 - _ellipsoid_occupancy(y, axes - s.thickness_mm, r, m_edge)
        if s.clip is not None:
            n, h = s.clip[:3], s.clip[3]
            w *= _ramp(np.tensordot(n, y, axes=1) - h, np.linalg.norm(m_edge.T @ (r @ n)))
        return w
    if s.kind == "cylinder":
        rho = np.hypot(y[0], y[1])
        radial = np.stack([y[0], y[1], np.zeros_like(y[0])]) / np.maximum(rho, 1e-12)
        w_side = _ramp(rho - axes[0], _normal_width(np.tensordot(r, radial, axes=1), m_edge))
        return w_side * _ramp(np.abs(y[2]) - axes[2], np.linalg.norm(m_edge.T @ r[:, 2]))
    if s.kind == "foam":
        return _ellipsoid_occupancy(y, axes, r, m_edge) * (1.0 - _septum_occupancy(y, s, m_edge))
    raise InputError(f"distractors: unknown structure kind {s.kind!r}")


def body_mask(ct: Volume) -> np.ndarray:
    """Voxels above :data:`BODY_MIN_HU` with the holes of each axial slice filled (lungs, airways).

    The axial axis is the array axis closest to world z; filling slice by slice keeps an airway that
    leaves the volume through its top or bottom face inside the body.
    """
    z_axis = int(np.argmax(np.abs(ct.affine[2, :3]) / np.linalg.norm(ct.affine[:3, :3], axis=0)))
    structure = np.zeros((3, 3, 3), bool)
    structure[tuple(slice(None) if a != z_axis else 1 for a in range(3))] = ndimage.generate_binary_structure(2, 1)
    return ndimage.binary_fill_holes(np.asarray(ct.data) > BODY_MIN_HU, structure=structure)


def _uniform(rng: np.random.Generator, interval: Interval, size: int | None = None) -> np.ndarray | float:
    return rng.uniform(interval[0], interval[1], size)


def _centre(rng: np.random.Generator, ct: Volume, candidates: np.ndarray) -> np.ndarray:
    """World centre of a random candidate voxel (flat indices), uniform within the voxel."""
    ijk = np.array(np.unravel_index(candidates[rng.integers(candidates.size)], ct.shape), float)
    return ct.voxel_to_world(ijk + rng.uniform(-0.5, 0.5, 3))


def draw_structures(ct: Volume, params: Distractors, body: np.ndarray | None = None) -> list[Structure]:
    """The structures of ``params`` for ``ct`` (HU), a pure function of ``params.seed`` and the CT.

    Shells, then bones, then cavities, then foams; each draws its centre, its orientation (uniform on
    SO(3)) and its sizes and HU from the ranges. A bone with a cortex is two structures: the bone at the
    cortex's HU, then its core (the same kind, semi-axes smaller by the cortex, the cylinder's length by
    twice it) at the core's HU; solid bones draw nothing more (their draws are those from before cortices).
    Without body voxels (or soft-tissue voxels, for cavities) a kind gets no structure. A foam is two
    structures: a bone ellipsoid, then a ``foam`` of air cells inside it, smaller by the septum thickness
    (its outer wall), with as many cells as cells of the drawn mean diameter fill it (at least 2, at most
    :data:`MAX_FOAM_CELLS`), seeds uniform in it.
    """
    rng = np.random.default_rng(params.seed)
    body = body_mask(ct) if body is None else body
    inside = np.flatnonzero(body)
    hu = np.asarray(ct.data).ravel()
    soft = inside[(hu[inside] > SOFT_TISSUE_HU[0]) & (hu[inside] < SOFT_TISSUE_HU[1])]
    out: list[Structure] = []
    for _ in range(params.shells if inside.size else 0):
        centre, rot = _centre(rng, ct, inside), Rotation.random(random_state=rng).as_matrix()
        axes = np.asarray(_uniform(rng, params.shell_semi_axis_mm, 3))
        thickness, value = float(_uniform(rng, params.shell_thickness_mm)), float(_uniform(rng, params.shell_hu))
        clip = None
        if rng.random() < params.shell_open_fraction:  # a plane through the inner half: an open shell or plate
            n = rng.standard_normal(3)
            clip = np.append(n / np.linalg.norm(n), rng.uniform(-0.5, 0.5) * axes.min())
        out.append(Structure("shell", centre, rot, axes, value, thickness, clip))
    for _ in range(params.bones if inside.size else 0):
        centre, rot = _centre(rng, ct, inside), Rotation.random(random_state=rng).as_matrix()
        if rng.random() < 0.5:
            axes = np.asarray(_uniform(rng, params.bone_radius_mm, 3))
            kind = "ellipsoid"
        else:
            radius = float(_uniform(rng, params.bone_radius_mm))
            axes = np.array([radius, radius, float(_uniform(rng, params.bone_length_mm)) / 2])
            kind = "cylinder"
        out.append(Structure(kind, centre, rot, axes, float(_uniform(rng, params.bone_hu))))
        if params.bone_cortex_mm[1] > 0:
            cortex = min(float(_uniform(rng, params.bone_cortex_mm)), axes.min() / 2)
            out.append(Structure(kind, centre, rot, axes - cortex, float(_uniform(rng, params.bone_core_hu))))
    for _ in range(params.cavities if soft.size else 0):
        centre, rot = _centre(rng, ct, soft), Rotation.random(random_state=rng).as_matrix()
        axes = np.asarray(_uniform(rng, params.cavity_semi_axis_mm, 3))
        out.append(Structure("ellipsoid", centre, rot, axes, float(_uniform(rng, params.cavity_hu))))
    for _ in range(params.foams if inside.size else 0):
        centre, rot = _centre(rng, ct, inside), Rotation.random(random_state=rng).as_matrix()
        axes = np.asarray(_uniform(rng, params.foam_semi_axis_mm, 3))
        cell, septum = float(_uniform(rng, params.foam_cell_mm)), float(_uniform(rng, params.foam_septum_mm))
        out.append(Structure("ellipsoid", centre, rot, axes, float(_uniform(rng, params.foam_hu))))
        inner = axes - septum
        n = int(np.clip(round(float(np.prod(inner)) / (cell / 2) ** 3), 2, MAX_FOAM_CELLS))
        u = rng.standard_normal((n, 3))
        u *= rng.uniform(size=(n, 1)) ** (1 / 3) / np.linalg.norm(u, axis=1, keepdims=True)
        out.append(Structure("foam", centre, rot, inner, float(_uniform(rng, params.cavity_hu)), septum,
                             seeds_mm=u * inner))
    return out


def paint(hu: np.ndarray, grid: Volume, structure: Structure, edge_voxels: float = 1.0,
          within: np.ndarray | None = None) -> tuple[tuple[slice, slice, slice], np.ndarray]:
    """Paint ``structure`` into ``hu`` (on the grid of ``grid``) in place: ``HU <- HU + w (HU_s - HU)``.

    Parameters
    ----------
    hu : ndarray
        float32 HU on the grid of ``grid``, modified in place.
    grid : Volume
        The grid (its data is not read).
    structure : Structure
    edge_voxels : float
        Edge width in voxels along the surface normal.
    within : ndarray of bool, optional
        Paint only there (e.g. the body mask).

    Returns
    -------
    box, weight
        The voxel box and the occupancy painted on it (``within`` applied).
    """
    box, w = occupancy(structure, grid, edge_voxels)
    if within is not None:
        w = w * within[box]
    hu[box] += (w * (structure.hu - hu[box])).astype(np.float32)
    return box, w


def add_distractors(ct: Volume, labels: Volume | None, params: Distractors) -> tuple[Volume, Volume | None]:
    """``ct`` (HU) and its label map with the structures of ``params`` added (module docstring).

    Returns
    -------
    ct, labels : Volume
        New volumes on the same grid (float32 HU; labels in their dtype, 0 where a structure occupies a
        voxel by more than half), without material maps.
    """
    if labels is not None and labels.shape != ct.shape:
        raise InputError(f"{ct.name}: label map shape {labels.shape} differs from the CT's {ct.shape}")
    body = body_mask(ct)
    hu = np.array(ct.data, dtype=np.float32)
    out_labels = None if labels is None else np.array(labels.data)
    for structure in draw_structures(ct, params, body):
        box, w = paint(hu, ct, structure, params.edge_voxels, body)
        if out_labels is not None:
            out_labels[box][w > 0.5] = 0
    return (Volume(hu, ct.affine.copy(), {}, ct.name),
            None if labels is None else Volume(out_labels, labels.affine.copy(), {}, labels.name))
