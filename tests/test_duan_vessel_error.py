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


def test_anatomy_bins_hand_sums(experiment_script):
    ve = experiment_script("duan/vessel_error.py")
    vessel = np.zeros((9, 9), np.uint8)
    vessel[:, 4] = 1
    target = 0.3 * vessel
    target[8, 4] = 0.05  # a faint vessel pixel: below ANATOMY_MIN_TARGET, left out of the anatomy bins
    anatomy = np.full((9, 9), 4.5)
    anatomy[:4, 4], anatomy[4:, 4] = 2.5, 5.5  # under the vessel: 4 pixels of little anatomy, 5 of much
    pred = target.copy()
    pred[4:, 4] *= 0.5  # drawn at half strength where much anatomy lies under it
    budget = ve.ErrorBudget()
    budget.add(pred, target, vessel, anatomy)
    low, high = budget.summary()["anatomy"]
    assert (low["lo"], low["hi"], low["n"], high["lo"], high["hi"], high["n"]) == (2.0, 3.0, 4, 5.0, 6.0, 4)
    assert low["mean_pred"] == pytest.approx(low["mean_target"]) == pytest.approx(0.3)
    assert high["mean_pred"] == pytest.approx(0.15) and high["mean_target"] == pytest.approx(0.3)
    no_anatomy = ve.ErrorBudget()
    no_anatomy.add(pred, target, vessel)
    assert no_anatomy.summary()["anatomy"] == []


def test_ensemble_is_the_mean_image_and_errs_no_more_than_its_members(experiment_script, tmp_path):
    from ddsa_sim.training.checkpoint import load_model
    from ddsa_sim.training.config import parse_config
    from ddsa_sim.training.loop import run_training
    from ddsa_sim.training.predict import network_dsa

    ve = experiment_script("duan/vessel_error.py")
    store = write_synthetic_store(tmp_path / "s.zarr", splits={"train": 2, "val": 1, "test": 2}, per_ct=2, size=32)
    ckpts = []
    for seed in (0, 1):
        cfg = parse_config({"seed": seed, "num_threads": 1, "device": "cpu",
                            "data": {"crop_size": 32, "patch_size": 32, "batch_size": 2, "in_memory": True},
                            "model": {"base_channels": 4, "depth": 2},
                            "optim": {"lr": 1e-2, "max_steps": 4, "val_every": 4, "ckpt_every": 4}})
        run_training(cfg, tmp_path / f"run{seed}", store=store, progress=False)
        ckpts.append(tmp_path / f"run{seed}" / "last.pt")
    result = ve.budgets(ckpts, store, "test", None, tta=False, ensemble=True)
    assert set(result) == {str(c) for c in ckpts} | {"ensemble", "conventional", "known_anatomy"}
    # the ensemble's region sums from the two networks' images, averaged here
    ds = ZarrDDSADataset(store, "test")
    nets = [load_model(c, "cpu")[:2] for c in ckpts]
    sums = {"V": 0.0, "D-V": 0.0, "B": 0.0}
    targets = [ds[i]["dsa_target"][0].numpy().astype(np.float64) for i in range(len(ds))]
    data_range = max(t.max() for t in targets) - min(t.min() for t in targets)
    psnrs = []
    for i, target in enumerate(targets):
        x = ds[i]["contrast"][None]
        pred = np.mean([network_dsa(m, n, x)[0, 0].numpy() for m, n in nets], axis=0)
        sq = (pred.astype(np.float64) - target) ** 2
        psnrs.append(10 * np.log10(data_range**2 / sq.mean()))
        v, d, b = vessel_regions(ds.vessel_mask(i))
        for name, region in (("V", v), ("D-V", d & ~v), ("B", b)):
            sums[name] += float(sq[region].sum())
    total = sum(sums.values())
    assert result["ensemble"]["region_share"] == pytest.approx({k: v / total for k, v in sums.items()}, rel=1e-5)
    assert result["ensemble"]["psnr"] == pytest.approx(np.mean(psnrs), rel=1e-5)

    # the squared error of a mean is at most the mean of the squared errors (convexity), per vessel pixel bin
    def vessel_sq(name):
        return sum(b["n"] * b["rms"] ** 2 for b in result[name]["bins"])

    assert vessel_sq("ensemble") <= (vessel_sq(str(ckpts[0])) + vessel_sq(str(ckpts[1]))) / 2 + 1e-9

    # on the noise-free frames: the network's image of contrast_clean; the references stay those of the recorded frames
    clean = ve.budgets(ckpts[:1], store, "test", None, tta=False, clean_input=True)
    model, norm = nets[0]
    want = np.mean([10 * np.log10(data_range**2 / np.mean(
        (network_dsa(model, norm, ds[i]["contrast_clean"][None])[0, 0].numpy().astype(np.float64) - t) ** 2))
        for i, t in enumerate(targets)])
    assert clean[str(ckpts[0])]["psnr"] == pytest.approx(want, rel=1e-5)
    assert clean[str(ckpts[0])]["psnr"] != pytest.approx(result[str(ckpts[0])]["psnr"], rel=1e-5)
    assert clean["known_anatomy"] == result["known_anatomy"]
