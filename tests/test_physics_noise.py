"""Noise: 1/N0 scaling of -ln variance, independence of realisations, correlation, exposure."""

from __future__ import annotations

import numpy as np
import pytest

from ddsa_sim import InputError
from ddsa_sim.physics.detector import neglog
from ddsa_sim.physics.noise import (
    add_electronic_noise,
    add_quantum_noise,
    noise_kernel,
    photons_per_pixel_from_mas,
)

SHAPE = (256, 256)


@pytest.fixture(autouse=True)
def _cache_in_tmp(monkeypatch, tmp_path):
    monkeypatch.setenv("DDSA_SIM_CACHE_DIR", str(tmp_path / "cache"))


@pytest.mark.parametrize("correlation", ["none", "deepdrr3x3", 1.5])
def test_neglog_variance_scales_as_one_over_n0(correlation):
    flat = np.full(SHAPE, 0.3)  # a flat region behind some object
    rng = np.random.default_rng(10)
    v = {}
    for n0 in (1e3, 1e4):
        noisy = add_quantum_noise(flat, n0 * flat, rng, correlation=correlation)  # photon counting: N0 I quanta
        v[n0] = neglog(noisy)[4:-4, 4:-4].var()
    assert v[1e3] / v[1e4] == pytest.approx(10.0, rel=0.10)
    # and the absolute level is the Poisson one: var(-ln I) ~ 1 / (N0 I); kernels keep variance
    assert v[1e4] == pytest.approx(1.0 / (1e4 * 0.3), rel=0.10)


def test_mean_is_preserved():
    rng = np.random.default_rng(11)
    img = np.linspace(0.05, 1.0, SHAPE[0] * SHAPE[1]).reshape(SHAPE)
    noisy = add_quantum_noise(img, 5000.0 * img, rng, correlation="deepdrr3x3")
    assert (noisy - img).mean() == pytest.approx(0.0, abs=2e-4)


def test_mask_and_contrast_noise_independent():
    rng = np.random.default_rng(12)
    mask = np.full(SHAPE, 0.4)
    contrast = mask.copy()
    contrast[100:150, :] *= 0.8  # a vessel band
    nm = add_quantum_noise(mask, 2000.0 * mask, rng, correlation="deepdrr3x3") - mask
    nc = add_quantum_noise(contrast, 2000.0 * contrast, rng, correlation="deepdrr3x3") - contrast
    r = np.corrcoef(nm.ravel(), nc.ravel())[0, 1]
    assert abs(r) < 4.0 / np.sqrt(nm.size)  # ~0 within sampling error (4 sigma)
    # the DSA difference carries the sum of both variances
    ratio = (nm - nc).var() / (nm.var() + nc.var())
    assert ratio == pytest.approx(1.0, rel=0.03)
    # same seed -> same realisation (reproducible)
    a = add_quantum_noise(mask, 2000.0, np.random.default_rng(5))
    b = add_quantum_noise(mask, 2000.0, np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)


def test_correlation_shapes_neighbour_covariance():
    rng = np.random.default_rng(13)
    flat = np.ones(SHAPE)
    white = add_quantum_noise(flat, 1e4, rng, "none") - 1
    corr = add_quantum_noise(flat, 1e4, rng, "deepdrr3x3") - 1

    def lag1(x):
        return np.corrcoef(x[:, :-1].ravel(), x[:, 1:].ravel())[0, 1]

    assert abs(lag1(white)) < 0.02
    assert lag1(corr) > 0.15  # horizontal weights 0.11 next to 0.98 give ~0.23 correlation


def test_gaussian_noise_kernel_unit_energy():
    k = noise_kernel(2.0)
    assert np.sum(k**2) == pytest.approx(1.0)
    assert noise_kernel("none") is None and noise_kernel(0) is None
    assert noise_kernel("gaussian:2").shape == k.shape


def test_electronic_noise():
    rng = np.random.default_rng(14)
    out = add_electronic_noise(np.full(SHAPE, 0.5), std_photons=5.0, photons_per_pixel=1000.0, rng=rng)
    assert out.std() == pytest.approx(5.0 / 1000.0, rel=0.03)
    assert out.mean() == pytest.approx(0.5, abs=1e-4)


def test_photons_from_mas_inverse_square_and_pixel_area():
    import spekpy as sp

    s = sp.Spek(kvp=80, th=12, dk=1.0)
    s.filter("Al", 3.0)
    k, f = s.get_spectrum()
    per_mm2_at_1m = f[k >= 10].sum() / 100.0  # photons/cm^2/mAs -> /mm^2
    n = photons_per_pixel_from_mas(2.0, 80, sid_mm=1200.0, pixel_mm=0.2, filter_al_mm=3.0)
    assert n == pytest.approx(per_mm2_at_1m * 2.0 * (1000 / 1200) ** 2 * 0.04, rel=1e-9)
    n2 = photons_per_pixel_from_mas(2.0, 80, sid_mm=600.0, pixel_mm=0.4, filter_al_mm=3.0)
    assert n2 / n == pytest.approx(4.0 * 4.0)


@pytest.mark.parametrize(
    "call",
    [
        lambda: add_quantum_noise(np.ones((4, 4)), -1.0, np.random.default_rng(0)),
        lambda: add_quantum_noise(np.ones((4, 4)), 100.0, np.random.default_rng(0), correlation="pink"),
        lambda: add_quantum_noise(-np.ones((4, 4)), 100.0, np.random.default_rng(0)),
        lambda: add_quantum_noise(np.ones((4, 4)), 100.0, 7),
        lambda: add_electronic_noise(np.ones((4, 4)), -1.0, 100.0, np.random.default_rng(0)),
        lambda: photons_per_pixel_from_mas(-1.0, 80, 1000, 0.2),
        lambda: photons_per_pixel_from_mas(1.0, -80, 1000, 0.2),
        lambda: photons_per_pixel_from_mas(1.0, 80, 0, 0.2),
    ],
)
def test_bad_input(call):
    with pytest.raises(InputError):
        call()


@pytest.mark.parametrize("correlation", ["deepdrr3x3", 1.5])
def test_correlated_noise_keeps_its_variance_at_the_edges_and_corners(correlation):
    """Every pixel's correlated noise sums independent draws, so its variance is lambda x sum w^2 (0.9944 lambda
    for DeepDRR's kernel, lambda for the unit-energy Gaussian) on the edges and in the corners as inside: 2000
    frames of 24 x 24 (one pixel's variance to 3.2 %; an edge's 16 pixels, correlated over the kernel's reach, to
    about 1.5 %), each edge's mean within 4 % (reflected edges gave +13 % on an edge and +42 % in a corner with
    DeepDRR's kernel), the four corners' mean within 6 %."""
    from ddsa_sim.physics.noise import noise_kernel

    lam = 1e4
    noise = add_quantum_noise(np.ones((2000, 24, 24)), lam, np.random.default_rng(21), correlation) - 1.0
    var = noise.var(axis=0) * lam / np.sum(noise_kernel(correlation) ** 2)  # 1 everywhere
    inside = slice(4, -4)
    for edge in (var[0, inside], var[-1, inside], var[inside, 0], var[inside, -1]):
        assert edge.mean() == pytest.approx(1.0, rel=0.04)
    assert var[inside, inside].mean() == pytest.approx(1.0, rel=0.02)
    assert np.mean([var[0, 0], var[0, -1], var[-1, 0], var[-1, -1]]) == pytest.approx(1.0, rel=0.06)
