"""Vessel growth inside an organ mask by space colonisation, with Murray-law radii.

Algorithm (Runions et al. style space colonisation): attractor points are sampled uniformly
inside the mask; each iteration, every attractor pulls its nearest tree node within the
influence distance; each pulled node grows one step along the mean unit pull direction;
attractors closer than the kill distance to a node are removed. Growth steps must land inside
the mask (a trunk that starts outside may approach it). Radii are assigned afterwards from
the leaves up: leaves get ``terminal_radius_mm`` and every node satisfies
``r_p^k = sum_children r_c^k`` (Murray's law with exponent ``k``).

The mask is a boolean ``(I, J, K)`` array with a 4x4 voxel-index -> mm affine.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.spatial import cKDTree

from vessel_models.morphometrics import branch_structure
from vessel_models.tree import VesselInputError, VesselTree, check_finite_params, with_overrides

__all__ = ["ColonizeParams", "grow_in_mask", "ellipsoid_mask", "generate_colonize"]


@dataclass(frozen=True)
class ColonizeParams:
    """Parameters of space-colonisation growth (mm).

    Attributes
    ----------
    n_attractors : int
        Attractor points sampled in the mask.
    step_mm : float
        Growth step length.
    influence_mm : float
        Attractors farther than this from every node are ignored.
    kill_mm : float
        Attractors within this distance of a node are removed.
    max_iterations : int
        Growth iterations.
    terminal_radius_mm : float
        Radius of the leaves.
    murray_exponent : float
        Murray exponent ``k`` for the radii.
    direction_noise : float
        Gaussian noise added to each unit growth direction.
    domain_semi_axes_mm : tuple of float
        Size of the default ellipsoid domain (used by :func:`generate_colonize` without a mask).
    domain_voxel_mm : float
        Voxel size of the default domain.
    """

    n_attractors: int = 1500
    step_mm: float = 2.0
    influence_mm: float = 20.0
    kill_mm: float = 4.0
    max_iterations: int = 200
    terminal_radius_mm: float = 0.25
    murray_exponent: float = 3.0
    direction_noise: float = 0.1
    domain_semi_axes_mm: tuple = (30.0, 22.0, 22.0)
    domain_voxel_mm: float = 1.0

    def validate(self) -> "ColonizeParams":
        """Raise :class:`VesselInputError` naming the first bad field; return self."""
        check_finite_params(self, "colonize")
        checks = [
            ("n_attractors", 1 <= self.n_attractors <= 200_000),
            ("step_mm", self.step_mm > 0),
            ("influence_mm", self.influence_mm > self.kill_mm),
            ("kill_mm", self.kill_mm > 0),
            ("max_iterations", 1 <= self.max_iterations <= 100_000),
            ("terminal_radius_mm", self.terminal_radius_mm > 0),
            ("murray_exponent", self.murray_exponent > 0),
            ("direction_noise", self.direction_noise >= 0),
            ("domain_semi_axes_mm", len(self.domain_semi_axes_mm) == 3 and min(self.domain_semi_axes_mm) > 0),
            ("domain_voxel_mm", self.domain_voxel_mm > 0),
        ]
        for name, ok in checks:
            if not ok:
                raise VesselInputError(f"colonize parameter {name}={getattr(self, name)!r} is out of range")
        return self


def ellipsoid_mask(semi_axes_mm=(30.0, 22.0, 22.0), voxel_mm: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """A boolean ellipsoid mask centred at the origin and its voxel -> mm affine."""
    ax = np.asarray(semi_axes_mm, dtype=float)
    n = np.ceil(2 * ax / voxel_mm).astype(int) + 3
    aff = np.diag([voxel_mm, voxel_mm, voxel_mm, 1.0])
    aff[:3, 3] = -(n - 1) / 2.0 * voxel_mm
    ii, jj, kk = np.meshgrid(*(np.arange(k) for k in n), indexing="ij")
    pts = np.stack([ii, jj, kk], -1) * voxel_mm + aff[:3, 3]
    return (((pts / ax) ** 2).sum(-1) <= 1.0), aff


def _check_mask(mask: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    m = np.asarray(mask)
    if m.ndim != 3:
        raise VesselInputError(f"mask: expected a 3-D boolean array, got shape {m.shape}")
    m = m.astype(bool)
    if not m.any():
        raise VesselInputError("mask: contains no voxels (all False)")
    aff = np.asarray(affine, dtype=float)
    if aff.shape != (4, 4) or not np.all(np.isfinite(aff)) or abs(np.linalg.det(aff[:3, :3])) == 0:
        raise VesselInputError("affine: expected a finite, invertible 4x4 voxel -> mm matrix")
    return m, aff, np.linalg.inv(aff)


def grow_in_mask(
    mask: np.ndarray,
    affine: np.ndarray,
    seed: int,
    root_mm: np.ndarray | None = None,
    params: ColonizeParams | None = None,
    **overrides: Any,
) -> VesselTree:
    """Grow a tree filling ``mask`` by space colonisation.

    Parameters
    ----------
    mask : numpy.ndarray
        ``(I, J, K)`` boolean organ mask.
    affine : numpy.ndarray
        ``(4, 4)`` voxel index -> mm affine.
    seed : int
        Seed of the attractor sampling and direction noise.
    root_mm : numpy.ndarray, optional
        Root position (mm); default: the mask voxel with the lowest first index closest to
        the mask centroid in the other two (an inlet on one face).
    params : ColonizeParams, optional
        Growth parameters; ``**overrides`` replace fields.

    Returns
    -------
    VesselTree
        Tree with Murray-law radii (exponent ``params.murray_exponent``).
    """
    from vessel_models.io import normalized_metadata

    p = with_overrides(params or ColonizeParams(), overrides, "colonize").validate()
    m, aff, inv = _check_mask(mask, affine)
    rng = np.random.default_rng(int(seed))
    vox = np.argwhere(m)
    pick = rng.integers(0, len(vox), p.n_attractors)
    att_idx = vox[pick] + rng.uniform(-0.5, 0.5, (p.n_attractors, 3))
    attractors = att_idx @ aff[:3, :3].T + aff[:3, 3]

    def inside(pt: np.ndarray) -> bool:
        ijk = np.rint(inv[:3, :3] @ pt + inv[:3, 3]).astype(int)
        return bool(np.all(ijk >= 0) and np.all(ijk < m.shape) and m[tuple(ijk)])

    if root_mm is None:
        i0 = vox[:, 0].min()
        face = vox[vox[:, 0] == i0]
        c = vox[:, 1:].mean(axis=0)
        v = face[np.argmin(((face[:, 1:] - c) ** 2).sum(1))]
        root = aff[:3, :3] @ v + aff[:3, 3]
    else:
        root = np.asarray(root_mm, dtype=float).reshape(-1)
        if root.shape != (3,) or not np.all(np.isfinite(root)):
            raise VesselInputError(f"root_mm: expected 3 finite numbers, got {root_mm!r}")
    pos = [root]
    par = [-1]
    alive = np.ones(len(attractors), dtype=bool)
    for _ in range(p.max_iterations):
        if not alive.any():
            break
        nodes = np.array(pos)
        kd = cKDTree(nodes)
        a = attractors[alive]
        dist, near = kd.query(a)
        use = dist <= p.influence_mm
        if not use.any():
            if len(pos) == 1 or not inside(pos[-1]) and par[-1] == len(pos) - 2:
                # trunk: head straight for the nearest attractor
                tip = len(pos) - 1
                d2 = np.linalg.norm(a - nodes[tip], axis=1)
                direction = a[np.argmin(d2)] - nodes[tip]
                pos.append(nodes[tip] + p.step_mm * direction / np.linalg.norm(direction))
                par.append(tip)
                continue
            break
        pulls: dict[int, np.ndarray] = {}
        for node, pt in zip(near[use], a[use]):
            d = pt - nodes[node]
            nd = np.linalg.norm(d)
            if nd > 0:
                pulls[int(node)] = pulls.get(int(node), 0.0) + d / nd
        grew = False
        for node in sorted(pulls):
            d = pulls[node] / np.linalg.norm(pulls[node])
            if p.direction_noise:
                d = d + rng.normal(0.0, p.direction_noise, 3)
                d /= np.linalg.norm(d)
            new = nodes[node] + p.step_mm * d
            if inside(new) or not inside(nodes[node]):
                pos.append(new)
                par.append(node)
                grew = True
        if not grew:
            break
        kd2 = cKDTree(np.array(pos))
        idx = np.nonzero(alive)[0]
        dk, _ = kd2.query(attractors[idx])
        alive[idx[dk <= p.kill_mm]] = False

    parents = np.array(par, dtype=np.int64)
    n = len(pos)
    k = p.murray_exponent
    rk = np.zeros(n)
    has_child = np.zeros(n, dtype=bool)
    has_child[parents[1:]] = True
    rk[~has_child] = p.terminal_radius_mm**k
    for i in range(n - 1, 0, -1):
        rk[parents[i]] += rk[i]
    radii = rk ** (1.0 / k)
    bid, gen = branch_structure(parents)
    meta = normalized_metadata(
        {
            "generator": "colonize",
            "seed": int(seed),
            "params": asdict(p),
            "murray_exponent": k,
            "attractors_left": int(alive.sum()),
        }
    )
    return VesselTree(np.array(pos), radii, parents, bid, gen, meta)


def generate_colonize(seed: int, params: ColonizeParams | None = None, **overrides: Any) -> VesselTree:
    """Space colonisation in the default ellipsoid domain (``domain_semi_axes_mm``)."""
    p = with_overrides(params or ColonizeParams(), overrides, "colonize").validate()
    mask, aff = ellipsoid_mask(p.domain_semi_axes_mm, p.domain_voxel_mm)
    return grow_in_mask(mask, aff, seed, None, p)
