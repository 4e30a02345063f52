"""The CT's heart beating with the coronary tree: a displacement field and the resampled CT (docs/dsa.md §4.1).

The coronary tree moves by the affine map of :func:`~ddsa_sim.scene.cardiorespiratory.cardiac_transform`
(its heart frame: apex ``a``, long axis ``e`` base -> apex, length ``L``, radius ``R``). The CT's tissue
at ``x`` moves by the same map, weighted so that it fades away from the heart:

``d(x) = -f w_out(x) (w_L(b) s_L e e^T + w_R(b) s_R (I - e e^T)) (x - a)``

with ``f`` the contraction, ``s_L = longitudinal / L``, ``s_R = radial / R``, ``b = -(x - a) . e - L``
the distance beyond the base plane (the atrioventricular plane), ``h(t) = 1 - 3 t^2 + 2 t^3`` on
[0, 1] (1 below, 0 above; continuous with its slope, so the field has no kink), and

* ``w_out = h((r - HEART_MARGIN_MM) / CARDIAC_FALLOFF_MM)``, ``r`` the distance from the heart region:
  the labelled heart (a label map's ``heart``) together with the convex hull of the tree (the
  ventricles the epicardial tree wraps; the whole region without a label). Every node of the tree is
  in it, so the tissue under a node moves exactly with the node; 34 mm outside it nothing moves;
* ``w_L = h(b / atrial length)``: beyond the base the descent of the atrioventricular plane fades
  over the atria to their roof, which the great veins hold (the label's extent beyond the base, at
  least :data:`MIN_ATRIAL_LENGTH_MM`; without a label :data:`ATRIAL_LENGTH_MM`): the atria stretch and
  fill while the ventricles empty (Hoffman and Ritman 1985; Carlsson et al. 2004);
* ``w_R = h(b / ANNULUS_FALLOFF_MM)``: the radial contraction is the ventricles'; it fades within
  10 mm above the annulus.

``w_out`` is tabulated on a world-axis-aligned grid of :data:`WEIGHT_GRID_MM` (linear in between, 0 off
the grid). The CT is resampled where ``d`` is not 0: backward mapping ``x = y - d(x)`` solved by
fixed-point iteration on the weight grid (a contraction: the field's gradient stays below 1),
interpolated to the CT's voxels; linear density, nearest material label. At contraction 0 the CT is
returned as it is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull

from ddsa_sim.projector import ProjectorVolume
from ddsa_sim.scene.cardiorespiratory import HeartFrame

__all__ = ["ANNULUS_FALLOFF_MM", "ATRIAL_LENGTH_MM", "CARDIAC_FALLOFF_MM", "HEART_MARGIN_MM", "MIN_ATRIAL_LENGTH_MM",
           "WEIGHT_GRID_MM", "HeartField", "beating_ct", "heart_field"]

#: margin around the heart region that moves fully (mm): the epicardial fat the coronaries run in, and
#: the weight grid's rasterization (its half diagonal is 1.7 mm)
HEART_MARGIN_MM = 4.0
#: distance over which the displacement fades to 0 outside the heart (mm): the lungs and the chest wall
#: next to the heart follow it partly (a modelling choice, wide enough that the field does not fold)
CARDIAC_FALLOFF_MM = 30.0
#: length of the atria beyond the atrioventricular plane without a heart label (mm; with one, the label's
#: extent beyond it, at least MIN_ATRIAL_LENGTH_MM): the longitudinal displacement fades to 0 over it,
#: at the atrial roof the pulmonary and caval veins hold
ATRIAL_LENGTH_MM = 40.0
MIN_ATRIAL_LENGTH_MM = 20.0
#: length beyond the atrioventricular plane over which the radial displacement fades to 0 (mm): the
#: ventricles contract radially, the atria above the annulus do not
ANNULUS_FALLOFF_MM = 10.0
#: spacing of the tabulated weight (mm)
WEIGHT_GRID_MM = 2.0
#: fixed-point iterations of the backward map at most (the error shrinks by the field's gradient, < 0.6,
#: each) and the step below which a point has converged (mm)
_INVERSE_ITERATIONS = 20
_INVERSE_TOLERANCE_MM = 0.01


def _fade(t: np.ndarray) -> np.ndarray:
    """``1 - 3 t^2 + 2 t^3`` on [0, 1], 1 below, 0 above."""
    t = np.clip(t, 0.0, 1.0)
    return 1.0 - t * t * (3.0 - 2.0 * t)


@dataclass(frozen=True)
class HeartField:
    """The CT's cardiac motion: the tree's heart frame and amplitudes, the atria's length beyond the
    base, and the weight ``w_out`` tabulated on a world-axis-aligned grid (``weight[i, j, k]`` at
    ``origin_mm + spacing_mm * (i, j, k)``)."""

    frame: HeartFrame
    longitudinal_mm: float
    radial_mm: float
    atrial_length_mm: float
    origin_mm: np.ndarray
    spacing_mm: float
    weight: np.ndarray

    def displacement_mm(self, points_mm: np.ndarray, contraction: float) -> np.ndarray:
        """``d(x)`` (mm, (N, 3)): where the CT's tissue at world points moves at ``contraction``."""
        p = np.atleast_2d(np.asarray(points_mm, dtype=np.float64))
        e, a = self.frame.axis, self.frame.apex_mm
        rel = p - a
        along = rel @ e
        beyond_base = -along - self.frame.length_mm
        w_out = ndimage.map_coordinates(self.weight, ((p - self.origin_mm) / self.spacing_mm).T, order=1,
                                        mode="constant", cval=0.0)
        longitudinal = (self.longitudinal_mm / self.frame.length_mm * _fade(beyond_base / self.atrial_length_mm)
                        * along)[:, None] * e
        radial = (self.radial_mm / self.frame.radius_mm * _fade(beyond_base / ANNULUS_FALLOFF_MM))[:, None] * (
            rel - along[:, None] * e)
        return -float(contraction) * w_out[:, None] * (longitudinal + radial)


def heart_field(frame: HeartFrame, lumen_mm: np.ndarray, longitudinal_mm: float, radial_mm: float,
                heart: np.ndarray | None = None, heart_affine: np.ndarray | None = None) -> HeartField:
    """The CT's cardiac motion of a tree (module docstring).

    Parameters
    ----------
    frame : HeartFrame
        The tree's heart frame (:func:`~ddsa_sim.scene.cardiorespiratory.heart_frame`).
    lumen_mm : (N, 3) float
        World points of the tree's lumen (its nodes or iodine voxels, mm); their convex hull is part of
        the heart region.
    longitudinal_mm, radial_mm : float
        The tree's end-systolic amplitudes (:class:`~ddsa_sim.scene.motion.MotionParams`).
    heart : (I, J, K) bool, optional
        The labelled heart on a grid (a label map's ``heart``).
    heart_affine : (4, 4) float, optional
        Voxel index -> world mm of ``heart``.
    """
    lumen = np.asarray(lumen_mm, dtype=np.float64)
    lo, hi = lumen.min(axis=0), lumen.max(axis=0)
    labelled = heart is not None and bool(np.any(heart))
    atrial_length = ATRIAL_LENGTH_MM
    if labelled:
        ijk = np.argwhere(heart)
        pts = ijk[:: max(1, len(ijk) // 100_000)] @ heart_affine[:3, :3].T + heart_affine[:3, 3]
        lo, hi = np.minimum(lo, pts.min(axis=0)), np.maximum(hi, pts.max(axis=0))
        roof = float(np.percentile(-(pts - frame.apex_mm) @ frame.axis, 99.0))
        atrial_length = max(roof - frame.length_mm, MIN_ATRIAL_LENGTH_MM)
    reach = HEART_MARGIN_MM + CARDIAC_FALLOFF_MM + 2 * WEIGHT_GRID_MM
    origin = lo - reach
    shape = tuple(int(n) for n in np.ceil((hi - lo + 2 * reach) / WEIGHT_GRID_MM) + 1)
    xyz = [origin[k] + WEIGHT_GRID_MM * np.arange(shape[k]).reshape([-1 if i == k else 1 for i in range(3)])
           for k in range(3)]  # world coordinates of the grid, broadcastable
    region = np.ones(shape, bool)
    for n0, n1, n2, c in ConvexHull(lumen, qhull_options="QJ").equations:  # inside the tree's hull: below every facet
        region &= n0 * xyz[0] + n1 * xyz[1] + n2 * xyz[2] + c <= 0
    if labelled:
        inv = np.linalg.inv(heart_affine)
        index = [np.rint(sum(inv[r, k] * xyz[k] for k in range(3)) + inv[r, 3]).astype(np.intp) for r in range(3)]
        inside = np.all([(i >= 0) & (i < n) for i, n in zip(index, heart.shape)], axis=0)
        on_label = np.zeros(shape, bool)
        on_label[inside] = heart[tuple(np.broadcast_to(i, shape)[inside] for i in index)]
        region |= on_label
    r = ndimage.distance_transform_edt(~region, sampling=WEIGHT_GRID_MM)
    return HeartField(frame, float(longitudinal_mm), float(radial_mm), float(atrial_length), origin,
                      WEIGHT_GRID_MM, _fade((r - HEART_MARGIN_MM) / CARDIAC_FALLOFF_MM).astype(np.float32))


def _backward_displacement(field: HeartField, contraction: float) -> np.ndarray:
    """``x - y`` (mm, (3, I, J, K)) on the weight grid: where the tissue now at ``y`` came from.

    ``x = y - d(x)`` by fixed-point iteration, each point until it moves less than
    :data:`_INVERSE_TOLERANCE_MM` (at most :data:`_INVERSE_ITERATIONS` times).
    """
    shape = field.weight.shape
    y = np.indices(shape).reshape(3, -1).T * field.spacing_mm + field.origin_mm
    x = y.copy()
    active = np.flatnonzero(field.weight.ravel() > 0)  # elsewhere d(y) = 0: y is the fixed point
    for _ in range(_INVERSE_ITERATIONS):
        if active.size == 0:
            break
        new = y[active] - field.displacement_mm(x[active], contraction)
        moved = np.abs(new - x[active]).max(axis=1)
        x[active] = new
        active = active[moved > _INVERSE_TOLERANCE_MM]
    return (x - y).T.reshape(3, *shape)


def _on_ct_box(back: np.ndarray, field: HeartField, world_from_voxel: np.ndarray, lo: np.ndarray,
               hi: np.ndarray) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """The CT's voxels in ``lo:hi`` that move (indices into the box) and their backward displacement
    (mm, (3, M), float32; linear in the weight grid).

    A voxel can move only where a weight-grid cell around it has a non-zero displacement; only those
    voxels are interpolated.
    """
    w = world_from_voxel[:3, :3]
    axes = np.ogrid[tuple(slice(a, b) for a, b in zip(lo, hi))]
    grid_from_voxel = w / field.spacing_mm
    offset = (world_from_voxel[:3, 3] - field.origin_mm) / field.spacing_mm
    nonzero = ndimage.binary_dilation(np.any(back != 0, axis=0), np.ones((3, 3, 3), bool))
    # broadcastable: a voxel axis along a world axis (the usual CT) adds nothing to the other two
    coords = [sum(grid_from_voxel[r, k] * axes[k] for k in range(3) if grid_from_voxel[r, k] != 0) + offset[r]
              for r in range(3)]
    cell = [np.clip(np.rint(c).astype(np.intp), 0, n - 1) for c, n in zip(coords, nonzero.shape)]
    candidates = np.nonzero(nonzero[tuple(cell)])
    g = np.stack([np.broadcast_to(c, tuple(hi - lo))[candidates] for c in coords]).astype(np.float32)
    d = np.stack([ndimage.map_coordinates(b, g, order=1, mode="constant", cval=0.0, output=np.float32)
                  for b in back])
    moving = np.any(d != 0, axis=0)
    return tuple(i[moving] for i in candidates), d[:, moving]


def beating_ct(volume: ProjectorVolume, field: HeartField, contraction: float) -> ProjectorVolume:
    """The CT's projector volume with its heart at ``contraction`` (``volume`` itself at 0).

    Only voxels where the backward displacement is not 0 (within the weight grid) are resampled
    (linear density, nearest material label); the others keep their values bit for bit.
    """
    if contraction == 0:
        return volume
    back = _backward_displacement(field, contraction)
    w = volume.world_from_voxel
    inv = np.linalg.inv(w[:3, :3])
    corners = field.origin_mm + np.array(np.meshgrid(*[[0, n - 1] for n in field.weight.shape],
                                                     indexing="ij")).reshape(3, -1).T * field.spacing_mm
    c = (corners - w[:3, 3]) @ inv.T
    lo = np.clip(np.floor(c.min(axis=0)).astype(int), 0, volume.shape)
    hi = np.clip(np.ceil(c.max(axis=0)).astype(int) + 1, 0, volume.shape)
    if np.any(hi <= lo):  # the heart is off the CT
        return volume
    idx, d = _on_ct_box(back, field, w, lo, hi)
    at = tuple(i + o for i, o in zip(idx, lo))
    src = np.stack(at).astype(np.float32) + (inv.astype(np.float32) @ d)
    dens = volume.density_g_per_cc.copy()
    labels = volume.labels.copy()
    dens[at] = ndimage.map_coordinates(volume.density_g_per_cc, src, order=1, mode="nearest")
    labels[at] = ndimage.map_coordinates(volume.labels, src, order=0, mode="nearest")
    return ProjectorVolume(volume.name, dens, labels, volume.materials, w, dict(volume.displaces))
