"""Pseudo-patients: a CT and its label map resampled once through a smooth random deformation,
anisotropic scaling and a small rotation, then HU jitter and field-of-view truncation.

The mapping (world mm, LPS; ``c`` the CT centre): the variant's voxel at world point ``x`` takes
the source CT's value at

    p(x) = c + (R S)^-1 (x - c) + d(x),

with ``S = diag(scale)`` (world x = L, y = P, z = S axes: body habitus), ``R`` the extrinsic
x-y-z Euler rotation ``rotate_deg``, and ``d`` a cubic B-spline displacement field (mm) whose
control points are ``smooth_mm`` apart along each voxel axis and whose coefficients are i.i.d.
normal, scaled so that the root-mean-square of each world component of ``d`` over the grid is
exactly ``deform_mm``. Without ``d`` this is the forward transform ``x = c + R S (p - c)``: a source
sphere of radius r centred at ``c`` becomes an ellipsoid of semi-axes ``scale * r``, rotated by ``R``.

The variant keeps the source's grid (shape and affine). The CT is sampled trilinearly (air,
-1000 HU, outside the source), the label map by nearest neighbour (0 outside) at the same points:
one resampling pass, so the labels stay integer and co-registered with the CT. Then
``HU' = hu_scale * HU + hu_offset``, and voxels outside a transaxial field of view (a circle of
diameter ``fov_mm`` in the world x-y plane, about the CT centre, along the whole z extent) become air
and label 0, as a scanner leaves them outside its reconstruction circle.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial.transform import Rotation

from ddsa_sim import InputError
from ddsa_sim.volumes.volume import Volume

__all__ = ["AIR_HU", "PseudoPatient", "bspline_basis", "displacement_rms_mm", "pseudo_patient",
           "random_displacement_coefficients", "source_coordinates"]

#: HU given to voxels that come from outside the source CT or lie outside the field of view.
AIR_HU = -1000.0

#: Voxel planes (along axis 0) resampled at once: bounds the coordinate arrays to a few hundred MB.
_SLAB_VOXELS = 4_000_000


@dataclass(frozen=True)
class PseudoPatient:
    """The drawn parameters of one pseudo-patient (module docstring for the mapping).

    Attributes
    ----------
    seed : int
        Seed of the displacement field's coefficients.
    deform_mm : float
        RMS over the grid of each world component of the displacement, mm (0: no deformation).
    smooth_mm : float
        Control-point spacing of the cubic B-spline displacement, mm (its correlation length).
    scale : (3,) float
        Scale factors along world x, y, z about the CT centre.
    rotate_deg : (3,) float
        Extrinsic x, y, z Euler angles about the CT centre, degrees.
    hu_offset : float
        Added to every HU value, HU.
    hu_scale : float
        Multiplies every HU value (before the offset).
    fov_mm : float or None
        Diameter of the transaxial field of view, mm; None keeps everything.
    """

    seed: int = 0
    deform_mm: float = 0.0
    smooth_mm: float = 50.0
    scale: tuple[float, float, float] = (1.0, 1.0, 1.0)
    rotate_deg: tuple[float, float, float] = (0.0, 0.0, 0.0)
    hu_offset: float = 0.0
    hu_scale: float = 1.0
    fov_mm: float | None = None

    def __post_init__(self) -> None:
        if not self.deform_mm >= 0 or not self.smooth_mm > 0:
            raise InputError(f"pseudo-patient: deform_mm must be >= 0 and smooth_mm > 0, got {self.deform_mm}, "
                             f"{self.smooth_mm}")
        if len(self.scale) != 3 or not all(s > 0 for s in self.scale) or len(self.rotate_deg) != 3:
            raise InputError(f"pseudo-patient: scale needs 3 positive factors and rotate_deg 3 angles, got "
                             f"{list(self.scale)}, {list(self.rotate_deg)}")
        if not self.hu_scale > 0 or (self.fov_mm is not None and not self.fov_mm > 0):
            raise InputError(f"pseudo-patient: hu_scale and fov_mm must be > 0, got {self.hu_scale}, {self.fov_mm}")


def bspline_basis(n_voxels: int, spacing_mm: float, smooth_mm: float) -> np.ndarray:
    """Cubic B-spline basis on one voxel axis, shape ``(n_voxels, n_control)``.

    Control point ``m`` sits at ``(m - 1) * smooth_mm`` from the first voxel centre; there are
    enough (one before, two past the end) that every voxel has its four supporting splines, so the
    rows sum to 1 (a constant coefficient grid is a constant field).
    """
    u = np.arange(n_voxels, dtype=np.float64) * (spacing_mm / smooth_mm) + 1.0
    n_control = int(np.floor(u[-1])) + 3
    t = np.abs(u[:, None] - np.arange(n_control, dtype=np.float64)[None, :])
    return np.where(t < 1, 2 / 3 - t**2 + t**3 / 2, np.where(t < 2, (2 - t) ** 3 / 6, 0.0))


def _bases(volume: Volume, smooth_mm: float) -> list[np.ndarray]:
    return [bspline_basis(n, float(s), smooth_mm) for n, s in zip(volume.shape, volume.spacing_mm)]


def displacement_rms_mm(coefficients: np.ndarray, bases: list[np.ndarray]) -> np.ndarray:
    """RMS over the whole grid of each component of the B-spline field, (3,) mm, without evaluating it:
    ``mean d^2 = c . (G0 x G1 x G2) c / N`` with the Gram matrices ``G = B^T B``."""
    grams = [b.T @ b for b in bases]
    n = np.prod([b.shape[0] for b in bases])
    sq = np.einsum("nabc,ax,by,cz,nxyz->n", coefficients, *grams, coefficients, optimize=True)
    return np.sqrt(sq / n)


def random_displacement_coefficients(volume: Volume, deform_mm: float, smooth_mm: float,
                                     rng: np.random.Generator) -> np.ndarray:
    """B-spline coefficients (3, n0, n1, n2) of a random field whose components have RMS ``deform_mm``."""
    bases = _bases(volume, smooth_mm)
    coef = rng.standard_normal((3, *(b.shape[1] for b in bases)))
    if deform_mm == 0:
        return np.zeros_like(coef)
    return coef * (deform_mm / displacement_rms_mm(coef, bases))[:, None, None, None]


def _field_rows(coefficients: np.ndarray, bases: list[np.ndarray], rows: slice) -> np.ndarray:
    """The displacement (3, r, J, K) on voxel planes ``rows`` of axis 0."""
    t = np.einsum("nabc,ia->nibc", coefficients, bases[0][rows])
    t = np.einsum("nibc,jb->nijc", t, bases[1])
    return np.einsum("nijc,kc->nijk", t, bases[2])


def source_coordinates(volume: Volume, params: PseudoPatient, rows: slice,
                       coefficients: np.ndarray | None = None) -> np.ndarray:
    """Source voxel coordinates (3, r, J, K) of the variant's voxels on planes ``rows`` of axis 0."""
    a, t = volume.affine[:3, :3], volume.affine[:3, 3]
    inv = np.linalg.inv(a)
    c = volume.center_mm
    m = np.linalg.inv(Rotation.from_euler("xyz", params.rotate_deg, degrees=True).as_matrix() @ np.diag(params.scale))
    lin = inv @ m @ a  # voxel -> source voxel, linear part
    off = inv @ (c + m @ (t - c) - t)
    i, j, k = np.meshgrid(np.arange(volume.shape[0])[rows], np.arange(volume.shape[1]), np.arange(volume.shape[2]),
                          indexing="ij")
    ijk = np.stack([i, j, k]).astype(np.float64)
    q = np.einsum("ab,bijk->aijk", lin, ijk) + off[:, None, None, None]
    if coefficients is not None and np.any(coefficients):
        d = _field_rows(coefficients, _bases(volume, params.smooth_mm), rows)
        q += np.einsum("ab,bijk->aijk", inv, d)
    return q


def _outside_fov(volume: Volume, fov_mm: float, rows: slice) -> np.ndarray:
    i, j, k = np.meshgrid(np.arange(volume.shape[0])[rows], np.arange(volume.shape[1]), np.arange(volume.shape[2]),
                          indexing="ij")
    xyz = np.stack([i, j, k], axis=-1).astype(np.float64) @ volume.affine[:3, :3].T + volume.affine[:3, 3]
    return np.hypot(xyz[..., 0] - volume.center_mm[0], xyz[..., 1] - volume.center_mm[1]) > fov_mm / 2


def pseudo_patient(ct: Volume, labels: Volume | None, params: PseudoPatient) -> tuple[Volume, Volume | None]:
    """A pseudo-patient of ``ct`` (HU) and its label map (same grid), module docstring.

    Parameters
    ----------
    ct : Volume
        Source CT, HU.
    labels : Volume, optional
        Label map on the CT grid (integer values).
    params : PseudoPatient
        The drawn parameters (:class:`PseudoPatient`).

    Returns
    -------
    ct, labels : Volume
        The variant on the source grid (float32 HU; labels in their own integer dtype), without
        material maps (recompute them from the new HU and labels).
    """
    if labels is not None and labels.shape != ct.shape:
        raise InputError(f"{ct.name}: label map shape {labels.shape} differs from the CT's {ct.shape}")
    coef = random_displacement_coefficients(ct, params.deform_mm, params.smooth_mm,
                                            np.random.default_rng(params.seed))
    src = np.asarray(ct.data, dtype=np.float32)
    out = np.empty(ct.shape, dtype=np.float32)
    out_labels = None if labels is None else np.empty(ct.shape, dtype=labels.data.dtype)
    step = max(1, _SLAB_VOXELS // (ct.shape[1] * ct.shape[2]))
    for r0 in range(0, ct.shape[0], step):
        rows = slice(r0, min(r0 + step, ct.shape[0]))
        q = source_coordinates(ct, params, rows, coef)
        slab = ndimage.map_coordinates(src, q, order=1, mode="constant", cval=AIR_HU, prefilter=False)
        slab = slab * np.float32(params.hu_scale) + np.float32(params.hu_offset)
        lab = None
        if labels is not None:
            lab = ndimage.map_coordinates(labels.data, q, order=0, mode="constant", cval=0, prefilter=False)
        if params.fov_mm is not None:
            outside = _outside_fov(ct, params.fov_mm, rows)
            slab[outside] = AIR_HU
            if lab is not None:
                lab[outside] = 0
        out[rows] = slab
        if lab is not None:
            out_labels[rows] = lab
    variant = Volume(out, ct.affine.copy(), {}, ct.name)
    return variant, None if labels is None else Volume(out_labels, labels.affine.copy(), {}, labels.name)
