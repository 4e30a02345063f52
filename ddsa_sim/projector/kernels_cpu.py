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
_RAYS_PER_TASK = 64  # rays per task of the parallel loops (one call of a compiled function each)


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


def _any_per_brick(mask: np.ndarray, b: int) -> np.ndarray:
    """OR of ``mask`` over each brick of ``b`` voxels along axis 0 and one voxel either side of it."""
    n = mask.shape[0]
    nb = -(-n // b)
    padded = np.zeros((nb * b + 2, *mask.shape[1:]), dtype=bool)  # padded[v + 1] is voxel v
    padded[1:n + 1] = mask
    inside = padded[1:-1].reshape(nb, b, *mask.shape[1:]).any(axis=1)
    return inside | padded[0:nb * b:b] | padded[b + 1::b]  # voxels b*q - 1 and b*q + b


def brick_occupancy(density: np.ndarray, brick_shift: int = 3, max_fraction: float = 0.5) -> tuple[np.ndarray, int]:
    """Which bricks of ``2**brick_shift`` voxels lie within one voxel of a non-zero density, for
    empty-space skipping.

    The one-voxel margin makes skipping exact for trilinear sampling too: a sample inside a brick
    reads voxels at most one voxel beyond it. Returns ``(bricks, brick_shift)``, or a dummy grid and
    shift 0 (skipping off) when more than ``max_fraction`` of the bricks are occupied: a dense CT
    gains nothing from the extra test.
    """
    occ = density != 0
    for axis in range(3):  # the margin box is a product of intervals: reduce one axis at a time
        occ = np.moveaxis(_any_per_brick(np.moveaxis(occ, axis, 0), 1 << brick_shift), 0, axis)
    if occ.mean() > max_fraction:
        return np.ones((1, 1, 1), np.uint8), 0
    return np.ascontiguousarray(occ, dtype=np.uint8), brick_shift


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


@numba.njit(inline="always", cache=True)
def _occupied_runs(s0, s1, s2, d0, d1, d2, tmin, tmax, bricks, brick_shift, runs):
    """Ray parameter intervals over runs of occupied bricks, written to ``runs[:n]``; returns n.

    Brick b spans voxel coordinates ``[b size - 0.5, (b + 1) size - 0.5]``; ``runs`` needs a row
    per brick crossed (at most the sum of the brick grid's sides, plus 2).
    """
    size = 1 << brick_shift
    nb0, nb1, nb2 = bricks.shape
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
    n = 0
    t = tmin
    start = -1.0  # start of the current run of occupied bricks; < tmin when outside one
    while True:
        occupied = bricks[bi, bj, bk] != 0
        if occupied and start < tmin:
            start = t
        elif not occupied and start >= tmin:
            runs[n, 0] = start
            runs[n, 1] = t
            n += 1
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
        runs[n, 0] = start
        runs[n, 1] = tmax
        n += 1
    return n


@numba.njit(parallel=True, cache=True)
def siddon_area_density(bits, label_mask, lut, vox_from_world, source, directions, ray_end, order, out, bricks,
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
    ray_end : float64 (R,), where each ray ends (mm from the source): its detector pixel; nothing beyond it
        attenuates
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
    fbits = bits.reshape(-1)
    A = vox_from_world
    s0, s1, s2 = _apply(A, source[0], source[1], source[2], 1.0)
    n = order.shape[0]
    for task in numba.prange((n + _RAYS_PER_TASK - 1) // _RAYS_PER_TASK):
        lo = task * _RAYS_PER_TASK
        _siddon_rays(fbits, bits.shape, label_mask, lut, A, s0, s1, s2, directions, ray_end, order, lo,
                     min(lo + _RAYS_PER_TASK, n), bricks, brick_shift, out)


@numba.njit(cache=True)
def _siddon_rays(fbits, shape, label_mask, lut, A, s0, s1, s2, directions, ray_end, order, lo, hi, bricks, brick_shift,
                 out):
    """March the rays ``order[lo:hi]`` into ``out``: one task of :func:`siddon_area_density`.

    A function of its own, not inlined into the parallel loop: the helpers inlined here make a large
    body, and numba's parallel passes over a large loop body cost minutes of compilation.
    """
    n0, n1, n2 = shape
    nb0, nb1, nb2 = bricks.shape
    single = label_mask == 0
    acc = np.empty(lut.size)
    runs = np.empty((nb0 + nb1 + nb2 + 2, 2))
    for pos in range(lo, hi):
        r = order[pos]
        d0, d1, d2 = _apply(A, directions[r, 0], directions[r, 1], directions[r, 2], 0.0)
        tmin, tmax = _clip_to_box(s0, s1, s2, d0, d1, d2, n0, n1, n2, -0.5)
        tmax = min(tmax, ray_end[r])  # the ray ends on its detector pixel
        if tmax <= tmin:
            continue
        acc[:] = 0.0
        run = 0.0
        if brick_shift == 0:
            # a literal ``single`` per call: each inlined copy is compiled for one case
            if single:
                run = _siddon_segment(fbits, label_mask, True, s0, s1, s2, d0, d1, d2, tmin, tmax,
                                      n0, n1, n2, acc, run)
            else:
                run = _siddon_segment(fbits, label_mask, False, s0, s1, s2, d0, d1, d2, tmin, tmax,
                                      n0, n1, n2, acc, run)
        else:
            n_runs = _occupied_runs(s0, s1, s2, d0, d1, d2, tmin, tmax, bricks, brick_shift, runs)
            for q in range(n_runs):
                run = _siddon_segment(fbits, label_mask, single, s0, s1, s2, d0, d1, d2, runs[q, 0],
                                      runs[q, 1], n0, n1, n2, acc, run)
        acc[0] += run
        for m in range(lut.size):
            out[r, lut[m]] += acc[m]


@numba.njit(inline="always", cache=True)
def _trilinear_sample(bits, label_mask, single, x, y, z, n0, n1, n2, w, acc, run):
    """Add ``w`` x the trilinear density at voxel coordinates (x, y, z), clamped to the outer voxel
    centres; each corner's share goes to its own material (:func:`_add_voxel`)."""
    x = min(max(x, 0.0), n0 - 1.0)
    y = min(max(y, 0.0), n1 - 1.0)
    z = min(max(z, 0.0), n2 - 1.0)
    i = min(int(x), max(n0 - 2, 0))
    j = min(int(y), max(n1 - 2, 0))
    k = min(int(z), max(n2 - 2, 0))
    fx, fy, fz = x - i, y - j, z - k
    gx, gy, gz = 1.0 - fx, 1.0 - fy, 1.0 - fz
    o0 = n1 * n2 if n0 > 1 else 0  # an axis of one voxel has no upper neighbour (its weight is 0)
    o1 = n2 if n1 > 1 else 0
    o2 = 1 if n2 > 1 else 0
    idx = (i * n1 + j) * n2 + k
    run = _add_voxel(bits, label_mask, single, idx, w * gx * gy * gz, acc, run)
    run = _add_voxel(bits, label_mask, single, idx + o2, w * gx * gy * fz, acc, run)
    run = _add_voxel(bits, label_mask, single, idx + o1, w * gx * fy * gz, acc, run)
    run = _add_voxel(bits, label_mask, single, idx + o1 + o2, w * gx * fy * fz, acc, run)
    run = _add_voxel(bits, label_mask, single, idx + o0, w * fx * gy * gz, acc, run)
    run = _add_voxel(bits, label_mask, single, idx + o0 + o2, w * fx * gy * fz, acc, run)
    run = _add_voxel(bits, label_mask, single, idx + o0 + o1, w * fx * fy * gz, acc, run)
    return _add_voxel(bits, label_mask, single, idx + o0 + o1 + o2, w * fx * fy * fz, acc, run)


@numba.njit(inline="always", cache=True)
def _plane_samples(bits, label_mask, single, s0, s1, s2, d0, d1, d2, n0, n1, n2, axis, m, c_first, dc, t_first,
                   g, q0, q1, acc, run):
    """Add ``g`` x the density at planes ``q0 <= q < q1`` of the grid (:func:`plane_grid`) on ``axis``.

    On a plane of voxel centres (``m == 1``) the trilinear interpolant is bilinear in the two other
    axes: 4 loads per sample instead of 8, and one add when the 4 voxels share a material. The
    caller corrects the first and last weights.
    """
    if m != 1:
        for q in range(q0, q1):
            t = t_first + q * g
            run = _trilinear_sample(bits, label_mask, single, s0 + t * d0, s1 + t * d1, s2 + t * d2, n0, n1, n2,
                                    g, acc, run)
        return run
    if axis == 0:
        sb, db, se, de, nb, ne, pa, pb, pe = s1, d1, s2, d2, n1, n2, n1 * n2, n2, 1
    elif axis == 1:
        sb, db, se, de, nb, ne, pa, pb, pe = s0, d0, s2, d2, n0, n2, n2, n1 * n2, 1
    else:
        sb, db, se, de, nb, ne, pa, pb, pe = s0, d0, s1, d1, n0, n1, 1, n1 * n2, n2
    ob = pb if nb > 1 else 0  # an axis of one voxel has no upper neighbour (its weight is 0)
    oe = pe if ne > 1 else 0
    ib_hi = max(nb - 2, 0)
    ie_hi = max(ne - 2, 0)
    for q in range(q0, q1):
        t = t_first + q * g
        xb = min(max(sb + t * db, 0.0), nb - 1.0)
        xe = min(max(se + t * de, 0.0), ne - 1.0)
        ib = min(int(xb), ib_hi)
        ie = min(int(xe), ie_hi)
        fb, fe = xb - ib, xe - ie
        idx = (c_first + q * dc) * pa + ib * pb + ie * pe
        b00, b01, b10, b11 = bits[idx], bits[idx + oe], bits[idx + ob], bits[idx + ob + oe]
        # in float64: float32 differences below would round
        d00, d01 = np.float64(float32_from_bits(b00)), np.float64(float32_from_bits(b01))
        d10, d11 = np.float64(float32_from_bits(b10)), np.float64(float32_from_bits(b11))
        # bilinear as two lerps and a lerp (3 multiplies; the 4 corner weights only where materials mix)
        r0 = d00 + fe * (d01 - d00)
        r1 = d10 + fe * (d11 - d10)
        v = g * (r0 + fb * (r1 - r0))
        if single:
            run += v
            continue
        l00 = b00 & label_mask
        if ((b01 ^ b00) | (b10 ^ b00) | (b11 ^ b00)) & label_mask == 0:
            acc[l00] += v  # one material around the sample (most samples)
        else:
            gb, ge = g * (1.0 - fb), 1.0 - fe
            acc[l00] += gb * ge * d00
            acc[b01 & label_mask] += gb * fe * d01
            acc[b10 & label_mask] += g * fb * ge * d10
            acc[b11 & label_mask] += g * fb * fe * d11
    return run


@numba.njit(inline="always", cache=True)
def plane_grid(sa, da, tmin, tmax, step_mm):
    """Sample planes of the dominant axis inside ``(tmin, tmax)``: the grid both backends share.

    Planes lie at voxel coordinates ``c / m`` along the dominant axis (``m`` planes per voxel, 1 when
    ``step_mm <= 0``, else the fewest that keep the spacing <= ``step_mm``).

    Returns
    -------
    m, c_first, dc, count, t_first, g : int, int, int, int, float, float
        Planes per voxel, first plane index and its direction (+-1), number of planes, ray
        parameter (mm) of the first plane and the spacing (mm).
    """
    h = 1.0 / abs(da)
    m = 1 if step_mm <= 0.0 else max(1, int(math.ceil(h / step_mm * (1.0 - 1e-9))))
    ua = m * (sa + tmin * da)
    ub = m * (sa + tmax * da)
    if da > 0:
        c_first = int(math.floor(ua)) + 1
        count = int(math.ceil(ub)) - c_first
        dc = 1
    else:
        c_first = int(math.ceil(ua)) - 1
        count = c_first - int(math.floor(ub))
        dc = -1
    count = max(count, 0)
    t_first = (c_first / m - sa) / da
    return m, c_first, dc, count, t_first, h / m


@numba.njit(parallel=True, cache=True)
def trilinear_area_density(bits, label_mask, lut, vox_from_world, source, directions, ray_end, order, step_mm, out, bricks,
                           brick_shift):
    """Line integrals of the trilinear interpolant, sampled on the voxel planes of each ray's dominant axis.

    Joseph's scheme (Joseph 1982, IEEE TMI 1:192): along the voxel axis the ray crosses fastest, one
    sample per crossed plane of voxel centres (``m`` per voxel when ``step_mm`` asks for a finer
    spacing), plus the entry and exit points of the volume's outer voxel faces; trapezoidal weights
    over that grid, so a linear density is integrated exactly. Densities are clamped to the outer
    voxel centres (the edge value is held beyond them); each voxel's share goes to its own material.
    On a plane the interpolant is bilinear (4 voxel loads) and a ray takes at most one sample per
    voxel step: about Siddon's cost for a smooth (continuous) object. Bricks skip empty space as in
    :func:`siddon_area_density` (exactly: planes in an empty brick read only zeros).

    Parameters
    ----------
    step_mm : float
        Upper bound on the sample spacing along the ray (mm); <= 0: one sample per plane.

    The other parameters are those of :func:`siddon_area_density` (``out`` accumulated, g/cm^3 x mm).
    """
    fbits = bits.reshape(-1)
    A = vox_from_world
    s0, s1, s2 = _apply(A, source[0], source[1], source[2], 1.0)
    n = order.shape[0]
    for task in numba.prange((n + _RAYS_PER_TASK - 1) // _RAYS_PER_TASK):
        lo = task * _RAYS_PER_TASK
        _trilinear_rays(fbits, bits.shape, label_mask, lut, A, s0, s1, s2, directions, ray_end, order, lo,
                        min(lo + _RAYS_PER_TASK, n), step_mm, bricks, brick_shift, out)


@numba.njit(cache=True)
def _trilinear_rays(fbits, shape, label_mask, lut, A, s0, s1, s2, directions, ray_end, order, lo, hi, step_mm, bricks,
                    brick_shift, out):
    """March the rays ``order[lo:hi]`` into ``out``: one task of :func:`trilinear_area_density` (a function of
    its own for the reason given at :func:`_siddon_rays`)."""
    n0, n1, n2 = shape
    single = label_mask == 0
    nb0, nb1, nb2 = bricks.shape
    acc = np.empty(lut.size)
    runs = np.empty((nb0 + nb1 + nb2 + 2, 2))
    for pos in range(lo, hi):
        r = order[pos]
        d0, d1, d2 = _apply(A, directions[r, 0], directions[r, 1], directions[r, 2], 0.0)
        tmin, tmax = _clip_to_box(s0, s1, s2, d0, d1, d2, n0, n1, n2, -0.5)
        tmax = min(tmax, ray_end[r])  # the ray ends on its detector pixel
        if tmax <= tmin:
            continue
        # the dominant axis: the first of the largest |d|
        ad0, ad1, ad2 = abs(d0), abs(d1), abs(d2)
        axis = 0 if ad0 >= ad1 and ad0 >= ad2 else (1 if ad1 >= ad2 else 2)
        sa, da = (s0, d0) if axis == 0 else ((s1, d1) if axis == 1 else (s2, d2))
        m, c_first, dc, count, t_first, g = plane_grid(sa, da, tmin, tmax, step_mm)
        acc[:] = 0.0
        run = 0.0
        if count == 0:
            w_in = w_out = 0.5 * (tmax - tmin)
        else:
            t_last = t_first + (count - 1) * g
            w_in = 0.5 * (t_first - tmin)
            w_out = 0.5 * (tmax - t_last)
            # every plane weighs g here; the first and last are corrected below
            if brick_shift == 0:
                # a literal ``single`` per call: each inlined copy is compiled for one case
                if single:
                    run = _plane_samples(fbits, label_mask, True, s0, s1, s2, d0, d1, d2, n0, n1, n2, axis, m,
                                         c_first, dc, t_first, g, 0, count, acc, run)
                else:
                    run = _plane_samples(fbits, label_mask, False, s0, s1, s2, d0, d1, d2, n0, n1, n2, axis, m,
                                         c_first, dc, t_first, g, 0, count, acc, run)
            else:
                n_runs = _occupied_runs(s0, s1, s2, d0, d1, d2, tmin, tmax, bricks, brick_shift, runs)
                for k in range(n_runs):
                    q0 = min(max(int(math.ceil((runs[k, 0] - t_first) / g)), 0), count)
                    q1 = min(max(int(math.ceil((runs[k, 1] - t_first) / g)), q0), count)
                    run = _plane_samples(fbits, label_mask, single, s0, s1, s2, d0, d1, d2, n0, n1, n2, axis, m,
                                         c_first, dc, t_first, g, q0, q1, acc, run)
            # trapezoid: the first plane weighs (t_1 - tmin)/2, the last (tmax - t_{K-2})/2
            corr_first = w_in - 0.5 * g if count > 1 else w_in + w_out - g
            run = _trilinear_sample(fbits, label_mask, single, s0 + t_first * d0, s1 + t_first * d1,
                                    s2 + t_first * d2, n0, n1, n2, corr_first, acc, run)
            if count > 1:
                run = _trilinear_sample(fbits, label_mask, single, s0 + t_last * d0, s1 + t_last * d1,
                                        s2 + t_last * d2, n0, n1, n2, w_out - 0.5 * g, acc, run)
        run = _trilinear_sample(fbits, label_mask, single, s0 + tmin * d0, s1 + tmin * d1, s2 + tmin * d2,
                                n0, n1, n2, w_in, acc, run)
        run = _trilinear_sample(fbits, label_mask, single, s0 + tmax * d0, s1 + tmax * d1, s2 + tmax * d2,
                                n0, n1, n2, w_out, acc, run)
        acc[0] += run
        for k in range(lut.size):
            out[r, lut[k]] += acc[k]
