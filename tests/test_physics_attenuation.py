"""Attenuation: NIST/XCOM reference values, the iodine K-edge, mixtures, iodinated blood."""

from __future__ import annotations

import numpy as np
import pytest

from ddsa_sim import InputError
from ddsa_sim.physics.attenuation import (
    MATERIALS,
    attenuation_matrix,
    contrast_agent_material,
    displaced_blood_g_per_mg_iodine,
    get_material,
    iodinated_blood,
    mass_attenuation,
)
from ddsa_sim.physics.spectra import tabulated_spectrum

REQUIRED = ["air", "lung", "adipose", "soft tissue", "muscle", "blood", "bone", "cortical bone", "water", "iodine",
            "titanium"]


def test_required_materials_present_and_normalised():
    for name in REQUIRED:
        m = MATERIALS[name]
        assert sum(m.composition.values()) == pytest.approx(1.0, abs=1e-12)
        assert m.density_g_per_cc > 0
    assert dict(MATERIALS["bone"].composition) == dict(MATERIALS["cortical bone"].composition)
    assert MATERIALS["cortical bone"].composition["Ca"] == pytest.approx(0.225, rel=1e-3)


# NIST XCOM / Hubbell & Seltzer (NISTIR 5632) mu/rho values, cm^2/g (total with coherent).
@pytest.mark.parametrize(
    "material, energy_kev, nist",
    [
        ("water", 60.0, 0.2059),
        ("water", 30.0, 0.3756),
        ("water", 100.0, 0.1707),
        ("water", 20.0, 0.8096),
        ("water", 40.0, 0.2683),
        ("water", 80.0, 0.1837),
        ("cortical bone", 60.0, 0.3148),  # Bone, Cortical (ICRU-44)
        ("soft tissue", 60.0, 0.2048),  # Tissue, Soft (ICRU-44)
        ("air", 20.0, 0.7779),  # Air, Dry
        ("titanium", 50.0, 1.213),
    ],
)
def test_mu_rho_matches_nist(material, energy_kev, nist):
    assert mass_attenuation(material, energy_kev) == pytest.approx(nist, rel=0.02)


def test_iodine_k_edge_sharp_between_33_0_and_33_5_kev():
    e = np.array([33.0, 33.5])
    below, above = mass_attenuation("iodine", e)
    assert below == pytest.approx(6.64, rel=0.03)
    assert above == pytest.approx(34.9, rel=0.03)
    # the step happens at 33.17 keV, within 10 eV, with no ramp across the edge
    fine = np.linspace(33.0, 33.5, 501)
    mu = mass_attenuation("iodine", fine)
    jump = int(np.argmax(np.diff(mu)))
    assert 33.160 <= fine[jump] and fine[jump + 1] <= 33.180
    assert mu[jump + 1] / mu[jump] > 5.0  # the K-edge jump ratio of iodine is ~6
    assert np.all(np.diff(mu[: jump + 1]) <= 0) and np.all(np.diff(mu[jump + 1 :]) <= 0)


def test_mixture_rule_is_mass_weighted():
    e = np.array([20.0, 50.0, 80.0])
    mix = mass_attenuation({"H": 0.111898, "O": 0.888102}, e)
    np.testing.assert_allclose(mix, mass_attenuation("water", e), rtol=1e-12)
    half = mass_attenuation({"I": 0.5, "O": 0.5}, e)
    np.testing.assert_allclose(half, 0.5 * mass_attenuation("iodine", e) + 0.5 * mass_attenuation({"O": 1}, e))


def test_iodinated_blood_iodine_concentration_and_limits():
    for c in (5.0, 10.0, 20.0, 350.0):
        m = iodinated_blood(c)
        # iodine mass per ml of mix = mass fraction * density
        assert m.composition["I"] * m.density_g_per_cc * 1000 == pytest.approx(c, rel=1e-9)
    plain = iodinated_blood(0.0)
    assert "I" not in plain.composition
    assert plain.density_g_per_cc == pytest.approx(MATERIALS["blood"].density_g_per_cc)
    # undiluted mix is the agent solution itself (Omnipaque 350: 1.406 g/ml, 755 mg iohexol/ml)
    agent = contrast_agent_material("iohexol", 350.0)
    assert agent.density_g_per_cc == pytest.approx(1.406)
    iohexol_molar_mass = 19 * 12.011 + 26 * 1.008 + 3 * 126.904 + 3 * 14.007 + 9 * 15.999
    assert 350.0 / (3 * 126.904 / iohexol_molar_mass) == pytest.approx(755.0, rel=0.01)
    assert iodinated_blood(300, agent_iodine_mg_per_ml=300).density_g_per_cc == pytest.approx(1.349)


def test_iodinated_blood_attenuation_is_blood_plus_iodine():
    """mu(mix)*rho(mix) = v*mu(agent)*rho(agent) + (1-v)*mu(blood)*rho(blood): linear mixing by volume."""
    e = np.array([30.0, 33.5, 60.0])
    c, ca = 15.0, 350.0
    v = c / ca
    mix = iodinated_blood(c, agent_iodine_mg_per_ml=ca)
    agent = contrast_agent_material("iohexol", ca)
    blood = MATERIALS["blood"]
    lhs = mass_attenuation(mix, e) * mix.density_g_per_cc
    rhs = v * mass_attenuation(agent, e) * agent.density_g_per_cc + (1 - v) * mass_attenuation(blood, e) * 1.06
    np.testing.assert_allclose(lhs, rhs, rtol=1e-10)


def test_displaced_blood():
    assert displaced_blood_g_per_mg_iodine(350.0) == pytest.approx(1.06 / 350.0)
    assert displaced_blood_g_per_mg_iodine(300.0) > displaced_blood_g_per_mg_iodine(350.0)


def test_material_name_forms():
    assert get_material("Soft_Tissue") is MATERIALS["soft tissue"]
    m = get_material("iodinated blood:12.5")
    assert m.composition["I"] * m.density_g_per_cc * 1000 == pytest.approx(12.5)
    assert get_material("iodinated_blood 12.5 mgI/ml").density_g_per_cc == pytest.approx(m.density_g_per_cc)


def test_attenuation_matrix_shape_and_values():
    s = tabulated_spectrum([30.0, 33.5, 60.0], [1, 1, 1])
    a = attenuation_matrix(["water", "iodine", "bone"], s)
    assert a.shape == (3, 3) and a.dtype == np.float64
    np.testing.assert_allclose(a[1], mass_attenuation("iodine", [30.0, 33.5, 60.0]))


@pytest.mark.parametrize(
    "call",
    [
        lambda: mass_attenuation("unobtainium", 60.0),
        lambda: mass_attenuation({"Xx": 1.0}, 60.0),
        lambda: mass_attenuation({"H": -1.0}, 60.0),
        lambda: mass_attenuation("water", 0.5),
        lambda: mass_attenuation("water", []),
        lambda: iodinated_blood(-1.0),
        lambda: iodinated_blood(400.0),
        lambda: iodinated_blood(10.0, agent="gadolinium"),
        lambda: iodinated_blood(10.0, agent_iodine_mg_per_ml=500.0),
        lambda: attenuation_matrix([], tabulated_spectrum([60.0], [1.0])),
        lambda: get_material("iodinated blood"),
    ],
)
def test_bad_input(call):
    with pytest.raises(InputError):
        call()


# ------------------------------------------------------------------------ lazy tables, disk cache
def test_import_builds_no_table():
    import subprocess
    import sys

    code = ("import sys, ddsa_sim.physics, ddsa_sim.projector\n"
            "print(sorted(m for m in ('xraydb', 'spekpy', 'sqlalchemy') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_element_symbols_known_to_xraydb():
    import xraydb

    from ddsa_sim.physics import attenuation

    assert len(attenuation._ELEMENT_SYMBOLS) == 98
    assert sorted(xraydb.atomic_number(s) for s in attenuation._ELEMENT_SYMBOLS) == list(range(1, 99))
    assert get_material({"iodine": 1.0}).composition == {"Iodine": 1.0}  # names still go through xraydb
    with pytest.raises(InputError, match="unknown element"):
        get_material({"Xx": 1.0})


def test_disk_cache_gives_xraydbs_exact_values(tmp_path, monkeypatch):
    import xraydb

    from ddsa_sim.physics import attenuation

    monkeypatch.setenv("DDSA_SIM_CACHE_DIR", str(tmp_path))
    e = np.linspace(15.0, 120.0, 37)
    bone = MATERIALS["bone"]
    direct = np.zeros(e.size)
    for sym, w in bone.composition.items():
        direct += w * np.asarray(xraydb.mu_elam(sym, e * 1000.0, kind="total"), dtype=np.float64)
    attenuation._mu_table.cache_clear()
    first = mass_attenuation("bone", e)  # computed by xraydb, written to disk
    files = list((tmp_path / "attenuation").glob("*.npz"))
    assert len(files) == 1
    attenuation._mu_table.cache_clear()
    again = mass_attenuation("bone", e)  # read back from disk
    assert np.array_equal(first, direct) and np.array_equal(again, direct)
    files[0].write_bytes(b"not a zip file")  # a damaged entry is recomputed, not trusted
    attenuation._mu_table.cache_clear()
    assert np.array_equal(mass_attenuation("bone", e), direct)
    monkeypatch.setenv("DDSA_SIM_CACHE_DIR", "off")
    attenuation._mu_table.cache_clear()
    assert np.array_equal(mass_attenuation("bone", e), direct)
    attenuation._mu_table.cache_clear()
