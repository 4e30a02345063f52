"""Morphometrics of vessel trees: counts, Strahler order, radii, lengths, tortuosity, angles, Murray.

A *branch* here is a topological one: a maximal run of edges between the root, bifurcations
(nodes with two or more children) and leaves. Branches labelled ``aneurysm`` or ``virtual`` in
``metadata["labels"]`` are not vessels and are left out of the vessel statistics.
Lengths in mm, angles in degrees.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq

from vessel_models.tree import VesselInputError, VesselTree

__all__ = [
    "Branch",
    "branch_structure",
    "branches",
    "branch_count",
    "bifurcation_count",
    "strahler_orders",
    "radius_distribution",
    "length_distribution",
    "tortuosity",
    "bifurcation_angles",
    "murray_residuals",
    "fit_murray_exponent",
    "summary",
    "named_segments",
]

NON_VESSEL_PREFIXES = ("aneurysm", "virtual")


@dataclass(frozen=True)
class Branch:
    """One topological branch: ``nodes[0]`` is the start (root or bifurcation) node."""

    nodes: tuple[int, ...]
    generation: int
    parent_branch: int  # index into the branch list, -1 for root branches
    length_mm: float
    chord_mm: float
    mean_radius_mm: float


def branch_structure(parents: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Branch ids and generations from topology alone.

    A new branch starts at every child of a node with two or more children. Node 0 and
    its single-child chain form branch 0 (generation 0).

    Parameters
    ----------
    parents : numpy.ndarray
        ``(N,)`` parent indices, topologically ordered (``parents[i] < i``).

    Returns
    -------
    (branch_ids, generations) : tuple of numpy.ndarray
        ``(N,)`` int64 each.
    """
    parents = np.asarray(parents, dtype=np.int64)
    n = parents.shape[0]
    n_children = np.bincount(parents[1:], minlength=n) if n > 1 else np.zeros(n, dtype=np.int64)
    bid = np.zeros(n, dtype=np.int64)
    gen = np.zeros(n, dtype=np.int64)
    next_id = 1
    for i in range(1, n):
        p = parents[i]
        if n_children[p] >= 2 or p == 0 and n_children[0] >= 2:
            bid[i] = next_id
            gen[i] = gen[p] + 1
            next_id += 1
        else:
            bid[i] = bid[p]
            gen[i] = gen[p]
    return bid, gen


def _non_vessel_nodes(tree: VesselTree) -> np.ndarray:
    labels = tree.labels
    bad = [b for b, name in labels.items() if name.lower().startswith(NON_VESSEL_PREFIXES)]
    return np.isin(tree.branch_ids, bad) if bad else np.zeros(tree.n_nodes, dtype=bool)


def branches(tree: VesselTree, include_non_vessel: bool = False) -> list[Branch]:
    """Split the tree into topological branches (ordered by first node index).

    Parameters
    ----------
    tree : VesselTree
        Tree to split.
    include_non_vessel : bool
        Keep branches whose nodes belong to ``aneurysm``/``virtual`` labelled branches.

    Returns
    -------
    list of Branch
    """
    kids = tree.children_lists()
    skip = _non_vessel_nodes(tree)
    out: list[Branch] = []
    # (start node, first child, generation, parent branch index)
    todo: list[tuple[int, int, int, int]] = [(0, c, 0, -1) for c in kids[0]] if len(kids[0]) else []
    if len(kids[0]) >= 2:
        todo = [(0, c, 1, -1) for c in kids[0]]
    todo.reverse()
    while todo:
        start, c, gen, pb = todo.pop()
        nodes = [start, c]
        while len(kids[nodes[-1]]) == 1:
            nodes.append(kids[nodes[-1]][0])
        idx = len(out)
        pts = tree.positions_mm[nodes]
        length = float(np.linalg.norm(np.diff(pts, axis=0), axis=1).sum())
        chord = float(np.linalg.norm(pts[-1] - pts[0]))
        out.append(Branch(tuple(nodes), gen, pb, length, chord, float(tree.radii_mm[nodes[1:]].mean())))
        for k in reversed(kids[nodes[-1]]):
            todo.append((nodes[-1], k, gen + 1, idx))
    if include_non_vessel or not skip.any():
        return out
    return [b for b in out if not skip[b.nodes[1]]]


def branch_count(tree: VesselTree) -> int:
    """Number of vessel branches (topological)."""
    return len(branches(tree))


def _vessel_children(tree: VesselTree) -> list[list[int]]:
    kids = tree.children_lists()
    skip = _non_vessel_nodes(tree)
    return [[c for c in k if not skip[c]] for k in kids]


def bifurcation_count(tree: VesselTree) -> int:
    """Number of nodes with two or more vessel children."""
    return sum(1 for k in _vessel_children(tree) if len(k) >= 2)


def strahler_orders(tree: VesselTree) -> np.ndarray:
    """Horton-Strahler order of every node (leaves 1; equal maximal child orders -> +1).

    Returns
    -------
    numpy.ndarray
        ``(N,)`` int64; ``orders[0]`` is the order of the whole tree.
    """
    kids = _vessel_children(tree)
    order = np.ones(tree.n_nodes, dtype=np.int64)
    for i in range(tree.n_nodes - 1, -1, -1):
        if kids[i]:
            co = sorted((int(order[c]) for c in kids[i]), reverse=True)
            order[i] = co[0] + 1 if len(co) >= 2 and co[0] == co[1] else co[0]
    return order


def radius_distribution(tree: VesselTree) -> np.ndarray:
    """Mean radius of each vessel branch (mm)."""
    return np.array([b.mean_radius_mm for b in branches(tree)])


def length_distribution(tree: VesselTree) -> np.ndarray:
    """Centreline length of each vessel branch (mm)."""
    return np.array([b.length_mm for b in branches(tree)])


def tortuosity(tree: VesselTree) -> np.ndarray:
    """Distance-metric tortuosity of each branch: path length / chord length (>= 1)."""
    return np.array([b.length_mm / b.chord_mm if b.chord_mm > 0 else np.inf for b in branches(tree)])


def _angle_deg(u: np.ndarray, v: np.ndarray) -> float:
    c = float(np.dot(u, v) / (np.linalg.norm(u) * np.linalg.norm(v)))
    return math.degrees(math.acos(max(-1.0, min(1.0, c))))


def bifurcation_angles(tree: VesselTree) -> list[dict]:
    """Angles at each bifurcation, measured on the first edge of each branch.

    Returns
    -------
    list of dict
        One per bifurcation node: ``node``, ``children`` (sorted by decreasing radius),
        ``radii_mm``, ``angles_deg`` (each child's first edge vs. the parent's last edge;
        empty parent direction at the root gives NaN) and ``between_deg`` (angle between the
        two largest children).
    """
    kids = _vessel_children(tree)
    pos = tree.positions_mm
    out = []
    for i, k in enumerate(kids):
        if len(k) < 2:
            continue
        k = sorted(k, key=lambda c: (-tree.radii_mm[c], c))
        pdir = pos[i] - pos[tree.parents[i]] if i > 0 else None
        cdirs = [pos[c] - pos[i] for c in k]
        angles = [(_angle_deg(pdir, d) if pdir is not None else float("nan")) for d in cdirs]
        out.append(
            {
                "node": i,
                "children": k,
                "radii_mm": [float(tree.radii_mm[c]) for c in k],
                "angles_deg": angles,
                "between_deg": _angle_deg(cdirs[0], cdirs[1]),
            }
        )
    return out


def named_segments(tree: VesselTree) -> dict[str, dict[str, float]]:
    """Diameter, length and tortuosity of every labelled branch (``metadata["labels"]``).

    A labelled branch runs from its parent junction (the parent of its first node) through its
    nodes; ``virtual`` and ``aneurysm`` labels are left out.

    Returns
    -------
    dict
        ``{name: {"diameter_mm": mean node diameter, "proximal_diameter_mm": diameter at the first own
        node (where morphometry studies measure a segment's origin), "length_mm": path length,
        "tortuosity_dm": path / chord}}``.
    """
    out: dict[str, dict[str, float]] = {}
    for bid, name in sorted(tree.labels.items()):
        if name.startswith(NON_VESSEL_PREFIXES):
            continue
        nodes = np.nonzero(tree.branch_ids == bid)[0]
        if nodes.size == 0:
            continue
        proximal = float(2.0 * tree.radii_mm[nodes[0]])
        if tree.parents[nodes[0]] >= 0:
            nodes = np.concatenate([[tree.parents[nodes[0]]], nodes])
        pts = tree.positions_mm[nodes]
        length = float(np.linalg.norm(np.diff(pts, axis=0), axis=1).sum())
        chord = float(np.linalg.norm(pts[-1] - pts[0]))
        out[name] = {
            "diameter_mm": float(2.0 * tree.radii_mm[nodes].mean()),
            "proximal_diameter_mm": proximal,
            "length_mm": length,
            "tortuosity_dm": length / chord if chord > 0 else float("inf"),
        }
    return out


def murray_residuals(tree: VesselTree, exponent: float = 3.0) -> np.ndarray:
    """Relative Murray-law residual at each bifurcation.

    ``(sum_c r_c^k - r_p^k) / r_p^k`` with ``r_p`` the radius at the bifurcation node and
    ``r_c`` the radius of each vessel child's first node.

    Returns
    -------
    numpy.ndarray
        One value per bifurcation (0 = Murray's law exactly; empty if no bifurcations).
    """
    if exponent <= 0:
        raise VesselInputError(f"exponent must be > 0, got {exponent}")
    r = tree.radii_mm
    vals = [
        (sum(r[c] ** exponent for c in k) - r[i] ** exponent) / r[i] ** exponent
        for i, k in enumerate(_vessel_children(tree))
        if len(k) >= 2
    ]
    return np.array(vals, dtype=np.float64)


def fit_murray_exponent(tree: VesselTree) -> float:
    """Median over bifurcations of the exponent ``k`` solving ``r_p^k = sum r_c^k``.

    Returns NaN when no bifurcation has a solution (e.g. a child wider than its parent).
    """
    r = tree.radii_mm
    ks = []
    for i, k in enumerate(_vessel_children(tree)):
        if len(k) < 2:
            continue
        rc = np.array([r[c] for c in k]) / r[i]
        if np.any(rc >= 1):
            continue
        f = lambda e: float(np.sum(rc**e) - 1.0)  # noqa: E731  (decreasing in e)
        if f(0.05) > 0 and f(50.0) < 0:
            ks.append(brentq(f, 0.05, 50.0, xtol=1e-12))
    return float(np.median(ks)) if ks else float("nan")


def summary(tree: VesselTree, murray_exponent: float = 3.0) -> dict:
    """A dict of the main morphometrics (JSON-friendly floats and ints)."""
    br = branches(tree)
    radii = np.array([b.mean_radius_mm for b in br]) if br else np.zeros(0)
    lengths = np.array([b.length_mm for b in br]) if br else np.zeros(0)
    tort = np.array([b.length_mm / b.chord_mm for b in br if b.chord_mm > 0]) if br else np.zeros(0)
    res = murray_residuals(tree, murray_exponent)
    ang = [a for d in bifurcation_angles(tree) for a in d["angles_deg"] if not math.isnan(a)]
    lo, hi = tree.bounds_mm()

    def stats(a: np.ndarray) -> dict:
        if a.size == 0:
            return {"mean": float("nan"), "min": float("nan"), "max": float("nan")}
        return {"mean": float(a.mean()), "min": float(a.min()), "max": float(a.max())}

    return {
        "n_nodes": tree.n_nodes,
        "branch_count": len(br),
        "bifurcation_count": bifurcation_count(tree),
        "strahler_order": int(strahler_orders(tree)[0]),
        "max_generation": int(max((b.generation for b in br), default=0)),
        "total_length_mm": tree.total_length_mm(),
        "extent_mm": (hi - lo).tolist(),
        "branch_radius_mm": stats(radii),
        "branch_length_mm": stats(lengths),
        "tortuosity_dm": stats(tort),
        "bifurcation_angle_deg": stats(np.array(ang)),
        "murray_residual_abs_max": float(np.abs(res).max()) if res.size else 0.0,
        "murray_exponent_fit": fit_murray_exponent(tree),
    }
