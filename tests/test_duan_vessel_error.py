"""experiments/duan/vessel_error.py: region shares and brightness bins against sums worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from ddsa_sim.training.data import ZarrDDSADataset
from ddsa_sim.training.synthetic import write_synthetic_store
from ddsa_sim.training.vessel_metrics import vessel_regions


def test_a_line_vessel_drawn_at_half_strength(experiment_script):
    ve = experiment_script("duan/vessel_error.py")
    vessel = np.zeros((9, 9), np.uint8)
    vessel[:, 4] = 1
    target = 0.3 * vessel  # one bin, 0.2-0.4
    pred = 0.5 * target
    pred[0, 0] = 0.2  # a false vessel far from it (background)
    pred[:, 3] = 0.01  # the margin D - V
    budget = ve.ErrorBudget()
    budget.add(pred, target, vessel)
    s = budget.summary()
    sq = {"V": 9 * 0.15**2, "D-V": 9 * 0.01**2, "B": 0.2**2}
    assert s["region_share"] == pytest.approx({k: v / sum(sq.values()) for k, v in sq.items()}, rel=1e-12)
    (b,) = s["bins"]
    assert (b["lo"], b["hi"], b["n"]) == (0.2, 0.4, 9)
    assert b["mean_target"] == pytest.approx(0.3) and b["mean_pred"] == pytest.approx(0.15)
    assert b["bias"] == pytest.approx(-0.15) and b["rms"] == pytest.approx(0.15) and b["share_of_V"] == pytest.approx(1.0)


def test_a_uniform_gain_shows_in_every_bin(experiment_script):
    ve = experiment_script("duan/vessel_error.py")
    rng = np.random.default_rng(0)
    target = rng.uniform(0.0, 1.5, (32, 32))
    budget = ve.ErrorBudget()
    budget.add(0.7 * target, target, np.ones_like(target))
    s = budget.summary()
    assert len(s["bins"]) == len(ve.EDGES) - 1 and sum(b["n"] for b in s["bins"]) == target.size
    for b in s["bins"]:
        assert b["lo"] <= b["mean_target"] < b["hi"]
        assert b["mean_pred"] == pytest.approx(0.7 * b["mean_target"], rel=1e-12)
    assert sum(b["share_of_V"] for b in s["bins"]) == pytest.approx(1.0)
    assert s["region_share"]["V"] == 1.0  # every pixel a vessel: no margin, no background
    # binned by the prediction, the same gain: E[T | P] = P / 0.7
    for c in s["calibration"]:
        assert c["mean_target"] == pytest.approx(c["mean_pred"] / 0.7, rel=1e-12)
    assert sum(c["n"] for c in s["calibration"]) == target.size


def test_known_anatomy_error_is_the_contrast_frames_noise(experiment_script, tmp_path):
    ve = experiment_script("duan/vessel_error.py")
    store = write_synthetic_store(tmp_path / "s.zarr", splits={"train": 1, "test": 3})
    result = ve.budgets([], store, "test", None, tta=False)
    assert set(result) == {"conventional", "known_anatomy"}
    ds = ZarrDDSADataset(store, "test")
    sums = {"V": 0.0, "D-V": 0.0, "B": 0.0}
    for i in range(len(ds)):
        noise = ds[i]["contrast"][0].numpy().astype(np.float64) - ds[i]["contrast_clean"][0].numpy()
        v, d, b = vessel_regions(ds.vessel_mask(i))
        for name, region in (("V", v), ("D-V", d & ~v), ("B", b)):
            sums[name] += float((noise[region] ** 2).sum())
    total = sum(sums.values())
    assert result["known_anatomy"]["region_share"] == pytest.approx({k: v / total for k, v in sums.items()}, rel=1e-6)
