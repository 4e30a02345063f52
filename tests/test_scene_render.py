"""DSA scene rendering: exact target definition, iodine map, noise, scatter, detector, bolus."""

from __future__ import annotations

import numpy as np
import pytest
from scene_helpers import cylinder_ct, make_scene, slab_ct, small_carm, y_tree

from ddsa_sim import InputError
from ddsa_sim.physics.detector import Detector
from ddsa_sim.physics.scatter import (
    AntiScatterGrid,
    ScatterGeometry,
    scatter_kernel_superposition,
    water_equivalent_thickness_mm,
)
from ddsa_sim.scene import TRIPLET_KEYS, Scene, render_frames, render_sequence, render_triplet
from ddsa_sim.scene.recording import Exposure, ScatterSettings, frame_quanta, gain_for_bit_depth
from ddsa_sim.scene.render import VESSEL_MASK_MIN_IODINE_MG_PER_CM2
from ddsa_sim.scene.vessels import BolusParams, TreeVessels


@pytest.fixture(scope="module")
def ct():
    return cylinder_ct()


def test_triplet_keys_dtypes_and_exact_target_without_noise_or_scatter(ct):
    scene = make_scene(ct)
    out = render_triplet(scene, small_carm(), np.random.default_rng(0))
    assert tuple(out) == TRIPLET_KEYS
    for k, v in out.items():
        assert v.shape == (64, 64)
        assert v.dtype == (np.uint8 if k == "vessel_mask" else np.float32)
    vm = out["vessel_mask"].astype(bool)
    assert 20 < vm.sum() < 64 * 64 / 2
    # exact: target = -ln(contrast) - (-ln(mask)), zero wherever no ray meets iodine (the vessel
    # mask is the >= 0.1 mg/cm^2 part of where it does)
    assert np.array_equal(out["dsa_target"], out["contrast"] - out["mask"])
    assert np.array_equal(out["conventional_dsa"], out["dsa_target"])
    assert np.all(out["dsa_target"][out["iodine_mg_per_cm2"] == 0] == 0)
    assert np.all(out["dsa_target"][vm] > 0)
    assert np.array_equal(out["contrast"], out["contrast_clean"])
    np.testing.assert_allclose(out["contrast_clean"] - out["dsa_target"], out["mask"], atol=2e-6)
    assert np.array_equal(vm, out["iodine_mg_per_cm2"] >= VESSEL_MASK_MIN_IODINE_MG_PER_CM2)


def test_iodine_area_density_is_chord_times_concentration(ct):
    """The ray through the trunk axis crosses 2 r of lumen (magnified geometry aside): 2r * C / 10 mg/cm^2."""
    r, conc = 2.0, 80.0
    scene = make_scene(ct, y_tree(radius_mm=r), iodine_mg_per_ml=conc)
    out = render_triplet(scene, small_carm(128, 1.0), np.random.default_rng(0))
    expected = 2 * r / 10.0 * conc
    assert out["iodine_mg_per_cm2"].max() == pytest.approx(expected, rel=0.03)


def test_scatter_leaves_target_untouched_and_lowers_conventional_contrast(ct):
    carm = small_carm()
    off = render_triplet(make_scene(ct), carm, np.random.default_rng(1))
    on = render_triplet(make_scene(ct, scatter=ScatterSettings(enabled=True, grid=None)), carm, np.random.default_rng(1))
    assert np.array_equal(on["dsa_target"], off["dsa_target"])
    vm = off["vessel_mask"].astype(bool)
    assert on["conventional_dsa"][vm].mean() < 0.8 * off["conventional_dsa"][vm].mean()
    assert np.all(on["mask"] < off["mask"])  # scatter adds signal: lower -ln everywhere


@pytest.mark.parametrize("grid", [None, AntiScatterGrid()])
def test_scatter_spr_of_water_slabs_follows_model_with_carm_geometry(grid):
    settings = ScatterSettings(enabled=True, grid=grid)
    factor = 1.0 if grid is None else grid.scatter_transmission / grid.primary_transmission
    carm = small_carm(48, 5.0)
    spr_center = {}
    for t_mm in (100.0, 200.0):
        scene = make_scene(slab_ct(t_mm), scatter=settings)
        f = render_frames(scene, carm, np.random.default_rng(0))
        p = f.mask_primary
        t = water_equivalent_thickness_mm(p, scene.projector.spectrum, scene.projector.mode)
        # the scene passes the C-arm's distances (air gap) and its spectrum to the model
        geometry = ScatterGeometry(carm.source_to_detector_distance, carm.source_to_isocenter_vertical_distance)
        expected = factor * scatter_kernel_superposition(p, t, carm.pixel_mm, spectrum=scene.projector.spectrum,
                                                         geometry=geometry)
        np.testing.assert_allclose(f.mask_scatter, expected, rtol=1e-9, atol=1e-15)
        # recorded mask (noise off) = -ln(P + S)
        measured = np.exp(-f.mask.astype(np.float64)) / p - 1.0
        c = slice(20, 28)
        assert measured[c, c].mean() == pytest.approx((expected / p)[c, c].mean(), rel=0.01)
        spr_center[t_mm] = measured[c, c].mean() / factor
        assert t[c, c].mean() == pytest.approx(t_mm * 1.03, rel=0.1)  # 0 HU = 1.03 g/cm^3 tissue
    assert spr_center[200.0] > spr_center[100.0] > 0


def _flat_scene(n0: float):
    """An ideal photon counter (every photon counted once): Poisson counts, var(-ln I) = 1 / (N0 I)."""
    return make_scene(slab_ct(150.0), noise=True, noise_correlation="none", exposure=Exposure(photons_per_pixel=n0),
                      detector=Detector(mode="photon", scintillator_mm=None))


def test_noise_variance_scales_as_inverse_n0_and_frames_are_independent():
    carm = small_carm(128, 2.5)
    variances = {}
    for n0 in (1e3, 1e4):
        f = render_frames(_flat_scene(n0), carm, np.random.default_rng(7))
        flat = f.vessel_mask[0] == 0
        dm = (f.mask - f.mask_clean)[flat].astype(np.float64)
        dc = (f.contrast[0] - f.contrast_clean[0])[flat].astype(np.float64)
        variances[n0] = dm.var()
        expected = np.mean(1.0 / (n0 * np.exp(-f.mask_clean[flat].astype(np.float64))))
        assert dm.var() == pytest.approx(expected, rel=0.1)
        assert dc.var() == pytest.approx(expected, rel=0.1)
        assert abs(np.corrcoef(dm, dc)[0, 1]) < 0.05  # independent realisations
    assert variances[1e3] / variances[1e4] == pytest.approx(10.0, rel=0.1)


def test_noise_is_seeded():
    carm = small_carm(32, 5.0)
    a = render_triplet(_flat_scene(1e4), carm, np.random.default_rng(3))
    b = render_triplet(_flat_scene(1e4), carm, np.random.default_rng(3))
    c = render_triplet(_flat_scene(1e4), carm, np.random.default_rng(4))
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["mask"], c["mask"])


def test_detector_quantisation_and_photon_counting(ct):
    carm = small_carm(32, 5.0)
    n0 = 1e4
    ideal = make_scene(ct, detector=Detector(scintillator_mm=None))
    quanta = frame_quanta(ideal.projector.spectrum, ideal.detector, n0, ideal.scatter)  # N0 x Swank factor
    det = Detector(bit_depth=12, gain=gain_for_bit_depth(12, quanta), scintillator_mm=None)
    f = render_frames(make_scene(ct, detector=det, exposure=Exposure(photons_per_pixel=n0)), carm,
                      np.random.default_rng(0))
    assert f.quanta_per_pixel == pytest.approx(quanta)  # the central ray's, where the pixels get the most:
    assert f.quanta_image.max() == pytest.approx(quanta, rel=1e-4)  # the 4 centre pixels, 3.5 mm off the ray
    centre = (np.arange(32) + 0.5 - 16) * 5.0  # the rest fall off as cos^3 of their ray's angle
    sdd = carm.source_to_detector_distance
    cos = sdd / np.sqrt(sdd**2 + centre[:, None] ** 2 + centre[None, :] ** 2)
    np.testing.assert_allclose(f.quanta_image, quanta * cos**3, rtol=1e-12)
    stored = np.exp(-f.mask.astype(np.float64)) * det.gain * f.quanta_image  # each pixel's flat field
    np.testing.assert_allclose(stored, np.rint(stored), atol=2e-3 * stored.max())
    assert np.unique(np.rint(stored)).size < 4096
    pc = render_triplet(make_scene(ct, detector=Detector(mode="photon")), carm, np.random.default_rng(0))
    ei = render_triplet(make_scene(ct), carm, np.random.default_rng(0))
    assert pc["mask"].mean() > ei["mask"].mean()  # counting weights low energies more: more attenuation
    bad = make_scene(ct, detector=Detector(bit_depth=12, gain=1.0), exposure=Exposure(photons_per_pixel=1e4))
    with pytest.raises(InputError, match="12-bit"):
        render_triplet(bad, carm, np.random.default_rng(0))


def test_bolus_sequence_fills_from_root_to_full(ct):
    scene = make_scene(ct, bolus=BolusParams(velocity_mm_per_s=50.0, sigma_s=0.05))
    carm = small_carm()
    seq = render_sequence(scene, carm, np.random.default_rng(0), 3)
    totals = seq.iodine_mg_per_cm2.reshape(3, -1).sum(axis=1)
    assert totals[0] < totals[1] < totals[2]
    full = render_triplet(scene, carm, np.random.default_rng(0))
    np.testing.assert_array_equal(seq.iodine_mg_per_cm2[-1], full["iodine_mg_per_cm2"])
    assert np.all(np.isfinite(seq.times_s)) and np.all(np.diff(seq.times_s) > 0)


def test_virtual_branches_carry_no_iodine():
    from vessel_models import generate

    tree = generate("coronary", 0, side="both")
    src = TreeVessels(tree)
    f = src.fill(None, BolusParams())
    virt = {b for b, name in tree.labels.items() if name == "virtual"}
    assert virt, "the coronary generator joins left and right through a virtual branch"
    in_virtual = np.isin(tree.branch_ids, list(virt))
    assert np.all(f[in_virtual & (tree.radii_mm < 0.01)] == 0)
    assert np.all(f[~in_virtual] == 1)


def test_vessels_outside_field_of_view_is_one_line_error(ct):
    far = y_tree().translated([0.0, 0.0, 2000.0])
    scene = make_scene(ct, far)
    with pytest.raises(InputError, match="outside the field of view") as exc:
        render_triplet(scene, small_carm(), np.random.default_rng(0))
    assert "\n" not in str(exc.value)


def test_static_vessel_volume_is_built_once_and_scaled_exactly():
    """A fraction source's iodine volume at any concentration equals a fresh build bit for bit,
    shares the first build's bricks, and a multi-material volume refuses to be scaled."""
    from ddsa_sim.projector import ProjectorVolume
    from ddsa_sim.scene.vessels import FractionVessels, iodine_volume

    rng = np.random.default_rng(5)
    frac = np.where(rng.random((20, 30, 40)) > 0.9, rng.random((20, 30, 40)), 0.0).astype(np.float32)
    src = FractionVessels(frac, np.diag([0.3, 0.2, 0.25, 1.0]))
    first = src.iodine_volume("v", None, BolusParams(), "iodinated blood:300", 1.35, {"blood": 0.5})
    for mg_per_ml, rho in ((300.0, 1.35), (12.5, 1.07), (0.7, 1.06)):
        mat = f"iodinated blood:{mg_per_ml:g}"
        got = src.iodine_volume("v", None, BolusParams(), mat, rho, {"blood": 0.5})
        fresh = iodine_volume("v", src.fraction_volume, src.affine, mat, rho, {"blood": 0.5})
        assert np.array_equal(got.density_g_per_cc, fresh.density_g_per_cc) and got.materials == (mat,)
        assert np.array_equal(got.world_from_voxel, fresh.world_from_voxel) and got.displaces == {"blood": 0.5}
        assert got.occupancy()[0] is first.occupancy()[0]
    labels = np.zeros((2, 2, 2), np.uint8)
    labels[0] = 1
    two = ProjectorVolume("ct", np.ones((2, 2, 2), np.float32), labels, ("air", "bone"), np.eye(4))
    with pytest.raises(InputError, match="only a single-material volume"):
        two.scaled(2.0)
    with pytest.raises(InputError, match=">= 0"):
        first.scaled(-1.0)
    assert not first.scaled(0.0).density_g_per_cc.any()  # an empty capillary bed before the bolus arrives


def test_vessel_sources_of_the_wrong_type_are_refused_when_the_scene_is_made(ct):
    """Was: a bare tree failed at render time with an AttributeError deep in the projector set-up."""
    for vessels, needle in (([y_tree()], r"got VesselTree \(wrap a tree: TreeVessels\(tree\)\)"),
                            (TreeVessels(y_tree()), "must be a list of TreeVessels / FractionVessels, got TreeVessels")):
        with pytest.raises(InputError, match=needle):
            Scene(ct, vessels)
