"""The cerebral template conformed to a head: each vessel in its compartment (``ddsa_sim.scene.conform``), judged by
the CT's own HU at the vessels' centrelines; and the band-pushing core on an analytic sphere."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from ddsa_sim.scene import EffectsSpec, ScatterSettings
from ddsa_sim.scene.builder import Patient, build_scene
from ddsa_sim.scene.conform import SignedDistance, along_tree_weights, push_into_bands
from ddsa_sim.scene.spec import CTSpec, SceneSpec, VesselSpec
from ddsa_sim.volumes import Volume
from ddsa_sim.volumes.readers import read_ct
from vessel_models.willis import CORTICAL_COURSES

HEAD = "builtin:head-phantom-1"


@pytest.fixture(scope="module")
def head_and_tree():
    """The builtin head of seed 1 and the cerebral template of seed 1 placed in it as ``dsa`` places it."""
    ct = read_ct(HEAD)
    spec = SceneSpec(CTSpec(HEAD), VesselSpec("generator", "cow", seed=1),
                     effects=EffectsSpec(noise=False, scatter=ScatterSettings(enabled=False)))
    scene = build_scene(spec, Patient(ct, None, spec.ct))
    return ct, scene.vessels[0].tree, scene


def _hu_at(ct: Volume, world: np.ndarray) -> np.ndarray:
    return ndimage.map_coordinates(np.asarray(ct.data, np.float32), ct.world_to_voxel(world).T, order=1,
                                   mode="nearest")


def _named(tree, *prefixes: str) -> np.ndarray:
    """Nodes of the segments named ``prefix_L`` / ``prefix_R`` and of the unnamed twigs grown from them."""
    return np.array([n.removesuffix("_L").removesuffix("_R") in prefixes for n in tree.node_labels()])


def test_scalp_arteries_lie_in_the_scalp_and_cortical_arteries_inside_the_skull(head_and_tree):
    """The superficial temporal and occipital arteries run in the scalp: soft tissue (-300..300 HU) at their
    centrelines, not air, not the skull; the cortical trees of the middle and posterior cerebral arteries lie in the
    brain or its CSF, not in bone. Before (the similarity alone), seed 1 on this head had 86 % of the superficial
    temporal and 78 % of the occipital arteries' nodes in the air beside the head (up to 26 mm out) and about half of
    the inferior M2 tree outside the cranial cavity."""
    ct, tree, _ = head_and_tree
    scalp = _named(tree, "STA", "OccA")
    hu = _hu_at(ct, tree.positions_mm[scalp])
    assert scalp.sum() > 500
    assert np.mean(hu < -300.0) < 0.02, np.mean(hu < -300.0)  # in air
    assert np.mean(hu > 300.0) < 0.05, np.mean(hu > 300.0)  # in the skull
    cortical = _named(tree, "M2s", "M2i", "P2", "A3", *CORTICAL_COURSES)
    hu = _hu_at(ct, tree.positions_mm[cortical])
    assert np.mean(hu > 300.0) < 0.01 and np.mean(hu < -300.0) < 0.01, (np.mean(hu > 300.0), np.mean(hu < -300.0))


def test_neck_and_face_vessels_lie_inside_the_skin(head_and_tree):
    """The face's arteries, the vertebral arteries' V3 loops and the jugular veins lie in tissue, not in the air
    (before: 45-100 % of their nodes of seed 1 were outside the skin, the V3 segments 15 mm out), where the CT
    covers them."""
    ct, tree, _ = head_and_tree
    nodes = _named(tree, "FacA", "MaxA", "VA_V3", "IJV", "CCA", "ECA", "SupThyA", "LingA", "PAA")
    ijk = ct.world_to_voxel(tree.positions_mm[nodes])
    covered = np.all((ijk > 2) & (ijk < np.array(ct.shape) - 3), axis=1)  # not at the head's cut neck
    hu = _hu_at(ct, tree.positions_mm[nodes][covered])
    assert covered.sum() > 500 and np.mean(hu < -300.0) < 0.03, np.mean(hu < -300.0)


def test_face_and_neck_vessels_run_between_the_bones_not_through_them(head_and_tree):
    """The carotids, the face's arteries and the jugular veins lie in soft tissue (under 300 HU): the maxillary
    artery in the fossae between the bones, the jugular vein beside the mandible. With bone allowed to them (as to the
    vertebral artery, which runs in the transverse foramina) 27 % of their nodes of seed 1 lay in bone."""
    ct, tree, _ = head_and_tree
    nodes = _named(tree, "FacA", "MaxA", "IJV", "CCA", "ECA", "ICA_cervical", "SupThyA", "LingA", "PAA")
    ijk = ct.world_to_voxel(tree.positions_mm[nodes])
    covered = np.all((ijk > 2) & (ijk < np.array(ct.shape) - 3), axis=1)
    hu = _hu_at(ct, tree.positions_mm[nodes][covered])
    assert np.mean(hu > 300.0) < 0.05, np.mean(hu > 300.0)


def test_the_ophthalmic_artery_runs_in_the_orbit_and_the_anterior_choroidal_inside_the_skull(head_and_tree):
    """Placed in a head, the ophthalmic artery's orbital course and its twigs over the forehead lie outside the
    cranial cavity in soft tissue or the orbit's fat (-300..300 HU: 98 % of its nodes here; at most 3 % in the orbit's
    bony walls, 1 % in the air beyond the forehead's skin), while the anterior choroidal artery lies inside the
    cavity. The optic canal's stretch (``OphA``) keeps no compartment: it passes from the cavity through the bone
    into the orbit."""
    from ddsa_sim.scene.placement import intracranial_mask

    ct, tree, _ = head_and_tree
    cavity = intracranial_mask(ct)

    def in_cavity(nodes: np.ndarray) -> np.ndarray:
        ijk = np.rint(ct.world_to_voxel(tree.positions_mm[nodes])).astype(int)
        return cavity[tuple(ijk.T)]

    orbital = _named(tree, "OphA_orbital")
    hu = _hu_at(ct, tree.positions_mm[orbital])
    assert orbital.sum() > 200 and not in_cavity(orbital).any()
    assert np.mean(hu < -300.0) < 0.01 and np.mean(hu > 300.0) < 0.03, (np.mean(hu < -300.0), np.mean(hu > 300.0))
    choroidal = _named(tree, "AChA")
    assert choroidal.sum() > 30 and in_cavity(choroidal).all()


def test_push_into_bands_lays_a_chain_on_a_sphere_shell():
    """A straight chain of nodes through a ball of radius 30 mm, each node asked to lie 2-4 mm inside its surface
    (the analytic signed distance |x| - 30): the free nodes end in the shell, within the tolerance, and a node
    with no band stays where its neighbours take it."""
    shape, spacing = (81, 81, 81), 1.0
    affine = np.diag([spacing] * 3 + [1.0])
    affine[:3, 3] = -40.0
    grid = np.stack(np.meshgrid(*[np.arange(n) * spacing - 40.0 for n in shape], indexing="ij"), axis=-1)
    ball = np.linalg.norm(grid, axis=-1) <= 30.0
    field = SignedDistance(ball, affine, tuple(slice(0, n) for n in shape), normal_smoothing_mm=1.0)
    pos = np.stack([np.linspace(-36.0, 36.0, 49), np.full(49, 5.0), np.full(49, 3.0)], axis=1)
    parents = np.arange(-1, 48)
    which = np.zeros(49, int)
    which[24] = -1  # the middle node: no band
    weights = along_tree_weights(pos, parents, sigma_mm=2.0)
    out = push_into_bands(pos, [field], which, np.full(49, -4.0), np.full(49, -2.0), weights, np.ones(49),
                          np.linalg.inv(affine), shape, step_mm=1.0, rounds=400, tolerance_mm=0.05)
    depth = 30.0 - np.linalg.norm(out, axis=1)
    free = which >= 0
    # the map is a voxel-centre EDT: the surface is known to half a voxel
    assert np.all(depth[free] > 2.0 - 0.05 - 0.5) and np.all(depth[free] < 4.0 + 0.05 + 0.5), depth[free].round(2)
    assert np.isfinite(out).all() and not np.allclose(out[24], pos[24])  # carried by its neighbours


def test_dsa_aims_a_cerebral_run_at_the_brain_and_frames_the_vertex(head_and_tree):
    """``dsa``'s default isocenter for the cerebral template is the placed brain centre, inside the cranial cavity,
    and the default 298 mm detector (155 mm at the isocenter) then holds the top of the cavity. The centre of all the
    vessels (the jugular veins and common carotids down the neck included), the default before, left the vertex out."""
    from ddsa_sim.cli.dsa import DEFAULT_DETECTOR, DEFAULT_PIXEL_MM, vessel_center_mm
    from ddsa_sim.geometry import CArm
    from ddsa_sim.scene.placement import intracranial_mask

    ct, tree, scene = head_and_tree
    centre = vessel_center_mm(scene)
    cavity = intracranial_mask(ct)
    assert cavity[tuple(np.round(ct.world_to_voxel(centre)).astype(int))]
    top = (np.argwhere(cavity) @ ct.affine[:3, :3].T + ct.affine[:3, 3])[:, 2].max()
    rows = int(DEFAULT_DETECTOR.split("x")[0])
    carm = CArm(isocenter_mm=tuple(centre), sensor_height=rows, sensor_width=rows, pixel_mm=DEFAULT_PIXEL_MM)
    half_field = rows * DEFAULT_PIXEL_MM / 2 * carm.source_to_isocenter_vertical_distance / carm.source_to_detector_distance
    assert top - centre[2] < half_field, (top, centre, half_field)
    lo, hi = tree.bounds_mm()
    assert top - (lo[2] + hi[2]) / 2 > half_field  # the vessels' centre (the old default) would cut it off
