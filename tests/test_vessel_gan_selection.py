"""experiments/vessel_gan_selection.py: selection rules over a run's snapshots, the trainer's own rule reproduced."""

from __future__ import annotations

import dataclasses
import json

import numpy as np

from vessel_models.gan.checkpoint import load_checkpoint
from vessel_models.gan.config import GanConfig
from vessel_models.gan.data import load_label_folder, save_label_volume
from vessel_models.gan.train import train_gan

SHAPE = (16, 16, 16)


def tube_folder(folder, n: int, seed: int):
    """``n`` straight tubes of radius 1.5-2.5 voxels along axis 0 at random positions, as NIfTI label files."""
    rng = np.random.default_rng(seed)
    j, k = np.mgrid[:SHAPE[1], :SHAPE[2]]
    for t in range(n):
        cj, ck = rng.uniform(5, 11, size=2)
        disc = (j - cj) ** 2 + (k - ck) ** 2 <= rng.uniform(1.5, 2.5) ** 2
        save_label_volume(np.broadcast_to(disc, SHAPE).copy(), 1.0, folder / f"tube_{t:03d}.nii.gz")
    return folder


def test_rules_pick_from_the_snapshots_and_the_own_rule_is_the_trainers(experiment_script, tmp_path):
    selection = experiment_script("vessel_gan_selection.py")
    train = tube_folder(tmp_path / "train", 8, 0)
    cfg = GanConfig.from_dict({
        "device": "cpu", "num_threads": 1, "eval_every": 2, "eval_samples": 4, "keep_snapshots": True,
        "data": {"shape": list(SHAPE), "spacing_mm": 1.0, "mode": "crop", "val_fraction": 0.25},
        "net": {"kind": "wgan", "latent_dim": 8, "base_channels": 4, "max_channels": 8},
        "optim": {"batch_size": 4, "n_critic": 1, "max_steps": 6, "ema_half_life": 2.0}})
    run = tmp_path / "run"
    train_gan(cfg, load_label_folder(train, 1.0), run, progress=False)
    train_gan(dataclasses.replace(cfg, seed=1), load_label_folder(train, 1.0), tmp_path / "run1", progress=False)
    args = ["--train", str(train), "--select", str(tube_folder(tmp_path / "select", 6, 1)),
            "--judge", str(tube_folder(tmp_path / "judge", 6, 2)), "--runs", str(run), str(tmp_path / "run1"),
            "--every", "2", "--n-select", "6", "--n-judge", "5", "--workers", "1", "-o", str(tmp_path / "out")]
    assert selection.main(args) == 0
    results = json.loads((tmp_path / "out" / "selection.json").read_text())
    for name in ("run", "run1"):
        r = results[name]
        assert sorted(int(s) for s in r["scores"]["judge"]) == [2, 4, 6]
        # the first eval_samples samples against the run's held-out split are the trainer's evaluation ...
        assert r["own_vs_logged_max_abs"] < 1e-6
        # ... so the rule picks what the trainer kept as best.pt
        assert r["picks"]["own"]["step"] == load_checkpoint(tmp_path / name / "best.pt")["step"]
        assert r["picks"]["last"]["step"] == 6
        judged = r["scores"]["judge"]
        assert r["picks"]["oracle"]["judge"] == min(judged.values())
    assert len((tmp_path / "out" / "selection.md").read_text().splitlines()) == 4
    assert (tmp_path / "out" / "selection.png").stat().st_size > 0
