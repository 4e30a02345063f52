"""Number validation written once (ddsa_sim.checks) and used by geometry and physics: one line naming the field."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ddsa_sim import InputError
from ddsa_sim.checks import as_number, check_array, check_finite, check_integer, check_positive, check_range
from ddsa_sim.geometry import CArm
from ddsa_sim.physics import attenuation, detector, noise, scatter, spectra


def _message(call) -> str:
    with pytest.raises(InputError) as err:
        call()
    msg = str(err.value)
    assert "\n" not in msg
    return msg


def test_numbers_pass_through_as_float():
    assert as_number("x", "2.5") == 2.5 and isinstance(check_positive("x", np.float32(2.0)), float)
    assert check_positive("x", 0, allow_zero=True) == 0.0
    assert check_finite("x", -3) == -3.0
    assert check_range("x", 1.0, 0.0, 1.0, low_open=True) == 1.0
    assert check_integer("n", 3.0) == 3 and isinstance(check_integer("n", 3.0), int)
    a = np.array([0.0, 1.0])
    assert check_array("a", a) is a


@pytest.mark.parametrize("call, text", [
    (lambda: as_number("kvp", "high"), "kvp must be a number, got 'high'"),
    (lambda: check_finite("kvp", math.inf), "kvp must be finite, got inf"),
    (lambda: check_positive("gain", 0.0), "gain must be > 0, got 0.0"),
    (lambda: check_positive("gain", math.nan), "gain must be > 0, got nan"),
    (lambda: check_positive("std", -1, allow_zero=True), "std must be >= 0, got -1"),
    (lambda: check_range("grid tp", 0.0, 0.0, 1.0, low_open=True), "grid tp must be in (0, 1], got 0.0"),
    (lambda: check_range("eff", 1.5, 0.0, 1.0), "eff must be in [0, 1], got 1.5"),
    (lambda: check_integer("n_nodes", 2.5), "n_nodes must be an integer >= 1, got 2.5"),
    (lambda: check_integer("n_nodes", "x"), "n_nodes must be an integer >= 1, got 'x'"),
    (lambda: check_integer("bits", 40, 1, 32), "bits must be an integer in [1, 32], got 40"),
    (lambda: check_array("image", np.array([1.0, -1.0])), "image must be finite and >= 0"),
    (lambda: check_array("energies", np.array([0.0, 1.0]), positive=True), "energies must be finite and > 0"),
    (lambda: check_array("image", np.array([np.nan])), "image must be finite and >= 0"),
])
def test_bad_value_is_one_line_naming_it(call, text):
    assert _message(call) == text


@pytest.mark.parametrize("call, start", [
    (lambda: CArm(pixel_mm=0.0), "pixel_mm must be > 0"),
    (lambda: spectra.spekpy_spectrum(-80.0), "kvp must be > 0"),
    (lambda: spectra.spekpy_spectrum(80.0, filter_al_mm=-1.0), "filter_al_mm must be >= 0"),
    (lambda: spectra.get_spectrum("spekpy:kvp=80,al=x"), "spectrum al must be a number"),
    (lambda: spectra.tabulated_spectrum([10.0, -20.0], [1.0, 1.0]), "spectrum energies_kev must be finite and > 0"),
    (lambda: spectra.tabulated_spectrum([10.0, 20.0], [1.0, -1.0]), "spectrum fluence must be finite and >= 0"),
    (lambda: detector.Detector(gain=0.0), "detector gain must be > 0"),
    (lambda: detector.Detector(electronic_noise_std=-1.0), "detector electronic_noise_std must be >= 0"),
    (lambda: detector.Detector(bit_depth=40), "detector bit_depth (or None) must be an integer in [1, 32]"),
    (lambda: detector.Detector(blur="gaussian", sigma_px=0.0), "gaussian blur sigma_px must be > 0"),
    (lambda: detector.Detector().flat_field(np.ones(3), 0.0), "photons_per_pixel must be finite and > 0"),
    (lambda: detector.Detector().record(-np.ones(3), np.random.default_rng(0)),
     "expected_photons_image must be finite and >= 0"),
    (lambda: detector.neglog(np.ones(3), floor=0.0), "neglog floor must be finite and > 0"),
    (lambda: detector.DetectorResponse(scintillator_mm=0.0), "detector scintillator_mm must be > 0"),
    (lambda: noise.photons_per_pixel_from_mas(-1.0, 80.0, 1000.0, 0.2), "mas must be > 0"),
    (lambda: noise.noise_kernel(-1.0), "correlation sigma_px must be >= 0"),
    (lambda: noise.add_quantum_noise(-np.ones((2, 2)), 100.0, np.random.default_rng(0)),
     "relative_intensity must be finite and >= 0"),
    (lambda: noise.add_electronic_noise(np.ones(3), -1.0, 100.0, np.random.default_rng(0)), "std_photons must be >= 0"),
    (lambda: scatter.ScatterParams(strength_at_10cm=0.0), "scatter strength_at_10cm must be > 0"),
    (lambda: scatter.ScatterParams(n_nodes=0), "scatter n_nodes must be an integer >= 1"),
    (lambda: scatter.AntiScatterGrid(primary_transmission=1.2), "grid primary_transmission must be in (0, 1]"),
    (lambda: scatter.scatter_kernel_superposition(np.ones((4, 4)), np.ones((4, 4)), pixel_mm=0.0),
     "pixel_mm must be > 0"),
    (lambda: attenuation.iodinated_blood(-1.0), "iodine_mg_per_ml must be >= 0"),
    (lambda: attenuation.Material("x", {"H": 1.0}, 0.0), "material 'x' density_g_per_cc must be > 0"),
    (lambda: attenuation.Material("x", {"H": "a"}, 1.0), "material 'x' mass fraction of 'H' must be a number"),
])
def test_geometry_and_physics_name_the_bad_argument(call, start):
    assert _message(call).startswith(start)
