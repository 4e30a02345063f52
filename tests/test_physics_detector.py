"""Detector: polychromatic Beer-Lambert against independent sums, modes, -ln, recording."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import xraydb

from ddsa_sim import InputError
from ddsa_sim.physics.attenuation import attenuation_matrix
from ddsa_sim.physics.detector import (
    DEEPDRR_NOISE_KERNEL,
    NEGLOG_FLOOR,
    Detector,
    integrate_spectrum,
    neglog,
)
from ddsa_sim.physics.spectra import preset_spectrum, tabulated_spectrum


@pytest.fixture(scope="module")
def spec90():
    return preset_spectrum("90KV_AL40")


def _independent_spectrum():
    """90 kVp, 4 mm Al, 12 deg straight from SpekPy (1 keV bins >= 10 keV)."""
    import spekpy as sp

    s = sp.Spek(kvp=90, th=12, dk=1.0)
    s.filter("Al", 4.0)
    k, f = s.get_spectrum()
    keep = (k >= 10) & (f > 0)
    return [float(x) for x in k[keep]], [float(x) for x in f[keep]]


def _beer_lambert_loop(energies, fluence, mu_rho_fn, area_density, energy_weighted=True):
    num = 0.0
    den = 0.0
    for e, p in zip(energies, fluence):
        w = p * e if energy_weighted else p
        num += w * math.exp(-mu_rho_fn(e) * area_density)
        den += w
    return num / den


@functools.cache
def _water_mu(e_kev):
    e = e_kev * 1000.0
    return 0.111898 * float(xraydb.mu_elam("H", e)) + 0.888102 * float(xraydb.mu_elam("O", e))


def test_polychromatic_water_slab_matches_direct_sum(spec90):
    energies, fluence = _independent_spectrum()
    np.testing.assert_allclose(spec90.energies_kev, energies)
    mu = attenuation_matrix(["water"], spec90)
    thicknesses_cm = np.array([0.0, 1.0, 5.0, 10.0, 20.0, 30.0])
    got = integrate_spectrum(thicknesses_cm[:, None] * 1.0, mu, spec90, "energy")
    for t, g in zip(thicknesses_cm, got):
        ref = _beer_lambert_loop(energies, fluence, _water_mu, t)
        assert abs(g - ref) / ref < 1e-3  # issue: within 0.1 %
        assert g == pytest.approx(ref, rel=1e-9)  # in fact exact to rounding
    # photon counting: no energy weight
    got_pc = integrate_spectrum(np.array([[20.0]]), mu, spec90, "photon")[0]
    assert got_pc == pytest.approx(_beer_lambert_loop(energies, fluence, _water_mu, 20.0, False), rel=1e-9)
    # beam hardening: effective mu decreases with thickness
    q = neglog(got[1:]) / thicknesses_cm[1:]
    assert np.all(np.diff(q) < 0)


def test_iodine_area_density_image_matches_beer_lambert(spec90):
    energies, fluence = _independent_spectrum()
    mu = attenuation_matrix(["water", "iodine"], spec90)
    rng = np.random.default_rng(0)
    a_water = np.full((16, 16), 15.0)  # 15 cm water
    a_iodine = rng.uniform(0.0, 0.1, size=(16, 16))  # up to 100 mg/cm^2 iodine
    a_iodine[0, 0] = 0.05
    img = integrate_spectrum(np.stack([a_water, a_iodine], axis=-1), mu, spec90)
    assert img.shape == (16, 16)

    def iodine_mu(e):
        return float(xraydb.mu_elam("I", e * 1000.0))

    num = sum(p * e * math.exp(-_water_mu(e) * 15.0 - iodine_mu(e) * 0.05) for e, p in zip(energies, fluence))
    den = sum(p * e for e, p in zip(energies, fluence))
    assert img[0, 0] == pytest.approx(num / den, rel=1e-9)
    # DSA-like: iodine signal = -ln(contrast) - (-ln(mask)) increases with iodine area density
    mask = integrate_spectrum(np.stack([a_water, np.zeros_like(a_iodine)], -1), mu, spec90)
    dsa = neglog(img) - neglog(mask)
    order = np.argsort(a_iodine.ravel())
    assert np.all(np.diff(dsa.ravel()[order]) >= 0)


def test_k_edge_spectrum_effect():
    """Two-line spectrum straddling the K-edge: attenuation jumps only for the line above it."""
    s = tabulated_spectrum([33.0, 33.5], [1.0, 1.0])
    mu = attenuation_matrix(["iodine"], s)
    a = 0.02
    pc = integrate_spectrum(np.array([[a]]), mu, s, "photon")[0]
    expected = 0.5 * math.exp(-6.6427 * a) + 0.5 * math.exp(-34.9245 * a)
    assert pc == pytest.approx(expected, rel=1e-3)


def test_unattenuated_is_one_and_chunking_consistent(spec90):
    mu = attenuation_matrix(["water", "bone", "iodine"], spec90)
    assert integrate_spectrum(np.zeros((3, 3)), mu, spec90) == pytest.approx(np.ones(3))
    rng = np.random.default_rng(1)
    a = rng.uniform(0, [20, 3, 0.05], size=(70000, 3))  # > one chunk of rows
    full = integrate_spectrum(a, mu, spec90)
    part = integrate_spectrum(a[-5:], mu, spec90)
    np.testing.assert_allclose(full[-5:], part, rtol=1e-13)
    assert full.dtype == np.float64 and np.all((full > 0) & (full <= 1))


def test_neglog_floor():
    assert neglog(np.array([1.0]))[0] == 0.0
    assert neglog(np.array([0.0]))[0] == pytest.approx(-math.log(NEGLOG_FLOOR))
    assert neglog(np.array([1.01]))[0] < 0  # noise above the flat field stays unbiased
    with pytest.raises(InputError):
        neglog([0.5], floor=0.0)


def test_record_quantisation_gain_and_clipping():
    det = Detector(gain=0.5, bit_depth=12, quantum_noise=False)
    out = det.record(np.array([[0.0, 3.0, 1000.0, 1e6]]), np.random.default_rng(0))
    np.testing.assert_array_equal(out, [[0.0, 2.0, 500.0, 4095.0]])  # rint(1.5) = 2, clipped at 2**12-1
    assert det.max_value == 4095


def test_record_poisson_statistics_and_flat_field():
    det = Detector(mode="photon")
    rng = np.random.default_rng(2)
    lam = np.full((200, 200), 400.0)
    rec = det.record(lam, rng)
    assert np.all(rec == np.rint(rec))
    assert rec.mean() == pytest.approx(400.0, rel=0.01)
    assert rec.var() == pytest.approx(400.0, rel=0.05)
    assert det.flat_field(rec, 400.0).mean() == pytest.approx(1.0, rel=0.01)
    # electronic noise adds variance
    det_e = Detector(mode="photon", electronic_noise_std=10.0)
    assert det_e.record(lam, rng).var() == pytest.approx(500.0, rel=0.05)


def test_record_blur_keeps_mean_and_lowers_variance():
    rng = np.random.default_rng(3)
    lam = np.full((200, 200), 1000.0)
    for det in (Detector(blur="deepdrr3x3"), Detector(blur="gaussian", sigma_px=1.0)):
        rec = det.record(lam, rng)
        assert rec.mean() == pytest.approx(1000.0, rel=0.005)
        assert rec.var() < 0.7 * 1000.0


def test_deepdrr_kernel_values():
    assert DEEPDRR_NOISE_KERNEL.sum() == pytest.approx(1.42)
    assert np.sum(DEEPDRR_NOISE_KERNEL**2) == pytest.approx(0.9944)


@pytest.mark.parametrize(
    "call",
    [
        lambda: Detector(mode="film"),
        lambda: Detector(gain=0.0),
        lambda: Detector(bit_depth=12.5),
        lambda: Detector(electronic_noise_std=-1.0),
        lambda: Detector(blur="box"),
        lambda: Detector(blur="gaussian", sigma_px=0.0),
        lambda: Detector().record(np.array([[-1.0]]), np.random.default_rng(0)),
        lambda: Detector().record(np.array([[1.0]]), 42),
        lambda: integrate_spectrum(np.zeros((2, 3)), np.zeros((2, 5)), tabulated_spectrum([30.0] * 1, [1.0])),
        lambda: integrate_spectrum(np.zeros((2,)), np.zeros((1, 1)), tabulated_spectrum([30.0], [1.0]), "x"),
    ],
)
def test_bad_input(call):
    with pytest.raises(InputError):
        call()


def test_float32_exp_within_two_ulp_of_exp():
    """The float32 path's vectorisable exp against float64 exp over every exponent it keeps, and zero
    below its cut (exp(-60) = 9e-27, far under the -ln floor)."""
    import numba

    from ddsa_sim.physics.detector import _EXP_CUTOFF, _exp_f32

    @numba.njit
    def evaluate(x):
        out = np.empty_like(x)
        for i in range(x.size):
            out[i] = _exp_f32(x[i])
        return out

    x = np.concatenate([np.linspace(_EXP_CUTOFF, 88.0, 1_000_001), np.log(np.linspace(1e-3, 2.0, 10_001))])
    x = x.astype(np.float32)
    ulp = np.abs(evaluate(x) / np.exp(x.astype(np.float64)) - 1.0) / 2.0**-24
    assert ulp.max() <= 2.0
    assert evaluate(np.array([0.0], np.float32))[0] == 1.0
    assert np.all(evaluate(np.array([-60.01, -100.0, -1e30, -np.inf], np.float32)) == 0.0)


def test_float32_spectrum_integration_agrees_with_float64(spec90):
    """The projector's float32 path (SIMD exp) against the exact float64 sum, across the
    attenuation range of real images; the same bits for any number of threads."""
    mu = attenuation_matrix(["water", "bone", "iodine"], spec90)
    rng = np.random.default_rng(3)
    a = rng.uniform(0, [40, 8, 0.1], size=(20001, 3))  # > two blocks of rows, split unevenly
    exact = integrate_spectrum(a, mu, spec90)
    fast = integrate_spectrum(a, mu, spec90, dtype=np.float32, threads=1)
    assert fast.dtype == np.float32 and exact.min() < 1e-4  # -ln I up to 11
    np.testing.assert_allclose(fast, exact, rtol=1e-5)
    for threads in (2, 3):
        assert np.array_equal(integrate_spectrum(a, mu, spec90, dtype=np.float32, threads=threads), fast)
    np.testing.assert_allclose(integrate_spectrum(a, mu, spec90, "photon", np.float32),
                               integrate_spectrum(a, mu, spec90, "photon"), rtol=1e-5)
