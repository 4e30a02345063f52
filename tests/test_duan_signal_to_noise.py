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
    quarter = AugmentConfig(p_dose=1.0, dose_fraction_range=(0.25, 0.25))  # noise x 2, no floor
    assert snr.augmented(ratios, dose, quarter, draws=3) == pytest.approx(np.repeat(ratios, 3) / 2, rel=1e-6)
    # p_dose 0.5 and f log-uniform in [0.01, 1]: each frame kept or lowered, never raised, by at most 10x
    half = snr.augmented(ratios, dose, AugmentConfig(p_dose=0.5, dose_fraction_range=(0.01, 1.0)), draws=200)
    scale = half / np.repeat(ratios, 200)
    assert scale.max() <= 1 + 1e-6 and scale.min() >= 0.1 - 1e-6 and 0.4 < np.mean(scale > 1 - 1e-6) < 0.6
