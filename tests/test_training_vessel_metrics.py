"""Vessel-aware metrics against numbers worked out by hand on tiny images."""

import math

import numpy as np
import pytest

from ddsa_sim.training.metrics import summarize
from ddsa_sim.training.vessel_metrics import vessel_metrics, vessel_regions, win_counts


def _line_case():
    """7x7: vessel = column 3 (target 0.2, prediction 0.1); prediction 0.02 on column 2 (inside the
    dilated mask), 0.06 on column 0 (background, above the 0.05 threshold), -0.1 on column 6 (negative:
    not iodine-like), 0 elsewhere."""
    vessel = np.zeros((7, 7), np.uint8)
    vessel[:, 3] = 1
    target = 0.2 * vessel.astype(np.float64)
    pred = np.zeros((7, 7))
    pred[:, 3] = 0.1
    pred[:, 2] = 0.02
    pred[:, 0] = 0.06
    pred[:, 6] = -0.1
    return pred, target, vessel


def test_regions_disk_dilation():
    m = np.zeros((9, 9), np.uint8)
    m[4, 4] = 1
    v, d, b = vessel_regions(m, 2)
    assert v.sum() == 1 and d.sum() == 13 and b.sum() == 81 - 13  # disk of radius 2: 1 + 4 + 4 + 4 pixels
    assert d[4, 2] and d[2, 4] and d[3, 3] and not d[2, 3] and not d[3, 2]
    v, d, b = vessel_regions(m, 0)
    assert np.array_equal(v, d) and d.sum() == 1


def test_vessel_metrics_of_a_line():
    pred, target, vessel = _line_case()
    m = vessel_metrics(pred, target, vessel, data_range=0.2, dilation_px=1, threshold=0.05)
    # D = columns 2..4 (21 px), B = columns 0, 1, 5, 6 (28 px)
    sq_err_d = 7 * (0.1 - 0.2) ** 2 + 7 * 0.02**2  # column 4: no error
    assert m["vessel_nmse"] == pytest.approx(sq_err_d / (7 * 0.2**2), rel=1e-12)  # 0.26
    assert m["vessel_psnr"] == pytest.approx(10 * math.log10(0.2**2 / (sq_err_d / 21)), rel=1e-12)
    assert m["iodine_recovery"] == pytest.approx(0.5, rel=1e-12)
    assert m["bg_fp_fraction"] == pytest.approx(7 / 28)  # column 0 only; -0.1 is not above the threshold
    assert m["bg_fp_energy"] == pytest.approx(7 * 0.06**2 / (7 * 0.2**2), rel=1e-12)  # 0.09; negatives excluded
    bg = np.r_[np.full(7, 0.06), np.zeros(14), np.full(7, -0.1)]
    assert m["vessel_cnr"] == pytest.approx((0.1 - bg.mean()) / bg.std(), rel=1e-12)
    # the whole image's error split between D and B, each spread over all 49 pixels
    sq_err_b = 7 * 0.06**2 + 7 * 0.1**2
    assert m["psnr_background_exact"] == pytest.approx(10 * math.log10(0.2**2 / (sq_err_d / 49)), rel=1e-12)
    assert m["psnr_vessels_exact"] == pytest.approx(10 * math.log10(0.2**2 / (sq_err_b / 49)), rel=1e-12)
    # the two errors add up to the whole image's
    whole = 10 * math.log10(0.2**2 / ((sq_err_d + sq_err_b) / 49))
    parts = [10 ** (-m[k] / 10) for k in ("psnr_background_exact", "psnr_vessels_exact")]
    assert 10 * math.log10(1 / sum(parts)) == pytest.approx(whole, rel=1e-12)


def test_perfect_zero_and_vessel_free_images():
    _, target, vessel = _line_case()
    perfect = vessel_metrics(target, target, vessel, data_range=0.2, dilation_px=1)
    assert perfect["vessel_psnr"] == math.inf and perfect["vessel_nmse"] == 0 and perfect["iodine_recovery"] == 1
    assert perfect["bg_fp_energy"] == 0 and perfect["bg_fp_fraction"] == 0 and perfect["vessel_cnr"] == math.inf
    assert perfect["psnr_background_exact"] == math.inf and perfect["psnr_vessels_exact"] == math.inf
    zero = vessel_metrics(np.zeros_like(target), target, vessel, data_range=0.2, dilation_px=1)
    assert zero["vessel_nmse"] == 1 and zero["iodine_recovery"] == 0 and zero["vessel_cnr"] == 0
    assert zero["bg_fp_energy"] == 0 and zero["bg_fp_fraction"] == 0
    assert zero["vessel_psnr"] == pytest.approx(10 * math.log10(0.2**2 / (7 * 0.04 / 21)))
    assert zero["psnr_vessels_exact"] == math.inf  # all its error is on the vessels
    none = vessel_metrics(np.ones((7, 7)), np.zeros((7, 7)), np.zeros((7, 7)), data_range=1.0)
    assert all(math.isnan(none[k]) for k in ("vessel_psnr", "vessel_nmse", "bg_fp_energy", "vessel_cnr",
                                              "iodine_recovery", "psnr_background_exact", "psnr_vessels_exact"))
    assert none["bg_fp_fraction"] == 1.0
    with pytest.raises(ValueError, match="shapes"):
        vessel_metrics(np.zeros((7, 7)), target, vessel[:6], data_range=1.0)


def test_win_counts_direction_and_nan():
    net = [{"psnr": 30.0, "bg_fp_fraction": 0.01, "iodine_recovery": 0.9},
           {"psnr": 20.0, "bg_fp_fraction": 0.10, "iodine_recovery": math.nan},
           {"psnr": 25.0, "bg_fp_fraction": 0.02, "iodine_recovery": 1.3}]
    base = [{"psnr": 25.0, "bg_fp_fraction": 0.05, "iodine_recovery": 0.5},
            {"psnr": 20.0, "bg_fp_fraction": 0.05, "iodine_recovery": 1.0},
            {"psnr": 26.0, "bg_fp_fraction": 0.03, "iodine_recovery": 0.8}]
    # psnr: 30 > 25 only (a tie is no win); fp fraction: lower wins in samples 0 and 2;
    # recovery: |0.9-1| < |0.5-1| wins, the nan sample is not counted, |1.3-1| > |0.8-1| loses
    assert win_counts(net, base) == {"psnr": 1, "bg_fp_fraction": 2, "iodine_recovery": 1}
    with pytest.raises(ValueError):
        win_counts(net, base[:2])


def test_summarize_leaves_nan_out():
    s = summarize([{"a": 1.0, "b": math.nan}, {"a": math.nan, "b": math.nan}, {"a": 3.0, "b": math.nan}])
    assert s["a"] == 2.0 and s["a_std"] == 1.0 and s["a_median"] == 2.0
    assert math.isnan(s["b"]) and math.isnan(s["b_std"])
