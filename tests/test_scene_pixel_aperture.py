"""Pixel aperture (``Scene.supersample``): a pixel records the mean intensity over its area, against
Beer-Lambert on each part of a half-covered pixel and the iodine of a thin tube (pi r^2 c per length)."""

from __future__ import annotations

import numpy as np
import pytest
from scene_helpers import make_scene, slab_ct, small_carm

from ddsa_sim import InputError
from ddsa_sim.scene import render_frames
from ddsa_sim.scene.vessels import TreeVessels
from ddsa_sim.volumes import from_array
from vessel_models.tree import VesselTree


def half_space_ct() -> object:
    """Bone (1500 HU) at world x < 0, air elsewhere: the plane x = 0 holds the source and the central ray,
    so its shadow is the detector's middle column line at every depth."""
    n, s = 40, 2.0
    hu = np.full((n, 10, n), -1000.0, np.float32)
    hu[: n // 2] = 1500.0
    aff = np.diag([s, s, s, 1.0])
    aff[:3, 3] = -np.array([(n - 1) / 2 * s, 4.5 * s, (n - 1) / 2 * s])
    return from_array(hu, aff, "half-space")


@pytest.mark.parametrize("k", [2, 8])
def test_a_half_covered_pixel_records_the_mean_intensity_of_its_halves(k):
    """The shadow's edge runs through the middle of column 32 of a 65-pixel detector: with k x k rays the
    column's intensity is the mean of the covered and the open neighbours' intensities (Beer-Lambert on
    each half; Siddon marches the voxel edge exactly), not the intensity of their mean line integral."""
    carm = small_carm(65, 2.0)
    assert carm.projection_matrix[0] @ [10, 0, 0, 1] / (carm.projection_matrix[2] @ [10, 0, 0, 1]) < 32.5  # x: -u
    mask = render_frames(make_scene(half_space_ct(), method="siddon", supersample=k), carm,
                         np.random.default_rng(0)).mask_clean.astype(np.float64)
    rows = slice(20, 45)
    covered, edge, open_ = mask[rows, 33], mask[rows, 32], mask[rows, 31]
    assert covered.min() > 1.5 and open_.max() < 1e-3  # bone on one side, air on the other
    np.testing.assert_allclose(edge, -np.log((np.exp(-covered) + np.exp(-open_)) / 2), rtol=1e-4)
    assert np.all(edge < (covered + open_) / 2 - 0.25)  # far from the mean line integral (0.80 vs 0.51)


def test_one_ray_per_pixel_samples_the_pixel_centre():
    """Without supersampling the middle column's ray runs along the edge plane: wholly on one side."""
    mask = render_frames(make_scene(half_space_ct(), method="siddon"), small_carm(65, 2.0),
                         np.random.default_rng(0)).mask_clean
    assert mask[32, 32] < 1e-3 or mask[32, 32] > 1.5


def thin_tube(radius_mm: float, tilt_deg: float, length_mm: float = 80.0) -> VesselTree:
    """A straight tube along world z tilted by ``tilt_deg`` towards x, centred at the origin."""
    z = np.linspace(-length_mm / 2, length_mm / 2, 17)
    pos = np.column_stack([np.tan(np.deg2rad(tilt_deg)) * z, np.zeros_like(z), z])
    return VesselTree(pos, np.full(17, radius_mm), np.arange(-1, 16), np.zeros(17, int), np.zeros(17, int))


@pytest.mark.parametrize(("k", "spread"), [(1, 0.2), (8, 0.01)])
def test_thin_tube_iodine_per_row_against_pi_r2_c(k, spread):
    """A 1 mm lumen 4 deg off the detector's rows, 1 mm pixels at the isocenter: each row's iodine (sum of
    mg/cm^2 x the pixel width at the tube) is pi r^2 c / cos(tilt) of the tube. One ray per pixel sees
    the lumen in some rows and misses it in others (dashes, >= 20 % off); 8 x 8 rays within 1 %."""
    r_mm, tilt = 0.5, 4.0
    scene = make_scene(slab_ct(100.0), thin_tube(r_mm, tilt), supersample=k)
    scene.vessels = [TreeVessels(thin_tube(r_mm, tilt), spacing_mm=0.1)]
    carm = small_carm(64, 2.0)
    frames = render_frames(scene, carm, np.random.default_rng(0))
    width_cm = carm.pixel_mm * carm.source_to_isocenter_vertical_distance / carm.source_to_detector_distance / 10
    per_row = frames.iodine_mg_per_cm2[0][16:48].sum(axis=1) * width_cm  # mg per cm along z (rows: world z)
    truth = np.pi * (r_mm / 10) ** 2 * scene.iodine_mg_per_ml / np.cos(np.deg2rad(tilt))
    error = np.abs(per_row / truth - 1)
    assert (error.max() > spread) if k == 1 else (error.max() < spread)


def test_supersampling_keeps_a_uniform_field_and_its_noise():
    """Behind a uniform slab every ray is the same: the frames' means equal one ray's, and the noise (the
    pixel's quanta and second moment, averaged) is the same realisation's spread."""
    frames = {k: render_frames(make_scene(slab_ct(150.0), noise=True, supersample=k), small_carm(64, 4.0),
                               np.random.default_rng(3)) for k in (1, 3)}
    one, three = frames[1], frames[3]
    background = (slice(0, 64), slice(0, 12))  # left of the trees
    np.testing.assert_allclose(three.mask_clean[background], one.mask_clean[background], rtol=1e-5)
    noise = {k: float(np.std((f.mask - f.mask_clean)[background])) for k, f in frames.items()}
    assert noise[3] == pytest.approx(noise[1], rel=0.08)


def test_supersample_must_be_a_positive_integer():
    for bad in (0, 1.5, True):
        with pytest.raises(InputError, match="supersample"):
            make_scene(supersample=bad)
