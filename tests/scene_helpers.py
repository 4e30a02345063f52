"""Small synthetic scenes for the tests/test_scene_*.py files (numpy CTs in HU, hand-made trees)."""

from __future__ import annotations

import numpy as np

from ddsa_sim.geometry.carm import CArm
from ddsa_sim.physics.blur import BlurSettings
from ddsa_sim.physics.heel import HeelSettings
from ddsa_sim.scene import Scene
from ddsa_sim.scene.recording import ScatterSettings
from ddsa_sim.scene.vessels import TreeVessels
from ddsa_sim.volumes import Volume, from_array
from vessel_models.tree import VesselTree

#: No focal-spot or detector blur.
SHARP = BlurSettings(focal_spot_mm=0.0, detector_mtf50_cycles_per_mm=None)


def cylinder_ct(n: int = 48, spacing_mm: float = 5.0, bone_rods: bool = True) -> Volume:
    """Water cylinder (0 HU, axis along world z) in air, optional bone rods (1000 HU), centred at 0."""
    hu = np.full((n, n, n), -1000.0, np.float32)
    i, j, _k = np.indices(hu.shape)
    c = (n - 1) / 2
    hu[(i - c) ** 2 + (j - c) ** 2 < (0.42 * n) ** 2] = 0.0
    if bone_rods:
        for di, dj in ((0.15, 0.1), (-0.2, 0.05), (0.05, -0.22)):
            hu[(i - c - di * n) ** 2 + (j - c - dj * n) ** 2 < (0.05 * n) ** 2] = 1000.0
        hu[:, :, ::6] = np.where(hu[:, :, ::6] > -500, 300.0, hu[:, :, ::6])  # rib-like plates along z
    aff = np.diag([spacing_mm, spacing_mm, spacing_mm, 1.0])
    aff[:3, 3] = -c * spacing_mm
    return from_array(hu, aff, "cylinder")


def slab_ct(thickness_mm: float, width_mm: float = 480.0) -> Volume:
    """A uniform 0 HU slab, ``thickness_mm`` along world y (the beam at alpha = beta = 0), centred at 0."""
    sx, sy = 10.0, 5.0
    nx, ny = int(width_mm / sx), round(thickness_mm / sy)
    hu = np.zeros((nx, ny, nx), np.float32)
    aff = np.diag([sx, sy, sx, 1.0])
    aff[:3, 3] = -np.array([(nx - 1) / 2 * sx, (ny - 1) / 2 * sy, (nx - 1) / 2 * sx])
    return from_array(hu, aff, f"slab{thickness_mm:g}")


def y_tree(radius_mm: float = 2.0, length_mm: float = 40.0) -> VesselTree:
    """A trunk along world z (perpendicular to the alpha = beta = 0 beam) with two side branches."""
    z = np.linspace(-length_mm / 2, length_mm / 2, 9)
    trunk = np.column_stack([np.zeros_like(z), np.zeros_like(z), z])
    b1 = np.array([[6.0, 0.0, 8.0], [12.0, 0.0, 14.0], [18.0, 0.0, 20.0]])
    b2 = np.array([[-6.0, 0.0, 4.0], [-12.0, 0.0, 8.0]])
    pos = np.vstack([trunk, b1, b2])
    parents = [-1] + list(range(8)) + [4, 9, 10] + [2, 12]
    radii = [radius_mm] * 9 + [1.2] * 3 + [1.0] * 2
    bids = [0] * 9 + [1] * 3 + [2] * 2
    gens = [0] * 9 + [1] * 5
    return VesselTree(pos, np.array(radii), np.array(parents), np.array(bids), np.array(gens))


def small_carm(size: int = 64, pixel_mm: float = 3.0, **pose) -> CArm:
    return CArm(sensor_height=size, sensor_width=size, pixel_mm=pixel_mm, **pose)


def make_scene(ct: Volume | None = None, tree: VesselTree | None = None, **kwargs) -> Scene:
    kwargs.setdefault("scatter", ScatterSettings(enabled=False))
    kwargs.setdefault("blur", SHARP)  # exact-target tests; blur itself: tests/test_physics_blur.py
    kwargs.setdefault("heel", HeelSettings(enabled=False))  # the heel effect: tests/test_physics_heel.py
    kwargs.setdefault("noise", False)
    return Scene(ct if ct is not None else cylinder_ct(), [TreeVessels(tree or y_tree(), spacing_mm=0.5)], **kwargs)


#: Head phantom (world LPS mm): intracranial ellipsoid centre and semi-axes, skull and scalp thickness.
HEAD_CENTRE_MM = np.array([5.0, -10.0, 20.0])
HEAD_BRAIN_SEMI_AXES_MM = np.array([68.0, 86.0, 62.0])
HEAD_SKULL_MM, HEAD_SCALP_MM = 7.0, 6.0


def head_hu(world_mm: np.ndarray, orbits: bool = False) -> np.ndarray:
    """HU of the head phantom at world points ``(..., 3)``: brain 35, skull shell 1200 with a foramen
    magnum, scalp, face and neck 30 (a spine of 700), air -1000 elsewhere; with ``orbits`` two 15 mm holes through
    the skull in front, their centres 30 mm either side of the midline and 15 mm below the brain's centre (the
    skull's axial sections are open rings from 30 mm to 0 mm below it)."""
    r = world_mm - HEAD_CENTRE_MM

    def rho(extra_mm: float) -> np.ndarray:
        return np.sqrt((((r) / (HEAD_BRAIN_SEMI_AXES_MM + extra_mm)) ** 2).sum(axis=-1))

    hu = np.full(world_mm.shape[:-1], -1000.0, np.float32)
    neck = (r[..., 2] < -40.0) & (r[..., 0] ** 2 + (r[..., 1] - 10.0) ** 2 < 60.0**2)
    face = ((r - np.array([0.0, -40.0, -70.0])) / np.array([70.0, 60.0, 60.0])) ** 2  # face and jaw
    hu[neck | (rho(HEAD_SKULL_MM + HEAD_SCALP_MM) < 1) | (face.sum(axis=-1) < 1)] = 30.0
    hu[rho(HEAD_SKULL_MM) < 1] = 1200.0
    hu[rho(0.0) < 1] = 35.0
    foramen = (r[..., 2] < -40.0) & (r[..., 0] ** 2 + (r[..., 1] - 10.0) ** 2 < 16.0**2)
    hu[foramen & (rho(HEAD_SKULL_MM) < 1)] = 30.0
    if orbits:
        for side in (-1.0, 1.0):
            hole = (r[..., 1] < 0) & ((r[..., 0] - 30.0 * side) ** 2 + (r[..., 2] + 15.0) ** 2 < 15.0**2)
            hu[hole & (rho(HEAD_SKULL_MM) < 1) & ~(rho(0.0) < 1)] = 30.0
    hu[neck & (r[..., 0] ** 2 + (r[..., 1] - 30.0) ** 2 < 12.0**2) & ~(rho(0.0) < 1)] = 700.0
    return hu


def head_ct(orientation: np.ndarray | None = None, spacing_mm: float = 2.5, orbits: bool = False) -> Volume:
    """The head phantom (:func:`head_hu`, ``orbits`` as there) sampled on a grid whose voxel axes are ``orientation``
    (3x3 orthonormal: columns = world directions of the voxel axes; default identity), covering the
    same world box (x -100..110, y -125..105, z -170..100 mm) whatever the orientation."""
    m = np.eye(3) if orientation is None else np.asarray(orientation, dtype=np.float64)
    box = np.array([[-100.0, 110.0], [-125.0, 105.0], [-170.0, 100.0]])
    corners = np.array([[box[0, a], box[1, b], box[2, c]] for a in (0, 1) for b in (0, 1) for c in (0, 1)])
    local = corners @ m  # world -> voxel-axis coordinates (m orthonormal)
    lo, hi = local.min(axis=0), local.max(axis=0)
    shape = tuple(int(np.ceil((hi[k] - lo[k]) / spacing_mm)) + 1 for k in range(3))
    aff = np.eye(4)
    aff[:3, :3] = m * spacing_mm
    aff[:3, 3] = m @ lo
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1).astype(np.float64)
    world = ijk @ aff[:3, :3].T + aff[:3, 3]
    return from_array(head_hu(world, orbits), aff, "head-phantom")


def run_cli(argv: list[str]) -> int:
    """``ddsa-sim ARGV`` in this process; its exit code."""
    from ddsa_sim.cli import main

    try:
        main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def signed_distance_near(mask: np.ndarray, affine: np.ndarray, margin_mm: float = 40.0):
    """Signed distance (mm; positive outside) of ``mask`` (bool on a grid of ``affine``), read trilinearly at world
    points (N, 3) mm by the returned function: scipy's Euclidean distance transforms on the mask's bounding box grown
    by ``margin_mm``, where they equal the whole grid's (the mask lies in the box, and so does the nearest voxel
    outside it of any voxel inside), at a fraction of the cost on a CT; a point outside the box fails the test."""
    from scipy import ndimage

    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    found = np.argwhere(mask)
    lo = np.maximum(found.min(axis=0) - np.ceil(margin_mm / spacing).astype(int), 0)
    hi = np.minimum(found.max(axis=0) + np.ceil(margin_mm / spacing).astype(int) + 1, mask.shape)
    box = mask[tuple(slice(a, b) for a, b in zip(lo, hi))]
    signed = ndimage.distance_transform_edt(~box, sampling=spacing) - ndimage.distance_transform_edt(box,
                                                                                                      sampling=spacing)
    inv = np.linalg.inv(affine)

    def read(world: np.ndarray) -> np.ndarray:
        ijk = np.atleast_2d(world) @ inv[:3, :3].T + inv[:3, 3] - lo
        assert np.all((ijk >= 0) & (ijk <= np.array(box.shape) - 1)), "points outside the distance map's box"
        return ndimage.map_coordinates(signed, ijk.T, order=1)

    return read
