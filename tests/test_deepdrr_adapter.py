"""DeepDRR adapter: scene translation checked without DeepDRR (no GPU, no deepdrr import)."""

from __future__ import annotations

import sys

import killeengeo as kg
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from ddsa_sim import InputError
from ddsa_sim.geometry import CArm
from ddsa_sim.projector import ProjectorVolume
from ddsa_sim.projector import deepdrr_adapter as da


def _scene():
    rng = np.random.default_rng(3)
    n = (30, 28, 20)
    dens = rng.uniform(0.9, 1.2, n).astype(np.float32)
    labels = rng.integers(0, 3, n).astype(np.uint8)
    aff = np.diag([1.5, 1.5, 2.5, 1.0])
    aff[:3, 3] = [-20.0, -20.0, -25.0]
    ct = ProjectorVolume("ct", dens, labels, ("air", "soft tissue", "cortical bone"), aff)
    m = 40
    idx = np.indices((m, m, m)) - (m - 1) / 2
    # a tube of varying concentration (partial-volume edges after resampling)
    tube = (idx[0] ** 2 + idx[1] ** 2 <= 36).astype(np.float32) * (0.005 + 0.0002 * (idx[2] + 20))
    aff_i = np.diag([0.3, 0.3, 0.3, 1.0])
    aff_i[:3, 3] = [-4.0, -3.0, -6.0]
    iod = ProjectorVolume.single_material("iodine", tube, aff_i, "iodine", {"blood": 2.5})
    return ct, iod


def test_burned_iodine_mass_and_masks():
    ct, iod = _scene()
    spec = da.deepdrr_scene_spec(ct, iod, CArm(), iodine_levels=6)
    info = spec["iodine"]
    vol_f = abs(np.linalg.det(iod.world_from_voxel[:3, :3])) / 1000
    truth = float(iod.density_g_per_cc.astype(np.float64).sum() * vol_f)
    assert info["dropped_g"] == 0
    assert abs(info["burned_g"] - truth) <= 0.01 * truth
    # recompute the iodine mass independently from the spec's own arrays and compound strings
    vol_ct = abs(np.linalg.det(ct.world_from_voxel[:3, :3])) / 1000
    mass = 0.0
    for name, mask in spec["materials"].items():
        comp = spec["compounds"].get(name, "")
        if "I0." in comp:
            w_i = float(comp.split("I0.")[1][:8]) / 1e8
            mass += float(spec["density"][mask].astype(np.float64).sum()) * w_i * vol_ct
    assert abs(mass - truth) <= 0.01 * truth
    # exclusive and complete
    total = sum(m.astype(np.int64) for m in spec["materials"].values())
    assert np.all(total == 1)
    assert {"air", "soft tissue"} <= set(spec["materials"])
    assert len([n for n in spec["materials"] if n.startswith("iodinated blood")]) == 6
    assert "cortical bone" in spec["compounds"]  # DeepDRR has no such name: an elemental compound
    assert info["base_mass_error"] < 0.5
    # away from the vessel the CT is untouched
    far = spec["materials"]["air"] | spec["materials"]["soft tissue"]
    np.testing.assert_array_equal(spec["density"][far], ct.density_g_per_cc[far])


def test_splat_conserves_mass_and_reports_dropped():
    ct, iod = _scene()
    shifted = ProjectorVolume.single_material("iodine", iod.density_g_per_cc,
                                              iod.world_from_voxel @ np.diag([1, 1, 1, 1.0]) + 0, "iodine")
    shifted.world_from_voxel[:3, 3] += [0.0, 0.0, 24.0]  # pushes part of the tube out of the CT grid
    c, dropped = da.splat_onto_grid(shifted, ct.shape, ct.world_from_voxel)
    vol_ct = abs(np.linalg.det(ct.world_from_voxel[:3, :3])) / 1000
    vol_f = abs(np.linalg.det(iod.world_from_voxel[:3, :3])) / 1000
    total = float(iod.density_g_per_cc.astype(np.float64).sum() * vol_f)
    assert dropped > 0.05 * total
    assert c.sum() * vol_ct + dropped == pytest.approx(total, rel=1e-9)


def _deepdrr_camera3d_from_world(kw: dict) -> np.ndarray:
    """DeepDRR 1.2.2 MobileCArm.get_camera3d_from_world, rebuilt from the kwargs with killeengeo."""
    rad = np.radians
    device_from_arm = kg.FrameTransform.from_rt(
        rotation=Rotation.from_euler("xy", [rad(kw["alpha"]), rad(kw["beta"])]).as_matrix(),
        translation=kg.point(*kw["isocenter"]))
    cam_from_arm = kg.FrameTransform.from_rt(translation=kg.point(
        0, -kw["source_to_isocenter_horizontal_offset"], kw["source_to_isocenter_vertical_distance"]))
    if kw["rotate_camera_left"]:
        cam_from_arm = kg.FrameTransform.from_rt(Rotation.from_euler("z", 90, degrees=True).as_matrix()) @ cam_from_arm
    gamma = kg.FrameTransform.from_rt(Rotation.from_euler("z", rad(kw["gamma"])).as_matrix())
    world_from_device = kg.FrameTransform(kw["world_from_device"])
    return np.array(gamma @ cam_from_arm @ device_from_arm.inverse() @ world_from_device.inverse())


@pytest.mark.parametrize("pose", [{}, {"alpha_deg": 30, "beta_deg": -20, "gamma_deg": 10}, {"alpha_deg": -35, "beta_deg": 90}])
def test_carm_kwargs_reproduce_projection(pose):
    carm = CArm(isocenter_mm=(12.0, -40.0, 300.0), sensor_height=300, sensor_width=200, pixel_mm=0.8,
                source_to_isocenter_horizontal_offset=5.0, **pose)
    kw = da.carm_kwargs(carm)
    assert kw["degrees"] is True and kw["sensor_width"] == 200
    cam = _deepdrr_camera3d_from_world(kw)
    # killeengeo (and so DeepDRR) holds transforms in float32: rotations to ~1e-7, translations of
    # ~400 mm to ~3e-5 mm; a wrong axis, sign or unit would be off by O(1)
    np.testing.assert_allclose(cam[:3, :3], carm.camera3d_from_world[:3, :3], atol=1e-6)
    np.testing.assert_allclose(cam[:3, 3], carm.camera3d_from_world[:3, 3], atol=1e-3)
    intr = kg.CameraIntrinsicTransform.from_sizes(sensor_size=(kw["sensor_width"], kw["sensor_height"]),
                                                  pixel_size=kw["pixel_size"],
                                                  source_to_detector_distance=kw["source_to_detector_distance"])
    p = np.array(intr) @ cam[:3]
    uv = lambda P, x: (P @ np.append(x, 1))[:2] / (P @ np.append(x, 1))[2]
    for x in ([0.0, 0.0, 0.0], [50.0, -80.0, 330.0], [-120.0, 40.0, 250.0]):
        np.testing.assert_allclose(uv(p, x), uv(carm.projection_matrix, x), atol=1e-3)  # pixels
    # the isocenter is given in the device frame: back in the world it is ours
    iso_w = (kw["world_from_device"] @ np.append(kw["isocenter"], 1))[:3]
    np.testing.assert_allclose(iso_w, carm.isocenter_mm, atol=1e-9)


def test_spectrum_and_geometry_fields():
    ct, _ = _scene()
    spec = da.deepdrr_scene_spec(ct, None, CArm(), spectrum="90KV_AL40")
    assert spec["spectrum"]["deepdrr_name"] == "90KV_AL40"
    arr = spec["spectrum"]["array_ev"]
    assert arr.shape[1] == 2 and arr[:, 0].min() > 1000  # eV, as DeepDRR's tables
    assert spec["anatomical_coordinate_system"] == "LPS"
    np.testing.assert_array_equal(spec["anatomical_from_ijk"], ct.world_from_voxel)
    assert spec["step"] == 0.1
    assert da.spectrum_spec({"kvp": 80, "filter_al_mm": 3})["deepdrr_name"] is None
    with pytest.raises(InputError):
        da.deepdrr_scene_spec(ct, ct, CArm())  # not an iodine volume


def test_compound_string_parses_like_deepdrr():
    s = da.compound_string({"H": 0.1, "O": 0.8, "I": 0.1})
    import re

    parsed = {el: float(w) for el, w in re.findall(r"([A-Z][a-z]?)([0-9]+\.[0-9]+)", s)}
    assert parsed == pytest.approx({"H": 0.1, "O": 0.8, "I": 0.1})


def test_missing_deepdrr_message(monkeypatch):
    monkeypatch.setitem(sys.modules, "deepdrr", None)  # import fails as when not installed
    with pytest.raises(InputError, match=r"DeepDRR.*CuPy.*NVIDIA GPU: pip install -e \.\[deepdrr\]"):
        da.import_deepdrr()
