"""ddsa_sim.compat.deepdrr: DeepDRR 1.2's README example runs unchanged and equals our native API."""

from __future__ import annotations

import textwrap
import warnings

import nibabel as nib
import numpy as np
import pytest

from ddsa_sim import InputError
from ddsa_sim.geometry import CArm
from ddsa_sim.physics.attenuation import mass_attenuation
from ddsa_sim.physics.spectra import get_spectrum
from ddsa_sim.projector import Projector as NativeProjector
from ddsa_sim.projector import ProjectorVolume
from ddsa_sim.volumes import read_ct

#: DeepDRR 1.2's README example (arcadelab/deepdrr, README "Usage"), verbatim but for the CT path.
README_EXAMPLE = textwrap.dedent("""\
    from deepdrr import geo, Volume, MobileCArm
    from deepdrr.projector import Projector # separate import for CUDA init

    carm = MobileCArm()
    ct = Volume.from_nifti('/path/to/ct_image.nii.gz')

    # Initialize the Projector object (allocates GPU memory)
    with Projector(ct, carm=carm) as projector:
        # Orient and position the patient model in world space.
        ct.orient_patient(head_first=True, supine=True)
        ct.place_center(carm.isocenter_in_world)

        # Move the C-arm to the desired pose.
        carm.move_to(alpha=30, beta=10, degrees=True)

        # Run projection
        image = projector()
    """)

#: World (DeepDRR, head first + supine) axes in patient LPS, from DeepDRR's orient_patient docstring:
#: +x = patient right (LPS -x), +y = inferior (LPS -z), +z = anterior (LPS -y). Columns: world x, y, z.
LPS_FROM_WORLD = np.array([[-1.0, 0, 0, 0], [0, 0, -1, 0], [0, -1, 0, 0], [0, 0, 0, 1]])


@pytest.fixture(scope="module")
def phantom(tmp_path_factory) -> str:
    """A water cylinder with an off-centre bone rod in air, anisotropic voxels, RAS NIfTI."""
    hu = np.full((40, 36, 32), -1000.0, np.float32)
    i, j, _ = np.meshgrid(*[np.arange(n) for n in hu.shape], indexing="ij")
    hu[(i - 20) ** 2 + (j - 18) ** 2 < 15 ** 2] = 40.0
    hu[(i - 24) ** 2 + (j - 14) ** 2 < 4 ** 2] = 900.0
    affine = np.diag([1.0, 1.2, 1.5, 1.0])
    affine[:3, 3] = [-20.0, 10.0, 30.0]
    path = tmp_path_factory.mktemp("ct") / "phantom.nii.gz"
    nib.save(nib.Nifti1Image(hu, affine), str(path))
    return str(path)


def deepdrr_neglog_by_hand(image: np.ndarray, eps: float = 0.01) -> np.ndarray:
    """DeepDRR 1.2's utils.neglog, written out: -ln(I + min I + eps), then min-max to [0, 1]."""
    y = -np.log(image.astype(np.float32) + image.astype(np.float32).min() + np.float32(eps))
    return ((y - y.min()) / (y.max() - y.min())).astype(np.float32)


def test_readme_example_runs_unchanged_and_equals_the_native_api(phantom):
    code = README_EXAMPLE.replace("deepdrr", "ddsa_sim.compat.deepdrr").replace("/path/to/ct_image.nii.gz", phantom)
    scope: dict = {}
    exec(compile(code, "README_EXAMPLE", "exec"), scope)  # noqa: S102 (the point: the script as users write it)
    image = scope["image"]
    assert image.shape == (1536, 1536) and image.dtype == np.float32

    # the same pose in the native API, in patient LPS: DeepDRR's centre is voxel index shape/2
    ct = read_ct(phantom)
    centre = ct.voxel_to_world(np.array(ct.shape) / 2.0)
    carm = CArm(isocenter_mm=tuple(centre), alpha_deg=30.0, beta_deg=10.0, world_from_device=LPS_FROM_WORLD)
    proj = NativeProjector([ProjectorVolume.from_ct(ct)], spectrum="90KV_AL40", method="trilinear", step_mm=0.1)
    kev = proj.render(carm).intensity["image"] * np.float32(get_spectrum("90KV_AL40").mean_energy_kev)
    expected = deepdrr_neglog_by_hand(kev)
    assert np.abs(image - expected).max() < 2e-6  # float32 round-off of values in [0, 1]
    # the phantom is in view: water and bone shadows cover tens of thousands of pixels
    assert (image > 0.05).sum() > 20_000 and image.max() == 1.0


def small_carm():
    from ddsa_sim.compat.deepdrr import MobileCArm

    return MobileCArm(sensor_height=65, sensor_width=65, pixel_size=2.0)


def test_quantitative_equals_native_neglog_and_torch_equals_numba(phantom):
    from ddsa_sim.compat.deepdrr import Volume
    from ddsa_sim.compat.deepdrr.projector import Projector

    ct = Volume.from_nifti(phantom)
    ct.orient_patient(head_first=True, supine=True)
    carm = small_carm()
    ct.place_center(carm.isocenter_in_world)
    carm.move_to(alpha=-20, beta=35)
    with Projector(ct, carm=carm, quantitative=True, step=0.5) as p:
        ours = p()
        native = p.native_projector().render(carm.view()).neglog["image"]
    with Projector(ct, carm=carm, quantitative=True, step=0.5, device="cpu", backend="torch") as p:
        torch_cpu = p()
    np.testing.assert_allclose(ours, native, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(torch_cpu, ours, rtol=2e-5, atol=2e-6)
    assert ours.max() > 1.0  # through 30 mm of water and the bone rod
    with Projector(ct, carm=carm, neglog=False, step=0.5) as p:
        kev = p()
    np.testing.assert_allclose(-np.log(kev / get_spectrum("90KV_AL40").mean_energy_kev), ours, rtol=1e-5, atol=1e-6)


def test_neglog_is_deepdrrs_min_max_transform():
    from ddsa_sim.compat.deepdrr.utils import neglog

    image = np.array([[40.0, 30.0], [10.0, 20.0]], np.float32)
    y = -np.log(image + 10.0 + 0.01)  # DeepDRR ADDS the minimum (10) and epsilon
    np.testing.assert_allclose(neglog(image), (y - y.min()) / (y.max() - y.min()), rtol=1e-6)
    assert np.all(neglog(np.full((3, 3), 7.0)) == 0)  # a constant image maps to 0
    stack = neglog(np.stack([image, 2 * image]))  # each image normalised on its own
    assert stack.shape == (2, 2, 2) and np.allclose(stack.min(axis=(1, 2)), 0) and np.allclose(stack.max(axis=(1, 2)), 1)


def test_iodine_material_by_name_gives_beer_lambert():
    from ddsa_sim.compat.deepdrr import Volume
    from ddsa_sim.compat.deepdrr.projector import Projector

    # a 10 mm cube of 20 mg/ml iodine (0.02 g/cm^3) in an air-free (zero density) margin
    dens = np.zeros((14, 14, 14), np.float32)
    dens[2:12, 2:12, 2:12] = 0.02
    mats = {"iodine": np.ones(dens.shape, bool)}
    affine = np.eye(4)
    affine[:3, 3] = -6.5  # centre of the cube's voxels at the world origin
    vol = Volume(dens, mats, affine)
    carm = small_carm()
    with Projector(vol, carm=carm, quantitative=True, step=0.05) as p:
        image = p()
    spec = get_spectrum("90KV_AL40")
    w = spec.energies_kev * spec.fluence
    mu = mass_attenuation("iodine", spec.energies_kev)
    expected = -np.log(np.sum(w * np.exp(-mu * 0.02 * 1.0)) / w.sum())  # 1.0 cm of iodine solution
    assert image[32, 32] == pytest.approx(expected, rel=2e-3)


def test_noise_is_poisson_on_the_photons_that_reach_each_pixel():
    """DeepDRR draws Poisson(photon_prob x photon_count): behind 10 cm of water (photon transmission T) the relative
    noise is 1 / sqrt(T) times the air's, not the same (the adapter's noise had ignored the attenuation)."""
    from ddsa_sim.compat.deepdrr import MobileCArm, Volume
    from ddsa_sim.compat.deepdrr.projector import Projector

    cube = np.zeros((100, 100, 100), bool)
    cube[:] = True
    affine = np.eye(4)
    affine[:3, 3] = -49.5  # a 10 cm water cube centred on the isocenter, nothing around it
    vol = Volume(cube.astype(np.float32), {"water": cube}, affine)
    carm = MobileCArm(sensor_height=128, sensor_width=128, pixel_size=2.0)  # the cube: the middle 96 pixels
    clean = Projector(vol, carm=carm, neglog=False, step=1.0)()
    noisy = Projector(vol, carm=carm, neglog=False, step=1.0, add_noise=True, photon_count=10000, seed=3)()
    rel = noisy / clean - 1.0
    behind, air = rel[44:84, 44:84].std(), np.concatenate([rel[:12].ravel(), rel[-12:].ravel()]).std()
    spec = get_spectrum("90KV_AL40")
    photons = spec.fluence / spec.fluence.sum()
    transmitted = float(np.sum(photons * np.exp(-mass_attenuation("water", spec.energies_kev) * 1.0 * 10.0)))
    assert behind / air == pytest.approx(1.0 / np.sqrt(transmitted), rel=0.1), (behind, air, transmitted)


def test_move_to_refuses_poses_outside_the_limits_and_keeps_the_pose():
    carm = small_carm()
    carm.move_to(alpha=10, beta=5)
    with pytest.raises(InputError, match="alpha=120"):
        carm.move_to(alpha=120)
    assert np.degrees(carm.alpha) == pytest.approx(10) and np.degrees(carm.beta) == pytest.approx(5)
    carm.move_by(delta_alpha=5)
    assert carm.view().alpha_deg == pytest.approx(15)


def test_bad_inputs_are_one_line_errors(phantom, tmp_path):
    from ddsa_sim.compat.deepdrr import MobileCArm, Volume
    from ddsa_sim.compat.deepdrr.projector import Projector

    with pytest.raises(InputError, match="no such file"):
        Volume.from_nifti(tmp_path / "missing.nii.gz")
    with pytest.raises(InputError, match="segmentation network"):
        Volume.from_nifti(phantom, use_thresholding=False)
    ct = Volume.from_nifti(phantom)
    with pytest.raises(InputError, match="mode"):
        Projector(ct, carm=small_carm(), mode="cubic")
    with pytest.raises(InputError, match="MobileCArm"):
        Projector(ct, carm="not a carm")
    with pytest.raises(InputError, match="unknown material"):
        Volume(np.ones((2, 2, 2)), {"unobtainium": np.ones((2, 2, 2), bool)}, np.eye(4))
    with pytest.raises(InputError, match="isocenter must be a point"):
        MobileCArm(isocenter=(1, 2))
    # DeepDRR 1.2's from_hu(hu, origin, use_thresholding, spacing) is defined for LPS only (NotImplementedError there)
    hu = np.zeros((4, 4, 4), np.float32)
    with pytest.raises(InputError, match="anatomical_coordinate_system='LPS' only"):
        Volume.from_hu(hu, (0.0, 0.0, 0.0), True, (1, 1, 2))
    with pytest.raises(InputError, match="4x4 affine or, as DeepDRR 1.2, an origin"):
        Volume.from_hu(hu, np.eye(3))
    with pytest.raises(InputError, match="use_thresholding must be True or False"):
        Volume.from_hu(hu, np.eye(4), None, (1, 1, 2))
    assert Volume.from_hu(hu, np.eye(4)).shape == (4, 4, 4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Projector(ct, carm=small_carm(), priorities=[0])
    assert any("priorities are ignored" in str(w.message) for w in caught)


def test_dicom_path_that_does_not_exist_is_named_not_its_folder_read(tmp_path):
    import shutil

    from pydicom.data import get_testdata_file

    from ddsa_sim.compat.deepdrr import Volume

    series = tmp_path / "series"
    shutil.copytree(get_testdata_file("CT5N"), series)
    assert Volume.from_dicom(series).shape == Volume.from_dicom(next(series.iterdir())).shape  # a file: its folder
    with pytest.raises(InputError, match=r"typo: no such file or folder"):  # was: the parent's series, silently
        Volume.from_dicom(series / "typo")


def test_image_utils_save_writes_deepdrrs_8_bit_png(tmp_path):
    from PIL import Image

    from ddsa_sim.compat.deepdrr.utils import image_utils

    image = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    path = image_utils.save(tmp_path / "sub" / "x.png", image)
    back = np.asarray(Image.open(path))
    np.testing.assert_array_equal(back, np.clip(image * 255, 0, 255).astype(np.uint8))
    with pytest.raises(InputError, match="unknown image format"):
        image_utils.save(tmp_path / "x.unknown", image)


# ---------------------------------------------------------------- DeepDRR 1.2 members added after the QA pass
def posed_carm(**kwargs):
    """A C-arm with a rotated and shifted device, a non-square detector and an offset principal ray."""
    from scipy.spatial.transform import Rotation

    from ddsa_sim.compat.deepdrr import MobileCArm

    world_from_device = np.eye(4)
    world_from_device[:3, :3] = Rotation.from_euler("zyx", [30, -20, 10], degrees=True).as_matrix()
    world_from_device[:3, 3] = [100.0, -50.0, 20.0]
    args = dict(world_from_device=world_from_device, isocenter=(5.0, -3.0, 8.0), alpha=25, beta=-40, gamma=15,
                sensor_height=48, sensor_width=64, pixel_size=1.5, source_to_isocenter_horizontal_offset=30.0)
    return MobileCArm(**{**args, **kwargs}), world_from_device


#: killeengeo's points and vectors are float32: tolerances for unit vectors and for world points ~100 mm out
UNIT_TOL, MM_TOL = 1e-6, 1e-4


def decompose(P: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """K (K[2, 2] = 1, positive diagonal), source (world) and the pixel -> world ray map of a 3x4 projection matrix."""
    from scipy.linalg import rq

    M = P[:, :3]
    K, R = rq(M)
    K = K @ np.diag(np.sign(np.diag(K)))
    source = -np.linalg.solve(M, P[:, 3])
    return K / K[2, 2], source, np.linalg.inv(M)


def on_detector(P: np.ndarray, sdd: float, u: float, v: float) -> np.ndarray:
    """World point of image index (u, v) on the detector plane, ``sdd`` from the source along the principal axis."""
    _, source, m_inv = decompose(P)
    axis = np.linalg.det(P[:, :3]) * P[2, :3]
    axis /= np.linalg.norm(axis)
    d = m_inv @ np.array([u, v, 1.0])
    return source + sdd * d / np.dot(d, axis)


def test_principle_ray_viewpoint_and_detector_size_come_from_the_projection_matrix():
    carm, world_from_device = posed_carm()
    P = carm.view().projection_matrix
    _, source, _ = decompose(P)
    centre = on_detector(P, carm.source_to_detector_distance, 32.0, 24.0)  # the sensor's centre (W/2, H/2)
    ray_world = (centre - source) / np.linalg.norm(centre - source)
    ray_device = world_from_device[:3, :3].T @ ray_world
    np.testing.assert_allclose(np.asarray(carm.principle_ray), ray_device, rtol=0, atol=UNIT_TOL)  # DeepDRR: device frame
    np.testing.assert_allclose(np.asarray(carm.principle_ray_in_world), ray_world, rtol=0, atol=UNIT_TOL)
    assert np.abs(ray_device - ray_world).max() > 0.1  # the two frames differ here
    # the viewpoint: on the principal ray, source_to_isocenter_vertical_distance from the source
    viewpoint = source + carm.source_to_isocenter_vertical_distance * ray_world
    np.testing.assert_allclose(np.asarray(carm.viewpoint_in_world), viewpoint, rtol=0, atol=MM_TOL)
    viewpoint_device = world_from_device[:3, :3].T @ (viewpoint - world_from_device[:3, 3])
    np.testing.assert_allclose(np.asarray(carm.viewpoint), viewpoint_device, rtol=0, atol=MM_TOL)
    iso = np.asarray(carm.isocenter_in_world)
    assert np.linalg.norm(viewpoint - iso) == pytest.approx(30.0, abs=MM_TOL)  # the horizontal offset, off the isocenter
    corners = [on_detector(P, carm.source_to_detector_distance, u, v) for u, v in ((0, 0), (64, 0), (64, 48))]
    assert carm.detector_width == pytest.approx(np.linalg.norm(corners[1] - corners[0]))  # 64 x 1.5 mm
    assert carm.detector_height == pytest.approx(np.linalg.norm(corners[2] - corners[1]))  # 48 x 1.5 mm


def test_camera_intrinsics_is_the_K_of_the_projection_matrix():
    import killeengeo as kg

    carm, _ = posed_carm()
    K, _, _ = decompose(carm.view().projection_matrix)
    assert isinstance(carm.camera_intrinsics, kg.CameraIntrinsicTransform)
    np.testing.assert_allclose(np.asarray(carm.camera_intrinsics), K, rtol=0, atol=1e-4)  # pixels
    assert (carm.camera_intrinsics.sensor_width, carm.camera_intrinsics.sensor_height) == (64, 48)
    np.testing.assert_allclose(np.asarray(carm.get_camera_projection().intrinsic), K, rtol=0, atol=1e-4)


def test_move_to_along_a_world_ray_and_about_an_interest_point():
    carm, world_from_device = posed_carm(alpha=0, beta=0)
    target, _ = posed_carm(alpha=20, beta=-60)  # an independent pose whose ray we aim along
    P_target = target.view().projection_matrix
    ray = np.linalg.det(P_target[:, :3]) * P_target[2, :3]
    carm.move_to(principle_ray_in_world=3.0 * ray / np.linalg.norm(ray))  # any length
    P = carm.view().projection_matrix
    np.testing.assert_allclose(P / np.linalg.norm(P), P_target / np.linalg.norm(P_target), rtol=0, atol=UNIT_TOL)
    assert np.degrees([carm.alpha, carm.beta]) == pytest.approx([20.0, -60.0], abs=1e-4)
    with pytest.raises(InputError, match="non-zero vector"):
        carm.move_to(principle_ray_in_world=(0, 0, 0))

    # a point on the principal ray stays on it, at the same distance from the source, when the arm turns
    carm, _ = posed_carm(alpha=10, beta=5, source_to_isocenter_horizontal_offset=0.0)
    P0 = carm.view().projection_matrix
    _, source0, _ = decompose(P0)
    point = np.asarray(carm.isocenter_in_world) + 120.0 * np.asarray(carm.principle_ray_in_world)
    carm.move_to(alpha=35, beta=-30, interest_point_in_world=point)
    P1 = carm.view().projection_matrix
    _, source1, _ = decompose(P1)
    uvw = P1 @ np.append(point, 1.0)
    np.testing.assert_allclose(uvw[:2] / uvw[2], [32.0, 24.0], rtol=0, atol=1e-3)  # the image centre (pixels)
    assert np.linalg.norm(point - source1) == pytest.approx(np.linalg.norm(point - source0), abs=MM_TOL)
    assert np.degrees([carm.alpha, carm.beta]) == pytest.approx([35.0, -30.0])


def test_reposition_puts_the_viewpoint_at_a_world_point_and_resets_the_pose():
    carm, _ = posed_carm()
    carm.reposition(viewpoint_in_world=(10.0, 20.0, 30.0))
    P = carm.view().projection_matrix
    _, source, _ = decompose(P)
    axis = np.linalg.det(P[:, :3]) * P[2, :3]
    viewpoint = source + carm.source_to_isocenter_vertical_distance * axis / np.linalg.norm(axis)
    np.testing.assert_allclose(viewpoint, [10.0, 20.0, 30.0], rtol=0, atol=MM_TOL)
    assert (carm.alpha, carm.beta) == (0.0, 0.0) and np.degrees(carm.gamma) == pytest.approx(15.0)
    np.testing.assert_allclose(np.asarray(carm.world_from_device)[:3, :3], np.eye(3))  # DeepDRR drops the rotation
    carm.reposition(device_in_world=(1.0, 2.0, 3.0))
    np.testing.assert_allclose(np.asarray(carm.isocenter_in_world), [1.0, 2.0, 3.0], rtol=0, atol=MM_TOL)
    with pytest.raises(InputError, match="viewpoint_in_world or device_in_world"):
        carm.reposition()


def small_volume(world_from_anatomical=None):
    """A 12 x 10 x 8 water block with a bone corner, 2 mm voxels, RAS, around the anatomical origin."""
    from ddsa_sim.compat.deepdrr import Volume

    hu = np.full((12, 10, 8), 40.0, np.float32)
    hu[:4, :3, :2] = 900.0
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = [-11.0, -9.0, -7.0]
    vol = Volume.from_hu(hu, affine, world_from_anatomical)
    vol.anatomical_coordinate_system = "RAS"
    return vol


def test_copy_pose_makes_two_volumes_project_identically():
    from ddsa_sim.compat.deepdrr.projector import Projector

    a, b = small_volume(), small_volume()
    a.orient_patient(head_first=False, supine=False)
    a.translate((4.0, -3.0, 2.0))
    carm = small_carm()
    image_a = Projector(a, carm=carm, quantitative=True, step=0.5)()
    assert image_a.max() > 0.5  # the block is in view
    assert np.abs(Projector(b, carm=carm, quantitative=True, step=0.5)() - image_a).max() > 0.1  # different poses
    b.copy_pose(a)
    np.testing.assert_array_equal(Projector(b, carm=carm, quantitative=True, step=0.5)(), image_a)
    before = np.asarray(b.world_from_anatomical).copy()
    a.translate((10.0, 0.0, 0.0))  # a copy, not a shared transform
    np.testing.assert_array_equal(np.asarray(b.world_from_anatomical), before)


@pytest.mark.parametrize("pose, right, anterior, superior", [
    ("HFS", (1, 0, 0), (0, 0, 1), (0, -1, 0)),  # DeepDRR's Loop-X world: head first = superior -y, supine = anterior +z
    ("HFP", (-1, 0, 0), (0, 0, -1), (0, -1, 0)),
    ("FFS", (-1, 0, 0), (0, 0, 1), (0, 1, 0)),
    ("FFP", (1, 0, 0), (0, 0, -1), (0, 1, 0)),
])
def test_position_patient_lays_out_the_dicom_positions(pose, right, anterior, superior):
    from ddsa_sim.compat.deepdrr import PatientPose

    for given in (pose, PatientPose(pose)):
        vol = small_volume()
        vol.translate((7.0, 8.0, 9.0))
        vol.position_patient(given)
        m = np.asarray(vol.world_from_anatomical)
        np.testing.assert_allclose(m[:3, :3], np.column_stack([right, anterior, superior]), atol=1e-12)
        np.testing.assert_allclose(m[:3, 3], [7.0, 8.0, 9.0])  # only the rotation changes
    with pytest.raises(InputError, match="'HFDR' is not supported"):
        small_volume().position_patient(PatientPose.HFDR)


def test_rotate_turns_the_volume_about_its_centre_or_a_given_point():
    import killeengeo as kg
    from scipy.spatial.transform import Rotation

    quarter_x = np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])  # 90 deg about world x, by hand
    corner = np.array([0.0, 0.0, 0.0, 1.0])  # voxel (0, 0, 0)
    for rotation in (Rotation.from_euler("x", 90, degrees=True), (np.pi / 2, 0.0, 0.0),
                     kg.FrameTransform.from_rt(rotation=quarter_x)):
        vol = small_volume()
        vol.translate((3.0, 4.0, 5.0))
        c, w0 = np.asarray(vol.center_in_world), (np.asarray(vol.world_from_ijk) @ corner)[:3]
        assert vol.rotate(rotation) is vol
        np.testing.assert_allclose(np.asarray(vol.center_in_world), c, rtol=0, atol=MM_TOL)
        np.testing.assert_allclose((np.asarray(vol.world_from_ijk) @ corner)[:3], quarter_x @ (w0 - c) + c, rtol=0, atol=MM_TOL)
        np.testing.assert_allclose(np.asarray(vol.anatomical_from_world @ vol.center_in_world), np.asarray(vol.get_center()),
                                   rtol=0, atol=MM_TOL)
    vol = small_volume()
    w0 = (np.asarray(vol.world_from_ijk) @ corner)[:3]
    vol.rotate((np.pi / 2, 0.0, 0.0), center=(0.0, 100.0, 0.0))
    expected = quarter_x @ (w0 - [0.0, 100.0, 0.0]) + [0.0, 100.0, 0.0]
    np.testing.assert_allclose((np.asarray(vol.world_from_ijk) @ corner)[:3], expected, rtol=0, atol=MM_TOL)


def test_from_hu_takes_deepdrrs_origin_and_spacing_form():
    import killeengeo as kg

    from ddsa_sim.compat.deepdrr import Volume

    hu = np.full((6, 5, 4), -1000.0, np.float32)
    hu[1:5, 1:4, 1:3] = 40.0
    hu[2, 2, 1] = 900.0
    origin, spacing = (10.0, -20.0, 5.0), (0.5, 0.8, 1.2)
    positional = Volume.from_hu(hu, origin, True, spacing, "LPS")
    keywords = Volume.from_hu(hu, origin=origin, spacing=spacing, anatomical_coordinate_system="LPS")
    geo_typed = Volume.from_hu(hu, kg.point(*origin), True, kg.vector(*spacing), "LPS")
    # DeepDRR 1.2's LPS axes: i along L, j along inferior (-S), k along P, from the origin at voxel (0, 0, 0)
    i, j, k = 3, 4, 2
    expected = [10.0 + 0.5 * i, -20.0 + 1.2 * k, 5.0 - 0.8 * j]
    for vol in (positional, keywords, geo_typed):
        np.testing.assert_allclose((np.asarray(vol.world_from_ijk) @ [i, j, k, 1.0])[:3], expected, rtol=1e-6)
        assert vol.anatomical_coordinate_system == "LPS"
        np.testing.assert_allclose(np.asarray(vol.spacing), spacing)
    affine = np.array([[0.5, 0, 0, 10.0], [0, 0, 1.2, -20.0], [0, -0.8, 0, 5.0], [0, 0, 0, 1]])
    by_affine = Volume.from_hu(hu, affine)
    np.testing.assert_array_equal(positional.data, by_affine.data)
    assert positional.materials.keys() == by_affine.materials.keys()
    assert all(np.array_equal(positional.materials[m], by_affine.materials[m]) for m in by_affine.materials)
    with pytest.raises(InputError, match="segmentation network"):
        Volume.from_hu(hu, origin, False, spacing, "LPS")
    with pytest.raises(InputError, match="spacing must be 3 positive"):
        Volume.from_hu(hu, origin, True, (1.0, 0.0, 1.0), "LPS")


def test_quantitative_goes_with_neglog_true_and_is_refused_with_neglog_false():
    from ddsa_sim.compat.deepdrr.projector import Projector

    vol = small_volume()
    with pytest.raises(InputError, match="quantitative=True returns -ln"):
        Projector(vol, carm=small_carm(), quantitative=True, neglog=False)
    explicit = Projector(vol, carm=small_carm(), quantitative=True, neglog=True, step=0.5)()
    np.testing.assert_array_equal(explicit, Projector(vol, carm=small_carm(), quantitative=True, step=0.5)())
