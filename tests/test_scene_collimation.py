"""Collimated fields in rendered frames: fluence, targets, noise and scatter (scene + physics.collimation)."""

from __future__ import annotations

import numpy as np
import pytest
from scene_helpers import cylinder_ct, make_scene, slab_ct, small_carm

from ddsa_sim.physics.collimation import Collimator
from ddsa_sim.physics.scatter import ScatterGeometry, scatter_kernel_superposition, water_equivalent_thickness_mm
from ddsa_sim.scene import render_frames
from ddsa_sim.scene.recording import ScatterSettings

#: ompMC Monte Carlo SPR at the centre of a 20 cm water slab, 90 kVp, no grid, square fields of side
#: 10 / 15 / 20 cm at the isocenter on the MobileCArm (docs/physics.md section 5, experiments/validate_scatter.py)
MC_SPR_90KV_20CM = {100.0: 0.444, 150.0: 0.817, 200.0: 1.297}
#: HU of water under the CT density map (0.001029 HU + 1.030 = 1.000 g/cm^3)
WATER_HU = -29.0


def _square_field(carm, side_at_isocenter_mm: float, **kwargs) -> Collimator:
    """Blades leaving a centred square of ``side_at_isocenter_mm`` at the isocenter."""
    side_det = side_at_isocenter_mm * carm.source_to_detector_distance / carm.source_to_isocenter_vertical_distance
    blade = 0.5 * (1.0 - side_det / (carm.sensor_width * carm.pixel_mm))
    return Collimator(left=blade, right=blade, top=blade, bottom=blade, **kwargs)


@pytest.fixture(scope="module")
def ct():
    return cylinder_ct()


def test_fluence_is_leakage_outside_and_unchanged_well_inside(ct):
    carm = small_carm()
    coll = Collimator(left=0.4, right=0.1, top=0.35, bottom=0.05)  # cuts through the tree
    open_ = render_frames(make_scene(ct), carm, np.random.default_rng(0))
    f = render_frames(make_scene(ct, collimator=coll), carm, np.random.default_rng(0))
    rows, cols = np.mgrid[0:64, 0:64]
    outside = (cols < 64 * 0.4 - 2) | (cols >= 64 * 0.9 + 2) | (rows < 64 * 0.35 - 2) | (rows >= 64 * 0.95 + 2)
    inside = (cols >= 64 * 0.4 + 2) & (cols < 64 * 0.9 - 2) & (rows >= 64 * 0.35 + 2) & (rows < 64 * 0.95 - 2)
    np.testing.assert_allclose(f.mask_primary[outside], coll.leakage * open_.mask_primary[outside], rtol=1e-6)
    np.testing.assert_allclose(f.mask_primary[inside], open_.mask_primary[inside], rtol=1e-6)
    for k in ("mask", "mask_clean"):
        np.testing.assert_allclose(getattr(f, k)[inside], getattr(open_, k)[inside], atol=1e-5)
    for k in ("contrast", "dsa_target", "iodine_mg_per_cm2"):
        np.testing.assert_allclose(getattr(f, k)[0][inside], getattr(open_, k)[0][inside], atol=1e-5)
    # outside: the recorded -ln is saturated at one quantum per pixel, the targets are 0
    expected = -np.log(np.maximum(coll.leakage * open_.mask_primary[outside], 1.0 / f.quanta_per_pixel))
    np.testing.assert_allclose(f.mask[outside], expected, rtol=1e-5)
    assert np.all(f.dsa_target[0][outside] == 0) and np.all(f.vessel_mask[0][outside] == 0)
    assert np.all(f.iodine_mg_per_cm2[0][outside] == 0)
    assert open_.vessel_mask[0][outside].sum() > 0 and f.vessel_mask[0][inside].sum() > 0  # the tree spans both


def test_quantum_noise_follows_the_collimated_fluence():
    """Behind a blade transmitting 10 % the -ln variance is 10x the open field's (Poisson: var = 1/N)."""
    carm = small_carm(64, 3.0)
    coll = Collimator(left=0.5 - 8 / 64, leakage=0.1, source_to_collimator_mm=500.0)
    f = render_frames(make_scene(slab_ct(200.0), collimator=coll, noise=True, noise_correlation="none"), carm,
                      np.random.default_rng(3))
    d = f.conventional_dsa[0]  # contrast - mask: two independent noise realisations, no slab structure
    ratio = d[:, 4:20].var() / d[:, 44:60].var()  # behind the blade / open
    assert ratio == pytest.approx(10.0, rel=0.12)


def test_scatter_comes_from_the_irradiated_field_only():
    carm = small_carm(96, 5.0)
    scatter = ScatterSettings(enabled=True, grid=None)
    slab = slab_ct(200.0)
    slab = slab.with_data(np.full(slab.shape, WATER_HU, np.float32))  # the MC's water (1.00 g/cm^3)
    spr, open_scatter = {}, None
    for side in (None, *MC_SPR_90KV_20CM):
        coll = None if side is None else _square_field(carm, side)
        scene = make_scene(slab, scatter=scatter, collimator=coll)
        f = render_frames(scene, carm, np.random.default_rng(0))
        half = 12 if side is None else int(round(side * 1020 / 530 / 4 / 5.0 / 2))  # quarter of the field side
        c = slice(48 - half, 48 + half)
        spr[side] = float((f.mask_scatter[c, c] / f.mask_primary[c, c]).mean())
        if side is None:
            open_primary, open_scatter = f.mask_primary, f.mask_scatter
            continue
        # the source is the irradiated primary; the thickness is the patient's (from the open primary)
        t = water_equivalent_thickness_mm(open_primary, scene.projector.spectrum, scene.projector.mode)
        geometry = ScatterGeometry(carm.source_to_detector_distance, carm.source_to_isocenter_vertical_distance)
        expected = scatter_kernel_superposition(f.mask_primary, t, carm.pixel_mm, spectrum=scene.projector.spectrum,
                                                geometry=geometry)
        np.testing.assert_allclose(f.mask_scatter, expected, rtol=1e-9, atol=1e-15)
        assert np.all(f.mask_scatter < open_scatter)  # less irradiated volume, less scatter everywhere
    sides = sorted(MC_SPR_90KV_20CM)
    assert spr[sides[0]] < spr[sides[1]] < spr[sides[2]] < spr[None]
    for side in sides:  # the scatter model's documented accuracy against this MC: within 25 %
        assert spr[side] == pytest.approx(MC_SPR_90KV_20CM[side], rel=0.25)
