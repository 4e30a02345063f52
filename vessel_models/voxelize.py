"""Voxelize a :class:`~vessel_models.tree.VesselTree` into a lumen-fraction volume.

Every edge of the tree is a *round cone*: the union of spheres whose centre moves
linearly from the parent node to the child node and whose radius is linearly
interpolated between the two node radii (equivalently the convex hull of the two end
spheres). The tree's lumen is the union of all round cones, so joints are filled by the
node spheres and overlaps are never counted twice (union = max, not sum).

The voxel value is the fraction of the voxel inside the lumen, optionally times a
per-node fill value (bolus model) interpolated along each edge. Anti-aliasing uses the
exact geometry: the signed distance to the round-cone union is evaluated at each voxel
centre; voxels farther than half a voxel diagonal from the surface are fully in or out,
the others are supersampled (``supersample ** 3`` sub-points, inside test on the exact
union). With fill values, a voxel inside the union is supersampled too where the surface
of a fuller tube cuts it (a filled artery's edge inside an unfilled vein, a bolus front at
a joint), so partial volumes hold inside the union as at its surface.

The work is sparse: the grid is split into bricks of ``8 ** 3`` voxels, each segment is
listed only in the bricks its tube can touch, and only those bricks are visited (in
parallel, numba). Memory is the float32 output plus the brick/segment lists.

Coordinates: ``affine`` maps voxel indices ``(i, j, k)`` to world mm (the tree's frame,
usually patient LPS); the output array is indexed ``[i, j, k]``.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from vessel_models.tree import VesselInputError, VesselTree

__all__ = ["available_memory_bytes", "estimate_voxelize_bytes", "grid_around_tree", "voxelize_tree"]

_BRICK = 8


# ---------------------------------------------------------------------------- geometry
@numba.njit(cache=True, fastmath=False, inline="always")
def _round_cone_sd(px, py, pz, ax, ay, az, ux, uy, uz, length, r0, r1, s, c):
    """Signed distance (mm) from a point to one round cone; also the axial parameter.

    ``u`` is the unit axis from ``a`` (radius ``r0``) to the far end (radius ``r1``),
    ``length`` its length, ``s = (r0 - r1) / length`` and ``c = sqrt(1 - s**2)`` the
    sine/cosine of the side's half-opening angle. ``c < 0`` flags a degenerate cone
    (one end sphere contains the other). Returns ``(sd, t)`` with ``t`` in [0, 1].
    """
    dx = px - ax
    dy = py - ay
    dz = pz - az
    y = dx * ux + dy * uy + dz * uz
    q2 = dx * dx + dy * dy + dz * dz
    x2 = q2 - y * y
    x = math.sqrt(x2) if x2 > 0.0 else 0.0
    t = y / length if length > 0.0 else 0.0
    if t < 0.0:
        t = 0.0
    elif t > 1.0:
        t = 1.0
    if c < 0.0:
        # one sphere swallows the other: the union is the larger sphere
        d0 = math.sqrt(q2) - r0
        yb = y - length
        d1 = math.sqrt(x2 + yb * yb) - r1
        return (d0, 0.0) if d0 < d1 else (d1, 1.0)
    # coordinate along the side's generating line; tangent points at 0 and c * length
    w = c * y - s * x
    if w < 0.0:
        return math.sqrt(q2) - r0, t
    if w > c * length:
        yb = y - length
        return math.sqrt(x2 + yb * yb) - r1, t
    return s * y + c * x - r0, t


@numba.njit(cache=True)
def _count_pairs(lo, hi, seg_pts, seg_r, nb, brick_half_mm, a3, t3, pad_mm):
    """Number of bricks each segment may touch (cull by brick-centre distance)."""
    n_seg = lo.shape[0]
    counts = np.zeros(n_seg, dtype=np.int64)
    for e in range(n_seg):
        counts[e] = _visit_bricks(e, lo, hi, seg_pts, seg_r, nb, brick_half_mm, a3, t3, pad_mm,
                                  np.empty(0, dtype=np.int64), 0)
    return counts


@numba.njit(cache=True)
def _visit_bricks(e, lo, hi, seg_pts, seg_r, nb, brick_half_mm, a3, t3, pad_mm, out, start):
    """Count (and, if ``out`` is large enough, write) the brick ids segment ``e`` touches."""
    b0 = lo[e] // _BRICK
    b1 = hi[e] // _BRICK
    ax, ay, az = seg_pts[e, 0], seg_pts[e, 1], seg_pts[e, 2]
    bx, by, bz = seg_pts[e, 3], seg_pts[e, 4], seg_pts[e, 5]
    vx, vy, vz = bx - ax, by - ay, bz - az
    l2 = vx * vx + vy * vy + vz * vz
    rmax = max(seg_r[e, 0], seg_r[e, 1])
    reach = brick_half_mm + rmax + pad_mm
    n = 0
    half = 0.5 * (_BRICK - 1)
    for bi in range(b0[0], b1[0] + 1):
        for bj in range(b0[1], b1[1] + 1):
            for bk in range(b0[2], b1[2] + 1):
                ci = bi * _BRICK + half
                cj = bj * _BRICK + half
                ck = bk * _BRICK + half
                wx = a3[0, 0] * ci + a3[0, 1] * cj + a3[0, 2] * ck + t3[0]
                wy = a3[1, 0] * ci + a3[1, 1] * cj + a3[1, 2] * ck + t3[1]
                wz = a3[2, 0] * ci + a3[2, 1] * cj + a3[2, 2] * ck + t3[2]
                dx, dy, dz = wx - ax, wy - ay, wz - az
                t = (dx * vx + dy * vy + dz * vz) / l2 if l2 > 0.0 else 0.0
                t = min(max(t, 0.0), 1.0)
                ex, ey, ez = dx - t * vx, dy - t * vy, dz - t * vz
                if ex * ex + ey * ey + ez * ez <= reach * reach:
                    if out.shape[0] > 0:
                        out[start + n] = (bi * nb[1] + bj) * nb[2] + bk
                    n += 1
    return n


@numba.njit(cache=True)
def _fill_pairs(lo, hi, seg_pts, seg_r, nb, brick_half_mm, a3, t3, pad_mm, offsets, brick_of, seg_of):
    for e in range(lo.shape[0]):
        n = _visit_bricks(e, lo, hi, seg_pts, seg_r, nb, brick_half_mm, a3, t3, pad_mm, brick_of,
                          offsets[e])
        for m in range(n):
            seg_of[offsets[e] + m] = e


@numba.njit(cache=True, parallel=True)
def _voxelize_bricks(out, brick_ids, starts, seg_list, nb, a3, t3, geo, vals, band_mm, sub, use_vals):
    """Fill ``out`` brick by brick; each brick is written by one thread only."""
    for ib in numba.prange(brick_ids.shape[0]):
        _voxelize_brick(out, brick_ids[ib], starts[ib], starts[ib + 1], seg_list, nb, a3, t3, geo, vals, band_mm,
                        sub, use_vals)


@numba.njit(cache=True)
def _voxelize_brick(out, bid, s0, s1, seg_list, nb, a3, t3, geo, vals, band_mm, sub, use_vals):
    """Fill brick ``bid`` from its segments ``seg_list[s0:s1]``. A function of its own, not inlined into the
    parallel loop: numba's parallel passes over a large loop body cost seconds of compilation."""
    ni, nj, nk = out.shape
    n_sub = sub * sub * sub
    # a fuller tube cutting an interior voxel changes its mean fill by less than the fill difference: below half
    # a sub-point's share the voxel keeps its whole tubes' fill, as supersampling could not resolve it anyway
    fill_tol = 0.5 / n_sub
    bk = bid % nb[2]
    bj = (bid // nb[2]) % nb[1]
    bi = bid // (nb[1] * nb[2])
    for i in range(bi * _BRICK, min((bi + 1) * _BRICK, ni)):
        for j in range(bj * _BRICK, min((bj + 1) * _BRICK, nj)):
            for k in range(bk * _BRICK, min((bk + 1) * _BRICK, nk)):
                px = a3[0, 0] * i + a3[0, 1] * j + a3[0, 2] * k + t3[0]
                py = a3[1, 0] * i + a3[1, 1] * j + a3[1, 2] * k + t3[1]
                pz = a3[2, 0] * i + a3[2, 1] * j + a3[2, 2] * k + t3[2]
                best = 1e30
                v_whole = 0.0  # largest fill of the tubes that hold the whole voxel
                v_cut = 0.0  # largest fill of the tubes whose surface cuts through the voxel
                for m in range(s0, s1):
                    e = seg_list[m]
                    sd, t = _round_cone_sd(px, py, pz, geo[e, 0], geo[e, 1], geo[e, 2], geo[e, 3],
                                           geo[e, 4], geo[e, 5], geo[e, 6], geo[e, 7], geo[e, 8],
                                           geo[e, 9], geo[e, 10])
                    best = min(best, sd)
                    if use_vals and sd < band_mm:
                        v = vals[e, 0] + t * (vals[e, 1] - vals[e, 0])
                        if sd <= -band_mm:
                            v_whole = max(v_whole, v)
                        else:
                            v_cut = max(v_cut, v)
                if best >= band_mm:
                    continue
                if best <= -band_mm and v_cut <= v_whole + fill_tol:
                    out[i, j, k] = v_whole if use_vals else 1.0
                    continue
                # the union's surface, or a fuller tube's surface inside the union, cuts the voxel: supersample
                acc = 0.0
                for si in range(sub):
                    fi = i - 0.5 + (si + 0.5) / sub
                    for sj in range(sub):
                        fj = j - 0.5 + (sj + 0.5) / sub
                        for sk in range(sub):
                            fk = k - 0.5 + (sk + 0.5) / sub
                            qx = a3[0, 0] * fi + a3[0, 1] * fj + a3[0, 2] * fk + t3[0]
                            qy = a3[1, 0] * fi + a3[1, 1] * fj + a3[1, 2] * fk + t3[1]
                            qz = a3[2, 0] * fi + a3[2, 1] * fj + a3[2, 2] * fk + t3[2]
                            hit = 0.0
                            for m in range(s0, s1):
                                e = seg_list[m]
                                sd, t = _round_cone_sd(qx, qy, qz, geo[e, 0], geo[e, 1], geo[e, 2],
                                                       geo[e, 3], geo[e, 4], geo[e, 5], geo[e, 6],
                                                       geo[e, 7], geo[e, 8], geo[e, 9], geo[e, 10])
                                if sd <= 0.0:
                                    if use_vals:
                                        v = vals[e, 0] + t * (vals[e, 1] - vals[e, 0])
                                        hit = max(hit, v)
                                    else:
                                        hit = 1.0
                                        break
                            acc += hit
                out[i, j, k] = acc / n_sub


# ---------------------------------------------------------------------------- helpers
def _check_affine_shape(affine: np.ndarray, shape: tuple[int, int, int]) -> tuple[np.ndarray, tuple]:
    a = np.asarray(affine, dtype=np.float64)
    if a.shape != (4, 4) or not np.all(np.isfinite(a)):
        raise VesselInputError(f"affine must be a finite 4x4 array, got shape {a.shape}")
    if abs(np.linalg.det(a[:3, :3])) <= 0.0:
        raise VesselInputError("affine is singular (zero voxel volume)")
    try:
        shp = tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        raise VesselInputError(f"shape must be 3 integers, got {shape!r}") from None
    if len(shp) != 3 or min(shp) < 1:
        raise VesselInputError(f"shape must be 3 positive integers, got {shape!r}")
    return a, shp


def estimate_voxelize_bytes(shape: tuple[int, int, int]) -> int:
    """Bytes the output of :func:`voxelize_tree` needs (float32), plus a 10 % working margin."""
    n = int(np.prod(np.asarray(shape, dtype=np.float64)))
    return int(n * 4 * 1.1)


def available_memory_bytes() -> int:
    """Memory the system can give this process now (bytes; psutil's ``available``, 8 GiB where unknown)."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except Exception:  # noqa: BLE001  # pragma: no cover - psutil missing or unsupported platform
        return 8 * 1024**3


def _check_memory(shape: tuple[int, int, int], max_bytes: int | None) -> None:
    need = estimate_voxelize_bytes(shape)
    limit = int(max_bytes) if max_bytes is not None else int(0.8 * available_memory_bytes())
    if need > limit:
        raise VesselInputError(
            f"voxel grid {shape[0]}x{shape[1]}x{shape[2]} needs about {need / 2**30:.2f} GiB, more than the "
            f"{limit / 2**30:.2f} GiB allowed; use a coarser spacing or a smaller grid"
        )


def grid_around_tree(
    tree: VesselTree,
    spacing_mm: float | tuple[float, float, float],
    margin_mm: float = 1.0,
    max_bytes: int | None = None,
) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Axis-aligned voxel grid (in the tree's frame) enclosing the whole tree.

    Parameters
    ----------
    tree : VesselTree
        The tree; its bounds include the radii.
    spacing_mm : float or tuple of 3 floats
        Voxel spacing along x, y, z, mm (> 0).
    margin_mm : float
        Extra space around the tree's bounds on every side, mm (>= 0).
    max_bytes : int, optional
        Refuse grids whose float32 volume would need more bytes (default: 80 % of the
        available memory).

    Returns
    -------
    affine : numpy.ndarray
        ``(4, 4)`` voxel index -> mm (diagonal spacing, voxel ``(0, 0, 0)`` centre at the
        low corner of the bounds minus the margin).
    shape : tuple of int
        ``(I, J, K)`` grid size.

    Raises
    ------
    VesselInputError
        Non-positive spacing, negative margin, or a grid too large for memory.
    """
    sp = np.broadcast_to(np.asarray(spacing_mm, dtype=np.float64), (3,)).copy()
    if not np.all(np.isfinite(sp)) or np.any(sp <= 0):
        raise VesselInputError(f"spacing_mm must be > 0, got {spacing_mm!r}")
    if not np.isfinite(margin_mm) or margin_mm < 0:
        raise VesselInputError(f"margin_mm must be >= 0, got {margin_mm!r}")
    lo, hi = tree.bounds_mm()
    lo = lo - margin_mm
    hi = hi + margin_mm
    n = np.ceil((hi - lo) / sp).astype(np.float64) + 1
    shape = tuple(int(v) for v in n)
    if any(v > 2**31 for v in n):
        raise VesselInputError(f"voxel grid {n.astype(int).tolist()} is too large; use a coarser spacing")
    _check_memory(shape, max_bytes)
    affine = np.eye(4)
    affine[:3, :3] = np.diag(sp)
    affine[:3, 3] = lo
    return affine, shape


def _segment_geometry(tree: VesselTree) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-segment precomputed round-cone parameters.

    Returns ``geo`` ``(E, 11)``: a(3), unit axis(3), length, r0, r1, s, c (c = -1 when one
    end sphere contains the other), ``pts`` ``(E, 6)`` end points, ``rad`` ``(E, 2)``.
    A single-node tree is treated as one sphere.
    """
    if tree.n_nodes == 1:
        p0 = tree.positions_mm[:1]
        p1 = p0.copy()
        r0 = tree.radii_mm[:1]
        r1 = r0.copy()
    else:
        p0, p1, r0, r1 = tree.segments()
    if np.any(r0 <= 0) or np.any(r1 <= 0):
        raise VesselInputError("radii must be > 0")
    v = p1 - p0
    length = np.linalg.norm(v, axis=1)
    u = np.zeros_like(v)
    ok = length > 0
    u[ok] = v[ok] / length[ok, None]
    u[~ok] = (1.0, 0.0, 0.0)
    dr = r0 - r1
    degenerate = np.abs(dr) >= length * (1 - 1e-12)
    s = np.where(degenerate, 0.0, dr / np.where(ok, length, 1.0))
    c = np.where(degenerate, -1.0, np.sqrt(np.clip(1 - s * s, 0.0, 1.0)))
    geo = np.column_stack([p0, u, length, r0, r1, s, c]).astype(np.float64)
    return np.ascontiguousarray(geo), np.ascontiguousarray(np.hstack([p0, p1])), np.column_stack([r0, r1])


def voxelize_tree(
    tree: VesselTree,
    affine: np.ndarray,
    shape: tuple[int, int, int],
    node_values: np.ndarray | None = None,
    supersample: int = 4,
    max_bytes: int | None = None,
) -> np.ndarray:
    """Lumen fraction (times fill value) of every voxel of a grid.

    Parameters
    ----------
    tree : VesselTree
        Tree in world mm; each edge is a round cone (union of spheres, radius linear
        between the node radii).
    affine : numpy.ndarray
        ``(4, 4)`` voxel index ``(i, j, k)`` -> world mm (any orientation, shear allowed).
    shape : tuple of int
        ``(I, J, K)`` output size.
    node_values : numpy.ndarray, optional
        ``(N,)`` per-node fill value in [0, 1] (e.g. bolus contrast fraction), linearly
        interpolated along each edge; at a point inside several tubes the largest value wins.
        Default: 1 everywhere (pure lumen fraction).
    supersample : int
        Sub-points per axis in voxels cut by the surface (``supersample ** 3`` in all);
        1 gives a binary voxelization at voxel centres.
    max_bytes : int, optional
        Refuse grids whose output would need more bytes (default: 80 % of the available
        memory).

    Returns
    -------
    numpy.ndarray
        ``shape`` float32 in [0, 1]: the fraction of each voxel inside the lumen union,
        times the interpolated fill value.

    Raises
    ------
    VesselInputError
        Bad affine/shape/values, or a grid too large for memory.
    """
    a, shp = _check_affine_shape(affine, shape)
    sub = int(supersample)
    if sub < 1 or sub > 16:
        raise VesselInputError(f"supersample must be in [1, 16], got {supersample!r}")
    _check_memory(shp, max_bytes)
    use_vals = node_values is not None
    if use_vals:
        nv = np.asarray(node_values, dtype=np.float64).reshape(-1)
        if nv.shape != (tree.n_nodes,):
            raise VesselInputError(f"node_values: expected shape ({tree.n_nodes},), got {nv.shape}")
        if not np.all(np.isfinite(nv)) or np.any(nv < 0) or np.any(nv > 1):
            raise VesselInputError("node_values must be finite and within [0, 1]")
    geo, pts, rad = _segment_geometry(tree)
    if use_vals:
        if tree.n_nodes == 1:
            vals = np.array([[nv[0], nv[0]]])
        else:
            e = tree.edges()
            vals = np.column_stack([nv[e[:, 0]], nv[e[:, 1]]])
    else:
        vals = np.ones((geo.shape[0], 2))
    out = np.zeros(shp, dtype=np.float32)

    a3 = np.ascontiguousarray(a[:3, :3])
    t3 = np.ascontiguousarray(a[:3, 3])
    inv = np.linalg.inv(a)
    col_norm = np.linalg.norm(a3, axis=0)
    half_diag_mm = 0.5 * float(col_norm.sum())  # bound on centre-to-corner distance of a voxel
    brick_half_mm = half_diag_mm * (_BRICK - 1)  # bound on brick-centre to voxel-centre distance

    # voxel-index bounding box of each segment (transform the 8 corners of its mm box)
    rmax = rad.max(axis=1)
    lo_mm = np.minimum(pts[:, :3], pts[:, 3:]) - rmax[:, None] - half_diag_mm
    hi_mm = np.maximum(pts[:, :3], pts[:, 3:]) + rmax[:, None] + half_diag_mm
    corners = np.stack(
        [np.where(np.array([(m >> b) & 1 for b in range(3)], dtype=bool), hi_mm, lo_mm) for m in range(8)],
        axis=1,
    )  # (E, 8, 3)
    ijk = corners @ inv[:3, :3].T + inv[:3, 3]
    lo_v = np.floor(ijk.min(axis=1)).astype(np.int64)
    hi_v = np.ceil(ijk.max(axis=1)).astype(np.int64)
    lim = np.asarray(shp, dtype=np.int64) - 1
    lo_v = np.clip(lo_v, 0, lim)
    hi_v = np.clip(hi_v, 0, lim)
    inside = np.all(ijk.max(axis=1) >= -1, axis=1) & np.all(ijk.min(axis=1) <= lim + 1, axis=1)
    keep = np.nonzero(inside)[0]
    if keep.size == 0:
        return out
    lo_v, hi_v = np.ascontiguousarray(lo_v[keep]), np.ascontiguousarray(hi_v[keep])
    pts_k, rad_k = np.ascontiguousarray(pts[keep]), np.ascontiguousarray(rad[keep])
    geo_k, vals_k = np.ascontiguousarray(geo[keep]), np.ascontiguousarray(vals[keep])

    nb = np.asarray([(s + _BRICK - 1) // _BRICK for s in shp], dtype=np.int64)
    counts = _count_pairs(lo_v, hi_v, pts_k, rad_k, nb, brick_half_mm, a3, t3, half_diag_mm)
    offsets = np.zeros(counts.size + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    brick_of = np.empty(int(offsets[-1]), dtype=np.int64)
    seg_of = np.empty(int(offsets[-1]), dtype=np.int64)
    _fill_pairs(lo_v, hi_v, pts_k, rad_k, nb, brick_half_mm, a3, t3, half_diag_mm, offsets, brick_of, seg_of)
    if brick_of.size == 0:
        return out
    order = np.argsort(brick_of, kind="stable")
    brick_sorted = brick_of[order]
    seg_list = np.ascontiguousarray(seg_of[order])
    brick_ids, first = np.unique(brick_sorted, return_index=True)
    starts = np.append(first, brick_sorted.size).astype(np.int64)
    del brick_of, seg_of, order, brick_sorted

    _voxelize_bricks(out, brick_ids.astype(np.int64), starts, seg_list, nb, a3, t3, geo_k, vals_k,
                     half_diag_mm, sub, use_vals)
    return out
