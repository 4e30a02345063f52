"""Patient motion between mask and contrast frames: artefacts in conventional DSA, never in the target."""

from __future__ import annotations

import numpy as np
import pytest
from scene_helpers import cylinder_ct, make_scene, small_carm

from ddsa_sim import InputError
from ddsa_sim.physics.detector import Detector
from ddsa_sim.scene import render_triplet
from ddsa_sim.scene.motion import (
    MotionParams,
    breathing_displacement_px,
    rigid_transform,
    warp_images,
)
from ddsa_sim.scene.recording import Exposure


@pytest.fixture(scope="module")
def ct():
    return cylinder_ct()


def _artefact_rms(out: dict) -> float:
    outside = out["vessel_mask"] == 0
    return float(np.sqrt(np.mean((out["conventional_dsa"] - out["dsa_target"])[outside].astype(np.float64) ** 2)))


@pytest.mark.parametrize("kind", ["rigid", "elastic"])
def test_zero_motion_equals_no_motion_exactly(ct, kind):
    carm = small_carm()
    kw = {"noise": True, "exposure": Exposure(photons_per_pixel=1e4)}
    ref = render_triplet(make_scene(ct, **kw), carm, np.random.default_rng(5))
    zero = MotionParams(kind, max_translation_mm=0.0, max_rotation_deg=0.0, amplitude_mm=0.0)
    got = render_triplet(make_scene(ct, motion=zero, **kw), carm, np.random.default_rng(5))
    for k in ref:
        assert np.array_equal(ref[k], got[k]), k


def test_no_motion_conventional_dsa_equals_target_up_to_noise(ct):
    carm = small_carm()
    out = render_triplet(make_scene(ct, noise=True, noise_correlation="none", exposure=Exposure(photons_per_pixel=1e5),
                                    detector=Detector(mode="photon", scintillator_mm=None)),
                         carm, np.random.default_rng(0))
    diff = (out["conventional_dsa"] - out["dsa_target"]).astype(np.float64)
    # the difference is the noise of two frames of an ideal photon counter: zero mean, variance
    # 1/(N0 I_mask) + 1/(N0 I_contrast)
    expected_var = np.mean(2.0 / (1e5 * np.exp(-out["mask"].astype(np.float64))))
    assert abs(diff.mean()) < 4 * np.sqrt(expected_var / diff.size)
    assert diff.var() == pytest.approx(expected_var, rel=0.15)


@pytest.mark.parametrize("kind", ["rigid", "elastic"])
def test_motion_makes_artefacts_outside_vessels_but_target_stays_clean(ct, kind):
    carm = small_carm()
    still = render_triplet(make_scene(ct), carm, np.random.default_rng(2))
    moved = render_triplet(make_scene(ct, motion=MotionParams(kind)), carm, np.random.default_rng(2))
    assert _artefact_rms(still) == 0.0
    assert _artefact_rms(moved) > 0.01  # -ln units; the mask itself spans ~4
    for k in ("mask", "dsa_target", "iodine_mg_per_cm2", "vessel_mask"):
        assert np.array_equal(moved[k], still[k]), k
    outside = moved["iodine_mg_per_cm2"] == 0  # no ray meets iodine there
    assert np.all(moved["dsa_target"][outside] == 0)


def test_rigid_transform_is_rigid_and_bounded():
    rng = np.random.default_rng(0)
    m = rigid_transform(rng, 2.0, 1.5, np.array([10.0, -5.0, 30.0]))
    r = m[:3, :3]
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(r) == pytest.approx(1.0)
    angle = np.degrees(np.arccos(np.clip((np.trace(r) - 1) / 2, -1, 1)))
    assert angle <= 1.5 * np.sqrt(3) + 1e-9
    np.testing.assert_array_equal(rigid_transform(rng, 0.0, 0.0, np.ones(3)), np.eye(4))


def test_breathing_field_is_smooth_mostly_cranio_caudal_and_warp_moves_content():
    carm = small_carm(64, 3.0)
    u = breathing_displacement_px(np.random.default_rng(0), carm, amplitude_mm=3.0)
    mag = carm.source_to_detector_distance / carm.source_to_isocenter_vertical_distance
    assert np.abs(u).max() <= 3.0 * mag / carm.pixel_mm * 1.3 + 1e-9
    assert np.abs(np.diff(u, axis=1)).max() < 0.5  # smooth: under half a pixel change per pixel
    # a constant shift of 2 rows moves an edge by 2 rows
    img = np.zeros((32, 32, 1))
    img[10:, :, 0] = 1.0
    shift = np.zeros((2, 32, 32))
    shift[0] = 2.0
    moved = warp_images(img, shift)
    assert moved[11, 5, 0] == 0.0 and moved[12, 5, 0] == 1.0


def test_unknown_motion_kind_is_one_line_error():
    with pytest.raises(InputError, match="motion"):
        MotionParams("wobble")
