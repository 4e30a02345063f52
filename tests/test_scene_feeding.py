"""Generic trees placed with a feeding direction (ddsa_sim/scene/placement.py, Feeding): the tree's
root-to-centroid direction lies within the set cone around the direction, covers it, and the roll
about it follows the set range; the builder's region and pose placements both honour it."""

from __future__ import annotations

import numpy as np
import pytest
from scene_helpers import cylinder_ct

from ddsa_sim import InputError
from ddsa_sim.scene import Feeding, build_scene
from ddsa_sim.scene.builder import Patient
from ddsa_sim.scene.placement import body_mask, feeding_rotation, place_in_region
from ddsa_sim.scene.spec import CTSpec, PlacementSpec, SceneSpec, VesselSpec
from vessel_models.generators import generate


def _angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip(a @ b / np.linalg.norm(a) / np.linalg.norm(b), -1, 1))))


def _direction(positions: np.ndarray) -> np.ndarray:
    return positions.mean(axis=0) - positions[0]


@pytest.fixture(scope="module")
def tree():
    return generate("lsystem", seed=3, iterations=4)


@pytest.mark.parametrize("direction,cone", [((0.0, 0.0, 1.0), 20.0), ((1.0, -1.0, 0.5), 45.0), ((0.0, 0.0, -1.0), 5.0)])
def test_root_to_centroid_direction_within_cone_over_many_seeds(tree, direction, cone):
    ct = cylinder_ct(bone_rods=False)
    region = body_mask(ct)
    feeding = Feeding(direction, cone)
    angles = []
    for seed in range(60):
        m = place_in_region(tree.positions_mm, region, ct.affine, np.random.default_rng(seed), feeding=feeding)
        angles.append(_angle_deg(_direction(tree.transformed(m).positions_mm), np.asarray(direction)))
    angles = np.array(angles)
    assert angles.max() <= cone + 1e-6
    # uniform on the cap: P(angle < cone / 2) = (1 - cos(cone/2)) / (1 - cos(cone)), about 1/4
    frac = np.mean(angles < cone / 2)
    expected = (1 - np.cos(np.radians(cone / 2))) / (1 - np.cos(np.radians(cone)))
    assert abs(frac - expected) < 0.2 and angles.max() > 0.7 * cone


def test_roll_range_turns_tree_about_the_direction(tree):
    rng = np.random.default_rng
    fixed = [feeding_rotation(tree.positions_mm, Feeding((0, 1, 0), 0.0, (30.0, 30.0)), rng(s)) for s in range(3)]
    assert all(np.allclose(f, fixed[0]) for f in fixed)  # no cone, one roll: one rotation
    base = feeding_rotation(tree.positions_mm, Feeding((0, 1, 0), 0.0, (0.0, 0.0)), rng(0))
    # the roll is a turn of 30 deg about +y applied after the roll-free alignment
    turned = fixed[0] @ base.T
    assert np.degrees(np.arccos((np.trace(turned) - 1) / 2)) == pytest.approx(30.0, abs=1e-6)
    np.testing.assert_allclose(turned @ [0, 1, 0], [0, 1, 0], atol=1e-12)
    rolls = [feeding_rotation(tree.positions_mm, Feeding((0, 1, 0), 0.0, (0.0, 90.0)), rng(s)) @ base.T
             for s in range(40)]
    angles = np.degrees([np.arccos(np.clip((np.trace(r) - 1) / 2, -1, 1)) for r in rolls])
    assert angles.max() <= 90.0 + 1e-6 and angles.max() > 70.0


def test_builder_region_and_pose_follow_feeding_and_refuse_bad_direction():
    ct = cylinder_ct(bone_rods=False)
    patient = Patient(ct, None, CTSpec("memory"))
    vs = VesselSpec("generator", "lsystem", {"iterations": 3}, seed=5, spacing_mm=0.5)
    feeding = Feeding((0.0, 0.0, 1.0), 10.0)
    for mode in ("region", "pose", "auto"):
        scene = build_scene(SceneSpec(CTSpec("memory"), vs, PlacementSpec(mode, seed=9, feeding=feeding)), patient)
        assert _angle_deg(_direction(scene.vessels[0].tree.positions_mm), np.array([0, 0, 1.0])) <= 10.0 + 1e-6
    with pytest.raises(InputError, match="place: feeding direction must be 3 finite numbers"):
        build_scene(SceneSpec(CTSpec("memory"), vs, PlacementSpec("region", feeding=Feeding((0, 0, 0)))), patient)
