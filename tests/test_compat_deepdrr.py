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
    # DeepDRR 1.2's from_hu(hu, origin, use_thresholding, spacing) would land the flag in world_from_anatomical
    hu = np.zeros((4, 4, 4), np.float32)
    with pytest.raises(InputError, match="give the voxel-to-anatomical 4x4 affine"):
        Volume.from_hu(hu, (0.0, 0.0, 0.0), True, (1, 1, 2))
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
