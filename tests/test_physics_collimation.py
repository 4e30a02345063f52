"""Collimator geometry: blade and iris fields, the focal spot's penumbra, leakage (physics.collimation)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ddsa_sim import InputError
from ddsa_sim.physics.collimation import (
    LEAD_LEAKAGE,
    Collimator,
    open_fraction,
    penumbra_width_mm,
    transmission,
)


def _crossing_mm(profile: np.ndarray, level: float, pixel_mm: float) -> float:
    """Where a rising profile (pixel centres) first reaches ``level``, linearly between pixels."""
    i = int(np.argmax(profile >= level))
    frac = (level - profile[i - 1]) / (profile[i] - profile[i - 1])
    return (i - 0.5 + frac) * pixel_mm


def _rise_12_88_mm(profile: np.ndarray, pixel_mm: float) -> float:
    """Distance between the 12 % and 88 % crossings of a rising edge profile."""
    return _crossing_mm(profile, 0.88, pixel_mm) - _crossing_mm(profile, 0.12, pixel_mm)


@pytest.mark.parametrize("focal_spot_mm, sccd_mm, sid_mm", [(0.6, 200.0, 1020.0), (1.0, 150.0, 1200.0),
                                                          (0.3, 300.0, 1020.0)])
def test_penumbra_width_follows_the_focal_spot_formula(focal_spot_mm, sccd_mm, sid_mm):
    """The 12-88 % rise of the blade edge equals f (SID - SCollD) / SCollD (the Gaussian spot's FWHM
    scaled to the detector: Phi(1.1774) = 0.8805), measured on a fine pixel grid."""
    expected = focal_spot_mm * (sid_mm - sccd_mm) / sccd_mm
    assert penumbra_width_mm(focal_spot_mm, sccd_mm, sid_mm) == pytest.approx(expected, rel=1e-12)
    pixel, n = 0.02, 4000  # 80 mm wide row
    row = open_fraction(Collimator(left=0.3, source_to_collimator_mm=sccd_mm), (1, n), pixel, focal_spot_mm,
                        sid_mm)[0]
    edge = slice(int(0.3 * n) - 1000, int(0.3 * n) + 1000)  # +-20 mm around the blade
    assert _rise_12_88_mm(row[edge], pixel) == pytest.approx(expected, rel=0.01)
    # the geometric edge (blade position at the detector) is where half of the spot is seen
    assert edge.start * pixel + _crossing_mm(row[edge], 0.5, pixel) == pytest.approx(0.3 * n * pixel, abs=pixel / 10)


def test_point_source_gives_a_hard_edge_averaged_over_the_pixel():
    """No focal spot: a pixel split by the blade is open by the fraction of its width beyond the blade."""
    c = Collimator(left=0.25 + 0.3 / 40, right=0.1)  # left edge 0.3 of the way into pixel 10 of 40
    row = open_fraction(c, (1, 40), 1.0, 0.0, 1020.0)[0]
    assert np.all(row[:10] == 0) and row[10] == pytest.approx(0.7, abs=1e-12) and np.all(row[11:36] == 1)
    assert np.all(row[36:] == 0)


def test_open_area_of_blades_and_iris_is_the_geometric_area():
    """The penumbra moves photons across the edge but keeps the open area (the Gaussian has unit
    integral): sum(open) * pixel^2 = the rectangle (blades) or the disc (iris) within 0.5 %."""
    h, w, px = 200, 240, 0.5
    blades = Collimator(left=0.1, right=0.2, top=0.15, bottom=0.05)
    f = open_fraction(blades, (h, w), px, 0.6, 1020.0)
    assert f.sum() * px**2 == pytest.approx(w * px * 0.7 * h * px * 0.8, rel=1e-3)
    iris = Collimator(iris_diameter=0.8)
    f = open_fraction(iris, (h, w), px, 0.6, 1020.0)
    assert f.sum() * px**2 == pytest.approx(math.pi * (0.4 * h * px) ** 2, rel=5e-3)
    centre = f[h // 2 - 5:h // 2 + 5, w // 2 - 5:w // 2 + 5]
    assert np.all(centre > 1 - 1e-9) and f[0, 0] < 1e-12 and f[h // 2, 0] < 1e-9


def test_transmission_is_leakage_outside_and_one_inside():
    c = Collimator(left=0.3, right=0.3, top=0.3, bottom=0.3)
    f = open_fraction(c, (100, 100), 1.0, 0.6, 1020.0)
    t = transmission(c, f)
    assert t[0, 0] == pytest.approx(LEAD_LEAKAGE, rel=1e-9) and t[50, 50] == pytest.approx(1.0, abs=1e-12)
    assert np.all((t >= LEAD_LEAKAGE) & (t <= 1.0))
    assert Collimator().is_open and not c.is_open


@pytest.mark.parametrize("kwargs, field", [({"left": 0.5}, "left"), ({"top": -0.1}, "top"),
                                           ({"iris_diameter": 2.0}, "iris_diameter"),
                                           ({"leakage": 1.0}, "leakage"),
                                           ({"source_to_collimator_mm": 0.0}, "source_to_collimator_mm")])
def test_bad_collimator_is_a_one_line_error_naming_the_field(kwargs, field):
    with pytest.raises(InputError, match=f"collimator {field}") as e:
        Collimator(**kwargs)
    assert "\n" not in str(e.value)


def test_collimator_beyond_the_detector_is_refused():
    with pytest.raises(InputError, match="not between the source and the detector"):
        open_fraction(Collimator(left=0.1, source_to_collimator_mm=1100.0), (4, 4), 1.0, 0.6, 1020.0)
