"""How large an image pixel is in the patient: the pixel spacing at a point of the beam (mm per pixel).

A vessel of diameter ``d`` mm at the isocenter spans ``d / pixel_spacing_at(P, isocenter)`` pixels, so
two images show the same anatomy at the same scale when this spacing is the same, whatever their detector
pixels, binning and magnification (``SDD / SOD``). ``ddsa-sim train`` records it for its training images
and ``ddsa-sim infer`` resamples a run to it (docs/inference.md, "Pixel scale").
"""

from __future__ import annotations

import numpy as np

__all__ = ["median_pixel_spacing", "pixel_spacing_at"]


def pixel_spacing_at(projection_matrix: np.ndarray, point_mm: np.ndarray) -> float:
    """Pixel spacing (mm) in the plane through ``point_mm`` perpendicular to the ray from the source.

    The projection's Jacobian at the point, restricted to that plane, maps mm to pixels; the spacing is
    the square root of the inverse of its determinant (the geometric mean of the two image axes'
    spacings). For a pinhole C-arm and a point on its principal ray at distance ``SOD`` from the source
    this is ``detector_pixel_mm * SOD / SDD``.

    Parameters
    ----------
    projection_matrix : (3, 4) array
        Homogeneous world point (mm) -> homogeneous image index (pixels).
    point_mm : (3,) array
        World point (mm), e.g. the isocenter.

    Returns
    -------
    float
        mm per pixel at ``point_mm``.
    """
    p = np.asarray(projection_matrix, dtype=np.float64)
    x = np.asarray(point_mm, dtype=np.float64)
    m, p4 = p[:, :3], p[:, 3]
    source = np.linalg.solve(m, -p4)
    h = p @ np.append(x, 1.0)
    uv = h[:2] / h[2]
    jacobian = (m[:2] - np.outer(uv, m[2])) / h[2]  # d(u, v) / d(world), pixels per mm
    ray = (x - source) / np.linalg.norm(x - source)
    e1 = np.cross(ray, [1.0, 0.0, 0.0] if abs(ray[0]) < 0.9 else [0.0, 1.0, 0.0])
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(ray, e1)
    return float(1.0 / np.sqrt(abs(np.linalg.det(jacobian @ np.stack([e1, e2], axis=1)))))


def median_pixel_spacing(projection_matrices: np.ndarray, isocenters_mm: np.ndarray) -> float | None:
    """Median of :func:`pixel_spacing_at` over views ``(N, 3, 4)`` at their isocenters ``(N, 3)``, mm; views
    with a NaN (no C-arm geometry) are left out, None when none is left."""
    known = [(p, x) for p, x in zip(projection_matrices, isocenters_mm) if np.isfinite(p).all() and np.isfinite(x).all()]
    return float(np.median([pixel_spacing_at(p, x) for p, x in known])) if known else None
