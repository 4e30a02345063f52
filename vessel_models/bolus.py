"""Contrast bolus / fill state of a vessel tree as a function of time.

Two modes, both driven by the centreline path distance ``s`` from the root (mm) and a transit
velocity ``v`` (mm/s), so the bolus reaches a node at ``t_arrival = t0 + s / v`` (s):

* ``"bolus"``: a travelling Gaussian, ``f = exp(-((t - t_arrival) / sigma)^2 / 2)``;
* ``"filling"``: a filling front, ``f = 1`` where the front has arrived (``t >= t_arrival``) and
  ``exp(-((t - t_arrival) / sigma)^2 / 2)`` ahead of it (a smooth leading edge).
"""

from __future__ import annotations

import numpy as np

from vessel_models.tree import VesselInputError, VesselTree

__all__ = ["arrival_times_s", "contrast_fraction", "contrast_sequence", "edge_fraction"]

MODES = ("bolus", "filling")


def _check(velocity_mm_per_s: float, sigma_s: float, mode: str) -> None:
    if not np.isfinite(velocity_mm_per_s) or velocity_mm_per_s <= 0:
        raise VesselInputError(f"velocity_mm_per_s must be > 0, got {velocity_mm_per_s}")
    if not np.isfinite(sigma_s) or sigma_s <= 0:
        raise VesselInputError(f"sigma_s (bolus width) must be > 0, got {sigma_s}")
    if mode not in MODES:
        raise VesselInputError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")


def arrival_times_s(tree: VesselTree, velocity_mm_per_s: float, t0_s: float = 0.0) -> np.ndarray:
    """``(N,)`` bolus arrival time at each node: ``t0 + path_length_from_root / v`` (s)."""
    _check(velocity_mm_per_s, 1.0, "bolus")
    return t0_s + tree.path_length_from_root_mm() / float(velocity_mm_per_s)


def contrast_fraction(
    tree: VesselTree,
    t_s: float,
    velocity_mm_per_s: float = 100.0,
    sigma_s: float = 0.5,
    mode: str = "bolus",
    t0_s: float = 0.0,
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
        Temporal width of the bolus / leading edge (s).
    mode : {"bolus", "filling"}
        Travelling Gaussian or filling front (see module docstring).
    t0_s : float
        Arrival time at the root (s).

    Returns
    -------
    numpy.ndarray
        ``(N,)`` float64 fractions.
    """
    _check(velocity_mm_per_s, sigma_s, mode)
    ta = arrival_times_s(tree, velocity_mm_per_s, t0_s)
    g = np.exp(-0.5 * ((float(t_s) - ta) / float(sigma_s)) ** 2)
    if mode == "filling":
        g = np.where(float(t_s) >= ta, 1.0, g)
    return g


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
