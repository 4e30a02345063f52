"""The catheter (ddsa_sim/scene/catheter.py): its attenuation is the Beer-Lambert chord through the
annulus of its documented material, the wall is the same in mask and contrast frames (0 in the DSA
target), the lumen holds the agent solution in the contrast frames only, and the centreline follows
the feeding artery into the body up to a tip proximal to the injection site."""

from __future__ import annotations

import numpy as np
import pytest
from scene_helpers import cylinder_ct, make_scene, slab_ct, small_carm
from scipy.spatial import cKDTree

from ddsa_sim import InputError
from ddsa_sim.physics.attenuation import MATERIALS, formula_mass_fractions, iodinated_blood, mass_attenuation
from ddsa_sim.scene import build_scene
from ddsa_sim.scene.builder import Patient
from ddsa_sim.scene.catheter import CatheterSpec, build_catheter, catheter_centerline
from ddsa_sim.scene.placement import body_mask, body_outline_mask
from ddsa_sim.scene.render import render_frames
from ddsa_sim.scene.spec import CTSpec, PlacementSpec, SceneSpec, VesselSpec
from ddsa_sim.volumes import from_array
from vessel_models.tree import VesselTree

KEV = 60.0
AXIS_Z_MM = -40.0  # the catheter runs along world x at y = 0, z = -40; a vessel runs beside it at z = -35


def _line_tree(points: np.ndarray, radius_mm: float, metadata: dict | None = None) -> VesselTree:
    n = len(points)
    return VesselTree(points, np.full(n, radius_mm), np.arange(-1, n - 1), np.zeros(n, np.int64),
                      np.zeros(n, np.int64), metadata or {})


def _mu_per_cm(material) -> float:
    m = MATERIALS[material] if isinstance(material, str) else material
    return float(mass_attenuation(m, [KEV])[0]) * m.density_g_per_cc


def test_wall_material_is_nylon_with_30_percent_barium_sulfate():
    nylon, baso4 = formula_mass_fractions({"C": 6, "H": 11, "N": 1, "O": 1}), formula_mass_fractions({"Ba": 1, "S": 1, "O": 4})
    wall = MATERIALS["catheter wall"]
    for el in ("H", "C", "N", "O", "S", "Ba"):
        assert wall.composition[el] == pytest.approx(0.7 * nylon.get(el, 0) + 0.3 * baso4.get(el, 0), abs=2e-6)
    assert wall.density_g_per_cc == pytest.approx(1 / (0.3 / 4.50 + 0.7 / 1.14), abs=1e-3)


@pytest.fixture(scope="module")
def frames():
    """Noise-free frames of a 5 F catheter across a water slab, with and without it (mono 60 keV)."""
    spec = CatheterSpec(french=5.0)
    x = np.linspace(-60.0, 60.0, 25)
    cath = build_catheter(np.column_stack([x, np.zeros_like(x), np.full_like(x, AXIS_Z_MM)]), spec)
    vessel = _line_tree(np.column_stack([x, np.zeros_like(x), np.full_like(x, AXIS_Z_MM + 5.0)]), 1.0)
    carm = small_carm(size=128, pixel_mm=0.1).at(isocenter_mm=(0.0, 0.0, AXIS_Z_MM + 2.0))
    ct = slab_ct(100.0)
    with_cath = render_frames(make_scene(ct, vessel, catheter=cath, spectrum=f"mono:{KEV:g}"), carm,
                              np.random.default_rng(0))
    without = render_frames(make_scene(ct, vessel, spectrum=f"mono:{KEV:g}"), carm, np.random.default_rng(0))
    # each ray's distance to the catheter axis and 1 / sin(angle to it): analytic chords of the tube
    d = carm.ray_directions()
    w = np.cross(d, [1.0, 0.0, 0.0])
    sin = np.linalg.norm(w, axis=-1)
    dist = np.abs(((np.array([0.0, 0.0, AXIS_Z_MM]) - carm.source_mm) * w / sin[..., None]).sum(-1))

    def chord_cm(radius):
        return 2 * np.sqrt(np.clip(radius**2 - dist**2, 0, None)) / sin / 10

    return spec, with_cath, without, dist, chord_cm(spec.outer_radius_mm), chord_cm(spec.inner_radius_mm)


def test_attenuation_is_beer_lambert_chord_through_annulus(frames):
    spec, with_cath, without, dist, outer, inner = frames
    # mask: the wall's material over the wall chord, minus the soft tissue (the slab) it displaces
    expected = (_mu_per_cm("catheter wall") - _mu_per_cm("soft tissue")) * (outer - inner)
    got = with_cath.mask_clean - without.mask_clean
    near = dist < spec.outer_radius_mm + 1.0
    assert np.all(got[dist > spec.outer_radius_mm + 0.3] == 0)
    # partial-volume voxels (0.1 mm) blur the 0.25 mm wall's edges; the chord sum across the tube is kept
    assert got[near].sum() == pytest.approx(expected[near].sum(), rel=0.015)
    centre = dist < 0.3 * spec.inner_radius_mm
    np.testing.assert_allclose(got[centre], expected[centre], rtol=0.03)


def test_wall_subtracts_and_lumen_contrast_remains(frames):
    spec, with_cath, without, dist, outer, inner = frames
    agent = iodinated_blood(350.0, "iohexol", 350.0)  # the stock solution itself
    lumen = (_mu_per_cm(agent) - _mu_per_cm("soft tissue")) * inner
    target = with_cath.dsa_target[0]
    near = dist < spec.outer_radius_mm + 1.0
    assert np.all(without.dsa_target[0][near] == 0)  # the vessel beside it does not reach these pixels
    assert target[near].sum() == pytest.approx(lumen[near].sum(), rel=0.01)
    centre = dist < 0.3 * spec.inner_radius_mm
    np.testing.assert_allclose(target[centre], lumen[centre], rtol=0.01)
    # rays through the wall only: in the mask, not in the target (same wall in both frames)
    wall_only = (dist > spec.inner_radius_mm + 0.15) & (dist < spec.outer_radius_mm - 0.03)
    assert wall_only.any()
    assert np.all((with_cath.mask_clean - without.mask_clean)[wall_only] > 0.05)
    assert np.all(np.abs(target[wall_only]) < 0.02 * target[centre].min())
    # the projected iodine is the lumen's 350 mgI/ml over its chord
    np.testing.assert_allclose(with_cath.iodine_mg_per_cm2[0][centre], 350.0 * inner[centre], rtol=0.01)
    # the contrast frame differs from the mask only by the lumen
    np.testing.assert_allclose((with_cath.contrast_clean[0] - with_cath.mask_clean)[centre], target[centre],
                               rtol=1e-4)


def test_centerline_follows_feeding_path_from_body_entry_to_tip():
    ct = cylinder_ct(bone_rods=False)  # water cylinder of radius 100 mm along z, box +-117 mm
    body = body_mask(ct)
    root = np.array([0.0, 0.0, 30.0])
    feeding = [[0.0, 0.0, -40.0], [20.0, 0.0, 0.0]]  # upstream, then a bend into the root
    tree = _line_tree(np.array([root, root + [0, 0, 20.0]]), 2.0, {"feeding_path_mm": feeding})
    path = catheter_centerline(tree, body, ct.affine, tip_offset_mm=3.0)
    # the tip sits 3 mm back along the last feeding segment (Chaikin keeps the end points)
    last = (root - np.array(feeding[1])) / np.linalg.norm(root - np.array(feeding[1]))
    np.testing.assert_allclose(path[-1], root - 3.0 * last, atol=1e-9)
    # it enters where the straight run back from the first feeding point leaves the body (box z -117.5)
    assert path[0][2] < -110 and path[0][0] == pytest.approx((path[0][2] + 40.0) / 2)
    # it runs through the middles of the feeding segments (corners are rounded only)
    dense = np.concatenate([np.linspace(a, b, 200) for a, b in zip(path[:-1], path[1:])])
    for q in ([-5.0, 0.0, -50.0], [10.0, 0.0, -20.0], [10.0, 0.0, 15.0]):
        assert np.min(np.linalg.norm(dense - q, axis=1)) < 0.5
    # without a feeding path: straight back along the root's direction
    plain = catheter_centerline(_line_tree(np.array([root, root + [0, 0, 20.0]]), 2.0), body, ct.affine)
    np.testing.assert_allclose(plain[:, :2], 0.0, atol=1e-9)
    assert plain[-1][2] == pytest.approx(27.0) and plain[0][2] < -110
    # an injection site below the CT (a head scan cut above the neck, the template's carotid root under it): no
    # catheter can be seen, and none is drawn (it raised "path of 1.0 mm is shorter than the tip offset")
    below = np.array([0.0, 0.0, -140.0])
    assert catheter_centerline(_line_tree(np.array([below, below + [0, 0, 60.0]]), 2.0), body, ct.affine) is None
    # one in the CT's bottom voxel (builtin:head-phantom-3's carotid root under `dsa --vessels cow` lies 1.3 of its
    # 1 mm voxels above the CT's edge), whose way back leaves the CT within the tip offset: none either (it raised,
    # failing the default command); here 0.1 of the 5 mm voxels above the edge
    edge = np.array([0.0, 0.0, ct.affine[2, 3] - 0.4 * ct.affine[2, 2]])
    assert catheter_centerline(_line_tree(np.array([edge, edge + [0, 0, 60.0]]), 2.0), body, ct.affine) is None


def test_a_tree_rooted_in_a_lung_gets_a_catheter_through_the_chest_wall():
    """The body's outline encloses the lungs slice by slice, so the catheter leaves at the skin."""
    ct = cylinder_ct(bone_rods=False)  # water cylinder of radius 100 mm along z (5 mm voxels)
    world = np.indices(ct.data.shape).transpose(1, 2, 3, 0) @ ct.affine[:3, :3].T + ct.affine[:3, 3]
    lung = np.linalg.norm(world[..., :2] - [40.0, 0.0], axis=-1) < 35.0  # open at both ends of the CT
    ct = from_array(np.where(lung, -800.0, ct.data).astype(np.float32), ct.affine, "lung")
    outline = body_outline_mask(ct)
    assert not body_mask(ct)[lung].any() and outline[lung].all()
    assert (outline == (body_mask(ct) | lung)).all()  # nothing outside the skin is added
    root = np.array([40.0, 0.0, 0.0])  # in the lung, fed from the patient's right (-x)
    tree = _line_tree(np.array([root, root + [20.0, 0, 0]]), 2.0)
    assert catheter_centerline(tree, body_mask(ct), ct.affine) is None  # the lung is no way out: nothing inside
    path = catheter_centerline(tree, outline, ct.affine)
    assert path[0][0] < -95 and path[-1][0] == pytest.approx(37.0)  # from the skin (x = -100) to the tip


def test_builder_places_catheter_with_the_tree_and_refuses_label_vessels():
    ct = cylinder_ct(bone_rods=False)
    patient = Patient(ct, None, CTSpec("memory"))
    spec = SceneSpec(CTSpec("memory"), VesselSpec("generator", "lsystem", {"iterations": 3}, seed=1, spacing_mm=0.5),
                     PlacementSpec("region", seed=2), catheter=CatheterSpec(french=4.0))
    scene = build_scene(spec, patient)
    tree = scene.vessels[0].tree
    assert scene.catheter is not None and scene.to_dict()["catheter"]["french"] == 4.0
    tip_gap = np.linalg.norm(scene.catheter.centerline_mm[-1] - tree.positions_mm[0])
    assert tip_gap == pytest.approx(3.0, abs=1e-6)
    assert "catheter_lumen" in scene.vessel_names and "catheter" in scene.projector.volumes
    with pytest.raises(InputError, match="catheter: a catheter needs a vessel tree"):
        build_scene(SceneSpec(CTSpec("memory"), VesselSpec("labels", structures=("aorta",)),
                              catheter=CatheterSpec()), patient)
    with pytest.raises(InputError, match="catheter: wall_mm 0.9 leaves no lumen"):
        CatheterSpec(french=5.0, wall_mm=0.9).validate()


def test_dsa_options_put_a_catheter_on_templates_by_default():
    from ddsa_sim.cli.dsa import scene_spec

    assert scene_spec("ct.nii.gz", "cow", 0).catheter == CatheterSpec(5.0, field="--catheter")
    assert scene_spec("ct.nii.gz", "coronary", 0, catheter_french=6).catheter.french == 6
    assert scene_spec("ct.nii.gz", "lsystem", 0).catheter is None
    assert scene_spec("ct.nii.gz", "lsystem", 0, catheter=True).catheter is not None
    assert scene_spec("ct.nii.gz", "cow", 0, catheter=False).catheter is None


def test_cerebral_ica_catheter_runs_up_the_common_carotid_into_the_internal_carotid():
    """A selective ICA run: the catheter comes up the common carotid from the neck and on up the cervical ICA, its tip
    3 mm below the injected tree's root, ``CATHETER_UP_MM["ICA"]`` above the bifurcation (about C2). Before 2026-12-07 the
    tree started at the bifurcation and the tip sat in the common carotid, 3 mm below it."""
    from scene_helpers import head_ct

    from vessel_models.willis import CATHETER_UP_MM

    ct = head_ct()
    patient = Patient(ct, None, CTSpec("memory"))
    vs = VesselSpec("generator", "cow", {"injection": "ICA_L", "distal_iterations": 0}, seed=1, spacing_mm=0.5)
    scene = build_scene(SceneSpec(CTSpec("memory"), vs, PlacementSpec("auto", seed=1), catheter=CatheterSpec()),
                        patient)
    tree, path = scene.vessels[0].tree, scene.catheter.centerline_mm
    way_in = np.asarray(tree.metadata["feeding_path_mm"])  # placed with the tree
    cca_origin, bifurcation = way_in[:2]
    np.testing.assert_allclose(way_in[-1], tree.positions_mm[0], atol=1e-9)  # up to the root, in the ICA
    ica = way_in[1:]
    steps = np.linalg.norm(np.diff(ica, axis=0), axis=1)
    along = np.r_[0.0, np.cumsum(steps)]
    step = np.median(steps)  # the template's node spacing, as placed (the placement scales the template to the head)
    size = step / tree.metadata["params"]["step_mm"]
    up = CATHETER_UP_MM["ICA"] * size
    assert up <= along[-1] < up + step, along[-1]  # at the first node past it
    # the tip 3 mm back along the way in from the root: in the ICA, 27 mm above the bifurcation
    tip = np.array([np.interp(along[-1] - 3.0, along, ica[:, k]) for k in range(3)])
    np.testing.assert_allclose(path[-1], tip, atol=1e-6)
    # past the carotid bulb, in the lower half of the cervical ICA (below C1 and the skull base), and nothing of the
    # injected tree in the ICA below it
    cervical = tree.positions_mm[tree.branch_ids == next(b for b, n in tree.labels.items() if n == "ICA_cervical_L")]
    cervical_mm = along[-1] + np.sum(np.linalg.norm(np.diff(np.vstack([tree.positions_mm[0], cervical]), axis=0), axis=1))
    assert 20.0 <= along[-1] - 3.0 <= 0.5 * cervical_mm, (along[-1], cervical_mm)
    below_tip = np.vstack([ica[:-1][along[:-1] <= along[-1] - 3.0], tip])
    assert cKDTree(below_tip).query(tree.positions_mm)[0].min() > 2.0
    # along the way in (the straight CCA, its origin on the path, then the ICA), the corner at the bifurcation rounded
    # within a tenth of a millimetre; entry at the neck's end
    t = np.linspace(0.0, 1.0, 200)[:, None]
    dense = np.vstack([a + t * (b - a) for a, b in zip(way_in[:-1], way_in[1:])])
    above = path[:, 2] >= cca_origin[2]
    assert cKDTree(dense).query(path[above])[0].max() < 0.1
    assert path[0][2] < -165.0 and path[0][2] < cca_origin[2] < path[-1][2]
    body = body_mask(ct)
    ijk = np.rint((path - ct.affine[:3, 3]) @ np.linalg.inv(ct.affine[:3, :3]).T).astype(int)
    assert body[tuple(ijk.T)].all()


@pytest.mark.parametrize("side", ["left", "right", "both"])
def test_the_coronary_catheter_comes_down_to_its_ostium_without_turning_back_up(side):
    """A coronary catheter comes down the ascending aorta and turns into its ostium (a Judkins catheter engages it from
    the root's lumen): from where it enters the body to its tip it never rises (patient superior is +z), and its tip
    lies at its ostium's height. The old template's way ended on the root's axis 9-18 mm below the left ostium, from
    where the catheter turned back up into it by 112-125 deg, and 0.3-0.5 mm below the right one (seeds 0-7)."""
    from vessel_models.coronary import generate_coronary

    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = -200.0
    inside = np.ones((200, 200, 200), dtype=bool)  # a body round the whole heart and well above it
    for seed in range(8):
        tree = generate_coronary(seed, side=side, distal_iterations=0)
        path = catheter_centerline(tree, inside, affine)
        assert np.diff(path[:, 2]).max() <= 1e-9, seed
        assert path[-1][2] == pytest.approx(tree.positions_mm[0][2], abs=1e-6), seed


def test_batched_torch_views_carry_the_catheter_like_view_by_view():
    pytest.importorskip("torch")
    from ddsa_sim.scene.render import render_views

    z = np.linspace(-90.0, -23.0, 12)
    cath = build_catheter(np.column_stack([np.zeros_like(z), np.zeros_like(z), z]), CatheterSpec(spacing_mm=0.2))
    scene = make_scene(catheter=cath, method="trilinear", backend="torch")
    plain = make_scene(method="trilinear", backend="torch")
    carms = [small_carm(pixel_mm=0.5, alpha_deg=a).at(isocenter_mm=(0.0, 0.0, -25.0)) for a in (0, 30)]
    got = list(render_views(scene, carms, [np.random.default_rng(n) for n in range(2)]))
    for n, (carm, g) in enumerate(zip(carms, got)):
        ref = render_frames(scene, carm, np.random.default_rng(n))
        for key in ("mask_clean", "contrast_clean", "dsa_target", "iodine_mg_per_cm2"):
            a, b = getattr(ref, key), getattr(g, key)
            assert np.abs(a.astype(np.float64) - b).max() <= 2e-6 * float(np.abs(ref.contrast_clean).max()), key
        # the catheter is in the mask (wall) and in the target (lumen) below the tree
        without = render_frames(plain, carm, np.random.default_rng(n))
        assert (g.mask_clean - without.mask_clean).max() > 0.005
        # 350 mgI/ml over the 1.17 mm lumen: 41 mg/cm^2 on its axis (rays 0.3 mm apart there)
        assert 30.0 < (g.iodine_mg_per_cm2[0] - without.iodine_mg_per_cm2[0]).max() < 41.5
