"""Contrast bolus / fill state of a vessel tree as a function of time: one model for every compartment.

A node's fill is a curve of the time since the bolus reached it, ``f(t - t_arrival)``, one of:

* ``"bolus"``: a travelling Gaussian, ``exp(-((t - t_arrival) / sigma)^2 / 2)``;
* ``"filling"``: a filling front, 1 once the front has arrived (``t >= t_arrival``) and the Gaussian
  ahead of it (a smooth leading edge);
* ``"gamma"``: a gamma variate (the classic shape of a first-pass indicator-dilution curve, Thompson
  et al. 1964), peak 1 at ``alpha * sigma`` after arrival, ``alpha = GAMMA_ALPHA``: filling, then
  wash-out, so a sequence runs arterial -> capillary -> venous.

Compartments (docs/vessels.md, "Phases"): the **arteries** are reached at ``t0 + s / v`` (``s`` the
path length from the root, ``v`` the transit velocity, mm/s). The **capillary** bed (a parenchymal blush)
is reached when the arterial front reaches the farthest terminal artery, ``t_cap = t0 + s_max / v``
(:func:`capillary_arrival_s`). The **veins** of a tree with a venous part (branches listed in
``metadata["venous_branches"]``, their capillary ends in ``metadata["venous_inflow_nodes"]``) are
reached ``venous_delay_s`` after ``t_cap`` at the cortical vein tips, then downstream at ``v`` along
the veins (graph distance to the nearest inflow node), so the sinuses and the jugular fill last.
Capillary and venous curves are ``dispersion`` times wider than the arterial one and, in the
``"bolus"`` and ``"gamma"`` modes, ``dispersion`` times lower: the same area under every curve, as
the Stewart-Hamilton principle requires for compartments in series carrying the same flow.
"""

from __future__ import annotations

import numpy as np

from vessel_models.tree import VesselInputError, VesselTree

__all__ = ["GAMMA_ALPHA", "MODES", "arrival_times_s", "arterial_reach_mm", "capillary_arrival_s", "compartment_curve",
           "contrast_fraction", "contrast_sequence", "edge_fraction", "venous_nodes"]

MODES = ("bolus", "filling", "gamma")
#: Shape of the gamma variate (rise time / scale); 3 gives the skewed first-pass curve of a bolus.
GAMMA_ALPHA = 3.0


def _check(velocity_mm_per_s: float, sigma_s: float, mode: str) -> None:
    if not np.isfinite(velocity_mm_per_s) or velocity_mm_per_s <= 0:
        raise VesselInputError(f"velocity_mm_per_s must be > 0, got {velocity_mm_per_s}")
    if not np.isfinite(sigma_s) or sigma_s <= 0:
        raise VesselInputError(f"sigma_s (bolus width) must be > 0, got {sigma_s}")
    if mode not in MODES:
        raise VesselInputError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")


def compartment_curve(dt_s: np.ndarray | float, sigma_s: float, mode: str, dispersion: float = 1.0) -> np.ndarray:
    """Fill of a compartment ``dt_s`` seconds after the bolus reached it (see module docstring).

    ``dispersion`` widens the curve by that factor and, in the ``"bolus"`` and ``"gamma"`` modes,
    lowers it by the same factor (equal areas); a ``"filling"`` front keeps its full height.
    """
    _check(1.0, sigma_s, mode)
    if not np.isfinite(dispersion) or dispersion < 1:
        raise VesselInputError(f"dispersion must be >= 1, got {dispersion}")
    x = np.asarray(dt_s, dtype=np.float64) / (float(sigma_s) * dispersion)
    if mode == "gamma":
        xp = np.maximum(x, 0.0) / GAMMA_ALPHA
        return np.where(x > 0, xp**GAMMA_ALPHA * np.exp(GAMMA_ALPHA * (1.0 - xp)), 0.0) / dispersion
    g = np.exp(-0.5 * x**2)
    return np.where(x >= 0, 1.0, g) if mode == "filling" else g / dispersion


def venous_nodes(tree: VesselTree) -> np.ndarray:
    """Bool (N,): nodes of the branches listed in ``metadata["venous_branches"]`` (none if absent)."""
    return np.isin(tree.branch_ids, list(tree.metadata.get("venous_branches", [])))


def arterial_reach_mm(tree: VesselTree) -> float:
    """Longest path from the root to an arterial node, mm (nodes of ``venous_branches``, the virtual
    connector to the veins included, are not arteries; 0 for a tree of veins only)."""
    return float(tree.path_length_from_root_mm()[~venous_nodes(tree)].max(initial=0.0))


def capillary_arrival_s(tree: VesselTree, velocity_mm_per_s: float, t0_s: float = 0.0) -> float:
    """Time the arterial front reaches the farthest arterial node, ``t0 + arterial_reach / v`` (s):
    the capillary bolus arrival."""
    _check(velocity_mm_per_s, 1.0, "bolus")
    return t0_s + arterial_reach_mm(tree) / float(velocity_mm_per_s)


def arrival_times_s(tree: VesselTree, velocity_mm_per_s: float, t0_s: float = 0.0,
                    venous_delay_s: float = 0.0) -> np.ndarray:
    """``(N,)`` bolus arrival time at each node (s): arteries ``t0 + s / v``; venous nodes
    ``t_cap + venous_delay_s + d / v`` with ``d`` the distance along the veins to the nearest
    capillary (inflow) end of a cortical vein."""
    _check(velocity_mm_per_s, 1.0, "bolus")
    v = float(velocity_mm_per_s)
    t = t0_s + tree.path_length_from_root_mm() / v
    veins = venous_nodes(tree)
    if veins.any():
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import dijkstra

        e = tree.edges()
        keep = veins[e[:, 0]] & veins[e[:, 1]]
        w = tree.edge_lengths_mm()[keep] + 1e-9  # > 0: a zero weight would be no edge
        graph = coo_matrix((w, (e[keep, 0], e[keep, 1])), shape=(tree.n_nodes,) * 2).tocsr()
        sources = np.asarray(tree.metadata.get("venous_inflow_nodes", []), dtype=int)
        if sources.size == 0:
            raise VesselInputError("tree has venous branches but no metadata['venous_inflow_nodes']")
        d = dijkstra(graph, directed=False, indices=sources, min_only=True)
        t[veins] = capillary_arrival_s(tree, v, t0_s) + venous_delay_s + d[veins] / v
    return t


def contrast_fraction(
    tree: VesselTree,
    t_s: float,
    velocity_mm_per_s: float = 100.0,
    sigma_s: float = 0.5,
    mode: str = "bolus",
    t0_s: float = 0.0,
    venous_delay_s: float = 0.0,
    dispersion: float = 1.0,
) -> np.ndarray:
    """Per-node contrast fraction in ``[0, 1]`` at time ``t_s``.

    Parameters
    ----------
    tree : VesselTree
        Tree; path distance is measured from node 0.
    t_s : float
        Time since injection at the root (s).
    velocity_mm_per_s : float
        Transit velocity of the bolus along the centreline (mm/s).
    sigma_s : float
        Temporal width of the bolus / leading edge / gamma variate scale (s).
    mode : {"bolus", "filling", "gamma"}
        Travelling Gaussian, filling front or gamma variate (see module docstring).
    t0_s : float
        Arrival time at the root (s).
    venous_delay_s : float
        Capillary transit: venous arrival at the cortical vein tips after the capillary arrival (s).
    dispersion : float
        Width factor (>= 1) of the venous curves relative to the arterial one.

    Returns
    -------
    numpy.ndarray
        ``(N,)`` float64 fractions.
    """
    _check(velocity_mm_per_s, sigma_s, mode)
    ta = arrival_times_s(tree, velocity_mm_per_s, t0_s, venous_delay_s)
    veins = venous_nodes(tree)
    f = compartment_curve(float(t_s) - ta, sigma_s, mode)
    if veins.any():
        f[veins] = compartment_curve(float(t_s) - ta[veins], sigma_s, mode, dispersion)
    return f


def contrast_sequence(
    tree: VesselTree,
    times_s: np.ndarray,
    velocity_mm_per_s: float = 100.0,
    sigma_s: float = 0.5,
    mode: str = "bolus",
    t0_s: float = 0.0,
) -> np.ndarray:
    """``(T, N)`` contrast fractions for each time in ``times_s`` (a temporal sequence)."""
    times = np.asarray(times_s, dtype=np.float64).reshape(-1)
    return np.stack([contrast_fraction(tree, t, velocity_mm_per_s, sigma_s, mode, t0_s) for t in times])


def edge_fraction(tree: VesselTree, node_fraction: np.ndarray) -> np.ndarray:
    """``(E,)`` per-edge fraction: mean of its two end nodes (ordered like ``tree.edges()``)."""
    f = np.asarray(node_fraction, dtype=np.float64)
    if f.shape != (tree.n_nodes,):
        raise VesselInputError(f"node_fraction: expected shape ({tree.n_nodes},), got {f.shape}")
    e = tree.edges()
    return 0.5 * (f[e[:, 0]] + f[e[:, 1]])
