"""Cardiac and respiratory motion: the documented displacement curves, in the model and in the images."""

from __future__ import annotations

import numpy as np
import pytest
from scene_helpers import cylinder_ct, make_scene, small_carm

from ddsa_sim import InputError
from ddsa_sim.projector import ProjectorVolume
from ddsa_sim.scene import render_frames
from ddsa_sim.scene.cardiorespiratory import (
    AP_PER_SI,
    HEART_LONG_AXIS_LPS,
    HeartFrame,
    cardiac_contraction,
    cardiac_displacement_mm,
    cardiac_phase,
    diaphragm_level_mm,
    diaphragm_offset_mm,
    heart_frame,
    respiratory_ct,
    respiratory_displacement_mm,
)
from ddsa_sim.scene.motion import MotionParams
from ddsa_sim.scene.moving import march_moving_vessels, vessel_motion
from ddsa_sim.volumes import from_array


def test_contraction_curve_is_the_documented_one():
    # raised cosine 0 -> 1 over systole (R wave to 35 % of R-R), back to 0 by 70 %, then still
    p = np.array([0.0, 0.175, 0.35, 0.525, 0.7, 0.85, 0.999])
    assert np.allclose(cardiac_contraction(p), [0.0, 0.5, 1.0, 0.5, 0.0, 0.0, 0.0], atol=1e-3)
    assert cardiac_phase(60.0 / 75 * 2.25, 75.0) == pytest.approx(0.25)  # 2.25 beats at 75 bpm


def test_cardiac_displacement_over_a_cycle_equals_the_amplitude_curve():
    e = HEART_LONG_AXIS_LPS
    apex = np.array([30.0, -20.0, -40.0])
    frame = HeartFrame(apex - 50 * e, apex, e, length_mm=100.0, radius_mm=40.0)
    perp = np.cross(e, [0.0, 0.0, 1.0])
    perp /= np.linalg.norm(perp)
    base_axis = apex - 100 * e  # on the axis at the base (atrioventricular groove)
    base_outer = base_axis + 40 * perp  # the base at the tree's radius (RCA / LCx in the groove)
    for phase in np.linspace(0, 1, 21):
        f = float(cardiac_contraction(phase))
        d_apex, d_axis, d_outer = cardiac_displacement_mm(np.stack([apex, base_axis, base_outer]), frame, f, 12.0, 5.0)
        assert np.allclose(d_apex, 0.0, atol=1e-12)  # the apex stays still
        assert np.allclose(d_axis, 12.0 * f * e)  # the base descends towards the apex by f x 12 mm
        assert np.allclose(d_outer, 12.0 * f * e - 5.0 * f * perp)  # ... and its outer points move 5 mm in
    # the end-systolic 3D displacement at the base's outer points: sqrt(12^2 + 5^2) = 13 mm (8-15 mm cited)
    assert np.linalg.norm(cardiac_displacement_mm(base_outer, frame, 1.0, 12.0, 5.0)) == pytest.approx(13.0)


def test_heart_frame_of_a_volume():
    dens = np.zeros((40, 40, 40), np.float32)
    dens[5:35, 20, 20] = 1.0  # a line of voxels along x (1 mm)
    vol = ProjectorVolume.single_material("v", dens, np.diag([1.0, 1.0, 1.0, 1.0]), "iodine")
    frame = heart_frame(vol, axis=np.array([1.0, 0.0, 0.0]))
    assert np.allclose(frame.centroid_mm, [19.5, 20, 20]) and np.allclose(frame.apex_mm, [34, 20, 20])
    assert frame.length_mm == pytest.approx(29.0)
    with pytest.raises(InputError, match="no iodine"):
        heart_frame(ProjectorVolume.single_material("e", dens * 0, np.eye(4), "iodine"))


def _tube_centroid(positions: np.ndarray, tree) -> np.ndarray:
    """Lumen centroid of a tree as cylinders between nodes (junction overlaps ignored)."""
    k = np.arange(1, tree.n_nodes)
    mid = (positions[k] + positions[tree.parents[k]]) / 2
    w = tree.radii_mm[k] ** 2 * np.linalg.norm(positions[k] - positions[tree.parents[k]], axis=1)
    return (mid * w[:, None]).sum(axis=0) / w.sum()


def test_cardiac_motion_moves_the_projected_tree_where_the_model_says():
    """At end-systole the tree's nodes move by the model; the re-voxelized lumen keeps its calibre."""
    scene = make_scene(motion=MotionParams("cardiac", cardiac_longitudinal_mm=12.0, cardiac_radial_mm=5.0))
    carm = small_carm(size=96, pixel_mm=1.0)
    name, tree = scene.vessel_names[0], scene.vessels[0].tree
    rest = {"contraction": 0.0, "diaphragm_offset_mm": 0.0}
    move = vessel_motion(scene, {"contraction": 1.0, "diaphragm_offset_mm": 0.0}, rest)[name]
    assert np.allclose(vessel_motion(scene, rest, rest)[name], np.eye(4))
    heart = heart_frame(scene.projector.volumes[name])
    moved = tree.positions_mm @ move[:3, :3].T + move[:3, 3]
    assert np.allclose(moved - tree.positions_mm, cardiac_displacement_mm(tree.positions_mm, heart, 1.0, 12.0, 5.0))

    def centroid_px_and_peak(area):
        a = area.sum(axis=-1)
        r, c = np.indices(a.shape) + 0.5
        return np.array([(a * c).sum(), (a * r).sum()]) / a.sum(), a.max()

    (c0, peak0), (c1, peak1) = (centroid_px_and_peak(march_moving_vessels(scene, carm, None, {name: w})[name])
                                for w in (np.eye(4), move))
    t0, t1 = _tube_centroid(tree.positions_mm, tree), _tube_centroid(moved, tree)
    expected = np.diff(carm.project(np.stack([t0, t1])), axis=0)[0]
    assert np.linalg.norm(expected) > 5.0  # pixels: the tree visibly moves
    assert np.allclose(c1 - c0, expected, atol=0.25)  # a quarter pixel: junction overlaps, 0.5 mm voxels
    # the calibre is kept: the largest chord (the 4 mm trunk) stays, where marching the affine map
    # itself would shrink the lumen (by 1 - s_R, here 25 %: 5 mm of a 20 mm radius)
    assert peak1 == pytest.approx(peak0, rel=0.05)
    peak_affine = scene.projector.march(carm, name, world_from_world=move).sum(axis=-1).max()
    assert peak_affine < 0.8 * peak0


def test_respiratory_shift_at_the_diaphragm_and_far_from_it():
    pts = np.array([[0.0, 0.0, 100.0], [0.0, 0.0, 300.0], [0.0, 0.0, -50.0]])
    d = respiratory_displacement_mm(pts, -15.0, 100.0)
    assert np.allclose(d[0], [0.0, -15.0 * AP_PER_SI, -15.0])  # at the dome: the diaphragm's own shift
    assert np.abs(d[1]).max() < 0.01  # 200 mm above (lung apex): still
    assert d[2, 2] == pytest.approx(-15.0 * np.exp(-1.0))  # 150 mm below: 1/e of it
    # the breathing curve: inspiration -A at t = 0, end-expiration 0 at half the period
    assert diaphragm_offset_mm(np.array([0.0, 2.0, 4.0]), 4.0, 15.0) == pytest.approx([-15.0, 0.0, -15.0])


def test_respiratory_ct_moves_content_by_the_displacement_field():
    dens = np.zeros((30, 30, 60), np.float32)
    dens[13:17, 13:17, 18:22] = 1.0  # a bead at z = 0 mm (the dome)
    dens[13:17, 13:17, 48:52] = 1.0  # a bead at z = 150 mm
    aff = np.diag([5.0, 5.0, 5.0, 1.0])
    aff[:3, 3] = [-75.0, -75.0, -100.0]
    labels = (dens > 0).astype(np.uint8)
    vol = ProjectorVolume("ct", dens, labels, ("air", "bone"), aff)
    moved = respiratory_ct(vol, -10.0, 0.0)

    def centroid(v, lo, hi):
        d = v.density_g_per_cc.astype(np.float64).copy()
        d[..., :lo] = 0
        d[..., hi:] = 0
        idx = np.argwhere(d > 0)
        w = d[tuple(idx.T)]
        return (idx * w[:, None]).sum(0) / w.sum() @ aff[:3, :3].T + aff[:3, 3]

    shift_dome = centroid(moved, 0, 35) - centroid(vol, 0, 35)
    shift_far = centroid(moved, 35, 60) - centroid(vol, 35, 60)
    assert np.allclose(shift_dome, [0.0, -2.0, -10.0], atol=0.3)
    expected_far = respiratory_displacement_mm(centroid(vol, 35, 60), -10.0, 0.0)[0]
    assert np.allclose(shift_far, expected_far, atol=0.3) and abs(shift_far[2]) < 0.2
    assert set(np.unique(moved.labels)) == {0, 1} and respiratory_ct(vol, 0.0, 0.0) is vol


def test_diaphragm_level_from_the_lungs():
    hu = np.zeros((20, 20, 40), np.float32)
    hu[4:16, 4:16, 22:38] = -800.0  # lungs from slice 22 up; world z = 5 mm x k - 100
    aff = np.diag([5.0, 5.0, 5.0, 1.0])
    aff[:3, 3] = [0.0, 0.0, -100.0]
    assert diaphragm_level_mm(from_array(hu, aff, "chest")) == pytest.approx(10.0)
    assert diaphragm_level_mm(from_array(np.zeros_like(hu), aff, "abdomen")) is None


def test_respiratory_frames_misregister_but_targets_stay_clean():
    ct = cylinder_ct()
    scene = make_scene(ct, motion=MotionParams("respiratory", diaphragm_z_mm=0.0, diaphragm_amplitude_mm=15.0))
    frames = render_frames(scene, small_carm(), np.random.default_rng(3), [0.5, 1.0, 2.5])
    outside = frames.iodine_mg_per_cm2 == 0
    assert np.all(frames.dsa_target[outside] == 0)  # the target: the iodine alone, exactly 0 elsewhere
    moved = [abs(m["ct_diaphragm_offset_mm"]) > 1.0 for m in frames.motion]
    artefact = np.abs(frames.conventional_dsa - frames.dsa_target)[outside]
    assert any(moved) and artefact.max() > 0.05  # background misregistration where the CT moved
    with pytest.raises(InputError, match="no lung"):
        render_frames(make_scene(ct, motion=MotionParams("respiratory")), small_carm(), np.random.default_rng(0))


def test_torch_backend_renders_the_same_moving_frames():
    """The batched path falls back to per-view rendering with moving trees; torch equals numba."""
    from ddsa_sim.scene import render_views

    ct = cylinder_ct()
    motion = MotionParams("cardiorespiratory", diaphragm_z_mm=0.0)
    ref = render_frames(make_scene(ct, motion=motion), small_carm(), np.random.default_rng(4), [0.3, 1.0])
    got = next(iter(render_views(make_scene(ct, motion=motion, backend="torch"), [small_carm()],
                                 [np.random.default_rng(4)], [0.3, 1.0])))
    assert [m["contraction"] for m in got.motion] == [m["contraction"] for m in ref.motion]
    for key in ("contrast_clean", "dsa_target"):
        assert np.allclose(getattr(got, key), getattr(ref, key), atol=1e-4), key
    assert np.allclose(got.iodine_mg_per_cm2, ref.iodine_mg_per_cm2, atol=1e-3)


def test_a_region_of_a_ct_breathes_about_its_whole_ct_diaphragm():
    """A slab of the upper chest holds no diaphragm (the lung finder read its bottom slice, -95 mm, for the dome at
    -215 mm) and a box through the lungs cuts them at its border (the finder took them for outside air and the
    export stopped): a region of a CT takes the dome of the whole CT, which its box keeps in place."""
    from ddsa_sim.cli.dsa import scene_spec
    from ddsa_sim.scene import EffectsSpec, build_scene
    from ddsa_sim.volumes import read_ct

    whole = diaphragm_level_mm(read_ct("builtin:chest-ct"))
    for region in ("builtin:chest-ct[0:252,43:454,98:133]", "builtin:chest-ct[128:384,128:384,30:110]"):
        own = diaphragm_level_mm(read_ct(region))
        assert own is None or abs(own - whole) > 50.0  # what the region alone says
        scene = build_scene(scene_spec(region, "lsystem", 0, effects=EffectsSpec(motion=MotionParams("respiratory"))))
        assert scene.motion.diaphragm_z_mm == pytest.approx(whole)
