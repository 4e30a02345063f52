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

The variant's grid has the source's spacing and axes and the same centre; it is the source grid,
grown where needed to hold the whole transformed source box (a patient scaled up or rotated is not
cut at the old edges; voxels the source does not cover are air). The CT is sampled trilinearly (air,
-1000 HU, outside the source), the label map by nearest neighbour (0 outside) at the same points:
one resampling pass, so the labels stay integer and co-registered with the CT. Then
``HU' = hu_scale * HU + hu_offset``, and voxels outside a transaxial field of view (a circle of
diameter ``fov_mm`` in the world x-y plane, about the CT centre, along the whole z extent) become air
and label 0, as a scanner leaves them outside its reconstruction circle. Last, with
``texture_amplitude`` > 0, bone gets a texture (:func:`bone_texture`): its HU above
:data:`TEXTURE_FROM_HU` is multiplied by ``1 + a g(x)``, ``g`` a unit-variance Gaussian random field of
kernel ``texture_sigma_mm``, so that uniform procedural bone looks mottled as cancellous bone does in a
clinical CT. Procedural bone and air
structures the source does not have are added to the result separately
(:func:`ddsa_sim.volumes.distractors.add_distractors`): they are clutter, not anatomy, and what is read
from the anatomy (where the brain lies) is read before them (:func:`ddsa_sim.scene.load_patient`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial.transform import Rotation

from ddsa_sim import InputError
from ddsa_sim.volumes.volume import Volume

__all__ = ["AIR_HU", "TEXTURE_FROM_HU", "PseudoPatient", "bone_texture", "bspline_basis", "displacement_rms_mm",
           "pseudo_patient", "random_displacement_coefficients", "source_coordinates", "variant_grid"]

#: HU given to voxels that come from outside the source CT or lie outside the field of view.
AIR_HU = -1000.0

#: HU above which :func:`bone_texture` modulates: above every soft tissue and unenhanced blood (40 HU).
TEXTURE_FROM_HU = 100.0

_TEXTURE_TAG = 0x7E7

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
    texture_amplitude : float
        Standard deviation ``a`` of the bone texture's relative modulation (:func:`bone_texture`; 0: none).
    texture_sigma_mm : float
        Standard deviation of the texture's Gaussian kernel, mm: its autocorrelation falls to 1/e at
        twice this distance.
    """

    seed: int = 0
    deform_mm: float = 0.0
    smooth_mm: float = 50.0
    scale: tuple[float, float, float] = (1.0, 1.0, 1.0)
    rotate_deg: tuple[float, float, float] = (0.0, 0.0, 0.0)
    hu_offset: float = 0.0
    hu_scale: float = 1.0
    fov_mm: float | None = None
    texture_amplitude: float = 0.0
    texture_sigma_mm: float = 1.0

    def __post_init__(self) -> None:
        if not self.deform_mm >= 0 or not self.smooth_mm > 0:
            raise InputError(f"pseudo-patient: deform_mm must be >= 0 and smooth_mm > 0, got {self.deform_mm}, "
                             f"{self.smooth_mm}")
        if len(self.scale) != 3 or not all(s > 0 for s in self.scale) or len(self.rotate_deg) != 3:
            raise InputError(f"pseudo-patient: scale needs 3 positive factors and rotate_deg 3 angles, got "
                             f"{list(self.scale)}, {list(self.rotate_deg)}")
        if not self.hu_scale > 0 or (self.fov_mm is not None and not self.fov_mm > 0):
            raise InputError(f"pseudo-patient: hu_scale and fov_mm must be > 0, got {self.hu_scale}, {self.fov_mm}")
        if not self.texture_amplitude >= 0 or not self.texture_sigma_mm > 0:
            raise InputError(f"pseudo-patient: texture_amplitude must be >= 0 and texture_sigma_mm > 0, got "
                             f"{self.texture_amplitude}, {self.texture_sigma_mm}")


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


def _bases(shape: tuple[int, ...], spacing_mm: np.ndarray, smooth_mm: float) -> list[np.ndarray]:
    return [bspline_basis(n, float(sp), smooth_mm) for n, sp in zip(shape, spacing_mm)]


def _linear_inverse(params: PseudoPatient) -> np.ndarray:
    """``(R S)^-1``: variant world offset from the centre -> source world offset."""
    return np.linalg.inv(Rotation.from_euler("xyz", params.rotate_deg, degrees=True).as_matrix() @ np.diag(params.scale))


def variant_grid(ct: Volume, params: PseudoPatient) -> tuple[tuple[int, int, int], np.ndarray]:
    """``(shape, affine)`` of the variant's grid: the source grid grown, symmetrically about its
    centre, to hold the source box mapped by ``x = c + R S (p - c)`` (module docstring)."""
    forward = np.linalg.inv(_linear_inverse(params))
    corners = ct.center_mm + (ct.corners_mm() - ct.center_mm) @ forward.T
    half = np.abs(ct.world_to_voxel(corners) - (np.array(ct.shape) - 1) / 2).max(axis=0)  # voxels from the centre
    grow = np.maximum(0, np.ceil(half - np.array(ct.shape) / 2 - 1e-6)).astype(int)  # voxels added on each side
    affine = ct.affine.copy()
    affine[:3, 3] = ct.voxel_to_world(-grow.astype(float))
    return tuple(int(n) for n in np.array(ct.shape) + 2 * grow), affine  # type: ignore[return-value]


def displacement_rms_mm(coefficients: np.ndarray, bases: list[np.ndarray]) -> np.ndarray:
    """RMS over the whole grid of each component of the B-spline field, (3,) mm, without evaluating it:
    ``mean d^2 = c . (G0 x G1 x G2) c / N`` with the Gram matrices ``G = B^T B``."""
    grams = [b.T @ b for b in bases]
    n = np.prod([b.shape[0] for b in bases])
    sq = np.einsum("nabc,ax,by,cz,nxyz->n", coefficients, *grams, coefficients, optimize=True)
    return np.sqrt(sq / n)


def random_displacement_coefficients(shape: tuple[int, int, int], spacing_mm: np.ndarray, deform_mm: float,
                                     smooth_mm: float, rng: np.random.Generator) -> np.ndarray:
    """B-spline coefficients (3, n0, n1, n2) of a random field on a grid of ``shape`` and ``spacing_mm``
    whose world components have RMS ``deform_mm`` over the grid."""
    bases = _bases(shape, spacing_mm, smooth_mm)
    coef = rng.standard_normal((3, *(b.shape[1] for b in bases)))
    if deform_mm == 0:
        return np.zeros_like(coef)
    return coef * (deform_mm / displacement_rms_mm(coef, bases))[:, None, None, None]


def _field_rows(coefficients: np.ndarray, bases: list[np.ndarray], rows: slice) -> np.ndarray:
    """The displacement (3, r, J, K) on voxel planes ``rows`` of axis 0."""
    t = np.tensordot(coefficients, bases[2], axes=([3], [1]))  # (3, a, b, K)
    t = np.tensordot(t, bases[1], axes=([2], [1]))  # (3, a, K, J)
    t = np.tensordot(t, bases[0][rows], axes=([1], [1]))  # (3, K, J, r)
    return t.transpose(0, 3, 2, 1)


def _grid_rows(shape: tuple[int, int, int], rows: slice) -> np.ndarray:
    return np.stack(np.meshgrid(np.arange(shape[0])[rows], np.arange(shape[1]), np.arange(shape[2]),
                                indexing="ij")).astype(np.float64)


def source_coordinates(ct: Volume, params: PseudoPatient, rows: slice,
                       coefficients: np.ndarray | None = None) -> np.ndarray:
    """Source voxel coordinates (3, r, J, K) of the variant's voxels on planes ``rows`` of axis 0 of
    :func:`variant_grid`; ``coefficients`` of the displacement on that grid."""
    shape, affine = variant_grid(ct, params)
    inv = np.linalg.inv(ct.affine[:3, :3])
    c, m = ct.center_mm, _linear_inverse(params)
    lin = inv @ m @ affine[:3, :3]  # variant voxel -> source voxel, linear part
    off = inv @ (c + m @ (affine[:3, 3] - c) - ct.affine[:3, 3])
    q = np.tensordot(lin, _grid_rows(shape, rows), axes=1) + off[:, None, None, None]
    if coefficients is not None and np.any(coefficients):
        d = _field_rows(coefficients, _bases(shape, ct.spacing_mm, params.smooth_mm), rows)
        q += np.tensordot(inv, d, axes=1)
    return q


def _outside_fov(shape: tuple[int, int, int], affine: np.ndarray, center_mm: np.ndarray, fov_mm: float,
                 rows: slice) -> np.ndarray:
    xy = np.tensordot(affine[:2, :3], _grid_rows(shape, rows), axes=1) + (affine[:2, 3] - center_mm[:2])[:, None, None, None]
    return np.hypot(xy[0], xy[1]) > fov_mm / 2


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
        The variant on :func:`variant_grid` (float32 HU; labels in their own integer dtype), without
        material maps (recompute them from the new HU and labels).
    """
    if labels is not None and labels.shape != ct.shape:
        raise InputError(f"{ct.name}: label map shape {labels.shape} differs from the CT's {ct.shape}")
    shape, affine = variant_grid(ct, params)
    coef = random_displacement_coefficients(shape, ct.spacing_mm, params.deform_mm, params.smooth_mm,
                                            np.random.default_rng(params.seed))
    src = np.asarray(ct.data, dtype=np.float32)
    out = np.empty(shape, dtype=np.float32)
    out_labels = None if labels is None else np.empty(shape, dtype=labels.data.dtype)
    step = max(1, _SLAB_VOXELS // (shape[1] * shape[2]))
    for r0 in range(0, shape[0], step):
        rows = slice(r0, min(r0 + step, shape[0]))
        q = source_coordinates(ct, params, rows, coef)
        slab = ndimage.map_coordinates(src, q, order=1, mode="constant", cval=AIR_HU, prefilter=False)
        slab = slab * np.float32(params.hu_scale) + np.float32(params.hu_offset)
        lab = None
        if labels is not None:
            lab = ndimage.map_coordinates(labels.data, q, order=0, mode="constant", cval=0, prefilter=False)
        if params.fov_mm is not None:
            outside = _outside_fov(shape, affine, ct.center_mm, params.fov_mm, rows)
            slab[outside] = AIR_HU
            if lab is not None:
                lab[outside] = 0
        out[rows] = slab
        if lab is not None:
            out_labels[rows] = lab
    if params.texture_amplitude > 0:
        rng = np.random.default_rng([params.seed, _TEXTURE_TAG])
        out = bone_texture(out, ct.spacing_mm, params.texture_amplitude, params.texture_sigma_mm, rng)
    variant = Volume(out, affine, {}, ct.name)
    variant_labels = None if labels is None else Volume(out_labels, affine.copy(), {}, labels.name)
    return variant, variant_labels


def bone_texture(hu: np.ndarray, spacing_mm: np.ndarray, amplitude: float, sigma_mm: float,
                 rng: np.random.Generator) -> np.ndarray:
    """Bone with a random texture: ``T + (HU - T) max(1 + amplitude g, 0)`` where ``HU > T``
    (:data:`TEXTURE_FROM_HU`), other voxels unchanged.

    ``g`` is white noise filtered by a Gaussian of ``sigma_mm`` (per voxel axis ``sigma_mm / spacing``)
    and scaled to unit standard deviation over the grid: a stationary field with autocorrelation
    ``exp(-r^2 / (4 sigma_mm^2))``. The modulation keeps the bone's mean density (the clip at zero moves
    it by under 0.5 % for ``amplitude`` <= 0.5) and vanishes continuously at ``T``, so no edge is made.

    Parameters
    ----------
    hu : ndarray
        CT, HU (float32; modified copy returned).
    spacing_mm : (3,) float
        Voxel size along the array axes, mm.
    amplitude : float
        Standard deviation of the relative modulation.
    sigma_mm : float
        The Gaussian kernel's standard deviation, mm.
    rng : numpy.random.Generator
        Source of the white noise.

    Returns
    -------
    ndarray
        The textured CT, float32 HU.
    """
    field = rng.standard_normal(hu.shape, dtype=np.float32)
    ndimage.gaussian_filter(field, np.asarray(sigma_mm / np.asarray(spacing_mm, float)), output=field,
                            mode="wrap")
    field /= field.std(dtype=np.float64)
    excess = np.maximum(hu - np.float32(TEXTURE_FROM_HU), 0)
    return (hu + excess * (np.maximum(1 + np.float32(amplitude) * field, 0) - 1)).astype(np.float32)
