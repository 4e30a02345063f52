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
def siddon_area_density(density, labels, lut, vox_from_world, source, directions, out):
    """Exact line integrals through piecewise-constant voxels (Siddon / Amanatides-Woo traversal).

    Parameters
    ----------
    density : float32 (I, J, K), g/cm^3
    labels : uint8 (I, J, K), local material label
    lut : int64 (L,), local label -> column of ``out``
    vox_from_world : float64 (3, 4), world mm -> voxel index (voxel i spans [i - 0.5, i + 0.5])
    source : float64 (3,), world mm
    directions : float64 (R, 3), unit ray directions (world)
    out : float64 (R, M), accumulated sums of density x length (g/cm^3 x mm); divide by 10 for g/cm^2
    """
    n0, n1, n2 = density.shape
    A = vox_from_world
    s0 = A[0, 0] * source[0] + A[0, 1] * source[1] + A[0, 2] * source[2] + A[0, 3]
    s1 = A[1, 0] * source[0] + A[1, 1] * source[1] + A[1, 2] * source[2] + A[1, 3]
    s2 = A[2, 0] * source[0] + A[2, 1] * source[1] + A[2, 2] * source[2] + A[2, 3]
    for r in numba.prange(directions.shape[0]):
        w0, w1, w2 = directions[r, 0], directions[r, 1], directions[r, 2]
        d0 = A[0, 0] * w0 + A[0, 1] * w1 + A[0, 2] * w2
        d1 = A[1, 0] * w0 + A[1, 1] * w1 + A[1, 2] * w2
        d2 = A[2, 0] * w0 + A[2, 1] * w1 + A[2, 2] * w2
        tmin, tmax = _clip_to_box(s0, s1, s2, d0, d1, d2, n0, n1, n2, -0.5)
        if tmax <= tmin:
            continue
        # voxel containing the midpoint of the first step, robust against landing on a face
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
        t = tmin
        while t < tmax:
            if ti <= tj and ti <= tk:
                tn = ti
            elif tj <= tk:
                tn = tj
            else:
                tn = tk
            if tn > tmax:
                tn = tmax
            rho = density[i, j, k]
            if rho != 0.0:
                out[r, lut[labels[i, j, k]]] += (tn - t) * rho
            t = tn
            if ti <= tj and ti <= tk:
                i += si
                ti += di
                if i < 0 or i >= n0:
                    break
            elif tj <= tk:
                j += sj
                tj += dj
                if j < 0 or j >= n1:
                    break
            else:
                k += sk
                tk += dk
                if k < 0 or k >= n2:
                    break


@numba.njit(parallel=True, cache=True)
def trilinear_area_density(density, labels, lut, vox_from_world, source, directions, step_mm, out):
    """DeepDRR-style ray marching: trilinear density x material fraction at a fixed step (mm).

    Samples run from the entry to the exit of the volume's outer voxel faces, with
    trapezoidal weights (first/last sample half weight, the last partial interval included), so a
    linear density is integrated exactly. Arguments as :func:`siddon_area_density`.
    """
    n0, n1, n2 = density.shape
    A = vox_from_world
    s0 = A[0, 0] * source[0] + A[0, 1] * source[1] + A[0, 2] * source[2] + A[0, 3]
    s1 = A[1, 0] * source[0] + A[1, 1] * source[1] + A[1, 2] * source[2] + A[1, 3]
    s2 = A[2, 0] * source[0] + A[2, 1] * source[1] + A[2, 2] * source[2] + A[2, 3]
    for r in numba.prange(directions.shape[0]):
        w0, w1, w2 = directions[r, 0], directions[r, 1], directions[r, 2]
        d0 = A[0, 0] * w0 + A[0, 1] * w1 + A[0, 2] * w2
        d1 = A[1, 0] * w0 + A[1, 1] * w1 + A[1, 2] * w2
        d2 = A[2, 0] * w0 + A[2, 1] * w1 + A[2, 2] * w2
        # the volume spans the outer voxel faces; beyond the outer centres the edge value is held
        tmin, tmax = _clip_to_box(s0, s1, s2, d0, d1, d2, n0, n1, n2, -0.5)
        if tmax <= tmin:
            continue
        n_full = int(math.floor((tmax - tmin) / step_mm))
        last = tmax - (tmin + n_full * step_mm)
        n_samples = n_full + 1 + (1 if last > 1e-9 else 0)
        for q in range(n_samples):
            if q <= n_full:
                t = tmin + q * step_mm
            else:
                t = tmax
            # trapezoid weights on the grid tmin, tmin+h, ..., tmin+n_full*h, (tmax)
            if n_samples == 1:
                wq = 0.0
            elif q == 0:
                wq = 0.5 * step_mm if n_full > 0 else 0.5 * last
            elif q < n_full:
                wq = step_mm
            elif q == n_full:
                wq = 0.5 * step_mm + (0.5 * last if last > 1e-9 else 0.0)
            else:
                wq = 0.5 * last
            x = min(max(s0 + t * d0, 0.0), n0 - 1.0)
            y = min(max(s1 + t * d1, 0.0), n1 - 1.0)
            z = min(max(s2 + t * d2, 0.0), n2 - 1.0)
            i = min(int(x), n0 - 2) if n0 > 1 else 0
            j = min(int(y), n1 - 2) if n1 > 1 else 0
            k = min(int(z), n2 - 2) if n2 > 1 else 0
            fx, fy, fz = x - i, y - j, z - k
            for c in range(8):
                ci = i + (c >> 2 & 1)
                cj = j + (c >> 1 & 1)
                ck = k + (c & 1)
                if ci >= n0 or cj >= n1 or ck >= n2:
                    continue
                wx = fx if (c >> 2 & 1) else 1.0 - fx
                wy = fy if (c >> 1 & 1) else 1.0 - fy
                wz = fz if (c & 1) else 1.0 - fz
                rho = density[ci, cj, ck]
                if rho != 0.0:
                    out[r, lut[labels[ci, cj, ck]]] += wq * wx * wy * wz * rho
