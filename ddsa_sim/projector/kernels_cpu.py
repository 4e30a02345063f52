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

_EPS = 1e-12


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


@numba.njit(parallel=True, cache=True)
def siddon_area_density(density, bits, label_mask, lut, vox_from_world, source, directions, out, bricks,
                        brick_shift):
    """Exact line integrals through piecewise-constant voxels (Siddon / Amanatides-Woo traversal).

    Parameters
    ----------
    density : float32 (I, J, K), g/cm^3
    bits : uint32 (I, J, K), the same memory as ``density``; its lowest bits hold the material label
    label_mask : int
        ``bits & label_mask`` is the local material label (see ``ProjectorVolume``: one memory stream
        for density and material)
    lut : int64 (L,), local label -> column of ``out``
    vox_from_world : float64 (3, 4), world mm -> voxel index (voxel i spans [i - 0.5, i + 0.5])
    source : float64 (3,), world mm
    directions : float64 (R, 3), unit ray directions (world)
    out : float64 (R, M), accumulated sums of density x length (g/cm^3 x mm); divide by 10 for g/cm^2
    bricks : uint8 (ceil(I/b), ceil(J/b), ceil(K/b)), 1 where a brick of b = 2**brick_shift voxels
        holds a non-zero density (see :func:`brick_occupancy`)
    brick_shift : int
        log2 of the brick size; 0 disables empty-space skipping (dense volumes such as a CT).
        Rays jump over empty bricks: a sparse vessel volume costs little more than its vessels.
    """
    n0, n1, n2 = density.shape
    n_out = out.shape[1]
    single = lut.size == 1 or lut.min() == lut.max()  # one material: skip the label reads
    skip = brick_shift > 0
    bsize = 1 << brick_shift
    col0 = lut[0]
    A = vox_from_world
    s0, s1, s2 = _apply(A, source[0], source[1], source[2], 1.0)
    for r in numba.prange(directions.shape[0]):
        d0, d1, d2 = _apply(A, directions[r, 0], directions[r, 1], directions[r, 2], 0.0)
        tmin, tmax = _clip_to_box(s0, s1, s2, d0, d1, d2, n0, n1, n2, -0.5)
        if tmax <= tmin:
            continue
        # voxel containing the start of the ray inside the box, robust against landing on a face
        tm = tmin + 1e-9 * (tmax - tmin) + 1e-9
        i = min(max(int(math.floor(s0 + tm * d0 + 0.5)), 0), n0 - 1)
        j = min(max(int(math.floor(s1 + tm * d1 + 0.5)), 0), n1 - 1)
        k = min(max(int(math.floor(s2 + tm * d2 + 0.5)), 0), n2 - 1)
        si = 1 if d0 > 0 else -1
        sj = 1 if d1 > 0 else -1
        sk = 1 if d2 > 0 else -1
        inf = 1e30
        ti = ((i + 0.5 * si) - s0) / d0 if abs(d0) > _EPS else inf
        tj = ((j + 0.5 * sj) - s1) / d1 if abs(d1) > _EPS else inf
        tk = ((k + 0.5 * sk) - s2) / d2 if abs(d2) > _EPS else inf
        di = abs(1.0 / d0) if abs(d0) > _EPS else inf
        dj = abs(1.0 / d1) if abs(d1) > _EPS else inf
        dk = abs(1.0 / d2) if abs(d2) > _EPS else inf
        acc = np.zeros(n_out)
        acc0 = acc1 = acc2 = acc3 = 0.0
        t = tmin
        while True:
            if skip and bricks[i >> brick_shift, j >> brick_shift, k >> brick_shift] == 0:
                # empty brick: jump to where the ray leaves it, then find the voxel there
                fi = ((i >> brick_shift) << brick_shift) + (bsize if si > 0 else 0) - 0.5
                fj = ((j >> brick_shift) << brick_shift) + (bsize if sj > 0 else 0) - 0.5
                fk = ((k >> brick_shift) << brick_shift) + (bsize if sk > 0 else 0) - 0.5
                te = min((fi - s0) / d0 if abs(d0) > _EPS else inf, (fj - s1) / d1 if abs(d1) > _EPS else inf,
                         (fk - s2) / d2 if abs(d2) > _EPS else inf)
                if te >= tmax:
                    break
                t = te
                tm = te + 1e-6  # 1 nm past the face: inside the next brick
                i = int(math.floor(s0 + tm * d0 + 0.5))
                j = int(math.floor(s1 + tm * d1 + 0.5))
                k = int(math.floor(s2 + tm * d2 + 0.5))
                if i < 0 or i >= n0 or j < 0 or j >= n1 or k < 0 or k >= n2:
                    break
                ti = ((i + 0.5 * si) - s0) / d0 if abs(d0) > _EPS else inf
                tj = ((j + 0.5 * sj) - s1) / d1 if abs(d1) > _EPS else inf
                tk = ((k + 0.5 * sk) - s2) / d2 if abs(d2) > _EPS else inf
                continue
            # the face crossed next decides the axis; one comparison tree per step
            if ti <= tj:
                axis = 0 if ti <= tk else 2
            else:
                axis = 1 if tj <= tk else 2
            tn = ti if axis == 0 else (tj if axis == 1 else tk)
            if tn > tmax:
                tn = tmax
            rho = density[i, j, k]
            if single:
                acc0 += (tn - t) * rho
            elif rho != 0.0:
                # scalar accumulators for the first labels keep the sums in registers
                lab = bits[i, j, k] & label_mask
                if lab == 0:
                    acc0 += (tn - t) * rho
                elif lab == 1:
                    acc1 += (tn - t) * rho
                elif lab == 2:
                    acc2 += (tn - t) * rho
                elif lab == 3:
                    acc3 += (tn - t) * rho
                else:
                    acc[lut[lab]] += (tn - t) * rho
            t = tn
            if t >= tmax:
                break
            if axis == 0:
                i += si
                ti += di
                if i < 0 or i >= n0:
                    break
            elif axis == 1:
                j += sj
                tj += dj
                if j < 0 or j >= n1:
                    break
            else:
                k += sk
                tk += dk
                if k < 0 or k >= n2:
                    break
        if single:
            out[r, col0] += acc0
        else:
            n_lab = lut.size
            acc[lut[0]] += acc0
            if n_lab > 1:
                acc[lut[1]] += acc1
            if n_lab > 2:
                acc[lut[2]] += acc2
            if n_lab > 3:
                acc[lut[3]] += acc3
            for m in range(n_out):
                out[r, m] += acc[m]


@numba.njit(parallel=True, cache=True)
def trilinear_area_density(density, bits, label_mask, lut, vox_from_world, source, directions, step_mm, out):
    """DeepDRR-style ray marching: trilinear density x material fraction at a fixed step (mm).

    Samples run from the entry to the exit of the volume's outer voxel faces (beyond the outer voxel
    centres the edge value is held), with trapezoidal weights (first/last sample half weight, the
    last partial interval included), so a linear density is integrated exactly. Arguments as
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
    for r in numba.prange(directions.shape[0]):
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
