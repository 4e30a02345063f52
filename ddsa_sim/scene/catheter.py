"""A diagnostic catheter: a radiopaque tube along the feeding artery up to the injection site.

The catheter's centreline follows the feeding artery of the tree: the tree's ``feeding_path_mm``
metadata (the template's upstream centreline, e.g. the common carotid of an ICA injection, the
ascending aorta of a coronary injection) or, without it, the tree's root direction reversed; before it,
where the CT has labelled arteries, the way in through them (:mod:`ddsa_sim.scene.catheter_route`: up the
descending aorta, over the arch, into a branch); from the first point it runs straight on, backwards, until it leaves
the body's outline (the catheter comes from outside the imaged volume), and it ends ``tip_offset_mm``
proximal to the tree's root (the injection site). Corners are rounded (Chaikin corner cutting), as a catheter bends smoothly.

The tube (outer diameter ``french / 3`` mm, wall ``wall_mm``, open tip) is voxelized with the vessel
voxelizer (:func:`vessel_models.voxelize.voxelize_tree`, partial volumes) on a grid aligned with the
path's principal axes, and enters the projector as two tools
(:meth:`ddsa_sim.projector.ProjectorVolume.tool`) that displace the material the vessels displace:

- ``catheter``: the wall, material ``"catheter wall"`` (nylon 6 with 30 wt% BaSO4,
  :data:`ddsa_sim.physics.attenuation.MATERIALS`), in the mask and every contrast frame;
- ``catheter_lumen``: the injected agent at its stock concentration (iohexol 350 mgI/ml) in the
  contrast frames only; in the mask the lumen holds what the vessel around it holds (the displaced
  material: the CT's blood, or soft tissue).

So the wall subtracts exactly in the DSA and the lumen's contrast remains (docs/vessels.md §5b).
Under cardiac and respiratory motion the catheter is re-voxelized with its centreline moved
(:meth:`Catheter.moved`): the render blends the tree's displacement at the tip with the CT's along
its length by :func:`tip_weights` (docs/dsa.md §4.1). Lengths in mm, world frame LPS.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ddsa_sim import InputError
from ddsa_sim.physics.attenuation import Material, get_material
from ddsa_sim.projector import ProjectorVolume
from vessel_models.tree import VesselInputError, VesselTree
from vessel_models.voxelize import voxelize_tree

__all__ = ["FOLLOW_LENGTH_MM", "LUMEN_NAME", "MM_PER_FRENCH", "WALL_MATERIAL", "WALL_NAME", "Catheter",
           "CatheterSpec", "build_catheter", "catheter_centerline", "tip_weights"]

#: One French (Charrière) unit is 1/3 mm of outer diameter.
MM_PER_FRENCH = 1.0 / 3.0
#: Projector volume names of the wall and of the lumen's contrast.
WALL_NAME = "catheter"
LUMEN_NAME = "catheter_lumen"
#: Material of the wall (physics.attenuation name).
WALL_MATERIAL = "catheter wall"
#: Length (mm) proximal to the tip over which the catheter follows the tree it injects (raised cosine
#: from 1 at the tip to 0): the ostium and the aortic root, which move with the heart's base, and no
#: more of the ascending aorta, which the CT holds still (docs/dsa.md §4.1; our choice).
FOLLOW_LENGTH_MM = 30.0


@dataclass(frozen=True)
class CatheterSpec:
    """A catheter's size and where its tip sits.

    Parameters
    ----------
    french : float
        Outer diameter in French (1 F = 1/3 mm); diagnostic catheters are 4-6 F.
    wall_mm : float
        Wall thickness (mm); 0.25 mm gives a 5 F catheter a 1.17 mm (0.046") lumen.
    tip_offset_mm : float
        Distance of the tip proximal to the injection site (the tree's root), along the path (mm).
    spacing_mm : float
        Voxel size of the catheter's grid (mm), coarsened when the grid would exceed ``max_voxels``.
    max_voxels : int
        Bound on the grid's voxel count.
    field : str
        Option / config field named in error messages.
    """

    french: float = 5.0
    wall_mm: float = 0.25
    tip_offset_mm: float = 3.0
    spacing_mm: float = 0.1
    max_voxels: int = 8_000_000
    field: str = "catheter"

    @property
    def outer_radius_mm(self) -> float:
        return 0.5 * self.french * MM_PER_FRENCH

    @property
    def inner_radius_mm(self) -> float:
        return self.outer_radius_mm - self.wall_mm

    def validate(self) -> "CatheterSpec":
        """Raise InputError on a size that is not a tube."""
        for name in ("french", "wall_mm", "spacing_mm"):
            v = getattr(self, name)
            if not (np.isfinite(v) and v > 0):
                raise InputError(f"{self.field}: {name} must be a positive number, got {v!r}")
        if not (np.isfinite(self.tip_offset_mm) and self.tip_offset_mm >= 0):
            raise InputError(f"{self.field}: tip_offset_mm must be >= 0, got {self.tip_offset_mm!r}")
        if self.inner_radius_mm <= 0:
            raise InputError(f"{self.field}: wall_mm {self.wall_mm:g} leaves no lumen in a {self.french:g} F catheter "
                             f"(outer radius {self.outer_radius_mm:.3f} mm)")
        return self


def _root_direction(tree: VesselTree, reach_mm: float = 5.0) -> np.ndarray:
    """Unit direction of flow at the root (:meth:`~vessel_models.tree.VesselTree.root_direction`)."""
    try:
        return tree.root_direction(reach_mm)
    except VesselInputError:
        raise InputError("catheter: the vessel tree has no extent at its root to follow") from None


def _chaikin(points: np.ndarray, iterations: int = 3) -> np.ndarray:
    """Corner cutting (each edge -> its 1/4 and 3/4 points), end points kept."""
    p = points
    for _ in range(iterations):
        if len(p) < 3:
            return p
        q = np.empty((2 * (len(p) - 1), 3))
        q[0::2] = 0.75 * p[:-1] + 0.25 * p[1:]
        q[1::2] = 0.25 * p[:-1] + 0.75 * p[1:]
        p = np.vstack([p[:1], q[1:-1], p[-1:]])
    return p


def _cut_back(points: np.ndarray, length_mm: float) -> np.ndarray | None:
    """The polyline shortened by ``length_mm`` at its end (at least its first segment's start kept); None when it is
    no longer than that."""
    seg = np.linalg.norm(np.diff(points, axis=0), axis=1)
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    end = cum[-1] - length_mm
    if end <= 0:
        return None
    k = int(np.searchsorted(cum, end, side="right"))
    t = (end - cum[k - 1]) / seg[k - 1]
    return np.vstack([points[:k], points[k - 1] + t * (points[k] - points[k - 1])])


def catheter_centerline(tree: VesselTree, inside: np.ndarray, affine: np.ndarray, tip_offset_mm: float = 3.0,
                        step_mm: float = 1.0, max_length_mm: float = 600.0,
                        route: np.ndarray | None = None) -> np.ndarray | None:
    """The catheter's centreline (K, 3) in world mm, from where it enters the body to its tip; None when the tree's
    root (the injection site) lies outside the grid of ``inside`` (the CT), or so near where the way back leaves it
    (a head scan cut just below the root) that its path inside is no longer than ``tip_offset_mm``: no catheter
    would be seen.

    Parameters
    ----------
    tree : VesselTree
        The placed tree (world mm); ``metadata["feeding_path_mm"]`` (upstream points, ending at the
        root, in the same frame as the tree) is followed when present.
    inside : (I, J, K) bool
        The body (or the region the catheter may run in) on a grid.
    affine : (4, 4) float
        Voxel index of ``inside`` -> world mm.
    tip_offset_mm : float
        Tip distance proximal to the root (mm).
    step_mm, max_length_mm : float
        Step and bound of the straight run out of the body (mm).
    route : (R, 3) float or None
        The way in through a labelled artery (:meth:`~ddsa_sim.scene.catheter_route.ArteryRoutes.route`), from
        where it leaves the CT to a point near the feeding path's first point: put before the feeding path,
        and the straight run continues from its first point.
    """
    root = tree.positions_mm[0]
    feeding = np.asarray(tree.metadata.get("feeding_path_mm") or np.empty((0, 3)), dtype=np.float64).reshape(-1, 3)
    if route is not None and len(route) > 1:
        feeding = np.vstack([route, feeding])
    points = np.vstack([feeding, root]) if len(feeding) else np.vstack([root - _root_direction(tree), root])
    keep = np.concatenate([[True], np.linalg.norm(np.diff(points, axis=0), axis=1) > 1e-6])
    points = points[keep]
    if len(points) < 2:
        points = np.vstack([root - _root_direction(tree), root])
    out = (points[0] - points[1]) / np.linalg.norm(points[0] - points[1])
    inv = np.linalg.inv(np.asarray(affine, dtype=np.float64))
    ijk = np.rint(inv[:3, :3] @ root + inv[:3, 3]).astype(int)
    if np.any(ijk < 0) or np.any(ijk >= inside.shape):
        return None  # the injection site is outside the CT (a head scan cut above the neck): nothing to draw
    run = points[0]
    for _ in range(int(max_length_mm / step_mm)):  # straight on, out of the body
        nxt = run + step_mm * out
        ijk = np.rint(inv[:3, :3] @ nxt + inv[:3, 3]).astype(int)
        if np.any(ijk < 0) or np.any(ijk >= inside.shape) or not inside[tuple(ijk)]:
            break
        run = nxt
    if np.linalg.norm(run - points[0]) > 0:
        points = np.vstack([run, points])
    inside_part = _cut_back(points, tip_offset_mm)  # None: the root at the body's or the CT's edge, nothing inside
    return None if inside_part is None else _chaikin(inside_part)


def tip_weights(centerline_mm: np.ndarray, length_mm: float = FOLLOW_LENGTH_MM) -> np.ndarray:
    """Weight (K,) of each centreline point's following of the tip: ``(1 + cos(pi u / length_mm)) / 2``
    at arc length ``u`` (mm) proximal to the tip (the last point), 0 beyond ``length_mm``."""
    pts = np.asarray(centerline_mm, dtype=np.float64)
    seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
    u = np.concatenate([np.cumsum(seg[::-1])[::-1], [0.0]])
    return 0.5 * (1.0 + np.cos(np.pi * np.minimum(u, length_mm) / length_mm))  # cos(pi) = -1: 0 beyond


def _chain(points: np.ndarray, radius_mm: float) -> VesselTree:
    n = len(points)
    return VesselTree(points, np.full(n, radius_mm), np.arange(-1, n - 1), np.zeros(n, np.int64),
                      np.zeros(n, np.int64), {"generator": "catheter"})


def _aligned_grid(points: np.ndarray, margin_mm: float, spacing_mm: float,
                  max_voxels: int) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Voxel grid along the principal axes of ``points`` enclosing them plus ``margin_mm``."""
    centre = points.mean(axis=0)
    _, _, vt = np.linalg.svd(points - centre, full_matrices=True)
    axes = vt.T
    if np.linalg.det(axes) < 0:
        axes[:, 2] *= -1
    local = (points - centre) @ axes
    lo, hi = local.min(axis=0) - margin_mm, local.max(axis=0) + margin_mm
    n = np.prod(np.ceil((hi - lo) / spacing_mm) + 1)
    if n > max_voxels:
        spacing_mm *= (n / max_voxels) ** (1.0 / 3.0) * 1.01
    shape = tuple(int(v) for v in np.ceil((hi - lo) / spacing_mm) + 1)
    affine = np.eye(4)
    affine[:3, :3] = axes * spacing_mm
    affine[:3, 3] = centre + axes @ lo
    return affine, shape


@dataclass
class Catheter:
    """A voxelized catheter: wall and lumen fractions on one grid, its projector volumes built once.

    Attributes
    ----------
    centerline_mm : (K, 3) float
        Entry point first, tip last (world mm).
    spec : CatheterSpec
    wall_fraction, lumen_fraction : (I, J, K) float32
        Fraction of each voxel inside the wall / the lumen.
    affine : (4, 4) float
        Voxel index -> world mm.
    """

    centerline_mm: np.ndarray
    spec: CatheterSpec
    wall_fraction: np.ndarray
    lumen_fraction: np.ndarray
    affine: np.ndarray
    _volumes: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def moved(self, displacement_mm: np.ndarray) -> "Catheter":
        """This catheter with its centreline points moved by ``displacement_mm`` ((K, 3) mm) and
        re-voxelized (the tube keeps its calibre); itself when nothing moves."""
        d = np.asarray(displacement_mm, dtype=np.float64)
        if d.shape != self.centerline_mm.shape:
            raise InputError(f"{self.spec.field}: displacement of shape {d.shape} for a centreline of shape "
                             f"{self.centerline_mm.shape}")
        return self if not np.any(d) else build_catheter(self.centerline_mm + d, self.spec)

    def wall_volume(self, displaced: str, name: str = WALL_NAME) -> ProjectorVolume:
        """The wall (``"catheter wall"``) as volume ``name``, displacing ``displaced`` at its nominal density."""
        key = (name, displaced)
        if key not in self._volumes:
            self._volumes[key] = ProjectorVolume.tool(
                name, self.wall_fraction, self.affine, WALL_MATERIAL, get_material(WALL_MATERIAL).density_g_per_cc,
                displaced, get_material(displaced).density_g_per_cc)
        return self._volumes[key]

    def lumen_volume(self, agent: Material, displaced: str, name: str = LUMEN_NAME) -> ProjectorVolume:
        """The lumen full of ``agent`` (the stock solution) as volume ``name``, displacing ``displaced``."""
        key = (name, agent.name, displaced)
        if key not in self._volumes:
            self._volumes[key] = ProjectorVolume.tool(
                name, self.lumen_fraction, self.affine, agent.name, agent.density_g_per_cc,
                displaced, get_material(displaced).density_g_per_cc)
        return self._volumes[key]

    def to_dict(self) -> dict:
        """JSON-safe description (size, material, tip and entry points)."""
        return {"french": self.spec.french, "outer_diameter_mm": 2 * self.spec.outer_radius_mm,
                "inner_diameter_mm": 2 * self.spec.inner_radius_mm, "wall_material": WALL_MATERIAL,
                "entry_mm": self.centerline_mm[0].tolist(), "tip_mm": self.centerline_mm[-1].tolist()}


def build_catheter(centerline_mm: np.ndarray, spec: CatheterSpec) -> Catheter:
    """Voxelize the tube of ``spec`` around ``centerline_mm`` (open at the tip, entry end as it falls)."""
    spec = spec.validate()
    pts = np.asarray(centerline_mm, dtype=np.float64)
    r_out, r_in = spec.outer_radius_mm, spec.inner_radius_mm
    affine, shape = _aligned_grid(pts, r_out + 2 * spec.spacing_mm, spec.spacing_mm, spec.max_voxels)
    outer = voxelize_tree(_chain(pts, r_out), affine, shape)
    tip_dir = (pts[-1] - pts[-2]) / np.linalg.norm(pts[-1] - pts[-2])
    open_tip = np.vstack([pts, pts[-1] + 2 * r_out * tip_dir])  # the lumen runs through the tip's cap
    lumen = np.minimum(voxelize_tree(_chain(open_tip, r_in), affine, shape), outer)
    wall = np.clip(outer - lumen, 0.0, 1.0).astype(np.float32)
    return Catheter(pts, spec, wall, lumen.astype(np.float32), affine)
