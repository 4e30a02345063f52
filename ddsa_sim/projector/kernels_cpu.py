"""Numba CPU ray-marching kernels: per-material area densities along every detector ray.

Both kernels are parallel over rays and sum each ray serially in a fixed order, so results do not
depend on the thread count. Inputs are contiguous float32 densities (g/cm^3) and uint8 labels; the
per-volume ``lut`` maps a label to a global material index. Output ``out[ray, material]`` is
ACCUMULATED into (volumes are additive along a ray) in g/cm^3 x mm; the caller divides by 10.
"""

from __future__ import annotations

import math

import numba
import numpy as np

import ddsa_sim._openmp  # noqa: F401  (before numba runs a parallel kernel)
from ddsa_sim._bitcast import float32_from_bits

_EPS = 1e-12
_BIG = math.inf  # the next crossing of a face never crossed


def cache_friendly_order(directions: np.ndarray, vox_from_world: np.ndarray) -> np.ndarray:
    """The order in which to march a detector's rays so that consecutive rays read neighbouring memory.

    Rays of neighbouring pixels cross neighbouring voxels. When the step from one pixel to the next
    runs along the volume's innermost (contiguous) axis, consecutive rays read the same cache lines;
    along an outer axis, every ray reads lines of its own (about 3x slower on a 256^3 CT). The
    detector axis whose pixel step is best aligned with the innermost axis becomes the fast one.

    Parameters
    ----------
    directions : float64 (H, W, 3), unit ray directions (world)
    vox_from_world : float64 (3, 4), world mm -> voxel index

    Returns
    -------
    int64 (H * W,), ray indices into ``directions.reshape(-1, 3)``: row by row, or column by column
    """
    h, w = directions.shape[:2]
    rows = np.arange(h * w, dtype=np.int64)
    if h < 2 or w < 2:
        return rows
    lin = np.asarray(vox_from_world, dtype=np.float64)[:, :3]
    hc, wc = min(h // 2 + 1, h - 1), min(w // 2 + 1, w - 1)  # a pixel and its neighbours near the centre
    du = lin @ (directions[hc, wc] - directions[hc, wc - 1])
    dv = lin @ (directions[hc, wc] - directions[hc - 1, wc])

    def alignment(step: np.ndarray) -> float:
        return abs(step[2]) / max(float(np.linalg.norm(step)), 1e-300)

    if alignment(dv) > alignment(du):
        return rows.reshape(h, w).T.reshape(-1)
    return rows


def brick_occupancy(density: np.ndarray, brick_shift: int = 3, max_fraction: float = 0.5) -> tuple[np.ndarray, int]:
    """Which bricks of ``2**brick_shift`` voxels hold any non-zero density, for empty-space skipping.

    Returns ``(bricks, brick_shift)``, or a dummy grid and shift 0 (skipping off) when more than
    ``max_fraction`` of the bricks are occupied: a dense CT gains nothing from the extra test.
    """
    b = 1 << brick_shift
    n = np.array(density.shape)
    nb = -(-n // b)
    padded = np.zeros(tuple(nb * b), dtype=bool)
    padded[: n[0], : n[1], : n[2]] = density != 0
    occ = padded.reshape(nb[0], b, nb[1], b, nb[2], b).any(axis=(1, 3, 5))
    if occ.mean() > max_fraction:
        return np.ones((1, 1, 1), np.uint8), 0
    return occ.astype(np.uint8), brick_shift


@numba.njit(inline="always", cache=True)
def _apply(A, x, y, z, w):
    """(3, 4) affine applied to a point (w = 1) or a direction (w = 0)."""
    return (A[0, 0] * x + A[0, 1] * y + A[0, 2] * z + A[0, 3] * w,
            A[1, 0] * x + A[1, 1] * y + A[1, 2] * z + A[1, 3] * w,
            A[2, 0] * x + A[2, 1] * y + A[2, 2] * z + A[2, 3] * w)


@numba.njit(inline="always", cache=True)
def _clip_to_box(s0, s1, s2, d0, d1, d2, n0, n1, n2, lo):
    """Ray parameter interval [tmin, tmax] inside the box [lo, n - 1 - lo] on every axis."""
    tmin = 0.0
    tmax = 1e30
    for a in range(3):
        if a == 0:
            s, d, hi = s0, d0, n0 - 1.0 - lo
        elif a == 1:
            s, d, hi = s1, d1, n1 - 1.0 - lo
        else:
            s, d, hi = s2, d2, n2 - 1.0 - lo
        if abs(d) < _EPS:
            if s < lo or s > hi:
                return 1.0, 0.0
        else:
            ta = (lo - s) / d
            tb = (hi - s) / d
            if ta > tb:
                ta, tb = tb, ta
            if ta > tmin:
                tmin = ta
            if tb < tmax:
                tmax = tb
    return tmin, tmax


@numba.njit(inline="always", cache=True)
def _add_voxel(bits, label_mask, single, idx, length, acc, run):
    """Add density x length of voxel ``idx``: to ``run`` (one material) or to ``acc[label]``.

    One load gives both the label (low bits) and the density (the same bits as a float32). The
    multi-material sum indexes ``acc`` by the label instead of branching on label changes: a CT's
    labels change every ~20 voxels along a ray, and each mispredicted branch threw away the loads in
    flight. The dense march passes ``single`` as a literal, so its loops have no test per voxel.
    """
    b = bits[idx]
    if single:
        return run + length * float32_from_bits(b)
    acc[b & label_mask] += length * float32_from_bits(b)
    return run


@numba.njit(inline="always", cache=True)
def _siddon_segment(bits, label_mask, single, s0, s1, s2, d0, d1, d2, ta, tb, n0, n1, n2, acc, run):
    """Exact sum of density x length over the ray parameters [ta, tb] (voxel traversal).

    The number of voxel faces crossed is known from the voxels at both ends, so the loop runs a
    fixed count with no bounds or end tests; an axis whose crossings are used up is retired, so
    rounding can never step outside the grid. Sums go to ``run`` or ``acc`` (:func:`_add_voxel`);
    returns the updated ``run``.
    """
    e = 1e-7 * (tb - ta)  # the end voxels are taken just inside the segment
    i = min(max(int(math.floor(s0 + (ta + e) * d0 + 0.5)), 0), n0 - 1)
    j = min(max(int(math.floor(s1 + (ta + e) * d1 + 0.5)), 0), n1 - 1)
    k = min(max(int(math.floor(s2 + (ta + e) * d2 + 0.5)), 0), n2 - 1)
    si = 1 if d0 > 0 else -1
    sj = 1 if d1 > 0 else -1
    sk = 1 if d2 > 0 else -1
    r0 = max((min(max(int(math.floor(s0 + (tb - e) * d0 + 0.5)), 0), n0 - 1) - i) * si, 0)
    r1 = max((min(max(int(math.floor(s1 + (tb - e) * d1 + 0.5)), 0), n1 - 1) - j) * sj, 0)
    r2 = max((min(max(int(math.floor(s2 + (tb - e) * d2 + 0.5)), 0), n2 - 1) - k) * sk, 0)
    t0 = ((i + 0.5 * si) - s0) / d0 if r0 > 0 else _BIG
    t1 = ((j + 0.5 * sj) - s1) / d1 if r1 > 0 else _BIG
    t2 = ((k + 0.5 * sk) - s2) / d2 if r2 > 0 else _BIG
    e0 = abs(1.0 / d0) if r0 > 0 else 0.0
    e1 = abs(1.0 / d1) if r1 > 0 else 0.0
    e2 = abs(1.0 / d2) if r2 > 0 else 0.0
    p0 = si * n1 * n2
    p1 = sj * n2
    idx = (i * n1 + j) * n2 + k
    t = ta
    for _ in range(r0 + r1 + r2):
        if t0 <= t1 and t0 <= t2:
            tn = t0
            r0 -= 1
            t0 = t0 + e0 if r0 > 0 else _BIG
            step = p0
        elif t1 <= t2:
            tn = t1
            r1 -= 1
            t1 = t1 + e1 if r1 > 0 else _BIG
            step = p1
        else:
            tn = t2
            r2 -= 1
            t2 = t2 + e2 if r2 > 0 else _BIG
            step = sk
        run = _add_voxel(bits, label_mask, single, idx, tn - t, acc, run)
        t = tn
        idx += step
    return _add_voxel(bits, label_mask, single, idx, tb - t, acc, run)


@numba.njit(parallel=True, cache=True)
def siddon_area_density(bits, label_mask, lut, vox_from_world, source, directions, order, out, bricks,
                        brick_shift):
    """Exact line integrals through piecewise-constant voxels (Siddon / Amanatides-Woo traversal).

    Parameters
    ----------
    bits : uint32 (I, J, K)
        The densities' float32 bits (g/cm^3; ``ProjectorVolume.density_bits``), the material label in
        the lowest bits
    label_mask : int
        ``bits & label_mask`` is the local material label (see ``ProjectorVolume``: one memory stream
        for density and material); 0 for a single-material volume
    lut : int64 (L,), local label -> column of ``out``
    vox_from_world : float64 (3, 4), world mm -> voxel index (voxel i spans [i - 0.5, i + 0.5])
    source : float64 (3,), world mm
    directions : float64 (R, 3), unit ray directions (world)
    order : int64 (R,)
        The order in which rays are marched (see :func:`cache_friendly_order`); it changes speed,
        never results.
    out : float64 (R, M), accumulated sums of density x length (g/cm^3 x mm); divide by 10 for g/cm^2
    bricks : uint8 (ceil(I/b), ceil(J/b), ceil(K/b)), 1 where a brick of b = 2**brick_shift voxels
        holds a non-zero density (see :func:`brick_occupancy`)
    brick_shift : int
        log2 of the brick size; 0 disables empty-space skipping (dense volumes such as a CT). Rays
        walk the bricks first and march voxels only over runs of occupied bricks, so a sparse
        vessel volume costs little more than its vessels.
    """
    n0, n1, n2 = bits.shape
    fbits = bits.reshape(-1)
    n_lab = lut.size
    single = label_mask == 0
    skip = brick_shift > 0
    size = 1 << brick_shift
    nb0, nb1, nb2 = bricks.shape
    A = vox_from_world
    s0, s1, s2 = _apply(A, source[0], source[1], source[2], 1.0)
    for pos in numba.prange(order.shape[0]):
        r = order[pos]
        d0, d1, d2 = _apply(A, directions[r, 0], directions[r, 1], directions[r, 2], 0.0)
        tmin, tmax = _clip_to_box(s0, s1, s2, d0, d1, d2, n0, n1, n2, -0.5)
        if tmax <= tmin:
            continue
        acc = np.zeros(n_lab)
        run = 0.0
        if not skip:
            # a literal ``single`` per call: each inlined copy is compiled for one case
            if single:
                run = _siddon_segment(fbits, label_mask, True, s0, s1, s2, d0, d1, d2, tmin, tmax,
                                      n0, n1, n2, acc, run)
            else:
                run = _siddon_segment(fbits, label_mask, False, s0, s1, s2, d0, d1, d2, tmin, tmax,
                                      n0, n1, n2, acc, run)
        else:
            # walk the bricks (brick b spans voxel coordinates [b*size - 0.5, (b+1)*size - 0.5]) and
            # march each run of occupied bricks as one segment
            tm = tmin + 1e-7 * (tmax - tmin)
            bi = min(max(int(math.floor((s0 + tm * d0 + 0.5) / size)), 0), nb0 - 1)
            bj = min(max(int(math.floor((s1 + tm * d1 + 0.5) / size)), 0), nb1 - 1)
            bk = min(max(int(math.floor((s2 + tm * d2 + 0.5) / size)), 0), nb2 - 1)
            si = 1 if d0 > 0 else -1
            sj = 1 if d1 > 0 else -1
            sk = 1 if d2 > 0 else -1
            ti = ((bi + (si > 0)) * size - 0.5 - s0) / d0 if d0 != 0.0 else _BIG
            tj = ((bj + (sj > 0)) * size - 0.5 - s1) / d1 if d1 != 0.0 else _BIG
            tk = ((bk + (sk > 0)) * size - 0.5 - s2) / d2 if d2 != 0.0 else _BIG
            di = abs(size / d0) if d0 != 0.0 else _BIG
            dj = abs(size / d1) if d1 != 0.0 else _BIG
            dk = abs(size / d2) if d2 != 0.0 else _BIG
            t = tmin
            start = -1.0  # start of the current run of occupied bricks; < tmin when outside one
            while True:
                occupied = bricks[bi, bj, bk] != 0
                if occupied and start < tmin:
                    start = t
                elif not occupied and start >= tmin:
                    run = _siddon_segment(fbits, label_mask, single, s0, s1, s2, d0, d1, d2, start,
                                          t, n0, n1, n2, acc, run)
                    start = -1.0
                t = min(ti, min(tj, tk))
                if t >= tmax:
                    break
                if ti <= tj and ti <= tk:
                    bi += si
                    ti += di
                    if bi < 0 or bi >= nb0:
                        break
                elif tj <= tk:
                    bj += sj
                    tj += dj
                    if bj < 0 or bj >= nb1:
                        break
                else:
                    bk += sk
                    tk += dk
                    if bk < 0 or bk >= nb2:
                        break
            if start >= tmin:
                run = _siddon_segment(fbits, label_mask, single, s0, s1, s2, d0, d1, d2, start,
                                      tmax, n0, n1, n2, acc, run)
        acc[0] += run
        for m in range(n_lab):
            out[r, lut[m]] += acc[m]


@numba.njit(parallel=True, cache=True)
def trilinear_area_density(density, bits, label_mask, lut, vox_from_world, source, directions, order, step_mm, out):
    """DeepDRR-style ray marching: trilinear density x material fraction at a fixed step (mm).

    Samples run from the entry to the exit of the volume's outer voxel faces (beyond the outer voxel
    centres the edge value is held), with trapezoidal weights (first/last sample half weight, the
    last partial interval included), so a linear density is integrated exactly. ``density`` is
    float32 (I, J, K) g/cm^3 and ``bits`` the same memory as uint32; the other arguments as
    :func:`siddon_area_density`. The material fractions are trilinear too: each of the 8 corners adds
    its weight x density to its own material.
    """
    n0, n1, n2 = density.shape
    n_out = out.shape[1]
    single = lut.size == 1 or lut.min() == lut.max()
    col0 = lut[0]
    A = vox_from_world
    s0, s1, s2 = _apply(A, source[0], source[1], source[2], 1.0)
    i_hi, j_hi, k_hi = max(n0 - 2, 0), max(n1 - 2, 0), max(n2 - 2, 0)
    for pos in numba.prange(order.shape[0]):
        r = order[pos]
        d0, d1, d2 = _apply(A, directions[r, 0], directions[r, 1], directions[r, 2], 0.0)
        tmin, tmax = _clip_to_box(s0, s1, s2, d0, d1, d2, n0, n1, n2, -0.5)
        if tmax <= tmin:
            continue
        n_full = int(math.floor((tmax - tmin) / step_mm))
        last = tmax - (tmin + n_full * step_mm)
        has_last = last > 1e-9
        n_samples = n_full + 1 + (1 if has_last else 0)
        acc = np.zeros(n_out if not single else 1)
        for q in range(n_samples):
            t = tmin + q * step_mm if q <= n_full else tmax
            # trapezoid weights on the grid tmin, tmin+h, ..., tmin+n_full*h, (tmax)
            if n_samples == 1:
                continue
            elif q == 0:
                wq = 0.5 * step_mm if n_full > 0 else 0.5 * last
            elif q < n_full:
                wq = step_mm
            elif q == n_full:
                wq = 0.5 * step_mm + (0.5 * last if has_last else 0.0)
            else:
                wq = 0.5 * last
            x = min(max(s0 + t * d0, 0.0), n0 - 1.0)
            y = min(max(s1 + t * d1, 0.0), n1 - 1.0)
            z = min(max(s2 + t * d2, 0.0), n2 - 1.0)
            i = min(int(x), i_hi)
            j = min(int(y), j_hi)
            k = min(int(z), k_hi)
            fx, fy, fz = x - i, y - j, z - k
            i1 = min(i + 1, n0 - 1)
            j1 = min(j + 1, n1 - 1)
            k1 = min(k + 1, n2 - 1)
            gx, gy, gz = 1.0 - fx, 1.0 - fy, 1.0 - fz
            r000, r001 = density[i, j, k], density[i, j, k1]
            r010, r011 = density[i, j1, k], density[i, j1, k1]
            r100, r101 = density[i1, j, k], density[i1, j, k1]
            r110, r111 = density[i1, j1, k], density[i1, j1, k1]
            if single:
                acc[0] += wq * (gx * (gy * (gz * r000 + fz * r001) + fy * (gz * r010 + fz * r011))
                                + fx * (gy * (gz * r100 + fz * r101) + fy * (gz * r110 + fz * r111)))
                continue
            l000 = bits[i, j, k] & label_mask
            if (l000 == (bits[i, j, k1] & label_mask) and l000 == (bits[i, j1, k] & label_mask)
                    and l000 == (bits[i, j1, k1] & label_mask) and l000 == (bits[i1, j, k] & label_mask)
                    and l000 == (bits[i1, j, k1] & label_mask) and l000 == (bits[i1, j1, k] & label_mask)
                    and l000 == (bits[i1, j1, k1] & label_mask)):
                # one material around the sample (the common case): one accumulation
                acc[lut[l000]] += wq * (gx * (gy * (gz * r000 + fz * r001) + fy * (gz * r010 + fz * r011))
                                        + fx * (gy * (gz * r100 + fz * r101) + fy * (gz * r110 + fz * r111)))
                continue
            acc[lut[l000]] += wq * gx * gy * gz * r000
            acc[lut[(bits[i, j, k1] & label_mask)]] += wq * gx * gy * fz * r001
            acc[lut[(bits[i, j1, k] & label_mask)]] += wq * gx * fy * gz * r010
            acc[lut[(bits[i, j1, k1] & label_mask)]] += wq * gx * fy * fz * r011
            acc[lut[(bits[i1, j, k] & label_mask)]] += wq * fx * gy * gz * r100
            acc[lut[(bits[i1, j, k1] & label_mask)]] += wq * fx * gy * fz * r101
            acc[lut[(bits[i1, j1, k] & label_mask)]] += wq * fx * fy * gz * r110
            acc[lut[(bits[i1, j1, k1] & label_mask)]] += wq * fx * fy * fz * r111
        if single:
            out[r, col0] += acc[0]
        else:
            for m in range(n_out):
                out[r, m] += acc[m]
