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


def _presampled_lsf(pixel_mm: float, k: int, mtf50: float, per_pixel: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Presampled line spread function (detector mm, weights summing to 1) of a sharp iodine edge moved across one
    pixel in ``1 / per_pixel`` steps (no focal spot, noise, scatter or heel; 60 keV)."""
    from ddsa_sim.geometry import CArm
    from ddsa_sim.physics.blur import BlurSettings
    from ddsa_sim.physics.heel import HeelSettings
    from ddsa_sim.scene import ScatterSettings, Scene
    from ddsa_sim.scene.vessels import FractionVessels

    air_aff = np.diag([10.0, 10.0, 10.0, 1.0])
    air_aff[:3, 3] = -25.0
    air = from_array(np.full((6, 6, 6), -1000.0, np.float32), air_aff, "air")
    carm = CArm(sensor_height=8, sensor_width=32, pixel_mm=pixel_mm)
    magnification = carm.source_to_detector_distance / carm.source_to_isocenter_vertical_distance
    shifts = (np.arange(-4 * per_pixel, 4 * per_pixel) + 0.5) / per_pixel * pixel_mm / magnification
    edge = []
    for s in shifts:  # an iodine block whose face lies at world x = s (the central column's line at any depth)
        aff = np.diag([1.0, 0.5, 1.0, 1.0])
        aff[:3, 3] = [s + 0.5, -0.75, -9.5]
        scene = Scene(air, [FractionVessels(np.ones((40, 4, 20), np.float32), aff)], spectrum="mono:60",
                      iodine_mg_per_ml=100, noise=False, scatter=ScatterSettings(enabled=False),
                      heel=HeelSettings(enabled=False), method="siddon", supersample=k,
                      blur=BlurSettings(focal_spot_mm=0.0, detector_mtf50_cycles_per_mm=mtf50))
        edge.append(np.exp(-render_frames(scene, carm, np.random.default_rng(0)).dsa_target[0][4, 16]))
    e = (np.array(edge) - 1.0) / (min(edge) - 1.0)
    lsf = np.abs(np.diff(e))
    return (shifts[:-1] + shifts[1:]) / 2 * magnification, lsf / lsf.sum()


@pytest.mark.parametrize("pixel_mm, k", [(0.194, 1), (0.194, 4), (0.582, 2)])
def test_presampled_mtf_is_the_light_spread_times_the_pixel_aperture_once(pixel_mm, k):
    """The documented model (docs/physics.md section 6): presampled MTF = Gaussian light spread x sinc(a f), LSF
    variance sigma^2 + a^2 / 12. With k x k rays the light spread had been applied after the pixel mean with a kernel
    integrated over the pixel, the aperture twice: variance sigma^2 + 2 a^2 / 12 (0.0227 instead of 0.0196 mm^2 at
    0.194 mm, k = 4; 0.0729 instead of 0.0447 at 0.582 mm)."""
    mtf50 = 1.46
    sigma = np.sqrt(np.log(2.0) / 2.0) / (np.pi * mtf50)
    x, lsf = _presampled_lsf(pixel_mm, k, mtf50)
    mean = (lsf * x).sum()
    variance = (lsf * (x - mean) ** 2).sum()
    expected = sigma**2 + pixel_mm**2 / 12.0
    # k = 2 samples the aperture at 2 x 2 points: variance a^2 (k^2 - 1) / (12 k^2) + the sub-grid's a^2 / (12 k^2)
    assert abs(variance - expected) < 0.04 * expected, (variance, expected)
    f = 0.5 / pixel_mm * 0.8  # 80 % of the Nyquist frequency
    mtf = abs((lsf * np.exp(-2j * np.pi * f * x)).sum())
    assert abs(mtf - np.exp(-2 * np.pi**2 * sigma**2 * f**2) * np.sinc(f * pixel_mm)) < 0.03, mtf
