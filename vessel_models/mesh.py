"""Surface meshes of vessel trees (pyvista) and their atomic export to STL / VTP / PLY.

Two methods:

* ``"tubes"``: one poly-line per branch (each starting at its parent node, so branches
  join), swept into a tube whose radius follows the node radii (``radius_mm`` point
  scalars). Fast, light, good for pictures; joints are overlapping tubes, not a
  watertight union.
* ``"marching_cubes"``: iso-surface at 0.5 of the exact voxelization
  (:func:`vessel_models.voxelize.voxelize_tree`): a single watertight surface of the
  lumen union, at the cost of a voxel grid.

Coordinates are the tree's (mm, usually patient LPS).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from vessel_models.io import atomic_output
from vessel_models.tree import VesselInputError, VesselTree

__all__ = ["branch_polylines", "save_mesh", "tree_to_mesh"]


def branch_polylines(tree: VesselTree) -> list[np.ndarray]:
    """Node-index chains, one per branch, each prefixed by its parent node.

    A chain runs from a node with != 1 child (or the root) down through nodes with
    exactly one child, so every edge of the tree is in exactly one chain.

    Returns
    -------
    list of numpy.ndarray
        int64 node indices, each of length >= 2 (empty list for a one-node tree).
    """
    n = tree.n_nodes
    n_child = np.bincount(tree.parents[1:], minlength=n) if n > 1 else np.zeros(1, dtype=np.int64)
    kids = tree.children_lists()
    chains: list[np.ndarray] = []
    starts = [0] + [int(i) for i in range(n) if n_child[i] != 1 and i != 0]
    for s in starts:
        for c in kids[s]:
            chain = [s, c]
            v = c
            while n_child[v] == 1:
                v = kids[v][0]
                chain.append(v)
            chains.append(np.asarray(chain, dtype=np.int64))
    # the root with exactly one child is already covered; interior single-child chains start
    # only at branching nodes, so every edge is visited once
    return chains


def _tubes(tree: VesselTree, n_sides: int):
    import pyvista as pv

    chains = branch_polylines(tree)
    if not chains:
        return pv.Sphere(radius=float(tree.radii_mm[0]), center=tree.positions_mm[0])
    parts = []
    for ch in chains:
        pts = tree.positions_mm[ch]
        keep = np.concatenate([[True], np.linalg.norm(np.diff(pts, axis=0), axis=1) > 1e-9])
        ch = ch[keep]
        if len(ch) < 2:
            continue
        line = pv.lines_from_points(tree.positions_mm[ch])
        line.point_data["radius_mm"] = tree.radii_mm[ch]
        tube = line.tube(scalars="radius_mm", absolute=True, n_sides=int(n_sides), capping=True)
        parts.append(tube)
    if not parts:
        return pv.Sphere(radius=float(tree.radii_mm.max()), center=tree.positions_mm[0])
    mesh = parts[0].merge(parts[1:]) if len(parts) > 1 else parts[0]
    return mesh.extract_surface(algorithm=None) if not isinstance(mesh, pv.PolyData) else mesh


def _marching_cubes(tree: VesselTree, spacing_mm: float | None, max_bytes: int | None):
    import pyvista as pv
    from skimage.measure import marching_cubes

    from vessel_models.voxelize import grid_around_tree, voxelize_tree

    if spacing_mm is None:
        spacing_mm = max(0.05, float(tree.radii_mm.min()) / 2.0)
    affine, shape = grid_around_tree(tree, spacing_mm, margin_mm=2.0 * spacing_mm, max_bytes=max_bytes)
    vol = voxelize_tree(tree, affine, shape, max_bytes=max_bytes)
    if vol.max() < 0.5:
        raise VesselInputError("tree is too thin for this spacing: nothing above half a voxel")
    verts, faces, _, _ = marching_cubes(vol, level=0.5)
    # merge coincident vertices and drop the triangles that collapse (marching cubes emits some)
    verts, inverse = np.unique(verts, axis=0, return_inverse=True)
    faces = inverse.reshape(-1)[faces]
    ok = (faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])
    faces = faces[ok]
    verts_mm = verts @ affine[:3, :3].T + affine[:3, 3]
    cells = np.hstack([np.full((len(faces), 1), 3, dtype=np.int64), faces.astype(np.int64)]).ravel()
    return pv.PolyData(verts_mm, cells)


def tree_to_mesh(
    tree: VesselTree,
    method: str = "tubes",
    n_sides: int = 16,
    spacing_mm: float | None = None,
    max_bytes: int | None = None,
):
    """Surface mesh of a tree.

    Parameters
    ----------
    tree : VesselTree
        Tree in mm.
    method : {"tubes", "marching_cubes"}
        Swept tubes per branch, or the iso-surface of the exact voxelization.
    n_sides : int
        Polygon sides of each tube cross-section (tubes only).
    spacing_mm : float, optional
        Voxel size for marching cubes, mm (default: half the smallest radius, >= 0.05).
    max_bytes : int, optional
        Memory cap for the marching-cubes grid (see :func:`voxelize_tree`).

    Returns
    -------
    pyvista.PolyData
        Surface in the tree's frame, mm; tubes carry ``radius_mm`` point data.

    Raises
    ------
    VesselInputError
        Unknown method, or a grid too large for memory.
    """
    if method == "tubes":
        return _tubes(tree, n_sides)
    if method in ("marching_cubes", "mc"):
        return _marching_cubes(tree, spacing_mm, max_bytes)
    raise VesselInputError(f"unknown mesh method {method!r}; use 'tubes' or 'marching_cubes'")


def save_mesh(mesh, path: str | os.PathLike) -> Path:
    """Write a mesh atomically (temporary file in the same folder, then rename).

    Parameters
    ----------
    mesh : pyvista.PolyData
        Surface to write (triangulated first for STL).
    path : str or PathLike
        Output file; the suffix picks the format: ``.stl``, ``.vtp``, ``.ply`` or ``.vtk``.

    Returns
    -------
    pathlib.Path
        The written path.

    Raises
    ------
    VesselInputError
        Unsupported suffix.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in (".stl", ".vtp", ".ply", ".vtk"):
        raise VesselInputError(f"unsupported mesh format {suffix or '(none)'!r}; use .stl, .vtp, .ply or .vtk")
    if suffix == ".stl":
        mesh = mesh.triangulate()
    p.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(p) as tmp:
        mesh.save(str(tmp))
    return p
