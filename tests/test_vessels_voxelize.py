"""Voxelization of vessel trees against independent analytic / Monte-Carlo volumes."""

from __future__ import annotations

import numpy as np
import pytest

from vessel_models.tree import VesselInputError, VesselTree
from vessel_models.voxelize import grid_around_tree, voxelize_tree


def _line_tree(p0, p1, r0, r1) -> VesselTree:
    return VesselTree(
        np.array([p0, p1], dtype=float), np.array([r0, r1], dtype=float),
        np.array([-1, 0]), np.zeros(2, dtype=int), np.zeros(2, dtype=int),
    )


def _round_cone_volume(length: float, r0: float, r1: float) -> float:
    """Volume of the convex hull of two spheres (solid of revolution, by parts).

    Profile: a spherical cap of sphere 0 up to its tangent circle, a frustum between the
    two tangent circles, and a cap of sphere 1.
    """
    s = (r0 - r1) / length
    c = np.sqrt(1.0 - s * s)

    def cap(h: float, r: float) -> float:
        return np.pi * h * h * (3.0 * r - h) / 3.0

    h_frustum = length + (r1 - r0) * s
    a, b = r0 * c, r1 * c
    return cap(r0 * (1 + s), r0) + cap(r1 * (1 - s), r1) + np.pi * h_frustum / 3.0 * (a * a + a * b + b * b)


def _voxel_volume(affine: np.ndarray) -> float:
    return abs(float(np.linalg.det(affine[:3, :3])))


def test_straight_cylinder_capsule_volume_within_2_percent():
    p0, p1, r = (0.13, -0.21, 0.05), (9.0, 4.0, -3.0), 1.2
    tree = _line_tree(p0, p1, r, r)
    length = float(np.linalg.norm(np.subtract(p1, p0)))
    truth = np.pi * r * r * length + 4.0 / 3.0 * np.pi * r**3
    affine, shape = grid_around_tree(tree, 0.2, margin_mm=0.5)
    vol = voxelize_tree(tree, affine, shape)
    assert vol.dtype == np.float32 and vol.shape == shape
    assert 0.0 <= vol.min() and vol.max() <= 1.0
    assert vol.sum() * _voxel_volume(affine) == pytest.approx(truth, rel=0.02)
    # partial-volume voxels exist (anti-aliasing), far corners are exactly empty
    assert np.count_nonzero((vol > 0.05) & (vol < 0.95)) > 100
    assert vol[0, 0, 0] == 0.0 and vol[-1, -1, -1] == 0.0


@pytest.mark.parametrize("r0,r1", [(1.5, 0.5), (0.6, 1.0)])
def test_tapered_round_cone_volume(r0, r1):
    p0, p1 = (1.0, 2.0, 3.0), (4.0, -6.0, 9.0)
    tree = _line_tree(p0, p1, r0, r1)
    truth = _round_cone_volume(float(np.linalg.norm(np.subtract(p1, p0))), r0, r1)
    affine, shape = grid_around_tree(tree, 0.25, margin_mm=0.5)
    got = voxelize_tree(tree, affine, shape).sum() * _voxel_volume(affine)
    assert got == pytest.approx(truth, rel=0.02)


def test_oblique_sheared_grid_gives_same_volume():
    tree = _line_tree((0, 0, 0), (8, 3, 2), 1.0, 1.0)
    truth = np.pi * np.sqrt(8.0**2 + 3.0**2 + 2.0**2) + 4.0 / 3.0 * np.pi
    th = 0.4
    rot = np.array([[np.cos(th), -np.sin(th), 0], [np.sin(th), np.cos(th), 0], [0, 0, 1.0]])
    a3 = rot @ np.array([[0.2, 0.03, 0.0], [0.0, 0.18, 0.0], [0.0, 0.02, 0.22]])
    affine = np.eye(4)
    affine[:3, :3] = a3
    # place the grid so that it covers [-3, 11] x [-3, 6] x [-3, 5] mm generously
    n = 90
    affine[:3, 3] = np.array([4.0, 1.5, 1.0]) - a3 @ np.full(3, n / 2)
    vol = voxelize_tree(tree, affine, (n, n, n))
    got = vol.sum() * _voxel_volume(affine)
    assert got == pytest.approx(truth, rel=0.02)


def test_single_node_tree_is_a_sphere():
    tree = VesselTree(np.zeros((1, 3)), np.array([2.0]), np.array([-1]), np.zeros(1, int), np.zeros(1, int))
    affine, shape = grid_around_tree(tree, 0.25, margin_mm=0.5)
    got = voxelize_tree(tree, affine, shape).sum() * _voxel_volume(affine)
    assert got == pytest.approx(4.0 / 3.0 * np.pi * 8.0, rel=0.02)


def test_node_values_weight_the_lumen_linearly():
    # value 1 at the start node, 0 at the end: the cylinder part carries half its volume,
    # the start cap (t clipped to 0) is full, the end cap is empty
    r, length = 1.0, 10.0
    tree = _line_tree((0, 0, 0), (length, 0, 0), r, r)
    affine, shape = grid_around_tree(tree, 0.2, margin_mm=0.5)
    got = voxelize_tree(tree, affine, shape, node_values=np.array([1.0, 0.0])).sum() * _voxel_volume(affine)
    truth = 0.5 * np.pi * r * r * length + 2.0 / 3.0 * np.pi * r**3
    assert got == pytest.approx(truth, rel=0.02)
    with pytest.raises(VesselInputError):
        voxelize_tree(tree, affine, shape, node_values=np.array([1.5, 0.0]))
    with pytest.raises(VesselInputError):
        voxelize_tree(tree, affine, shape, node_values=np.array([1.0]))


def _two_tubes(vein_fill: float) -> tuple[VesselTree, np.ndarray]:
    """An artery (r 0.6 mm, fill 1) running inside a vein (r 2 mm), 0.85 mm off its axis.

    One tree: the artery branches from the vein's first node, whose sphere holds the artery's first sphere, so the
    joining edge adds no volume of its own.
    """
    tree = VesselTree(
        np.array([(0, 0, 0), (12, 0, 0), (0, 0.8, 0.3), (12, 0.8, 0.3)], dtype=float),
        np.array([2.0, 2.0, 0.6, 0.6]), np.array([-1, 0, 0, 2]), np.array([0, 0, 1, 1]), np.zeros(4, dtype=int),
    )
    return tree, np.array([vein_fill, vein_fill, 1.0, 1.0])


def test_a_filled_tube_keeps_its_partial_volumes_inside_an_unfilled_one():
    # the union's value at a point is the largest fill there, so an empty vein around the artery changes nothing:
    # voxel for voxel the artery alone (its edge voxels lie deep inside the vein, not at the union's surface)
    tree, fill = _two_tubes(vein_fill=0.0)
    artery = _line_tree((0, 0.8, 0.3), (12, 0.8, 0.3), 0.6, 0.6)
    affine, shape = grid_around_tree(tree, 0.2, margin_mm=0.5)
    both = voxelize_tree(tree, affine, shape, node_values=fill)
    alone = voxelize_tree(artery, affine, shape)
    assert np.count_nonzero((alone > 0.05) & (alone < 0.95)) > 500
    np.testing.assert_array_equal(both, alone)


def test_overlapping_fills_integrate_to_their_analytic_volumes():
    # vein fill 0.4 everywhere, 1 where the artery is: 0.4 V_vein + 0.6 V_artery (the artery lies inside the vein)
    tree, fill = _two_tubes(vein_fill=0.4)
    affine, shape = grid_around_tree(tree, 0.2, margin_mm=0.5)
    got = voxelize_tree(tree, affine, shape, node_values=fill).sum() * _voxel_volume(affine)
    capsule = lambda r: np.pi * r * r * 12.0 + 4.0 / 3.0 * np.pi * r**3  # noqa: E731
    assert got == pytest.approx(0.4 * capsule(2.0) + 0.6 * capsule(0.6), rel=0.01)


# ---------------------------------------------------------------- independent union volume
def _inside_union_of_spheres(pts: np.ndarray, a: np.ndarray, b: np.ndarray, r0: np.ndarray, r1: np.ndarray):
    """Is each point inside its paired swept sphere, i.e. does some ``t`` in [0, 1] give
    ``|p - a - t (b - a)|^2 <= (r0 + t (r1 - r0))^2``?

    The difference of both sides is a quadratic in ``t``; its minimum over [0, 1] is at an
    end or at the vertex. This is the definition of the tube (a union of spheres), not
    the round-cone distance formula used by the voxelizer.
    """
    d = b - a
    w = pts - a
    dr = r1 - r0
    qa = np.einsum("ij,ij->i", d, d) - dr * dr
    qb = np.einsum("ij,ij->i", w, d) + r0 * dr
    qc = np.einsum("ij,ij->i", w, w) - r0 * r0
    q_end = qa - 2.0 * qb + qc
    with np.errstate(divide="ignore", invalid="ignore"):
        tv = np.where(qa > 0, qb / qa, -1.0)
    q_vertex = np.where((tv > 0) & (tv < 1), qc - qb * tv, np.inf)
    return np.minimum(np.minimum(qc, q_end), q_vertex) <= 0.0


def _monte_carlo_union_volume(tree: VesselTree, n: int, seed: int) -> tuple[float, float]:
    """Union volume by sampling the union of per-segment boxes (weight 1 / #boxes hit).

    Returns the estimate and its standard error, mm^3.
    """
    rng = np.random.default_rng(seed)
    p0, p1, r0, r1 = tree.segments()
    rmax = np.maximum(r0, r1)[:, None]
    blo = np.minimum(p0, p1) - rmax
    bhi = np.maximum(p0, p1) + rmax
    bvol = np.prod(bhi - blo, axis=1)
    total = bvol.sum()
    counts = rng.multinomial(n, bvol / total)
    overlap = np.all((blo[:, None] <= bhi[None]) & (bhi[:, None] >= blo[None]), axis=2)
    samples = []
    for i, m in enumerate(counts):
        q = blo[i] + rng.random((m, 3)) * (bhi[i] - blo[i])
        cand = np.nonzero(overlap[i])[0]  # boxes that can contain a point of box i
        inbox = np.all((q[:, None, :] >= blo[cand][None]) & (q[:, None, :] <= bhi[cand][None]), axis=2)
        pi, ci = np.nonzero(inbox)
        si = cand[ci]
        hit = _inside_union_of_spheres(q[pi], p0[si], p1[si], r0[si], r1[si])
        inside = np.zeros(m, dtype=bool)
        inside[pi[hit]] = True
        samples.append(inside / inbox.sum(axis=1))
    acc = np.concatenate(samples)
    return total * acc.mean(), total * acc.std() / np.sqrt(n)


def test_generated_tree_volume_matches_monte_carlo_union():
    from vessel_models.generators import generate

    tree = generate("lsystem", 1)
    assert tree.n_nodes > 50
    truth, err = _monte_carlo_union_volume(tree, 400_000, seed=7)
    assert err < 0.004 * truth  # the reference itself is precise enough for a 2 % test
    affine, shape = grid_around_tree(tree, 0.2, margin_mm=0.5)
    vol = voxelize_tree(tree, affine, shape)
    got = vol.sum() * _voxel_volume(affine)
    assert got == pytest.approx(truth, rel=0.02)
    # joints matter: the plain sum of the segments' own volumes is clearly larger
    p0, p1, r0, r1 = tree.segments()
    seg_sum = sum(
        _round_cone_volume(float(np.linalg.norm(b - a)), ra, rb) for a, b, ra, rb in zip(p0, p1, r0, r1)
    )
    assert seg_sum > 1.05 * truth


def test_too_large_grid_is_refused_with_one_line_error():
    tree = _line_tree((0, 0, 0), (50, 0, 0), 1.0, 1.0)
    with pytest.raises(VesselInputError, match="GiB") as info:
        grid_around_tree(tree, 0.001)
    assert "\n" not in str(info.value)
    affine, shape = grid_around_tree(tree, 0.5)
    with pytest.raises(VesselInputError, match="coarser"):
        voxelize_tree(tree, affine, shape, max_bytes=1000)


def test_bad_grid_arguments():
    tree = _line_tree((0, 0, 0), (5, 0, 0), 1.0, 1.0)
    with pytest.raises(VesselInputError):
        grid_around_tree(tree, -0.2)
    with pytest.raises(VesselInputError):
        voxelize_tree(tree, np.zeros((4, 4)), (4, 4, 4))
    with pytest.raises(VesselInputError):
        voxelize_tree(tree, np.eye(4), (4, 0, 4))


def test_negative_radius_tree_is_rejected():
    with pytest.raises(VesselInputError, match="radii"):
        _line_tree((0, 0, 0), (5, 0, 0), 1.0, -1.0)


# ---------------------------------------------------------------- meshes and pictures
def test_meshes_volume_and_export(tmp_path):
    pv = pytest.importorskip("pyvista")
    from vessel_models.mesh import save_mesh, tree_to_mesh

    r, length = 1.0, 6.0
    tree = _line_tree((0, 0, 0), (length, 2.0, 1.0), r, r)
    truth = np.pi * r * r * np.sqrt(length**2 + 5.0) + 4.0 / 3.0 * np.pi * r**3
    surf = tree_to_mesh(tree, method="marching_cubes", spacing_mm=0.1)
    assert abs(surf.volume) == pytest.approx(truth, rel=0.02)
    tubes = tree_to_mesh(tree, n_sides=24)
    assert "radius_mm" in tubes.point_data
    # tube surface lies on the cylinder (radius 1 around the axis) away from the end caps
    d = np.array([length, 2.0, 1.0]) / np.sqrt(length**2 + 5.0)
    pts = np.asarray(tubes.points)
    t = pts @ d
    mid = (t > 0.5) & (t < np.sqrt(length**2 + 5.0) - 0.5)
    radial = np.linalg.norm(pts[mid] - t[mid, None] * d, axis=1)
    np.testing.assert_allclose(radial, r, rtol=0.02)
    for suffix in (".stl", ".vtp"):
        path = save_mesh(surf, tmp_path / f"mesh{suffix}")
        back = pv.read(str(path))
        assert back.n_cells == surf.n_cells
        assert abs(back.volume) == pytest.approx(abs(surf.volume), rel=1e-5)
    with pytest.raises(VesselInputError):
        save_mesh(surf, tmp_path / "mesh.xyz")
    with pytest.raises(VesselInputError):
        tree_to_mesh(tree, method="voxels")


@pytest.mark.parametrize("backend", ["matplotlib", "auto"])
def test_render_png(tmp_path, backend):
    from vessel_models.render import render_tree_png

    tree = VesselTree(
        np.array([[0, 0, 0], [0, 0, 10], [4, 0, 16], [-4, 0, 16]], dtype=float), np.array([2.0, 1.6, 1.0, 1.0]),
        np.array([-1, 0, 1, 1]), np.array([0, 0, 1, 2]), np.array([0, 0, 1, 1]),
    )
    out = tmp_path / "tree.png"
    used = render_tree_png(tree, out, size=(120, 100), backend=backend)
    assert used in ("pyvista", "matplotlib") and (backend == "auto" or used == backend)
    from PIL import Image

    img = np.asarray(Image.open(out).convert("RGB"))
    assert img.shape == (100, 120, 3)
    assert img.std() > 5  # not a blank picture
