"""Scatter: SPR of water slabs, exact energy conservation, kernel spread, grid."""

from __future__ import annotations

import numpy as np
import pytest

from ddsa_sim import InputError
from ddsa_sim.physics.attenuation import attenuation_matrix
from ddsa_sim.physics.detector import integrate_spectrum
from ddsa_sim.physics.scatter import (
    AntiScatterGrid,
    ScatterParams,
    add_scatter,
    scatter_kernel_superposition,
    spr_model,
    water_equivalent_thickness_mm,
)
from ddsa_sim.physics.spectra import preset_spectrum


@pytest.fixture(scope="module")
def spec():
    return preset_spectrum("90KV_AL40")


def _slab_primary(spec, thickness_mm, shape=(96, 128)):
    mu = attenuation_matrix(["water"], spec)
    i = integrate_spectrum(np.array([[thickness_mm / 10.0]]), mu, spec)[0]
    return np.full(shape, i)


def test_spr_model_documented_values_and_literature_range():
    p = ScatterParams()
    assert spr_model(100.0, p) == pytest.approx(1.5)
    assert spr_model(200.0, p) == pytest.approx(4.5)
    assert spr_model(0.0, p) == 0.0
    # literature ranges without grid, large field (docs/physics.md)
    assert 1.0 <= spr_model(100.0, p) <= 2.0
    assert 3.0 <= spr_model(200.0, p) <= 6.0
    t = np.linspace(0, 400, 50)
    assert np.all(np.diff(spr_model(t, p)) > 0)


@pytest.mark.parametrize("thickness_mm, expected_spr", [(100.0, 1.5), (200.0, 4.5)])
def test_water_slab_spr_follows_model(spec, thickness_mm, expected_spr):
    primary = _slab_primary(spec, thickness_mm)
    # thickness given explicitly
    s = scatter_kernel_superposition(primary, np.full(primary.shape, thickness_mm), pixel_mm=2.0)
    np.testing.assert_allclose(s / primary, expected_spr, rtol=1e-9)
    # thickness derived from -ln(P) through the polychromatic water curve
    s2 = scatter_kernel_superposition(primary, None, pixel_mm=2.0, spectrum=spec)
    np.testing.assert_allclose(s2 / primary, expected_spr, rtol=0.01)


def test_water_equivalent_thickness_inverts_projection(spec):
    t = np.array([0.0, 12.3, 100.0, 250.0, 480.0])
    mu = attenuation_matrix(["water"], spec)
    i = integrate_spectrum((t / 10.0)[:, None], mu, spec)
    np.testing.assert_allclose(water_equivalent_thickness_mm(i, spec), t, atol=0.05)


def test_energy_conserved_for_nonuniform_object():
    rng = np.random.default_rng(20)
    h, w = 80, 100
    yy, xx = np.mgrid[:h, :w]
    t = np.clip(250.0 - 0.1 * ((xx - 60) ** 2 + (yy - 30) ** 2), 0, None)  # a dome, air outside
    t += rng.uniform(0, 5, size=t.shape) * (t > 0)
    primary = np.exp(-0.02 * t)
    p = ScatterParams(sigma0_mm=40.0, sigma_slope_mm_per_cm=3.0, n_nodes=5)
    s = scatter_kernel_superposition(primary, t, pixel_mm=1.5, params=p)
    expected_total = float(np.sum(primary * spr_model(t, p)))
    assert s.sum() == pytest.approx(expected_total, rel=1e-10)
    assert np.all(s >= 0)
    # scatter is broad: it spreads into the air region where there is no source
    assert s[t == 0].max() > 0.05 * s.max()


def test_kernel_is_broad_and_widens_with_thickness():
    """A narrow stripe of source: the scatter profile's spread matches the documented sigma(t)."""
    h, w = 64, 512
    px = 1.0
    for t_mm in (100.0, 300.0):
        p = ScatterParams()
        primary = np.zeros((h, w))
        primary[:, w // 2] = 1.0
        s = scatter_kernel_superposition(primary, np.full((h, w), t_mm), pixel_mm=px, params=p)
        profile = s.mean(axis=0)
        x = (np.arange(w) - w // 2) * px
        sigma = np.sqrt(np.sum(profile * x**2) / np.sum(profile))
        assert sigma == pytest.approx(float(p.sigma_mm(t_mm)), rel=0.02)


def test_grid_reduces_spr_by_selectivity(spec):
    primary = _slab_primary(spec, 200.0, shape=(64, 64))
    t = np.full(primary.shape, 200.0)
    grid = AntiScatterGrid()  # Tp 0.7, Ts 0.1
    total, scatter = add_scatter(primary, 2.0, t, grid=grid)
    np.testing.assert_allclose(scatter / primary, 4.5 * 0.1 / 0.7, rtol=1e-9)
    np.testing.assert_allclose(total, primary + scatter)
    _total_nogrid, scatter_nogrid = add_scatter(primary, 2.0, t)
    np.testing.assert_allclose(scatter_nogrid / primary, 4.5, rtol=1e-9)
    assert grid.selectivity == pytest.approx(7.0)


def test_air_only_gives_no_scatter():
    s = scatter_kernel_superposition(np.ones((16, 16)), np.zeros((16, 16)), 1.0)
    assert np.all(s == 0)


@pytest.mark.parametrize(
    "call",
    [
        lambda: ScatterParams(spr_at_10cm=0.0),
        lambda: ScatterParams(n_nodes=0),
        lambda: AntiScatterGrid(primary_transmission=1.5),
        lambda: scatter_kernel_superposition(np.ones(5), np.ones(5), 1.0),
        lambda: scatter_kernel_superposition(np.ones((4, 4)), np.ones((3, 3)), 1.0),
        lambda: scatter_kernel_superposition(np.ones((4, 4)), np.ones((4, 4)), 0.0),
        lambda: scatter_kernel_superposition(-np.ones((4, 4)), np.ones((4, 4)), 1.0),
    ],
)
def test_bad_input(call):
    with pytest.raises(InputError):
        call()


def test_coarse_grid_matches_full_resolution_and_conserves():
    h, w = 240, 320
    yy, xx = np.mgrid[:h, :w]
    t = np.clip(300.0 - 0.01 * ((xx - 150) ** 2 + (yy - 110) ** 2), 0, None)
    primary = np.exp(-0.02 * t)
    fast = scatter_kernel_superposition(primary, t, 0.2, ScatterParams(max_downsample=8))
    full = scatter_kernel_superposition(primary, t, 0.2, ScatterParams(max_downsample=1))
    assert np.abs(fast - full).max() < 0.02 * full.max()
    assert fast.sum() == pytest.approx(full.sum(), rel=1e-10)
