"""Heel effect: band-interpolated off-axis spectra against direct SpekPy x xraydb integrals."""

from __future__ import annotations

import numpy as np
import pytest
from scene_helpers import make_scene, slab_ct, small_carm

from ddsa_sim import InputError
from ddsa_sim.physics.attenuation import attenuation_matrix
from ddsa_sim.physics.heel import HeelSettings, heel_bands, heel_intensity
from ddsa_sim.physics.spectra import spekpy_spectrum
from ddsa_sim.scene import render_frames

SDD_MM = 1020.0
HALF_FIELD_MM = 150.0
WATER_G_PER_CM2 = 20.0


def _direct(position_mm: float, kvp: float) -> tuple[float, float]:
    """I/I0 and the relative second moment Q (ideal energy-integrating detector: signal weights
    p E, squared p E^2) behind 20 cm of water with SpekPy's spectrum at exactly this position (xraydb mu)."""
    import xraydb

    s = spekpy_spectrum(kvp, 4.0, offaxis_x_cm=-100.0 * position_mm / SDD_MM)
    mu = xraydb.material_mu("water", s.energies_kev * 1000.0, density=1.0)  # cm^2/g at density 1
    t = np.exp(-mu * WATER_G_PER_CM2)
    w1 = s.energies_kev * s.fluence
    w2 = s.energies_kev**2 * s.fluence
    return float((w1 * t).sum() / w1.sum()), float((w2 * t).sum() / w2.sum())


@pytest.mark.parametrize("kvp", [90.0, 85.0])
def test_bands_match_direct_spekpy_integrals_across_the_field(kvp):
    """At band positions and half-way between bands, I and the noise model's second moment Q within
    0.5 % of SpekPy's spectrum at exactly that position, at a kVp node (90) and off it (85: the
    off-axis ratio is taken at 86); the anode
    side is harder (more transmitted) and dimmer: the photon fluence ratio of the edges is SpekPy's
    (0.76 at 90 kVp over 300 mm at 1020 mm) within 2 %."""
    central = spekpy_spectrum(kvp, 4.0)
    bands = heel_bands(central, HALF_FIELD_MM, SDD_MM, bands=5)
    positions = np.array([-150.0, -112.5, -75.0, 37.5, 150.0])  # bands at -150, -75, 0, 75, 150
    mu = attenuation_matrix(("water",), central)
    got, got_q = heel_intensity(np.full((positions.size, 1), WATER_G_PER_CM2), mu, bands, bands.weights(positions),
                                second_moment=True)
    want, want_q = np.array([_direct(p, kvp) for p in positions]).T
    np.testing.assert_allclose(got, want, rtol=0.005)
    np.testing.assert_allclose(got_q, want_q, rtol=0.005)
    assert np.all(got_q > 1.1 * got)  # Q weights the harder, more transmitted bins more: it is not I
    assert got[-1] > 1.05 * got[0]  # harder toward the anode (+9 % transmission behind 20 cm water)
    import spekpy as sp

    def spekpy_fluence(position_mm):
        s = sp.Spek(kvp=kvp, th=12.0, dk=1.0, x=-100.0 * position_mm / SDD_MM, z=100.0)
        s.filter("Al", 4.0)
        return s.get_flu()

    fluence = bands.photons_per_mm2_per_mas_at_1m
    want_ratio = spekpy_fluence(HALF_FIELD_MM) / spekpy_fluence(-HALF_FIELD_MM)  # 0.76 at 90 kVp
    assert fluence[-1] / fluence[0] == pytest.approx(want_ratio, rel=0.02)


def test_scene_renders_the_heel_effect_by_default_along_the_anode_direction():
    """Default scene: the heel is on; a uniform slab's mask is lower on the anode side (harder beam),
    row by row with anode "-v", column by column with "+u"."""
    assert make_scene(slab_ct(200.0), heel=HeelSettings()).heel.enabled
    carm = small_carm(64, 4.0)
    rows = render_frames(make_scene(slab_ct(200.0), heel=HeelSettings(anode="-v")), carm, np.random.default_rng(0))
    cols = render_frames(make_scene(slab_ct(200.0), heel=HeelSettings(anode="+u")), carm, np.random.default_rng(0))
    profile_v = rows.mask_clean[:, 20:44].mean(axis=1)
    profile_u = cols.mask_clean[20:44].mean(axis=0)
    assert profile_v[0] < profile_v[-1] - 0.02  # anode (first row) more transmitted
    assert profile_u[-1] < profile_u[0] - 0.02  # anode (last column)
    with pytest.raises(InputError, match="anode"):
        HeelSettings(anode="up")


@pytest.mark.parametrize("kvp", [90.0, 85.0])
def test_band_air_kerma_anode_to_cathode_edge_is_spekpys(kvp):
    """Air kerma of the scene's edge bands (their fluence per mAs x sum p E (mu_en/rho)_air,
    physics.spectra.air_kerma_ugy) against SpekPy's own ``get_kerma`` at the same off-axis positions
    (30 cm field at 1020 mm, 4 mm Al): the anode/cathode ratio within 2 % (0.685 at 90 kVp), and
    each edge's kerma per mAs within 2 % of SpekPy's at a kVp node."""
    import spekpy as sp

    from ddsa_sim.physics.spectra import air_kerma_ugy

    bands = heel_bands(spekpy_spectrum(kvp, 4.0), HALF_FIELD_MM, SDD_MM, bands=5)
    got = np.array([air_kerma_ugy(s, f) for s, f in zip(bands.spectra, bands.photons_per_mm2_per_mas_at_1m)])

    def spekpy_kerma(position_mm):  # uGy per mAs at 1 m
        s = sp.Spek(kvp=kvp, th=12.0, dk=1.0, x=-100.0 * position_mm / SDD_MM, z=100.0)
        s.filter("Al", 4.0)
        return s.get_kerma()

    want = np.array([spekpy_kerma(-HALF_FIELD_MM), spekpy_kerma(HALF_FIELD_MM)])  # cathode, anode
    assert want[1] / want[0] < 0.8  # the heel effect is real: SpekPy's anode edge is dimmer
    assert got[-1] / got[0] == pytest.approx(want[1] / want[0], rel=0.02)
    if kvp == 90.0:
        np.testing.assert_allclose(got[[0, -1]], want, rtol=0.02)


def test_field_beyond_the_anode_angle_is_one_line():
    """tan(12 deg) x 1020 mm = 216.8 mm: a 280 mm half-field reaches past the anode's shadow edge."""
    from ddsa_sim import InputError

    with pytest.raises(InputError, match=r"15\.4 deg off axis .* beyond the 12 deg anode angle"):
        heel_bands(spekpy_spectrum(90, 4.0), 280.0, 1020.0)
    assert heel_bands(spekpy_spectrum(90, 4.0), 210.0, 1020.0) is not None


def test_quantum_noise_follows_each_pixels_photon_count_across_the_field():
    """The gain-corrected detector evens out the mean of the heel effect and of the fall-off off the central ray,
    not their noise: in an air-only flat field (anode "-v", 282 mm square field at 1020 mm, ideal energy-integrating
    detector, 2000 photons per pixel on the central ray) each pixel's noise-equivalent quanta equal N0 x SpekPy's
    fluence at that pixel's position (its x toward the cathode and y across, which carry the heel effect, the
    inverse-square law and the oblique filter path) over the central ray's x the flat pixel's obliquity cos(theta)
    x the Swank factor (sum E phi)^2 / sum E^2 phi of SpekPy's spectrum there: within 0.5 % on the anode axis
    near the 5 bands, within 1 % 140 mm across it (SpekPy's longer path through filter and target off that axis,
    not modelled: -0.55 % at the edge), within 2 % between bands (linear interpolation of a fluence that falls
    ever faster toward the anode: -1.8 % at 105 mm, -0.6 % with 9 bands). The recorded -ln's variance
    is the mean of 1 / quanta within 5 % over the anode and cathode edges' 16 rows each (3 renders, 6144 pixels
    per edge), and the anode edge is noisier than the cathode edge by that ratio (about 1.2; a uniform photon
    count would give 1)."""
    import spekpy as sp

    from ddsa_sim.physics.detector import Detector
    from ddsa_sim.scene.recording import Exposure
    from ddsa_sim.volumes import from_array

    n, pixel_mm, n0 = 128, 2.2, 2000.0
    carm = small_carm(n, pixel_mm)
    sdd = carm.source_to_detector_distance
    air = from_array(np.full((8, 8, 8), -1000.0, np.float32), np.diag([5.0, 5.0, 5.0, 1.0]), "air")
    scene = make_scene(air, heel=HeelSettings(anode="-v"), noise=True, detector=Detector(scintillator_mm=None),
                       exposure=Exposure(photons_per_pixel=n0))
    centre = (np.arange(n) + 0.5 - n / 2) * pixel_mm  # pixel centres from the principal point (mm)
    on_axis = sp.Spek(kvp=90.0, th=12.0, dk=1.0, z=100.0)
    on_axis.filter("Al", 4.0)
    k0, phi0 = on_axis.get_spectrum()
    central = (phi0 * (k0 >= 10.0)).sum()

    def spekpy_quanta(row: int, col: int) -> float:
        toward_anode, across = -centre[row], centre[col]  # anode "-v": toward the first row
        s = sp.Spek(kvp=90.0, th=12.0, dk=1.0, x=-100.0 * toward_anode / sdd, y=100.0 * across / sdd, z=100.0)
        s.filter("Al", 4.0)
        energies, phi = s.get_spectrum()
        phi = phi * (energies >= 10.0)  # the simulator's spectra keep the bins from 10 keV
        cos_theta = sdd / np.sqrt(sdd**2 + toward_anode**2 + across**2)
        return n0 * phi.sum() / central * cos_theta * (energies * phi).sum() ** 2 / (energies**2 * phi).sum() / phi.sum()

    runs = [render_frames(scene, carm, np.random.default_rng(seed)) for seed in range(3)]
    quanta = runs[0].quanta_image
    for (r, c), rel in (((64, 64), 0.005), ((0, 64), 0.005), ((32, 64), 0.005), ((96, 64), 0.005),
                        ((n - 1, 64), 0.005), ((0, 0), 0.01), ((n - 1, n - 1), 0.01), ((64, 0), 0.01),
                        ((8, 64), 0.02), ((16, 10), 0.02), ((n - 9, 64), 0.02)):
        assert quanta[r, c] == pytest.approx(spekpy_quanta(r, c), rel=rel), (r, c)
    np.testing.assert_array_equal(quanta[:, :n // 2], quanta[:, :n // 2 - 1:-1])  # left and right alike
    rows = {"anode": slice(0, 16), "cathode": slice(n - 16, n)}
    variance, expected = {}, {}
    for edge, sl in rows.items():
        noise = np.concatenate([(f.mask - f.mask_clean)[sl].ravel().astype(np.float64) for f in runs])
        variance[edge], expected[edge] = noise.var(), np.mean(1.0 / quanta[sl])
        assert variance[edge] == pytest.approx(expected[edge], rel=0.05), edge
    ratio = expected["anode"] / expected["cathode"]
    assert ratio > 1.15  # the heel effect is real here
    assert variance["anode"] / variance["cathode"] == pytest.approx(ratio, rel=0.07)
