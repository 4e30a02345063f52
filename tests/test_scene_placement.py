"""Placing a vessel tree inside a region (body mask or organ) by a seeded random rigid affine."""

from __future__ import annotations

import numpy as np
import pytest
from scene_helpers import cylinder_ct, y_tree

from ddsa_sim import InputError
from ddsa_sim.scene.placement import body_mask, label_region, place_in_region
from ddsa_sim.volumes.materials import labels_in


def test_tree_root_inside_region_centred_and_seeded():
    ct = cylinder_ct(bone_rods=False)
    region = np.zeros(ct.shape, bool)
    region[30:40, 10:20, 20:30] = True  # an off-centre 50 mm box "organ"
    tree = y_tree()
    m = place_in_region(tree.positions_mm, region, ct.affine, np.random.default_rng(4))
    placed = tree.transformed(m)
    ijk = np.rint(ct.world_to_voxel(placed.positions_mm[0])).astype(int)
    assert region[tuple(ijk)]
    centroid = ct.voxel_to_world(np.argwhere(region).mean(axis=0))
    lo, hi = placed.bounds_mm()
    assert np.all(np.abs(0.5 * (lo + hi) - centroid) <= 5.0 + 1e-6) or region[tuple(ijk)]
    np.testing.assert_allclose(m[:3, :3] @ m[:3, :3].T, np.eye(3), atol=1e-12)
    m2 = place_in_region(tree.positions_mm, region, ct.affine, np.random.default_rng(4))
    np.testing.assert_array_equal(m, m2)
    m3 = place_in_region(tree.positions_mm, region, ct.affine, np.random.default_rng(5))
    assert not np.array_equal(m, m3)


def test_placement_centres_tree_when_root_fits():
    ct = cylinder_ct(bone_rods=False)
    region = body_mask(ct)
    tree = y_tree()
    m = place_in_region(tree.positions_mm, region, ct.affine, np.random.default_rng(0), jitter_mm=2.0)
    placed = tree.transformed(m)
    lo, hi = placed.bounds_mm()
    # bounding-box centre of the node positions sits within the jitter of the body centroid
    centre = m[:3, :3] @ (0.5 * (tree.positions_mm.min(0) + tree.positions_mm.max(0))) + m[:3, 3]
    centroid = ct.voxel_to_world(np.argwhere(region).mean(axis=0))
    assert np.all(np.abs(centre - centroid) <= 2.0 + 1e-9)
    assert np.prod(hi - lo) > 0 and np.isclose(placed.total_length_mm(), tree.total_length_mm())


def test_body_mask_keeps_largest_component_and_label_region():
    ct = cylinder_ct(bone_rods=False)
    data = ct.data.copy()
    data[0:2, 0:2, 0:2] = 100.0  # a speck outside the body
    mask = body_mask(ct.with_data(data))
    assert not mask[0, 0, 0] and mask[24, 24, 24]
    labels = np.zeros(ct.shape, np.int16)
    labels[5:8, 5:8, 5:8] = 3
    labels[9, 9, 9] = 4
    reg = label_region(labels, {"liver": 3, "heart": 4}, ["liver"])
    assert reg.sum() == 27
    np.testing.assert_array_equal(labels_in(labels.astype(np.float32), [3, 4]), np.isin(labels, [3, 4]))
    with pytest.raises(InputError, match="unknown structure 'spleen'"):
        label_region(labels, {"liver": 3}, ["spleen"])
    with pytest.raises(InputError, match="no voxel above"):
        body_mask(ct.with_data(np.full(ct.shape, -1000.0, np.float32)))
