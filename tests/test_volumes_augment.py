"""Pseudo-patients (ddsa_sim.volumes.augment) against analytic transforms."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from ddsa_sim import InputError
from ddsa_sim.volumes import Volume
from ddsa_sim.volumes.augment import (
    AIR_HU,
    TEXTURE_FROM_HU,
    PseudoPatient,
    bone_texture,
    bspline_basis,
    displacement_rms_mm,
    pseudo_patient,
    random_displacement_coefficients,
    source_coordinates,
)

# LPS frame with a flipped axis, anisotropic voxels and an offset: world != voxel axes
AFFINE = np.array([[-1.5, 0, 0, 40.0], [0, 1.25, 0, -30.0], [0, 0, 2.0, 7.0], [0, 0, 0, 1]])
SHAPE = (40, 48, 30)


def grid_world(vol: Volume) -> np.ndarray:
    ijk = np.stack(np.meshgrid(*(np.arange(n) for n in vol.shape), indexing="ij"), axis=-1).astype(float)
    return vol.voxel_to_world(ijk)


def sphere_ct(radius_mm: float) -> tuple[Volume, Volume]:
    vol = Volume(np.zeros(SHAPE, np.float32), AFFINE)
    inside = np.linalg.norm(grid_world(vol) - vol.center_mm, axis=-1) <= radius_mm
    return vol.with_data(np.where(inside, 1000.0, 0.0).astype(np.float32)), vol.with_data(inside.astype(np.uint8))


def ramp_ct() -> tuple[Volume, Volume]:
    """CT = voxel index i (trilinear interpolation of a linear ramp is exact), labels = i (uint16)."""
    i = np.broadcast_to(np.arange(SHAPE[0], dtype=np.float32)[:, None, None], SHAPE).copy()
    return Volume(i, AFFINE), Volume(i.astype(np.uint16), AFFINE)


def test_identity_parameters_give_the_source_to_float_precision():
    ct, labels = sphere_ct(20.0)
    ct = ct.with_data(ct.data + np.random.default_rng(0).normal(0, 50, SHAPE).astype(np.float32))
    out, out_labels = pseudo_patient(ct, labels, PseudoPatient(seed=3, deform_mm=0.0))
    np.testing.assert_allclose(out.data, ct.data, rtol=1e-6, atol=1e-3)
    assert np.array_equal(out_labels.data, labels.data) and out_labels.data.dtype == np.uint8
    np.testing.assert_array_equal(out.affine, ct.affine)


def test_bspline_basis_is_a_partition_of_unity_and_rms_is_exact():
    for n, sp, sm in ((40, 1.5, 10.0), (7, 2.0, 50.0), (33, 0.7, 3.3)):
        b = bspline_basis(n, sp, sm)
        np.testing.assert_allclose(b.sum(axis=1), 1.0, atol=1e-12)
    vol = Volume(np.zeros(SHAPE, np.float32), AFFINE)
    coef = random_displacement_coefficients(vol.shape, vol.spacing_mm, 4.0, 12.0, np.random.default_rng(1))
    bases = [bspline_basis(n, s, 12.0) for n, s in zip(vol.shape, vol.spacing_mm)]
    d = np.einsum("nabc,ia,jb,kc->nijk", coef, *bases)  # the field evaluated everywhere
    np.testing.assert_allclose(np.sqrt((d**2).mean(axis=(1, 2, 3))), 4.0, rtol=1e-10)
    np.testing.assert_allclose(displacement_rms_mm(coef, bases), 4.0, rtol=1e-10)


def test_pure_scaling_maps_a_sphere_to_the_right_ellipsoid():
    r = 15.0
    scale = (1.2, 0.85, 1.1)
    ct, labels = sphere_ct(r)
    _, out = pseudo_patient(ct, labels, PseudoPatient(scale=scale))
    inside = out.data.astype(bool)
    rel = grid_world(out)[inside] - out.center_mm
    # every labelled voxel lies in the ellipsoid of semi-axes scale * r (to half a source voxel)
    assert np.all(np.sum((rel / (np.array(scale) * r)) ** 2, axis=1) <= (1 + 1.0 / r) ** 2)
    for axis in range(3):  # extents along each world axis
        assert np.abs(rel[:, axis]).max() == pytest.approx(scale[axis] * r, abs=2.0)
    volume_mm3 = inside.sum() * np.prod(out.spacing_mm)
    assert volume_mm3 == pytest.approx(4 / 3 * np.pi * np.prod(scale) * r**3, rel=0.05)


def test_the_grid_grows_to_hold_a_scaled_up_patient():
    r = 29.5  # the sphere touches the source box's faces (60 mm wide along each axis)
    ct, labels = sphere_ct(r)
    assert labels.data[0].any() and labels.data[-1].any()
    out, out_labels = pseudo_patient(ct, labels, PseudoPatient(scale=(1.3, 1.0, 0.8)))
    np.testing.assert_allclose(out.center_mm, ct.center_mm, atol=1e-9)
    np.testing.assert_allclose(out.spacing_mm, ct.spacing_mm)
    assert out.shape[0] > SHAPE[0] and out.shape[1:] == SHAPE[1:]  # only axis i (world x) grows
    assert not out_labels.data[0].any() and not out_labels.data[-1].any()  # the ellipsoid is whole
    rel = grid_world(out)[out_labels.data.astype(bool)] - out.center_mm
    assert np.abs(rel[:, 0]).max() == pytest.approx(1.3 * r, abs=2.0)


def test_rotation_and_scaling_match_the_analytic_mapping_and_labels_follow():
    params = PseudoPatient(scale=(1.1, 0.9, 1.05), rotate_deg=(3.0, -4.0, 7.0))
    ct, labels = ramp_ct()
    out, out_labels = pseudo_patient(ct, labels, params)
    x = grid_world(out)
    m = np.linalg.inv(Rotation.from_euler("xyz", params.rotate_deg, degrees=True).as_matrix() @ np.diag(params.scale))
    p = ct.center_mm + (x - ct.center_mm) @ m.T  # source world point of every variant voxel
    i_src = ct.world_to_voxel(p)[..., 0]
    inside = np.all((ct.world_to_voxel(p) >= 0) & (ct.world_to_voxel(p) <= np.array(SHAPE) - 1), axis=-1)
    np.testing.assert_allclose(out.data[inside], i_src[inside], atol=1e-3)
    assert np.all(out.data[~inside & np.all((ct.world_to_voxel(p) < -1) | (ct.world_to_voxel(p) > np.array(SHAPE)),
                                            axis=-1)] == AIR_HU)
    # labels: nearest neighbour at the same points, integer, same dtype
    assert out_labels.data.dtype == np.uint16
    assert np.all(np.abs(out_labels.data[inside].astype(float) - out.data[inside]) <= 0.5 + 1e-4)


def test_deformation_moves_voxels_by_the_field_and_labels_stay_co_registered():
    params = PseudoPatient(seed=11, deform_mm=3.0, smooth_mm=20.0)
    ct, labels = ramp_ct()
    out, out_labels = pseudo_patient(ct, labels, params)
    coef = random_displacement_coefficients(ct.shape, ct.spacing_mm, 3.0, 20.0, np.random.default_rng(11))
    bases = [bspline_basis(n, s, 20.0) for n, s in zip(ct.shape, ct.spacing_mm)]
    d = np.einsum("nabc,ia,jb,kc->ijkn", coef, *bases)  # world mm
    p = grid_world(out) + d
    q = ct.world_to_voxel(p)
    inside = np.all((q >= 0) & (q <= np.array(SHAPE) - 1), axis=-1)
    assert out.shape == SHAPE and inside.mean() > 0.8
    np.testing.assert_allclose(out.data[inside], q[..., 0][inside], atol=1e-3)
    assert np.abs(out.data[inside] - np.arange(SHAPE[0])[:, None, None].repeat(48, 1).repeat(30, 2)[inside]).max() > 1
    assert np.all(np.abs(out_labels.data[inside].astype(float) - out.data[inside]) <= 0.5 + 1e-4)
    # the coordinates helper agrees with the whole-volume pass on any slab
    np.testing.assert_allclose(source_coordinates(ct, params, slice(5, 9), coef)[0], q[5:9, ..., 0], atol=1e-9)


def test_hu_jitter_is_affine_and_fov_truncation_is_a_circle():
    ct, labels = sphere_ct(12.0)
    ct = ct.with_data(ct.data + np.random.default_rng(2).normal(0, 30, SHAPE).astype(np.float32))
    out, _ = pseudo_patient(ct, labels, PseudoPatient(hu_scale=1.07, hu_offset=-25.0))
    np.testing.assert_allclose(out.data, 1.07 * ct.data - 25.0, rtol=1e-6, atol=1e-2)
    out, out_labels = pseudo_patient(ct, labels, PseudoPatient(fov_mm=40.0))
    x = grid_world(out)
    rho = np.hypot(x[..., 0] - ct.center_mm[0], x[..., 1] - ct.center_mm[1])
    assert np.all(out.data[rho > 20.0] == AIR_HU) and np.all(out_labels.data[rho > 20.0] == 0)
    np.testing.assert_allclose(out.data[rho <= 20.0], ct.data[rho <= 20.0], rtol=1e-6, atol=1e-3)


def test_bad_parameters_are_one_line_errors():
    for bad in ({"deform_mm": -1}, {"smooth_mm": 0}, {"scale": (1, 0, 1)}, {"hu_scale": 0}, {"fov_mm": -5},
                {"texture_amplitude": -0.1}, {"texture_sigma_mm": 0}):
        with pytest.raises(InputError, match="pseudo-patient"):
            PseudoPatient(**bad)


def test_deformation_at_the_config_bound_does_not_fold():
    """deform_mm <= smooth_mm / 8 (the export config's bound): Jacobian determinant > 0 everywhere."""
    vol = Volume(np.zeros((32, 32, 32), np.float32), np.diag([2.0, 2.0, 2.0, 1.0]))
    bases = [bspline_basis(n, 2.0, 20.0) for n in vol.shape]
    for seed in range(4):
        coef = random_displacement_coefficients(vol.shape, vol.spacing_mm, 20.0 / 8, 20.0, np.random.default_rng(seed))
        d = np.einsum("nabc,ia,jb,kc->nijk", coef, *bases)
        jac = np.stack([np.stack(np.gradient(d[n], 2.0)) for n in range(3)]) + np.eye(3)[:, :, None, None, None]
        assert np.linalg.det(np.moveaxis(jac, (0, 1), (-2, -1))).min() > 0.1


def test_bone_texture_has_the_asked_amplitude_and_correlation_and_spares_soft_tissue():
    """On a uniform bone block the relative modulation is the Gaussian field itself: its standard deviation
    is the amplitude and its autocorrelation exp(-r^2 / (4 sigma^2)) (1/e at 2 sigma), per axis in mm."""
    spacing = np.array([1.0, 0.5, 2.0])
    n = (96, 192, 48)  # 96 mm along every axis
    hu = np.full(n, 1100.0, np.float32)
    hu[:, :, :4] = 40.0  # a soft-tissue slab
    out = bone_texture(hu, spacing, 0.2, 2.0, np.random.default_rng(0))
    np.testing.assert_array_equal(out[:, :, :4], hu[:, :, :4])
    g = (out[:, :, 8:] - TEXTURE_FROM_HU) / (1100.0 - TEXTURE_FROM_HU) - 1.0
    # about 96^3 / (2 sqrt(pi) 2 mm)^3 = 2500 independent samples: standard errors near 0.02 of the values
    assert abs(g.std() / 0.2 - 1.0) < 0.06 and abs(g.mean()) < 0.2 * 0.06
    f = g / g.std()
    for axis, sp in enumerate(spacing):
        lag = int(round(4.0 / sp))  # 2 sigma = 4 mm
        a = np.moveaxis(f, axis, 0)
        rho = float(np.mean(a[:-lag] * a[lag:]))
        assert abs(rho - np.exp(-1.0)) < 0.07, (axis, rho)
        half = int(round(2.0 / sp))  # sigma: exp(-1/4)
        assert abs(float(np.mean(a[:-half] * a[half:])) - np.exp(-0.25)) < 0.07


def test_a_textured_pseudo_patient_changes_only_its_bone_and_is_seeded():
    ct, labels = sphere_ct(15.0)  # bone sphere (1000 HU) in water (0 HU)
    plain, plain_labels = pseudo_patient(ct, labels, PseudoPatient(seed=4))
    same, _ = pseudo_patient(ct, labels, PseudoPatient(seed=4, texture_amplitude=0.0, texture_sigma_mm=3.0))
    np.testing.assert_array_equal(plain.data, same.data)
    textured, textured_labels = pseudo_patient(ct, labels, PseudoPatient(seed=4, texture_amplitude=0.3))
    np.testing.assert_array_equal(textured_labels.data, plain_labels.data)
    soft = plain.data <= TEXTURE_FROM_HU
    np.testing.assert_array_equal(textured.data[soft], plain.data[soft])
    assert np.std(textured.data[plain.data == 1000.0]) > 100.0
    again, _ = pseudo_patient(ct, labels, PseudoPatient(seed=4, texture_amplitude=0.3))
    other, _ = pseudo_patient(ct, labels, PseudoPatient(seed=5, texture_amplitude=0.3))
    np.testing.assert_array_equal(again.data, textured.data)
    assert not np.array_equal(other.data, textured.data)
