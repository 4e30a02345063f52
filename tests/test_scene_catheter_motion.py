"""The catheter under cardiac and respiratory motion (docs/dsa.md §4.1): its tip follows the tree it
injects by the model's displacement, its proximal part the CT's, and nothing moves in the still case."""

from __future__ import annotations

import numpy as np
import pytest
from scene_helpers import cylinder_ct, make_scene, small_carm

from ddsa_sim.scene.cardiorespiratory import AP_PER_SI, cardiac_contraction, cardiac_displacement_mm, heart_frame
from ddsa_sim.scene.catheter import FOLLOW_LENGTH_MM, CatheterSpec, build_catheter, tip_weights
from ddsa_sim.scene.motion import MotionParams
from ddsa_sim.scene.moving import catheter_motion, vessel_motion
from ddsa_sim.scene.render import render_frames

DOME_Z_MM = -60.0
#: 4 F, 0.25 mm voxels: a small, fast grid (the tests compare positions, not attenuation)
SPEC = CatheterSpec(french=4.0, wall_mm=0.3, spacing_mm=0.25)


def _centreline() -> np.ndarray:
    """Along world x at the diaphragm's height (x from -100 to 0), then up the y_tree's trunk axis to
    3 mm below its root (z = -20): a bend at (0, 0, -60)."""
    x = np.linspace(-100.0, 0.0, 21)
    z = np.linspace(DOME_Z_MM, -23.0, 9)[1:]
    return np.vstack([np.column_stack([x, 0 * x, np.full_like(x, DOME_Z_MM)]),
                      np.column_stack([0 * z, 0 * z, z])])


@pytest.fixture(scope="module")
def catheter():
    return build_catheter(_centreline(), SPEC)


def _wall_points(cath) -> tuple[np.ndarray, np.ndarray]:
    idx = np.argwhere(cath.wall_fraction > 0)
    return idx @ cath.affine[:3, :3].T + cath.affine[:3, 3], cath.wall_fraction[tuple(idx.T)].astype(np.float64)


def _centroid_near(cath, point: np.ndarray, radius_mm: float) -> np.ndarray:
    world, w = _wall_points(cath)
    near = np.linalg.norm(world - point, axis=1) < radius_mm
    return (world[near] * w[near, None]).sum(axis=0) / w[near].sum()


def test_tip_weights_are_a_raised_cosine_of_the_distance_to_the_tip():
    z = np.linspace(0.0, 60.0, 61)
    b = tip_weights(np.column_stack([0 * z, 0 * z, z]))
    u = 60.0 - z
    assert b[-1] == 1.0 and np.all(b[u >= FOLLOW_LENGTH_MM] == 0.0)
    assert b[u == 15.0] == pytest.approx(0.5)
    assert np.allclose(b[u < FOLLOW_LENGTH_MM], 0.5 * (1 + np.cos(np.pi * u[u < FOLLOW_LENGTH_MM] / FOLLOW_LENGTH_MM)))


@pytest.mark.parametrize("phase", [0.2, 0.35, 0.5])
def test_cardiac_tip_stays_at_its_point_of_the_moving_tree(catheter, phase):
    """The tip keeps to where it was at phase 0 moved by the heart model: the centreline exactly, the
    voxelized wall around it within 0.25 mm; the entry end (beyond the follow length) stays."""
    scene = make_scene(motion=MotionParams("cardiac", cardiac_longitudinal_mm=12.0, cardiac_radial_mm=5.0),
                       catheter=catheter)
    f = float(cardiac_contraction(phase))
    rest = {"contraction": 0.0, "diaphragm_offset_mm": 0.0}
    state = {"contraction": f, "diaphragm_offset_mm": 0.0}
    assert catheter_motion(scene, rest, rest, vessel_motion(scene, rest, rest)) is catheter
    moved = catheter_motion(scene, state, rest, vessel_motion(scene, state, rest))
    heart = heart_frame(scene.projector.volumes[scene.vessel_names[0]])
    tip0 = catheter.centerline_mm[-1]
    expected = tip0 + cardiac_displacement_mm(tip0, heart, f, 12.0, 5.0)[0]
    assert np.linalg.norm(expected - tip0) > 3.0  # the heart moves the tip visibly at these phases
    assert np.linalg.norm(moved.centerline_mm[-1] - expected) < 1e-9
    # the voxelized tube: its wall within 2.5 mm of the tip moved with it (b >= 0.98 there)
    shift = _centroid_near(moved, expected, 2.5) - _centroid_near(catheter, tip0, 2.5)
    assert np.linalg.norm(shift - (expected - tip0)) < 0.25
    assert np.array_equal(moved.centerline_mm[:5], catheter.centerline_mm[:5])  # in the aorta: still


def test_respiratory_point_at_the_diaphragm_moves_by_the_diaphragm_shift(catheter):
    """A catheter point at the dome, 97 mm from the tip, moves by (0, 0.2 A, A) with the CT; the tip
    moves with the tree (its translation)."""
    scene = make_scene(motion=MotionParams("respiratory", diaphragm_z_mm=DOME_Z_MM), catheter=catheter)
    mask, frame = {"contraction": 0.0, "diaphragm_offset_mm": -12.0}, {"contraction": 0.0, "diaphragm_offset_mm": -2.0}
    assert catheter_motion(scene, mask, mask, vessel_motion(scene, mask, mask)) is catheter
    moves = vessel_motion(scene, frame, mask)
    moved = catheter_motion(scene, frame, mask, moves)
    a = 10.0  # the frame's diaphragm is 10 mm above the mask's
    k = 8  # the centreline point at x = -60 mm, z = the dome
    assert np.allclose(catheter.centerline_mm[k], [-60.0, 0.0, DOME_Z_MM])
    assert np.allclose(moved.centerline_mm[k] - catheter.centerline_mm[k], [0.0, AP_PER_SI * a, a])
    shift = _centroid_near(moved, catheter.centerline_mm[k] + [0, AP_PER_SI * a, a], 5.0) \
        - _centroid_near(catheter, catheter.centerline_mm[k], 5.0)
    assert np.allclose(shift, [0.0, AP_PER_SI * a, a], atol=0.1)
    assert np.allclose(moved.centerline_mm[-1] - catheter.centerline_mm[-1], moves[scene.vessel_names[0]][:3, 3])


@pytest.mark.parametrize("kind", ["respiratory", "cardiac"])
def test_masks_and_still_frames_are_unchanged(catheter, kind):
    """Under respiratory motion the mask (the scan's own breathing state) is the still scene's bit for
    bit; under cardiac motion a frame at the mask's phase shows the catheter where the mask does."""
    carm = small_carm(size=48, pixel_mm=2.0)
    ct = cylinder_ct(n=32, spacing_mm=7.0, bone_rods=False)
    still = render_frames(make_scene(ct, catheter=catheter), carm, np.random.default_rng(3))
    motion = MotionParams(kind, diaphragm_z_mm=DOME_Z_MM)
    moving = render_frames(make_scene(ct, catheter=catheter, motion=motion), carm, np.random.default_rng(3),
                           times_s=[0.0], mask_time_s=0.0)
    if kind == "respiratory":
        assert np.array_equal(moving.mask, still.mask)
    # a frame at the mask's time: the CT and the wall where they are in the mask (the wall subtracts
    # exactly: the conventional DSA equals the target's noise-free counterpart where no iodine is)
    no_iodine = moving.iodine_mg_per_cm2[0] == 0
    assert np.array_equal(moving.conventional_dsa[0][no_iodine], moving.dsa_target[0][no_iodine])
