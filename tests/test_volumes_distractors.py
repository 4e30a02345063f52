"""Anatomical distractors (ddsa_sim.volumes.distractors) against analytic volumes, and their export config."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from ddsa_sim import InputError
from ddsa_sim.export.config import CORTEX_FIELDS, FOAM_FIELDS, Range, config_from_dict
from ddsa_sim.export.plan import draw_count, plan_dataset, plan_fingerprint
from ddsa_sim.volumes import Volume, ct_with_materials
from ddsa_sim.volumes.augment import PseudoPatient, pseudo_patient
from ddsa_sim.volumes.distractors import (
    MAX_FOAM_CELLS,
    Distractors,
    Structure,
    add_distractors,
    body_mask,
    draw_structures,
    occupancy,
    paint,
)

sys.path.insert(0, str(Path(__file__).parent))
from test_export_plan import base_config_dict  # noqa: E402

# LPS frame with a flipped axis, anisotropic voxels and an offset: world != voxel axes
AFFINE = np.array([[-1.5, 0, 0, 40.0], [0, 1.25, 0, -30.0], [0, 0, 2.0, 7.0], [0, 0, 0, 1]])
SHAPE = (100, 110, 80)
VOXEL_MM3 = abs(np.linalg.det(AFFINE[:3, :3]))
W_MAX = 2.0  # largest voxel side: the largest edge width |M^T n|
ROT = Rotation.from_euler("xyz", [20, 30, 40], degrees=True).as_matrix()


def flat_ct(hu: float = 40.0) -> Volume:
    return Volume(np.full(SHAPE, hu, np.float32), AFFINE)


def ellipsoid_mm3(axes) -> float:
    return 4 / 3 * np.pi * float(np.prod(axes))


def test_shell_volume_is_the_analytic_ellipsoid_shell_volume():
    """The ramp is symmetric about the surface: exact to first order; a sphere of radius R gains
    V W^2 / (4 R^2) (the mean of r^3 over the ramp), the bound used here with the smallest semi-axis."""
    a, t = np.array([40.0, 30.0, 25.0]), 5.0
    outer, inner = ellipsoid_mm3(a), ellipsoid_mm3(a - t)
    box, w = occupancy(Structure("shell", flat_ct().center_mm, ROT, a, 1000.0, t), flat_ct())
    bound = (outer + inner) * W_MAX**2 / (4 * (a.min() - t) ** 2)
    assert abs(w.sum() * VOXEL_MM3 - (outer - inner)) <= bound
    assert bound < 0.01 * (outer - inner)  # the bound is tight enough to mean something
    assert w.min() == 0.0 and w.max() == 1.0


def test_solid_ellipsoid_and_cylinder_volumes():
    ct = flat_ct()
    a = np.array([40.0, 30.0, 25.0])
    _, w = occupancy(Structure("ellipsoid", ct.center_mm, ROT, a, 1000.0), ct)
    assert abs(w.sum() * VOXEL_MM3 / ellipsoid_mm3(a) - 1) <= W_MAX**2 / (4 * a.min() ** 2)
    for r, half in ((10.0, 30.0), (4.0, 40.0)):  # sides: +W^2 / (12 r^2) of pi r^2 L; flat ends exact
        _, w = occupancy(Structure("cylinder", ct.center_mm, ROT, np.array([r, r, half]), 1000.0), ct)
        assert abs(w.sum() * VOXEL_MM3 / (np.pi * r**2 * 2 * half) - 1) <= W_MAX**2 / (12 * r**2)


def test_a_cortical_bone_projects_brighter_at_its_edges_than_at_its_centre():
    """A cylinder of cortex HU with its core (radius r - t) painted over it at the core's HU, the axis along
    z: each x-row's HU integral is the analytic chord sum (c - b)(L_r - L_{r-t}) + (k - b) L_{r-t}, exact for
    the centre row (it crosses the surfaces head-on); a solid bone's peaks at its centre, a cortical
    one's at the cortex (a tram track), which is what tells a bone from a vessel in one frame."""
    ct, r, t, cortex_hu, core_hu = flat_ct(40.0), 10.0, 2.5, 1500.0, 200.0
    hu = np.array(ct.data)
    for axes, value in ((np.array([r, r, 60.0]), cortex_hu), (np.array([r - t, r - t, 60.0 - t]), core_hu)):
        paint(hu, ct, Structure("cylinder", ct.center_mm, np.eye(3), axes, value))
    k = np.round(ct.world_to_voxel(ct.center_mm[None])[0]).astype(int)
    profile = (hu[:, :, k[2]] - 40.0).sum(axis=0) * abs(AFFINE[0, 0])  # HU mm along x, per voxel row in y
    rows = np.stack([np.full(SHAPE[1], k[0]), np.arange(SHAPE[1]), np.full(SHAPE[1], k[2])], axis=1)
    y = ct.voxel_to_world(rows.astype(float))[:, 1] - ct.center_mm[1]

    def chord(radius):
        return 2 * np.sqrt(np.clip(radius**2 - y**2, 0, None))

    analytic = (cortex_hu - 40) * (chord(r) - chord(r - t)) + (core_hu - 40) * chord(r - t)
    centre = int(np.argmin(np.abs(y)))
    assert profile[centre] == pytest.approx(analytic[centre], rel=0.002)
    assert profile.max() > 1.3 * profile[centre]
    assert r - t - W_MAX < abs(y[int(np.argmax(profile))]) < r
    # the cross-section's HU integral: each cylinder's side to first order (pi W^2 / 12 per HU step, as above)
    area = profile.sum() * abs(AFFINE[1, 1])
    expected = (cortex_hu - 40) * np.pi * (r**2 - (r - t) ** 2) + (core_hu - 40) * np.pi * (r - t) ** 2
    bound = np.pi * W_MAX**2 / 12 * ((cortex_hu - 40) + (cortex_hu - core_hu))
    assert abs(area - expected) <= bound < 0.02 * expected


def test_cortical_bones_are_a_bone_and_its_core_drawn_after_the_solid_draw():
    """With ``bone_cortex_mm`` each bone is followed by its core (the same kind, centre and axes, smaller by
    the cortex, at most half its smallest semi-axis, at the core's HU); the first bone draws as a solid one."""
    ct, _, _ = body_phantom()
    solid = draw_structures(ct, Distractors(seed=3, bones=4))
    params = Distractors(seed=3, bones=4, bone_cortex_mm=(1.0, 4.0), bone_core_hu=(100.0, 400.0))
    cortical = draw_structures(ct, params)
    assert len(cortical) == 2 * len(solid) == 8
    first = cortical[0]
    assert first.kind == solid[0].kind and first.hu == solid[0].hu
    np.testing.assert_array_equal(first.semi_axes_mm, solid[0].semi_axes_mm)
    for bone, core in zip(cortical[::2], cortical[1::2]):
        assert core.kind == bone.kind and np.array_equal(core.center_mm, bone.center_mm)
        assert np.array_equal(core.rotation, bone.rotation) and 100 <= core.hu <= 400
        cortex = bone.semi_axes_mm - core.semi_axes_mm
        assert np.allclose(cortex, cortex[0]) and 1.0 <= cortex[0] + 1e-12
        assert cortex[0] <= min(4.0, bone.semi_axes_mm.min() / 2) + 1e-12


def test_a_plane_through_the_centre_halves_the_shell():
    """The grid is point-symmetric about its centre, so a plane through it cuts the occupancy exactly in half."""
    ct = flat_ct()
    a = np.array([40.0, 30.0, 25.0])
    full = occupancy(Structure("shell", ct.center_mm, ROT, a, 1000.0, 5.0), ct)[1].sum()
    n = np.array([1.0, 2.0, -0.5]) / np.linalg.norm([1.0, 2.0, -0.5])
    half = occupancy(Structure("shell", ct.center_mm, ROT, a, 1000.0, 5.0, np.append(n, 0.0)), ct)[1].sum()
    assert half == pytest.approx(full / 2, rel=1e-9)


@pytest.mark.parametrize("septum_mm", [0.0, 0.3, 0.8, 2.0])
def test_foam_septum_volume_is_the_analytic_disc(septum_mm):
    """Two seeds on a line through a sphere's centre: one septum, the disc of radius R and thickness t
    (pi R^2 t) through the centre, however thin against the voxels (the slab's two ramps integrate to t)."""
    ct, r = flat_ct(), 25.0
    seeds = ROT.T @ np.array([[5.0, 0, 0], [-5.0, 0, 0]]).T
    full = occupancy(Structure("ellipsoid", ct.center_mm, ROT, np.full(3, r), 1000.0), ct)[1].sum()
    foam = occupancy(Structure("foam", ct.center_mm, ROT, np.full(3, r), -1000.0, septum_mm, seeds_mm=seeds.T), ct)
    septa_mm3 = (full - foam[1].sum()) * VOXEL_MM3
    assert septa_mm3 == pytest.approx(np.pi * r**2 * septum_mm, rel=0.01, abs=1.0)


def test_foam_cells_are_air_inside_a_bone_ellipsoid():
    """A foam distractor is a bone ellipsoid, then air cells inside it (its outer wall as thick as a
    septum), with as many cells as cells of the drawn diameter fill it; the others draw as before."""
    ct, _, _ = body_phantom()
    params = Distractors(seed=3, shells=2, bones=4, cavities=2, foams=2, foam_cell_mm=(12.0, 12.0))
    structures = draw_structures(ct, params)
    before = draw_structures(ct, Distractors(seed=3, shells=2, bones=4, cavities=2))
    assert len(structures) == len(before) + 4
    for s, t in zip(structures, before):
        assert s.kind == t.kind and np.array_equal(s.center_mm, t.center_mm) and s.hu == t.hu
    for bone, cells in zip(structures[8::2], structures[9::2]):
        assert bone.kind == "ellipsoid" and 800 <= bone.hu <= 1900 and cells.kind == "foam"
        assert -1000 <= cells.hu <= -800 and 0.3 <= cells.thickness_mm <= 1.5
        np.testing.assert_allclose(cells.semi_axes_mm, bone.semi_axes_mm - cells.thickness_mm)
        assert np.all((cells.seeds_mm / cells.semi_axes_mm) ** 2 @ np.ones(3) <= 1)
        expected = round(np.prod(cells.semi_axes_mm) / 6.0**3)
        assert len(cells.seeds_mm) == int(np.clip(expected, 2, MAX_FOAM_CELLS))
    # the seed farthest from its neighbours, well inside: its voxel lies in a cell, away from every septum
    hu = add_distractors(ct, None, params)[0].data
    cells = structures[9]
    gaps = np.linalg.norm(cells.seeds_mm[:, None] - cells.seeds_mm[None], axis=2) + np.eye(len(cells.seeds_mm)) * 1e9
    deep = np.sqrt(((cells.seeds_mm / cells.semi_axes_mm) ** 2).sum(axis=1)) < 0.6
    k = int(np.argmax(np.where(deep, gaps.min(axis=1), 0)))
    # its septa are gap / 2 away; voxel rounding (half a voxel diagonal, 1.4 mm) and the ramp (W / 2) inside
    assert gaps[k].min() / 2 - cells.thickness_mm / 2 > 1.4 + W_MAX / 2
    centre_of_a_cell = cells.center_mm + cells.rotation @ cells.seeds_mm[k]
    assert hu[tuple(np.round(ct.world_to_voxel(centre_of_a_cell[None])[0]).astype(int))] <= -800


def test_edge_is_at_most_about_one_voxel_wide():
    """Across a sphere's surface along a voxel axis, the partial voxels span one voxel of that axis."""
    ct = flat_ct()
    _, w = occupancy(Structure("ellipsoid", ct.center_mm, np.eye(3), np.full(3, 30.3), 1000.0), ct)
    profile = w[:, w.shape[1] // 2, w.shape[2] // 2]  # along axis 0 (1.5 mm voxels) through the centre
    partial = profile[(profile > 0) & (profile < 1)]
    assert 1 <= partial.size <= 2 * 2  # one partial voxel (maybe two) per side


def body_phantom() -> tuple[Volume, np.ndarray, np.ndarray]:
    """A 60 mm soft-tissue ball with a 20 mm 'lung' (-850 HU) inside, in air."""
    ct = flat_ct(-1000.0)
    ijk = np.stack(np.meshgrid(*(np.arange(n) for n in SHAPE), indexing="ij"), axis=-1).astype(float)
    r = np.linalg.norm(ct.voxel_to_world(ijk) - ct.center_mm, axis=-1)
    hu = np.where(r <= 60, 40.0, -1000.0)
    hu[r <= 20] = -850.0
    return ct.with_data(hu.astype(np.float32)), r <= 60, r <= 20


def test_body_mask_fills_the_lung_and_nothing_is_added_outside_the_body():
    ct, body, lung = body_phantom()
    assert np.array_equal(body_mask(ct), body)  # the lung is body (filled), air outside is not
    params = Distractors(seed=5, shells=3, bones=5, cavities=3)
    out, _ = add_distractors(ct, None, params)
    assert np.array_equal(out.data[~body], ct.data[~body])  # bit for bit outside the body
    assert np.abs(out.data[body] - ct.data[body]).max() > 500  # and something was added inside


def test_shell_interior_holds_the_drawn_hu_and_the_material_is_bone():
    """Where a drawn shell occupies a voxel fully, the HU is the shell's; a 'lung' label there is cleared, so
    the material follows the HU (bone), not the label."""
    ct, body, _ = body_phantom()
    labels = ct.with_data(np.where(body, 7, 0).astype(np.uint8))
    params = Distractors(seed=11, shells=1, shell_semi_axis_mm=(30.0, 40.0), shell_thickness_mm=(6.0, 8.0),
                         shell_open_fraction=0.0)
    (shell,) = draw_structures(ct, params)
    out, out_labels = add_distractors(ct, labels, params)
    box, w = occupancy(shell, ct)
    full = np.zeros(SHAPE, bool)
    full[box] = (w == 1.0)
    full &= body
    assert full.sum() > 1000
    np.testing.assert_allclose(out.data[full], shell.hu, rtol=0, atol=1e-3)
    assert 800 <= shell.hu <= 1900 and 6 <= shell.thickness_mm <= 8
    assert np.all(out_labels.data[full] == 0)
    weight = np.zeros(SHAPE)
    weight[box] = w
    untouched = weight == 0
    assert np.array_equal(out_labels.data[untouched], labels.data[untouched])
    assert np.array_equal(out_labels.data == 0, (weight > 0.5) & body | (labels.data == 0))
    mats = ct_with_materials(out, out_labels, {"lung_upper_lobe_left": 7}).materials
    assert mats["bone"][full].all()


def test_draws_are_seeded_and_within_their_ranges():
    ct, _, _ = body_phantom()
    params = Distractors(seed=3, shells=2, bones=4, cavities=2)
    a, b = add_distractors(ct, None, params)[0].data, add_distractors(ct, None, params)[0].data
    assert np.array_equal(a, b)
    other = add_distractors(ct, None, Distractors(seed=4, shells=2, bones=4, cavities=2))[0].data
    assert not np.array_equal(a, other)
    structures = draw_structures(ct, params)
    assert [s.kind for s in structures[:2]] == ["shell", "shell"] and len(structures) == 8
    for s in structures[2:6]:
        assert s.kind in ("ellipsoid", "cylinder") and 300 <= s.hu <= 1500
        assert np.all(s.semi_axes_mm[:2] >= 3) and np.all(s.semi_axes_mm[:2] <= 25)
    for s in structures[6:]:
        assert s.kind == "ellipsoid" and -1000 <= s.hu <= -800
        assert ct.data[tuple(np.round(ct.world_to_voxel(s.center_mm)).astype(int))] == 40.0  # in soft tissue
    for s in structures:
        assert np.allclose(s.rotation.T @ s.rotation, np.eye(3))


def test_no_distractors_leave_a_pseudo_patient_unchanged_bit_for_bit():
    ct, body, _ = body_phantom()
    labels = ct.with_data(body.astype(np.uint8))
    plain = pseudo_patient(ct, labels, PseudoPatient(seed=2, deform_mm=2.0))
    empty = add_distractors(*plain, Distractors(seed=9))
    assert np.array_equal(plain[0].data, empty[0].data) and np.array_equal(plain[1].data, empty[1].data)
    with_some = add_distractors(*plain, Distractors(seed=9, bones=2))
    assert not np.array_equal(plain[0].data, with_some[0].data)


def variants_config(distractors=None, count=12) -> dict:
    variants = {"count": 2, "deform_mm": {"min": 0, "max": 5}, "smooth_mm": 60, "scale": {"min": 0.85, "max": 1.15},
                "rotate_deg": {"min": -5, "max": 5}, "hu_offset": {"min": -20, "max": 20},
                "hu_scale": {"min": 0.95, "max": 1.05}, "fov_mm": {"grid": [350, 500]}}
    if distractors is not None:
        variants["distractors"] = distractors
    data = base_config_dict(count=count)
    data["cts"] = [{"path": "builtin:chest-ct", "id": f"pat{k}", "variants": variants} for k in range(2)]
    return data


def test_a_variants_config_without_distractors_keeps_its_fingerprint():
    """sha256 of this plan computed with the code before distractors existed (commit a9398d9)."""
    config = config_from_dict(variants_config())
    assert plan_fingerprint(plan_dataset(config)) == "f591af2471a1690891ffad62ae33bf579d11cb420e3eb2eefe41ce6df1829966"
    assert "distractors" not in config.resolved()["cts"][0]["variants"]


def test_plan_draws_distractor_counts_per_variant_and_records_the_ranges():
    config = config_from_dict(variants_config({"shells": {"min": 1, "max": 2}, "bones": 3,
                                               "cavities": {"grid": [0, 5]}, "bone_hu": 700}))
    specs = plan_dataset(config)
    by_id = {s.ct_id: s.ct_variant["distractors"] for s in specs}
    assert len(by_id) == 4 and len({d["seed"] for d in by_id.values()}) == 4
    for d in by_id.values():
        assert d["shells"] in (1, 2) and d["bones"] == 3 and d["cavities"] in (0, 5) and d["bone_hu"] == [700.0, 700.0]
        Distractors(**{n: tuple(x) if isinstance(x, list) else x for n, x in d.items()})  # what the worker builds
    assert plan_fingerprint(plan_dataset(config)) == plan_fingerprint(specs)
    assert config.resolved()["cts"][0]["variants"]["distractors"]["bone_hu"] == 700.0
    base = plan_dataset(config_from_dict(variants_config()))
    assert [{k: v for k, v in s.ct_variant.items() if k != "distractors"} for s in specs] == [s.ct_variant for s in base]
    # no foams, solid bones: planned and recorded as before them
    assert not any(n in d for d in by_id.values() for n in FOAM_FIELDS + CORTEX_FIELDS)
    assert not any(n in config.resolved()["cts"][0]["variants"]["distractors"] for n in CORTEX_FIELDS)
    assert "foams" not in config.resolved()["cts"][0]["variants"]["distractors"]
    foamy = config_from_dict(variants_config({"bones": 3, "foams": {"min": 1, "max": 2}, "foam_cell_mm": 5}))
    for s in plan_dataset(foamy):
        d = s.ct_variant["distractors"]
        assert d["foams"] in (1, 2) and d["foam_cell_mm"] == [5.0, 5.0] and d["foam_septum_mm"] == [0.3, 1.5]
        assert Distractors(**{n: tuple(x) if isinstance(x, list) else x for n, x in d.items()}).foams == d["foams"]
    assert foamy.resolved()["cts"][0]["variants"]["distractors"]["foams"] == {"min": 1.0, "max": 2.0}
    cortical = config_from_dict(variants_config({"bones": 2, "bone_cortex_mm": {"min": 0.5, "max": 4}}))
    for s in plan_dataset(cortical):
        d = s.ct_variant["distractors"]
        assert d["bone_cortex_mm"] == [0.5, 4.0] and d["bone_core_hu"] == [100.0, 400.0] and "foams" not in d
        assert Distractors(**{n: tuple(x) if isinstance(x, list) else x for n, x in d.items()}).bone_cortex_mm == (0.5, 4.0)
    assert cortical.resolved()["cts"][0]["variants"]["distractors"]["bone_cortex_mm"] == {"min": 0.5, "max": 4.0}


def test_draw_count_is_uniform_on_the_whole_numbers():
    rng = np.random.default_rng(0)
    draws = [draw_count(Range(min=2, max=6), rng) for _ in range(2000)]
    counts = np.bincount(draws, minlength=7)[2:]
    assert set(draws) == {2, 3, 4, 5, 6} and counts.min() > 320  # 400 expected each


@pytest.mark.parametrize("bad, message", [
    ({"shells": 1.5}, "cts.0.variants.distractors: shells: must be whole numbers >= 0"),
    ({"bones": {"min": -1, "max": 2}}, "cts.0.variants.distractors: bones: must be whole numbers >= 0"),
    ({"shell_thickness_mm": {"min": 2, "max": 30}}, "shell_thickness_mm: max 30.0 must be below shell_semi_axis_mm min"),
    ({"bone_radius_mm": -1}, "cts.0.variants.distractors: bone_radius_mm: need min <= max and min > 0"),
    ({"edge_voxels": 0}, "cts.0.variants.distractors: edge_voxels: must be > 0"),
    ({"shell_open_fraction": 2}, "cts.0.variants.distractors: shell_open_fraction: must lie in [0, 1]"),
    ({"shell_hu": {"min": 3, "max": 1}}, "cts.0.variants.distractors.shell_hu: max (1.0) must be >= min (3.0)"),
    ({"foams": 0.5}, "cts.0.variants.distractors: foams: must be whole numbers >= 0"),
    ({"foam_septum_mm": {"min": 1, "max": 9}}, "foam_septum_mm: max 9.0 must be below foam_semi_axis_mm min"),
    ({"bone_cortex_mm": -1}, "cts.0.variants.distractors: bone_cortex_mm: need 0 < min <= max (or 0: solid bones)"),
    ({"bone_cortex_mm": {"min": 0, "max": 2}}, "bone_cortex_mm: need 0 < min <= max (or 0: solid bones)"),
    ({"ribs": 2}, "cts.0.variants.distractors.ribs: Extra inputs are not permitted"),
])
def test_bad_distractor_fields_are_one_line_errors(bad, message):
    with pytest.raises(InputError) as err:
        config_from_dict(variants_config(bad), where="d.yaml")
    assert str(err.value).startswith("d.yaml: ") and message in str(err.value) and "\n" not in str(err.value)
