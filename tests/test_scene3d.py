"""3D scene pictures: off-screen PNGs, parts placed where the C-arm says, detector texture orientation, CLI."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

pv = pytest.importorskip("pyvista")

from ddsa_sim import InputError  # noqa: E402
from ddsa_sim.geometry import CArm  # noqa: E402
from ddsa_sim.viz.scene3d import build_plotter, ct_surface, detector_mesh, pose_label, save_scene_png  # noqa: E402
from ddsa_sim.volumes import Volume  # noqa: E402

pv.OFF_SCREEN = True


def phantom_ct(n: int = 40, spacing: float = 4.0, flip_j: bool = True) -> tuple[Volume, np.ndarray, float]:
    """A water cylinder (axis k) with a 'bone' sphere of radius 30 mm off centre; j axis flipped like NIfTI->LPS."""
    idx = np.indices((n, n, n), dtype=np.float64)
    affine = np.diag([spacing, -spacing if flip_j else spacing, spacing, 1.0])
    affine[:3, 3] = [-100.0, 120.0 if flip_j else -80.0, -300.0]
    world = np.einsum("ij,jxyz->ixyz", affine[:3, :3], idx) + affine[:3, 3, None, None, None]
    c = (np.array([n, n, n]) - 1) / 2.0
    centre = c @ affine[:3, :3].T + affine[:3, 3]
    data = np.full((n, n, n), -1000.0, np.float32)
    r_body = np.hypot(world[0] - centre[0], world[1] - centre[1])
    data[r_body < 0.4 * n * spacing] = 40.0
    ball = centre + np.array([20.0, -12.0, 8.0])
    data[np.linalg.norm(world - ball[:, None, None, None], axis=0) < 30.0] = 1000.0
    return Volume(data, affine, name="phantom"), ball, 30.0


@pytest.fixture(scope="module")
def ct():
    return phantom_ct()[0]


def carm_for(ct: Volume, **pose) -> CArm:
    return CArm(isocenter_mm=tuple(ct.center_mm), sensor_height=48, sensor_width=64, pixel_mm=5.0, **pose)


def test_png_written_with_requested_size_and_content(ct, tmp_path):
    carm = carm_for(ct, alpha_deg=30.0, beta_deg=10.0)
    img = np.random.default_rng(0).random((48, 64))
    out = save_scene_png(ct, carm, tmp_path / "s.png", image=img, window_size=(320, 240))
    assert out.is_file() and out.stat().st_size > 2000
    arr = np.asarray(Image.open(out).convert("RGB"))
    assert arr.shape == (240, 320, 3)
    not_white = np.any(arr < 245, axis=2).mean()
    assert 0.05 < not_white < 0.95  # a picture, neither blank nor a solid block


def test_the_carm_is_centred_in_the_picture_at_one_scale(tmp_path):
    """The C-arm alone (no CT, labels or title): the box of its drawn pixels centred within 4 % of the picture, with
    a margin on every side (the camera reset of its bounding box had left the detector cut off at the top and the
    lower third empty), and the camera as far from it at every pose (one scale: side-by-side views compare)."""
    distances = []
    for alpha, beta in [(0.0, 0.0), (30.0, 0.0), (0.0, 30.0), (-40.0, 25.0)]:
        carm = CArm(sensor_height=48, sensor_width=48, pixel_mm=6.0, alpha_deg=alpha, beta_deg=beta)
        out = save_scene_png(None, carm, tmp_path / f"c{alpha}_{beta}.png", window_size=(400, 300), labels=False,
                             show_axes=False, title="")
        drawn = np.argwhere(np.any(np.asarray(Image.open(out).convert("RGB")) < 235, axis=2))
        (top, left), (bottom, right) = drawn.min(axis=0), drawn.max(axis=0)
        assert min(top, left, 299 - bottom, 399 - right) > 3, (alpha, beta, top, left, bottom, right)
        assert abs((top + bottom) / 2 - 149.5) < 0.04 * 300 and abs((left + right) / 2 - 199.5) < 0.04 * 400
        plotter = build_plotter(None, carm, off_screen=True, window_size=(400, 300))
        distances.append(plotter.camera.distance)
        plotter.close()
    np.testing.assert_allclose(distances, distances[0], rtol=1e-6)


def test_an_iso_level_above_the_ct_says_so(ct, tmp_path):
    with pytest.warns(UserWarning, match=r"phantom: no voxel reaches the iso-surface level 5000 HU \(the CT spans "
                                         r"-1000\.\.1000\)"):
        build_plotter(ct, carm_for(ct), iso_level_hu=5000.0, skin_level_hu=None, off_screen=True).close()


def test_parts_are_where_the_carm_says(ct):
    carm = carm_for(ct, alpha_deg=30.0, beta_deg=-20.0)
    plotter = build_plotter(ct, carm, image=np.zeros((48, 64)), off_screen=True, window_size=(200, 150))
    try:
        actors = plotter.actors
        det = actors["detector"].mapper.dataset
        np.testing.assert_allclose(det.points, carm.detector_corners_mm(), atol=1e-6)
        src = actors["source"].mapper.dataset
        np.testing.assert_allclose(src.center, carm.source_mm, atol=1e-6)
        iso = actors["isocenter"].mapper.dataset
        np.testing.assert_allclose(iso.center, carm.isocenter_mm, atol=1e-6)
        fr = actors["frustum"].mapper.dataset
        np.testing.assert_allclose(fr.points[0], carm.source_mm, atol=1e-6)
        np.testing.assert_allclose(fr.points[1:5], carm.detector_corners_mm(), atol=1e-6)
        # the LPS axes point along world +x, +y, +z from the isocenter
        for name, axis in (("L", 0), ("P", 1), ("S", 2)):
            pts = actors[f"axis_{name}"].mapper.dataset.points - np.asarray(carm.isocenter_mm)
            far = pts[np.argmax(np.linalg.norm(pts, axis=1))]
            assert np.argmax(np.abs(far)) == axis and far[axis] > 0
        assert "ct" in actors and "skin" in actors
    finally:
        plotter.close()


def test_detector_texture_seen_from_the_source_reproduces_the_image():
    """A camera at the source with the C-arm's field of view must see the image as stored (row 0 on top)."""
    carm = CArm(alpha_deg=20.0, beta_deg=15.0, sensor_height=60, sensor_width=80, pixel_mm=3.0)
    img = np.zeros((60, 80))
    img[:30, :40], img[:30, 40:], img[30:, :40], img[30:, 40:] = 0.0, 1.0, 2.0, 3.0
    quad, tex = detector_mesh(carm, img, window=(0.0, 3.0))
    plotter = pv.Plotter(off_screen=True, window_size=(160, 120))
    try:
        plotter.add_mesh(quad, texture=tex, lighting=False)
        up = carm.pixel_to_world([[40, 0]])[0] - carm.pixel_to_world([[40, 60]])[0]
        plotter.camera_position = [tuple(carm.source_mm), tuple(carm.detector_center_mm), tuple(up / np.linalg.norm(up))]
        plotter.camera.view_angle = float(np.degrees(2 * np.arctan(60 * 3.0 / 2 / carm.source_to_detector_distance)))
        plotter.camera.clipping_range = (1.0, 5000.0)
        shot = plotter.screenshot(return_img=True)[..., :3].astype(float).mean(axis=2)
    finally:
        plotter.close()
    h, w = shot.shape
    q = [shot[h // 8: 3 * h // 8, w // 8: 3 * w // 8].mean(), shot[h // 8: 3 * h // 8, 5 * w // 8: 7 * w // 8].mean(),
         shot[5 * h // 8: 7 * h // 8, w // 8: 3 * w // 8].mean(), shot[5 * h // 8: 7 * h // 8, 5 * w // 8: 7 * w // 8].mean()]
    assert q[0] < q[1] < q[2] < q[3], q
    assert q[0] < 30 and q[3] > 225


def test_ct_surface_in_world_mm_for_a_flipped_affine():
    vol, ball, radius = phantom_ct(n=48, spacing=2.0, flip_j=True)
    surf = ct_surface(vol, level_hu=500.0, spacing_mm=2.0)
    d = np.linalg.norm(surf.points - ball, axis=1)
    assert surf.n_points > 100
    assert np.all(np.abs(d - radius) < 2.5)  # within about a voxel of the true sphere
    coarse = ct_surface(vol, level_hu=500.0, spacing_mm=4.0)
    assert 0 < coarse.n_points < surf.n_points
    assert np.median(np.abs(np.linalg.norm(coarse.points - ball, axis=1) - radius)) < 3.0


def test_bad_input(ct):
    carm = carm_for(ct)
    with pytest.raises(InputError, match="differs from the C-arm detector"):
        detector_mesh(carm, np.zeros((10, 10)))
    with pytest.raises(InputError, match="ct_mode"):
        build_plotter(ct, carm, ct_mode="hologram", off_screen=True)
    with pytest.raises(InputError, match=".png"):
        save_scene_png(None, carm, "scene.jpg")


def test_pose_label():
    c = CArm()
    assert pose_label(c) == "AP"
    assert pose_label(c.at(alpha_deg=30.0)) == "RAO 30"
    assert pose_label(c.at(beta_deg=-10.0)) == "AP / CRA 10"
    # QA found: both angles at once were named by the mechanical angles (this pose was "LAO 20 / CAU 15");
    # the detector lies at atan(tan(20) / cos(15)) = 20.65 deg LAO, asin(cos(20) sin(15)) = 14.08 deg CAU
    assert pose_label(c.at(alpha_deg=-20.0, beta_deg=15.0)) == "LAO 20.6 / CAU 14.1"


def test_cli_scene_png(tmp_path: Path):
    from ddsa_sim.cli import main

    vol, _, _ = phantom_ct(n=32, spacing=5.0, flip_j=False)
    path = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(vol.data, np.diag([5.0, 5.0, 5.0, 1.0])), str(path))
    out = tmp_path / "pics" / "scene.png"
    with pytest.raises(SystemExit) as ok:
        main(["scene", str(path), "--png", str(out), "--alpha", "30", "--vessels", "lsystem", "--detector", "24x32",
              "--pixel-mm", "8", "--size", "300x200"])
    assert ok.value.code in (0, None)
    arr = np.asarray(Image.open(out).convert("RGB"))
    assert arr.shape == (200, 300, 3) and np.any(arr < 200)
    with pytest.raises(SystemExit) as exc:
        main(["scene", str(path), "--png", str(tmp_path / "x.png"), "--alpha", "170", "--no-drr"])
    assert exc.value.code == 2
    assert not (tmp_path / "x.png").exists()


def test_cli_scene_places_a_template_as_dsa_does(tmp_path: Path, capsys):
    """QA found: `scene --vessels coronary` centred the template on the CT (36 mm off the heart, or over a head)
    where `dsa` registers it to the anatomy; a phantom with neither heart label nor lungs is refused by both."""
    from ddsa_sim.cli import main

    vol, _, _ = phantom_ct(n=32, spacing=5.0, flip_j=False)
    path = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(vol.data, np.diag([5.0, 5.0, 5.0, 1.0])), str(path))
    for command in (["scene", str(path), "--png", str(tmp_path / "x.png"), "--no-drr"],
                    ["dsa", "--ct", str(path), "-o", str(tmp_path / "dsa"), "--detector", "16x16"]):
        with pytest.raises(SystemExit) as exc:
            main([*command, "--vessels", "coronary"])
        assert exc.value.code == 2 and "is no pair of lungs" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_cli_scene_reads_the_ct_once_for_a_generated_tree(tmp_path: Path, monkeypatch):
    """`scene --vessels <generator>` placed the tree by building a whole DSA scene, which read the CT a second time
    and built its projector volume (10 s on the builtin chest CT) for a tree; it reads it once now."""
    from ddsa_sim.cli import main
    from ddsa_sim.volumes import readers

    vol, _, _ = phantom_ct(n=32, spacing=5.0, flip_j=False)
    path = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(vol.data, np.diag([5.0, 5.0, 5.0, 1.0])), str(path))
    reads = []
    read_volume = readers.read_volume
    monkeypatch.setattr(readers, "read_volume", lambda source: reads.append(source) or read_volume(source))
    with pytest.raises(SystemExit) as ok:
        main(["scene", str(path), "--png", str(tmp_path / "s.png"), "--vessels", "lsystem", "--no-drr",
              "--detector", "24x32", "--pixel-mm", "8", "--size", "300x200"])
    assert ok.value.code in (0, None) and reads == [str(path)]
