"""C-arm geometry: pinhole projection, DeepDRR frame conventions, limits, sweeps."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from ddsa_sim import InputError
from ddsa_sim.geometry import CArm, grid_poses, parse_range, random_poses


def test_defaults_are_mobile_carm():
    c = CArm()
    assert (c.source_to_detector_distance, c.source_to_isocenter_vertical_distance) == (1020.0, 530.0)
    assert (c.sensor_height, c.sensor_width, c.pixel_mm) == (1536, 1536, 0.194)
    assert (c.min_alpha_deg, c.max_alpha_deg, c.min_beta_deg, c.max_beta_deg) == (-40.0, 110.0, -225.0, 225.0)


@pytest.mark.parametrize("alpha,beta,gamma", [(0, 0, 0), (30, -20, 0), (-35, 100, 15), (90, 0, 0)])
def test_pinhole_projection(alpha, beta, gamma):
    iso = (10.0, -20.0, 30.0)
    c = CArm(isocenter_mm=iso, alpha_deg=alpha, beta_deg=beta, gamma_deg=gamma, sensor_height=300, sensor_width=400, pixel_mm=0.5)
    # source is 530 mm from the isocenter along -principal ray; detector centre SDD from the source
    np.testing.assert_allclose(np.linalg.norm(c.source_mm - iso), 530.0, atol=1e-9)
    np.testing.assert_allclose(c.source_mm + 530.0 * c.principal_ray, iso, atol=1e-9)
    # the isocenter projects to the principal point (sensor centre)
    np.testing.assert_allclose(c.project(np.array(iso)), [[200.0, 150.0]], atol=1e-9)
    rng = np.random.default_rng(1)
    pts = np.array(iso) + rng.uniform(-80, 80, size=(20, 3))
    # independent pinhole formula in the camera frame: u = f x/z + cx, v = f y/z + cy
    cam = (pts - c.source_mm) @ np.linalg.inv(c.camera3d_from_world)[:3, :3]
    f = 1020.0 / 0.5
    expected = np.column_stack([f * cam[:, 0] / cam[:, 2] + 200.0, f * cam[:, 1] / cam[:, 2] + 150.0])
    np.testing.assert_allclose(c.project(pts), expected, atol=1e-7)
    # magnification: a point at the isocenter moved by d along the detector plane moves by d*SDD/SID/pixel
    # and points on the ray through a pixel project onto that pixel
    uv = np.array([[17.5, 222.5]])
    on_det = c.pixel_to_world(uv)
    np.testing.assert_allclose(c.project(c.source_mm + 0.37 * (on_det - c.source_mm)), uv, atol=1e-7)
    # killeengeo projection agrees with our 3x4 matrix
    kp = c.camera_projection()
    np.testing.assert_allclose(np.array(kp.get_data()) / kp.get_data()[2, 3], c.projection_matrix / c.projection_matrix[2, 3],
                               atol=1e-9)


def test_angle_sign_conventions():
    """alpha > 0 turns the detector to the patient's right (RAO); beta > 0 to the feet (CAU). LPS world."""
    ap = CArm()
    np.testing.assert_allclose(ap.principal_ray, [0, -1, 0], atol=1e-12)  # source posterior, detector anterior
    rao = CArm(alpha_deg=30)
    assert rao.principal_ray[0] < -0.4  # detector moves to patient right (LPS -x)
    cau = CArm(beta_deg=30)
    assert cau.principal_ray[2] < -0.4  # detector moves to the feet (LPS -z)


def test_rotations_agree_with_scipy():
    """The C-arm's rotations (written out: no scipy import on the project path) against scipy's
    Euler angles: alpha about x then beta about the fixed y, the 90 degree camera turn and gamma about z."""
    from scipy.spatial.transform import Rotation

    def rz(deg):
        m = np.eye(4)
        m[:3, :3] = Rotation.from_euler("z", deg, degrees=True).as_matrix()
        return m

    for alpha, beta in [(0.0, 0.0), (31.0, -72.0), (-40.0, 110.0), (90.0, 45.0), (17.5, -225.0)]:
        c = CArm(alpha_deg=alpha, beta_deg=beta)
        expected = Rotation.from_euler("xy", [alpha, beta], degrees=True).as_matrix()
        np.testing.assert_allclose(c.device_from_arm[:3, :3], expected, atol=1e-15)
    c = CArm(alpha_deg=12.0, beta_deg=-30.0, isocenter_mm=(5.0, -8.0, 20.0))
    straight = replace(c, rotate_camera_left=False).camera3d_from_world
    np.testing.assert_allclose(c.camera3d_from_world, rz(90.0) @ straight, atol=1e-12)
    for gamma in (-20.0, 33.0, 90.0):
        np.testing.assert_allclose(c.at(gamma_deg=gamma).camera3d_from_world, rz(gamma) @ c.camera3d_from_world,
                                   atol=1e-12)


def test_view_matrix_is_computed_once_per_view_and_read_only():
    c = CArm(alpha_deg=10.0, beta_deg=5.0)
    m = c.camera3d_from_world
    assert m is c.camera3d_from_world and not m.flags.writeable
    moved = c.at(alpha_deg=20.0)  # a new view: its own matrix, not the cached one
    assert not np.allclose(moved.camera3d_from_world, m)
    np.testing.assert_allclose(moved.camera3d_from_world, CArm(alpha_deg=20.0, beta_deg=5.0).camera3d_from_world)


def test_pose_limits_and_detector_checks():
    with pytest.raises(InputError, match="alpha=120"):
        CArm(alpha_deg=120)
    with pytest.raises(InputError, match="beta=-300"):
        CArm(beta_deg=-300)
    b = CArm().binned(4)
    assert (b.sensor_height, b.pixel_mm) == (384, pytest.approx(0.776))


@pytest.mark.parametrize("alpha, beta", [(0, 0), (30, 0), (0, -25), (30, 20), (-20, 15), (-35, -40), (100, 30)])
def test_clinical_angles_are_where_the_detector_lies(alpha, beta):
    """The mechanical angles put the detector along (-sin a, -cos a cos b, -cos a sin b) (LPS, from the isocenter):
    primary atan(tan a / cos b) RAO, secondary asin(cos a sin b) CAU; each angle alone is its clinical one."""
    a, b = np.radians(alpha), np.radians(beta)
    primary, secondary = CArm(alpha_deg=alpha, beta_deg=beta).clinical_angles()
    assert primary == pytest.approx(np.degrees(np.arctan2(np.sin(a), np.cos(a) * np.cos(b))), abs=1e-9)
    assert secondary == pytest.approx(np.degrees(np.arcsin(np.cos(a) * np.sin(b))), abs=1e-9)


def test_sweeps():
    np.testing.assert_allclose(parse_range("-30:30:15", "alpha"), [-30, -15, 0, 15, 30])
    with pytest.raises(InputError, match="--beta"):
        parse_range("1:2:x", "beta")
    assert len(grid_poses([0, 10], [5, 6, 7])) == 6
    a = random_poses(np.random.default_rng(3), 50, (-10, 10), (0, 5), isocenter_jitter_mm=2.0)
    b = random_poses(np.random.default_rng(3), 50, (-10, 10), (0, 5), isocenter_jitter_mm=2.0)
    assert a == b
    alphas = np.array([p.alpha_deg for p in a])
    assert alphas.min() >= -10 and alphas.max() <= 10
    assert np.abs(np.array([p.isocenter_mm for p in a])).max() <= 2.0


@pytest.mark.parametrize("alpha, beta", [(0, 0), (90, 0), (30, 20), (-30, -20), (0, 40), (45, 0)])
def test_patient_directions_name_where_the_patient_axes_project(alpha, beta):
    """The orientation labels of a view (dsa's picture titles) say where a patient direction lands in the image:
    a point 50 mm towards each letter of the image's right lies right of the isocenter, towards each letter of its
    downward lies below it (checked through the projection matrix, LPS: L +x, P +y, H +z)."""
    carm = CArm(alpha_deg=alpha, beta_deg=beta)
    iso = np.asarray(carm.isocenter_mm, dtype=np.float64)
    unit = {"L": [1, 0, 0], "R": [-1, 0, 0], "P": [0, 1, 0], "A": [0, -1, 0], "H": [0, 0, 1], "F": [0, 0, -1]}
    right, down = carm.patient_directions()
    u0, v0 = carm.project(iso)[0]
    for letter in right:
        u, v = carm.project(iso + 50.0 * np.asarray(unit[letter]))[0]
        assert u - u0 > 0.5 * abs(v - v0), (letter, u - u0, v - v0)
    for letter in down:
        u, v = carm.project(iso + 50.0 * np.asarray(unit[letter]))[0]
        assert v - v0 > 0.5 * abs(u - u0), (letter, u - u0, v - v0)
    if (alpha, beta) == (0, 0):  # the frontal view as seen from the source (docs/geometry.md): right is R
        assert (right, down) == ("R", "F")


@pytest.mark.parametrize("k", [2, 3])
def test_subdivided_detector_puts_k_by_k_subpixels_inside_each_pixel(k):
    """Pixel-edge coordinates scale by k: sub-pixel ``k i + m`` (covering ``[k i + m, k i + m + 1)``) lies in
    pixel ``i`` (covering ``[i, i + 1)``), at any pose; binning undoes it."""
    carm = CArm(isocenter_mm=(10.0, -5.0, 20.0), alpha_deg=25.0, beta_deg=-10.0, gamma_deg=7.0,
                sensor_height=48, sensor_width=40, pixel_mm=1.5)
    fine = carm.subdivided(k)
    assert (fine.sensor_height, fine.sensor_width, fine.pixel_mm) == (48 * k, 40 * k, 1.5 / k)
    points = np.random.default_rng(0).uniform(-80, 80, (20, 3)) + carm.isocenter_mm
    hom = np.column_stack([points, np.ones(20)])

    def uv(c: CArm) -> np.ndarray:
        p = hom @ c.projection_matrix.T
        return p[:, :2] / p[:, 2:]

    np.testing.assert_allclose(uv(fine), k * uv(carm), atol=1e-9)
    assert fine.binned(k) == carm
    with pytest.raises(InputError, match="subdivision factor"):
        carm.subdivided(0)
