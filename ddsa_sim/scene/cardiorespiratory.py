"""Cardiac and respiratory motion: displacements driven by each frame's time (docs/dsa.md §4).

Cardiac (vessel trees; the CT's heart beats with them: :mod:`ddsa_sim.scene.beating_heart`)
    The tree as built is the end-diastolic geometry. Its heart frame (:func:`heart_frame`): the
    long axis ``e`` (base -> apex, :data:`HEART_LONG_AXIS_LPS`) through the tree's iodine centroid,
    the apex at the tree's farthest extent along ``e``, the length ``L`` from base to apex, the radius
    ``R`` (95th percentile of the distance from the axis). At contraction ``f`` in [0, 1]
    (:func:`cardiac_contraction` of the phase) a point ``x`` moves to
    ``a + (I - f (s_L e e^T + s_R (I - e e^T))) (x - a)`` with ``s_L = longitudinal_mm / L`` and
    ``s_R = radial_mm / R``: the base (atrioventricular groove: RCA, LCx) descends by
    ``f * longitudinal_mm`` towards the apex, which stays still (distal LAD: least motion), and the
    outer points move ``f * radial_mm`` inwards. It is one affine map per phase: a centreline tree's
    nodes move by it and the tree is re-voxelized with its radii kept (the lumen keeps its calibre,
    :func:`ddsa_sim.scene.moving.march_moving_vessels`); a fraction volume (segmentation, GAN sample)
    is marched through the map itself, so its lumen scales (by at most ``s_R``, 2 % at the default amplitude). No torsion.
Respiratory (CT and trees)
    Diaphragm position relative to end-expiration (Lujan et al. 1999, n = 2):
    ``z_d(t) = -A cos^4(pi t / T)`` (superior positive; inspiration at ``t = 0 mod T``). A point at
    world height ``z`` moves by ``z_d(t) w(z) (0, AP_PER_SI, 1)`` (LPS: inferior and anterior on
    inspiration), ``w = exp(-((z - z_dome) / 70 mm)^2)`` above the dome and
    ``exp(-((z_dome - z) / 150 mm)^2)`` below it. The CT is resampled slice by slice along its axis
    closest to world z (linear density, nearest material label), so every ray sees 3D motion with
    its parallax; a tree translates by the displacement at its iodine centroid.

The mask frame is the CT as scanned at the mask's breathing state (its heart at the mask's cardiac
phase): each contrast frame's CT moves by the difference of the respiratory displacements between its
time and the mask's, its heart beats to the frame's phase.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ddsa_sim import InputError
from ddsa_sim.projector import ProjectorVolume
from ddsa_sim.volumes import Volume

__all__ = [
    "ABOVE_DIAPHRAGM_MM",
    "AP_PER_SI",
    "BELOW_DIAPHRAGM_MM",
    "HEART_LONG_AXIS_LPS",
    "RELAXATION_END_PHASE",
    "SYSTOLE_END_PHASE",
    "HeartFrame",
    "cardiac_contraction",
    "cardiac_displacement_mm",
    "cardiac_phase",
    "cardiac_transform",
    "diaphragm_level_mm",
    "diaphragm_offset_mm",
    "heart_frame",
    "respiratory_ct",
    "respiratory_displacement_mm",
    "respiratory_weight",
]

#: base -> apex direction of the heart's long axis in world LPS: to the patient's left, anterior and
#: inferior (about 45 deg from the sagittal plane, 30 deg below the axial one; a heuristic constant)
HEART_LONG_AXIS_LPS = np.array([0.6, -0.6, -0.5]) / np.linalg.norm([0.6, -0.6, -0.5])
#: end-systole as a fraction of the R-R interval (contraction from 0 at the R wave to 1 here)
SYSTOLE_END_PHASE = 0.35
#: end of the rapid relaxation (contraction back to 0; diastasis until the next R wave)
RELAXATION_END_PHASE = 0.70
#: anterior-posterior over superior-inferior respiratory displacement (Seppenwoolde et al. 2002)
AP_PER_SI = 0.2
#: Gaussian fall-off lengths (mm) of the respiratory displacement above and below the diaphragm dome:
#: the heart about 50 mm above moves 0.6 of the diaphragm (Wang et al. 1995), the kidneys about
#: 100 mm below 0.6-0.7 (Song et al. 2011)
ABOVE_DIAPHRAGM_MM = 70.0
BELOW_DIAPHRAGM_MM = 150.0
#: lung parenchyma HU window of :func:`diaphragm_level_mm` (outside air is below it)
_LUNG_HU = (-950.0, -400.0)


# ----------------------------------------------------------------------------- cardiac
def cardiac_phase(t_s: float | np.ndarray, heart_rate_bpm: float) -> np.ndarray:
    """Phase in [0, 1) of the R-R interval at time ``t_s`` (0 = R wave)."""
    return np.mod(np.asarray(t_s, dtype=np.float64) * float(heart_rate_bpm) / 60.0, 1.0)


def cardiac_contraction(phase: float | np.ndarray) -> np.ndarray:
    """Contraction in [0, 1] at cardiac ``phase``: raised-cosine rise to 1 at end-systole
    (:data:`SYSTOLE_END_PHASE`), fall to 0 by :data:`RELAXATION_END_PHASE`, 0 in diastasis."""
    p = np.mod(np.asarray(phase, dtype=np.float64), 1.0)
    rise = 0.5 * (1.0 - np.cos(np.pi * p / SYSTOLE_END_PHASE))
    fall = 0.5 * (1.0 + np.cos(np.pi * (p - SYSTOLE_END_PHASE) / (RELAXATION_END_PHASE - SYSTOLE_END_PHASE)))
    return np.where(p < SYSTOLE_END_PHASE, rise, np.where(p < RELAXATION_END_PHASE, fall, 0.0))


@dataclass(frozen=True)
class HeartFrame:
    """A tree's heart frame (world LPS mm): iodine centroid, apex, unit long axis (base -> apex),
    base-to-apex length and radius (95th percentile distance from the axis)."""

    centroid_mm: np.ndarray
    apex_mm: np.ndarray
    axis: np.ndarray
    length_mm: float
    radius_mm: float


def heart_frame(volume: ProjectorVolume, axis: np.ndarray = HEART_LONG_AXIS_LPS,
                max_points: int = 200_000) -> HeartFrame:
    """The heart frame of a vessel volume (its voxels with iodine; at most ``max_points`` of them, evenly strided).

    Raises
    ------
    InputError
        The volume holds no iodine.
    """
    idx = np.argwhere(volume.density_g_per_cc > 0)
    if idx.size == 0:
        raise InputError(f"motion cardiac: vessel volume '{volume.name}' holds no iodine")
    idx = idx[:: max(1, len(idx) // max_points)]
    weight = volume.density_g_per_cc[tuple(idx.T)].astype(np.float64)
    world = idx @ volume.world_from_voxel[:3, :3].T + volume.world_from_voxel[:3, 3]
    centroid = (world * weight[:, None]).sum(axis=0) / weight.sum()
    e = np.asarray(axis, dtype=np.float64) / np.linalg.norm(axis)
    rel = world - centroid
    s = rel @ e
    radial = np.linalg.norm(rel - s[:, None] * e, axis=1)
    length = float(s.max() - s.min())
    return HeartFrame(centroid, centroid + s.max() * e, e, max(length, 1e-6),
                      max(float(np.percentile(radial, 95)), 1e-6))


def cardiac_transform(frame: HeartFrame, contraction: float, longitudinal_mm: float, radial_mm: float) -> np.ndarray:
    """4x4 world -> world map of the tree at ``contraction`` (module docstring); identity at 0."""
    e = frame.axis
    axial = np.outer(e, e)
    m = np.eye(3) - float(contraction) * (longitudinal_mm / frame.length_mm * axial
                                          + radial_mm / frame.radius_mm * (np.eye(3) - axial))
    out = np.eye(4)
    out[:3, :3] = m
    out[:3, 3] = frame.apex_mm - m @ frame.apex_mm
    return out


def cardiac_displacement_mm(points_mm: np.ndarray, frame: HeartFrame, contraction: float, longitudinal_mm: float,
                            radial_mm: float) -> np.ndarray:
    """Displacement (mm, (N, 3)) of world points at ``contraction``."""
    p = np.atleast_2d(np.asarray(points_mm, dtype=np.float64))
    t = cardiac_transform(frame, contraction, longitudinal_mm, radial_mm)
    return p @ t[:3, :3].T + t[:3, 3] - p


# ----------------------------------------------------------------------------- respiratory
def diaphragm_offset_mm(t_s: float | np.ndarray, period_s: float, amplitude_mm: float) -> np.ndarray:
    """Superior displacement (mm, <= 0) of the diaphragm from end-expiration: ``-A cos^4(pi t / T)``."""
    return -float(amplitude_mm) * np.cos(np.pi * np.asarray(t_s, dtype=np.float64) / float(period_s)) ** 4


def respiratory_weight(z_mm: float | np.ndarray, dome_z_mm: float) -> np.ndarray:
    """Fraction of the diaphragm's displacement at world height ``z_mm`` (1 at the dome)."""
    dz = np.asarray(z_mm, dtype=np.float64) - float(dome_z_mm)
    return np.where(dz >= 0, np.exp(-(dz / ABOVE_DIAPHRAGM_MM) ** 2), np.exp(-(dz / BELOW_DIAPHRAGM_MM) ** 2))


def respiratory_displacement_mm(points_mm: np.ndarray, offset_mm: float, dome_z_mm: float) -> np.ndarray:
    """Displacement (mm, (N, 3), LPS) of world points when the diaphragm is displaced by ``offset_mm``."""
    p = np.atleast_2d(np.asarray(points_mm, dtype=np.float64))
    w = float(offset_mm) * respiratory_weight(p[:, 2], dome_z_mm)
    return w[:, None] * np.array([0.0, AP_PER_SI, 1.0])


def diaphragm_level_mm(ct: Volume, min_fraction: float = 0.5) -> float | None:
    """World z (mm) of the diaphragm dome, found from the lungs: a heuristic.

    Lung voxels: HU in (-950, -400), on every 2nd voxel, opened in-plane (3 x 3), in connected
    components that do not touch the in-plane border of the CT (outside air and its partial-volume
    rim do) and hold at least 10 % of the largest one. The dome is the lowest slice (along the axis
    closest to world z) whose lung area is at least ``min_fraction`` of the largest slice's: half
    the lung's area, between the costophrenic recesses below and the full lung above. None when the
    CT has no lung (no such component of at least 0.5 % of a slice's voxels).
    """
    from scipy import ndimage

    affine = np.asarray(ct.affine, dtype=np.float64)
    a = int(np.argmax(np.abs(affine[2, :3])))
    hu = np.asarray(ct.data)[::2, ::2, ::2]
    lung = (hu > _LUNG_HU[0]) & (hu < _LUNG_HU[1])
    lung = ndimage.binary_opening(lung, np.ones(tuple(1 if i == a else 3 for i in range(3)), bool))
    labels, n = ndimage.label(lung)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    sizes[0] = 0
    for i in (i for i in range(3) if i != a):  # components touching the in-plane border: outside air
        for end in (0, -1):
            sizes[np.unique(np.take(labels, end, axis=i))] = 0
    slice_size = hu.size / hu.shape[a]
    if sizes.max(initial=0) < 0.005 * slice_size:
        return None
    lung = np.isin(labels, np.flatnonzero(sizes >= 0.1 * sizes.max()))
    counts = lung.sum(axis=tuple(i for i in range(3) if i != a)).astype(np.float64)
    centre = (np.array(ct.data.shape, dtype=np.float64) - 1) / 2
    ks = 2 * np.flatnonzero(counts >= min_fraction * counts.max())
    return min(float(affine[2, :3] @ np.where(np.arange(3) == a, k, centre) + affine[2, 3]) for k in ks)


def _resample_along(arr: np.ndarray, axis: int, src: np.ndarray, linear: bool) -> np.ndarray:
    """``arr`` sampled at fractional indices ``src`` along ``axis`` (``src`` broadcasts against the
    array; linear or nearest, edges extended)."""
    n = arr.shape[axis]
    src = np.clip(src, 0.0, n - 1.0)
    if not linear:
        return np.take_along_axis(arr, np.broadcast_to(np.rint(src).astype(np.intp), arr.shape), axis=axis)
    i0 = np.floor(src).astype(np.intp)
    f = (src - i0).astype(np.float32)
    i1 = np.minimum(i0 + 1, n - 1)
    lo = np.take_along_axis(arr, np.broadcast_to(i0, arr.shape), axis=axis)
    hi = np.take_along_axis(arr, np.broadcast_to(i1, arr.shape), axis=axis)
    return lo * (1 - f) + hi * f


def respiratory_ct(volume: ProjectorVolume, offset_mm: float, dome_z_mm: float) -> ProjectorVolume:
    """The CT's projector volume with its content moved by :func:`respiratory_displacement_mm`.

    Along the voxel axis closest to world z each slice ``k`` takes the content from ``k - d_z(z_k)``
    (linear; backward mapping at the slice's own height); then along the axis closest to world y
    (anterior-posterior) each slice is shifted by ``d_y(z_k)``. Material labels are taken from the
    nearest source voxel. ``offset_mm == 0`` returns ``volume`` itself.
    """
    if offset_mm == 0:
        return volume
    w = volume.world_from_voxel
    a = int(np.argmax(np.abs(w[2, :3])))
    b = max((i for i in range(3) if i != a), key=lambda i: abs(w[1, i]))
    n = volume.shape[a]
    centre = (np.array(volume.shape, dtype=np.float64) - 1) / 2
    ks = np.arange(n, dtype=np.float64)
    z = w[2, a] * ks + (w[2, :3] @ np.where(np.arange(3) == a, 0.0, centre) + w[2, 3])
    d = respiratory_displacement_mm(np.column_stack([np.zeros(n), np.zeros(n), z]), offset_mm, dome_z_mm)
    shape_a = [1, 1, 1]
    shape_a[a] = n
    src_a = (ks - d[:, 2] / w[2, a]).reshape(shape_a)
    dens = _resample_along(volume.density_g_per_cc, a, src_a, linear=True)
    labels = _resample_along(volume.labels, a, src_a, linear=False)
    shape_ab = [1, 1, 1]
    shape_ab[a], shape_ab[b] = n, volume.shape[b]
    src_b = np.arange(volume.shape[b])[None, :] - (d[:, 1] / (w[1, b] or 1.0))[:, None]
    src_b = src_b.reshape(shape_ab) if a < b else src_b.T.reshape(shape_ab)
    if abs(w[1, b]) > 1e-9:  # a voxel axis has an anterior-posterior component
        dens = _resample_along(dens, b, src_b, linear=True)
        labels = _resample_along(labels, b, src_b, linear=False)
    return ProjectorVolume(volume.name, dens, labels, volume.materials, w, dict(volume.displaces))
