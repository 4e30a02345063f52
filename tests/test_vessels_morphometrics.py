"""Morphometrics against hand-computed truth and generator invariants (Murray, Zamir)."""

import math

import numpy as np
import pytest

from vessel_models import VesselTree
from vessel_models import morphometrics as m
from vessel_models.lsystem import generate_lsystem, zamir_angles


def _tree():
    # root chain 0-1-2, bifurcation at 2 into 3(-4) and 5; 4 and 5 leaves
    pos = [[0, 0, 0], [0, 0, 5], [0, 0, 10], [3, 0, 14], [6, 0, 14], [-3, 0, 14]]
    r = [2.0, 2.0, 2.0, 1.6, 1.6, 1.2]
    return VesselTree(pos, r, [-1, 0, 1, 2, 3, 2], [0, 0, 0, 1, 1, 2], [0, 0, 0, 1, 1, 1], {})


def test_counts_strahler_lengths_tortuosity():
    t = _tree()
    br = m.branches(t)
    assert m.branch_count(t) == 3 and m.bifurcation_count(t) == 1
    assert [b.nodes for b in br] == [(0, 1, 2), (2, 3, 4), (2, 5)]
    assert m.strahler_orders(t).tolist() == [2, 2, 2, 1, 1, 1]
    np.testing.assert_allclose(m.length_distribution(t), [10, 8, 5])
    np.testing.assert_allclose(m.tortuosity(t), [1.0, 8 / math.hypot(6, 4), 1.0])
    np.testing.assert_allclose(m.radius_distribution(t), [2.0, 1.6, 1.2])
    bid, gen = m.branch_structure(t.parents)
    assert bid.tolist() == [0, 0, 0, 1, 1, 2] and gen.tolist() == [0, 0, 0, 1, 1, 1]


def test_angles_and_murray_residual_by_hand():
    t = _tree()
    (a,) = m.bifurcation_angles(t)
    assert a["children"] == [3, 5]
    np.testing.assert_allclose(a["angles_deg"], [math.degrees(math.atan2(3, 4))] * 2)
    assert a["between_deg"] == pytest.approx(2 * math.degrees(math.atan2(3, 4)))
    expected = (1.6**3 + 1.2**3 - 8.0) / 8.0
    np.testing.assert_allclose(m.murray_residuals(t, 3.0), [expected])
    k = m.fit_murray_exponent(t)
    assert 0.8**k + 0.6**k == pytest.approx(1.0)
    assert k == pytest.approx(2.0)  # 0.8^2 + 0.6^2 = 1


def test_zamir_formula_matches_independent_computation():
    for a in np.linspace(0.2, 1.0, 9):
        t1, _ = zamir_angles(a, 3.0)
        c = ((1 + a**3) ** (4 / 3) + 1 - a**4) / (2 * (1 + a**3) ** (2 / 3))
        assert math.cos(t1) == pytest.approx(c, rel=1e-12)
        # the force triangle closes: r0^2 e0 = r1^2 e1 + r2^2 e2 (independent vector check)
        t1, t2 = zamir_angles(a, 3.0)
        r0 = (1 + a**3) ** (1 / 3)
        s = np.array([math.cos(t1), math.sin(t1)]) + a**2 * np.array([math.cos(t2), -math.sin(t2)])
        np.testing.assert_allclose(s, [r0**2, 0.0], atol=1e-12)
    assert math.degrees(zamir_angles(1.0)[0]) == pytest.approx(37.47, abs=0.01)


def test_lsystem_murray_residual_zero_and_exponent_honoured():
    t3 = generate_lsystem(5)
    res = m.murray_residuals(t3, 3.0)
    assert res.size > 10
    assert np.abs(res).max() < 1e-12
    t25 = generate_lsystem(5, murray_exponent=2.5)
    assert np.abs(m.murray_residuals(t25, 2.5)).max() < 1e-12
    assert np.abs(m.murray_residuals(t25, 3.0)).min() > 1e-3
    assert m.fit_murray_exponent(t25) == pytest.approx(2.5, rel=1e-9)


def test_lsystem_angles_follow_zamir_without_noise():
    t = generate_lsystem(2, tilt_sd_deg=0.0)
    angles = m.bifurcation_angles(t)
    assert len(angles) > 10
    for a in angles:
        if a["node"] == 0:
            continue
        r1, r2 = a["radii_mm"][:2]
        t1, t2 = zamir_angles(r2 / r1, 3.0)
        np.testing.assert_allclose(a["angles_deg"][:2], np.degrees([t1, t2]), atol=1e-6)


def test_tortuosity_parameter_increases_distance_metric():
    straight = m.tortuosity(generate_lsystem(4, tortuosity_deg=0.0))
    twisted = m.tortuosity(generate_lsystem(4, tortuosity_deg=10.0))
    np.testing.assert_allclose(straight, 1.0, atol=1e-12)
    assert twisted.mean() > 1.003


def test_aneurysm_branches_excluded_from_vessel_stats():
    t = generate_lsystem(3, aneurysm_probability=1.0, aneurysm_kind="saccular")
    assert any(v == "aneurysm" for v in t.labels.values())
    assert np.abs(m.murray_residuals(t)).max() < 1e-12
    assert len(m.branches(t, include_non_vessel=True)) > len(m.branches(t))
    s = m.summary(t)
    assert s["murray_residual_abs_max"] < 1e-12 and s["strahler_order"] >= 3
