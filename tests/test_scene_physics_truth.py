"""Scene physics against independent truth (xraydb, SpekPy, photon statistics), issue 22.

* the lumen is a volume mixture of blood and iohexol 350 mgI/ml (1.406 g/ml): a 10 mm slab of it in
  air gives dsa_target = 1 cm x mu(mixture) (xraydb) at 30 and 40 keV, either side of the K-edge;
* at 90 kVp it equals a direct SpekPy x xraydb integral with the CsI (0.6 mm) absorbed-energy response;
* var(-ln I) in a flat field and behind 20 cm of water equals the noise-equivalent-quanta prediction
  of docs/physics.md (photon statistics, CsI efficiency, Swank factor).
"""

from __future__ import annotations

import numpy as np
import pytest
import xraydb
from scene_helpers import small_carm

from ddsa_sim.physics.heel import HeelSettings
from ddsa_sim.scene import Scene
from ddsa_sim.scene.recording import Exposure, ScatterSettings
from ddsa_sim.scene.render import render_frames
from ddsa_sim.scene.vessels import FractionVessels
from ddsa_sim.volumes import Volume, from_array

BLOOD = {"H": 0.102, "C": 0.110, "N": 0.033, "O": 0.745, "Na": 0.001, "P": 0.001, "S": 0.002, "Cl": 0.003,
         "K": 0.002, "Fe": 0.001}  # ICRU 44 whole blood, 1.06 g/cm^3


def _mu_mixture_per_cm(energy_kev: np.ndarray, c_mg_per_ml: float) -> np.ndarray:
    """mu (1/cm) of blood + iohexol 350 mgI/ml (1.406 g/ml) mixed by volume to c mgI/ml, from xraydb."""
    e = np.atleast_1d(energy_kev) * 1000.0
    v = c_mg_per_ml / 350.0
    molecule_g = 0.350 / (3 * 126.904 / (19 * 12.011 + 26 * 1.008 + 3 * 126.904 + 3 * 14.007 + 9 * 15.999))
    water_g = 1.406 - molecule_g  # per ml of agent solution
    mu_blood = sum(w * xraydb.mu_elam(el, e) for el, w in BLOOD.items()) * 1.06
    mu_agent = (xraydb.material_mu("C19H26I3N3O9", e, density=1.0) / 1.0 * molecule_g
                + xraydb.material_mu("H2O", e, density=1.0) * water_g)
    return (1 - v) * mu_blood + v * mu_agent


def _centre(n: int) -> np.ndarray:
    t = np.eye(4)
    t[:3, 3] = -(n - 1) / 2
    return t


_AIR = from_array(np.full((6, 6, 6), -1000.0, np.float32), np.diag([10.0, 10.0, 10.0, 1.0]) @ _centre(6), "air")


def _slab_scene(spectrum: str, c_mg_per_ml: float) -> Scene:
    """Air CT around a 10 mm slab (along the beam, world y) of fully filled lumen."""
    frac = np.ones((20, 10, 20), np.float32)
    aff = np.diag([2.0, 1.0, 2.0, 1.0])
    aff[:3, 3] = -np.array([19 * 1.0, 4.5, 19 * 1.0])
    return Scene(_AIR, [FractionVessels(frac, aff)], spectrum=spectrum, iodine_mg_per_ml=c_mg_per_ml, noise=False,
                 scatter=ScatterSettings(enabled=False), method="siddon")


def _centre_target(scene: Scene) -> float:
    f = render_frames(scene, small_carm(16, 1.0), np.random.default_rng(0))
    return float(f.dsa_target[0, 7:9, 7:9].astype(np.float64).mean())


@pytest.mark.parametrize("kev", [30.0, 40.0])
def test_iodinated_blood_slab_mono_equals_xraydb(kev):
    c = 20.0
    expected = float(_mu_mixture_per_cm(np.array([kev]), c)[0]) * 1.0
    assert _centre_target(_slab_scene(f"mono:{kev:g}", c)) == pytest.approx(expected, rel=5e-3)


def _spekpy_90kvp() -> tuple[np.ndarray, np.ndarray]:
    import spekpy

    s = spekpy.Spek(kvp=90.0, th=12.0, dk=1.0)
    s.filter("Al", 4.0)
    k, f = s.get_spectrum()
    keep = (k >= 10.0) & (f > 0)
    return k[keep], f[keep]


def _csi_eta(k: np.ndarray, mm: float = 0.6) -> np.ndarray:
    return 1.0 - np.exp(-xraydb.material_mu("CsI", k * 1000.0, density=4.51, kind="photo") * mm / 10.0)


def test_iodinated_blood_slab_90kvp_equals_spekpy_xraydb_integral():
    c = 20.0
    k, f = _spekpy_90kvp()
    w = f * k * _csi_eta(k)  # absorbed energy per photon, CsI 0.6 mm
    t = np.exp(-_mu_mixture_per_cm(k, c) * 1.0)
    expected = -np.log(np.sum(w * t) / np.sum(w))
    assert _centre_target(_slab_scene("90KV_AL40", c)) == pytest.approx(expected, rel=5e-3)


def _water_ct(thickness_mm: float) -> Volume:
    """A water slab (HU -29.155: DeepDRR density 1.000 g/cm^3) along world y, water material."""
    nx, ny = 24, max(1, round(thickness_mm / 5.0))
    hu = np.full((nx, ny, nx), -29.155, np.float32)
    aff = np.diag([10.0, 5.0, 10.0, 1.0])
    aff[:3, 3] = -np.array([(nx - 1) / 2 * 10.0, (ny - 1) / 2 * 5.0, (nx - 1) / 2 * 10.0])
    return Volume(hu, aff, {"water": np.ones(hu.shape, bool)}, "water")


@pytest.mark.parametrize("water_mm", [0.0, 200.0])
def test_quantum_noise_variance_equals_nqe_prediction(water_mm):
    """Flat field (a 6 cm air CT: 0.006 g/cm^2, < 0.2 % of the variance) and 20 cm of water, the central spectrum
    on every pixel: the heel effect off (its spectra and photon counts across the field: tests/test_physics_heel.py);
    each pixel's photons fall off the central ray as cos^3 of the ray's angle (inverse-square law, flat pixel) and
    its ray crosses the slab obliquely (until 2026-12-06 the prediction took the central ray's photons and path for
    every pixel: 1.049 of it then; 1.027 of this one)."""
    n0 = 2.0e4
    ct = _water_ct(water_mm) if water_mm else _AIR
    frac = np.zeros((4, 4, 4), np.float32)
    frac[1:3, 1:3, 1:3] = 1.0
    vessel = FractionVessels(frac, _centre(4))
    scene = Scene(ct, [vessel], spectrum="90KV_AL40", exposure=Exposure(photons_per_pixel=n0), noise=True,
                  noise_correlation="none", scatter=ScatterSettings(enabled=False), method="siddon",
                  heel=HeelSettings(enabled=False))
    carm = small_carm(128, 2.0)
    f = render_frames(scene, carm, np.random.default_rng(11))
    d = (f.mask - f.mask_clean).astype(np.float64)
    keep = f.vessel_mask[0] == 0
    assert keep.sum() > 10_000
    # each pixel's ray at angle theta: cos^3 of the central ray's photons, and water_mm / cos(theta) of water
    sdd, centre = carm.source_to_detector_distance, (np.arange(128) + 0.5 - 64) * 2.0
    cos = sdd / np.sqrt(sdd**2 + centre[:, None] ** 2 + centre[None, :] ** 2)
    k, f_k = _spekpy_90kvp()
    w = f_k / f_k.sum() * _csi_eta(k)
    t = np.exp(-xraydb.material_mu("H2O", k * 1000.0, density=1.0) * water_mm / 10.0 / cos[keep][:, None])
    # signal S = sum over absorbed photons of E: var(S) / S^2 = sum p eta E^2 T / (N0 (sum p eta E T)^2)
    expected = np.sum(w * k**2 * t, axis=1) / (n0 * cos[keep] ** 3 * np.sum(w * k * t, axis=1) ** 2)
    assert d[keep].var() == pytest.approx(expected.mean(), rel=0.05)


def test_automatic_exposure_reaches_target_and_kerma_matches_spekpy():
    """Behind 20 cm of water the air-kerma transmission equals SpekPy's own (filter 'Water, Liquid'),
    and automatic exposure sets N0 so that the detector air kerma behind the patient is the target."""
    import spekpy

    s = spekpy.Spek(kvp=90.0, th=12.0, dk=1.0)
    s.filter("Al", 4.0)
    k0 = s.get_kerma()
    s.filter("Water, Liquid", 200.0)
    expected_t = s.get_kerma() / k0
    frac = np.zeros((4, 4, 4), np.float32)
    frac[1:3, 1:3, 1:3] = 1.0
    scene = Scene(_water_ct(200.0), [FractionVessels(frac, _centre(4))], spectrum="90KV_AL40",
                  exposure=Exposure(target_detector_air_kerma_ugy=2.5), noise=False,
                  scatter=ScatterSettings(enabled=False), method="siddon")
    f = render_frames(scene, small_carm(32, 2.0), np.random.default_rng(0))
    assert f.detector_air_kerma_ugy == pytest.approx(2.5, rel=1e-9)
    assert f.detector_air_kerma_ugy / f.air_kerma_ugy == pytest.approx(expected_t, rel=0.02)
    assert np.isfinite(f.mas) and f.mas > 0


def test_automatic_exposure_measures_within_the_collimated_field():
    """Half the phantom 10 cm of water, half 25 cm, the boundary through the detector's centre; one blade covers 0.45
    of the detector over one half, so the central 30 % exposure-control field is part exposed. The dose control
    reads the exposed pixels only: its transmission is their mean of SpekPy's two kerma transmissions (the shuttered
    ones would count 10 columns of the covered half instead of 3)."""
    import spekpy

    from ddsa_sim.physics.collimation import Collimator, open_fraction

    def spek_t(water_mm: float) -> float:
        s = spekpy.Spek(kvp=90.0, th=12.0, dk=1.0)
        s.filter("Al", 4.0)
        k0 = s.get_kerma()
        s.filter("Water, Liquid", water_mm)
        return s.get_kerma() / k0

    nx, ny = 24, 50  # 10 mm along x and z, 5 mm along y (the beam): x < 0 holds 100 mm of water, x > 0 250 mm
    y = (np.arange(ny) - (ny - 1) / 2) * 5.0
    thick = np.where(np.arange(nx) < nx // 2, 100.0, 250.0)
    water = np.abs(y)[None, :, None] < thick[:, None, None] / 2
    water = np.broadcast_to(water, (nx, ny, nx)).copy()
    hu = np.where(water, -29.155, -1000.0).astype(np.float32)
    aff = np.diag([10.0, 5.0, 10.0, 1.0])
    aff[:3, 3] = -np.array([(nx - 1) / 2 * 10.0, (ny - 1) / 2 * 5.0, (nx - 1) / 2 * 10.0])
    ct = Volume(hu, aff, {"water": water, "air": ~water}, "two slabs")
    frac = np.zeros((4, 4, 4), np.float32)
    frac[1:3, 1:3, 1:3] = 1.0
    carm = small_carm(64, 3.0)
    coll = Collimator(right=0.45)
    scene = Scene(ct, [FractionVessels(frac, _centre(4))], spectrum="90KV_AL40",
                  exposure=Exposure(target_detector_air_kerma_ugy=2.5), noise=False, collimator=coll,
                  scatter=ScatterSettings(enabled=False), heel=HeelSettings(enabled=False), method="siddon")
    f = render_frames(scene, carm, np.random.default_rng(0))
    exposed = open_fraction(coll, (64, 64), 3.0, scene.blur.focal_spot_mm, carm.source_to_detector_distance) >= 0.5
    field = np.zeros((64, 64), bool)
    field[22:42, 22:42] = True  # the central 30 %: 2 x round(64 x 0.3 / 2) pixels
    lit = f.mask_primary[exposed]
    thick_px = f.mask_primary < np.sqrt(lit.min() * lit.max())  # the 25 cm half (which detector half: the geometry's)
    n_thick, n_thin = np.sum(field & exposed & thick_px), np.sum(field & exposed & ~thick_px)
    assert {int(n_thick), int(n_thin)} == {3 * 20, 10 * 20}  # the blade covers 7 of the field's 20 columns
    expected = (n_thick * spek_t(250.0) + n_thin * spek_t(100.0)) / (n_thick + n_thin)
    assert f.detector_air_kerma_ugy == pytest.approx(2.5, rel=1e-9)
    assert f.detector_air_kerma_ugy / f.air_kerma_ugy == pytest.approx(expected, rel=0.02)
