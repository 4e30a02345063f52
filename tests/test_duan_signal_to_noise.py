"""experiments/duan/signal_to_noise.py: inspect's per-image signal/noise, as stored and after lower-dose frames."""

from __future__ import annotations

import numpy as np
import pytest

from ddsa_sim.export.inspect import inspect_store
from ddsa_sim.training.config import AugmentConfig
from ddsa_sim.training.synthetic import write_synthetic_store


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return write_synthetic_store(tmp_path_factory.mktemp("snr") / "s.zarr", splits={"train": 2, "test": 2}, per_ct=3)


def test_per_image_ratios_have_inspects_median(experiment_script, store):
    snr = experiment_script("duan/signal_to_noise.py")
    ratios, dose = snr.signal_to_noise(store, "test")
    assert ratios.size == 6 and np.isnan(dose).all()  # the phantoms record no dose
    assert np.median(ratios) == pytest.approx(inspect_store(store).conspicuity["test"]["signal_to_noise"], rel=1e-12)


def test_a_quarter_of_the_dose_halves_every_ratio(experiment_script, store):
    snr = experiment_script("duan/signal_to_noise.py")
    ratios, dose = snr.signal_to_noise(store, "test")
    quarter = AugmentConfig(p_dose=1.0, dose_fraction_range=(0.25, 0.25), p_contrast=0.0)  # noise x 2, no floor
    assert snr.augmented(ratios, dose, quarter, draws=3) == pytest.approx(np.repeat(ratios, 3) / 2, rel=1e-6)
    # and the iodine at 0.6 of its concentration: signal x 0.6; a global multiply scales signal and noise alike
    fainter = quarter.model_copy(update={"p_contrast": 1.0, "contrast_range": (0.6, 0.6), "p_multiply": 1.0})
    assert snr.augmented(ratios, dose, fainter, draws=3) == pytest.approx(np.repeat(ratios, 3) * 0.3, rel=1e-6)
    # p_dose 0.5 and f log-uniform in [0.01, 1]: each frame kept or lowered, never raised, by at most 10x
    half = snr.augmented(ratios, dose, AugmentConfig(p_dose=0.5, dose_fraction_range=(0.01, 1.0), p_contrast=0.0),
                         draws=200)
    scale = half / np.repeat(ratios, 200)
    assert scale.max() <= 1 + 1e-6 and scale.min() >= 0.1 - 1e-6 and 0.4 < np.mean(scale > 1 - 1e-6) < 0.6


@pytest.mark.parametrize("width_px", [8.0, 12.0, 16.0])
def test_iodine_per_width_of_a_tube_is_its_amplitude_per_pixel(experiment_script, width_px):
    """A cylinder's projection peaks at a d on its axis (d its width, a the attenuation per pixel of path): the
    medial axis finds the peak, the width comes from the thresholded edge (up to a pixel wider or narrower)."""
    snr = experiment_script("duan/signal_to_noise.py")
    probe = experiment_script("duan/direction_probe.py")
    t = probe.tube((96, 96), width_px, 30.0)
    per_width, width = snr.medial_iodine_per_width(t)
    assert np.median(width) == pytest.approx(width_px, abs=1.5)
    assert np.median(per_width) == pytest.approx(probe.AMPLITUDE_PER_PX, rel=1.5 / width_px)
    half, _ = snr.medial_iodine_per_width(0.5 * t)  # half the concentration: half the iodine per pixel of width
    assert np.median(half) == pytest.approx(np.median(per_width) / 2, rel=1.5 / width_px)


def test_target_gain_is_the_configs_multiply_times_contrast(experiment_script):
    snr = experiment_script("duan/signal_to_noise.py")
    fixed = AugmentConfig(p_multiply=0.0, p_contrast=1.0, contrast_range=(0.5, 0.5))
    assert snr.target_gain(fixed, 50) == pytest.approx(np.full(50, 0.5))
    faint = AugmentConfig(p_multiply=0.5, multiply_range=(0.7, 1.3), p_contrast=0.5, contrast_range=(0.3, 1.3))
    gain = snr.target_gain(faint, 20000)
    assert gain.min() >= 0.3 * 0.7 - 1e-6 and gain.max() <= 1.3 * 1.3 + 1e-6
    assert np.mean(gain == 1.0) == pytest.approx(0.25, abs=0.02)  # neither drawn
    # below 0.49: contrast alone below it (1/4 of the frames, P = 0.19), or multiply m times contrast c with
    # c < 0.49 / m (1/4, P = (0.49 ln(1.3 / 0.7) - 0.3 x 0.6) / 0.6); multiply alone never goes below 0.7
    expected = 0.25 * 0.19 + 0.25 * (0.49 * np.log(1.3 / 0.7) - 0.3 * 0.6) / 0.6
    assert np.mean(gain < 0.49) == pytest.approx(expected, abs=0.01)
