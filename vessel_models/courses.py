"""Smooth courses of template vessels: spline curves with a random bend, and distal trees laid on a surface.

Shared by the arterial (:mod:`vessel_models.willis`) and venous (:mod:`vessel_models.veins`) cerebral
templates. Lengths in mm.
"""

from __future__ import annotations

import math

import numpy as np

from vessel_models.lsystem import perpendicular, rotate
from vessel_models.tree import TreeBuilder

__all__ = ["VIRTUAL_RADIUS_MM", "lay_on_surface", "smooth_curve", "surface_point"]

#: Radius of a ``virtual`` connector (a tree edge that is no vessel: carries no iodine), mm.
VIRTUAL_RADIUS_MM = 1e-3


def smooth_curve(points: list[np.ndarray], start_dir: np.ndarray | None, step_mm: float, tortuosity: float,
           rng: np.random.Generator, bend_plane_normal: np.ndarray | None = None) -> np.ndarray:
    """Nodes (excluding the first point) of a smooth curve through ``points``.

    A cubic spline in chord-length parameter, leaving along ``start_dir`` when given (tangent
    continuity with the parent), natural otherwise, plus a bend ``A sin^2(pi s) (c1 n1 + c2 cos(pi s) n2)``
    across the chord with ``A = tortuosity * chord * U(0.5, 1.5)`` and ``c1, c2 ~ U(-1, 1)``: zero offset
    and slope at both ends, so junctions stay put and the curve still leaves along ``start_dir``; the
    ``cos`` term turns the bend out of its plane (torsion). ``bend_plane_normal``: the bend's component
    along this unit vector is removed, so it stays in the plane (a vessel in a fissure); the same draws
    are taken either way.
    """
    from scipy.interpolate import CubicSpline

    pts = np.asarray(points, dtype=np.float64)
    u = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))])
    start_bc = (1, start_dir / np.linalg.norm(start_dir)) if start_dir is not None else (2, np.zeros(3))
    dense = CubicSpline(u, pts, bc_type=(start_bc, (2, np.zeros(3))))(np.linspace(0.0, u[-1], 256))
    chord = pts[-1] - pts[0]
    length = float(np.linalg.norm(chord))
    if tortuosity > 0 and length > 0:
        s = np.linspace(0.0, 1.0, 256)
        axis = chord / length
        n1 = rotate(perpendicular(axis), axis, rng.uniform(0.0, 2.0 * math.pi))
        n2 = np.cross(axis, n1)
        amp = tortuosity * length * rng.uniform(0.5, 1.5)
        c1, c2 = rng.uniform(-1.0, 1.0, 2)
        bump = np.sin(np.pi * s) ** 2
        bend = c1 * n1 + c2 * np.cos(np.pi * s)[:, None] * n2
        if bend_plane_normal is not None:
            bend = bend - np.outer(bend @ bend_plane_normal, bend_plane_normal)
        dense = dense + amp * bump[:, None] * bend
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(dense, axis=0), axis=1))])
    n = max(2, int(math.ceil(arc[-1] / step_mm)))
    targets = np.linspace(0.0, arc[-1], n + 1)[1:]
    return np.stack([np.interp(targets, arc, dense[:, k]) for k in range(3)], axis=1)


def surface_point(p: np.ndarray, centre: np.ndarray, axes: np.ndarray, depth_mm: float) -> np.ndarray:
    """``p`` moved radially (from ``centre``) onto the ellipsoid ``axes``, ``depth_mm`` inside it."""
    r = p - centre
    on = r / max(float(np.sqrt(np.sum((r / axes) ** 2))), 1e-9)
    norm = float(np.linalg.norm(on))
    return centre + on * max(0.0, 1.0 - depth_mm / max(norm, 1e-9))


#: Least distance (mm) of a hemisphere's cortical vessels from the midline plane: half the falx and the pia.
MIDLINE_GAP_MM = 1.5


def lay_on_surface(b: TreeBuilder, first: int, root: int, kind: str, side: float, centre: np.ndarray,
                    axes: np.ndarray, depth_mm: float, blend_mm: float, scale_mm: float) -> None:
    """Move the nodes ``first..`` of a distal tree grown at node ``root`` onto its surface.

    ``cortex``: the brain ellipsoid, ``depth_mm`` deep; ``scalp``: in the scalp (brain + 10 mm x
    ``scale_mm``, over a skull of ~6 mm);
    ``medial``: squashed towards the hemisphere's medial surface (3 mm from the midline) and kept
    inside the brain; ``face``: left as grown but in its half of the face; ``free``: left as grown. On the cortex,
    the medial surface and the face a node stays on its side (``side``: +1 left, -1 right), at least
    :data:`MIDLINE_GAP_MM` from the midline: one grown across it is mirrored back (the falx parts the hemispheres,
    the nasal septum the nasal cavities), also within the first ``blend_mm`` of path, over which the move is
    blended in, like a branch leaving a fissure.
    """
    if kind == "free":
        return
    dist = {root: 0.0}
    moved = {}
    for i in range(first, b.n_nodes):
        parent = b.parent(i)
        dist[i] = dist[parent] + float(np.linalg.norm(b.position(i) - b.position(parent)))
        p = b.position(i)
        if kind == "face":
            q = p.copy()
        elif kind == "scalp":
            q = surface_point(p, centre, axes + 10.0 * scale_mm, 0.0)
        elif kind == "cortex":
            q = surface_point(p, centre, axes, depth_mm)
        else:
            q = p.copy()
            q[0] = side * 3.0 + 0.15 * (p[0] - side * 3.0)
            if np.sum(((q - centre) / (axes - depth_mm)) ** 2) > 1:
                q = surface_point(q, centre, axes, depth_mm)
        w = min(1.0, dist[i] / blend_mm)
        q = (1.0 - w) * p + w * q
        if kind in ("cortex", "medial", "face"):  # a side's vessels stay on it: a branch grown across folds back
            q[0] = centre[0] + side * max(abs(q[0] - centre[0]), MIDLINE_GAP_MM)
        moved[i] = q
    for i, q in moved.items():
        b.set_position(i, q)
