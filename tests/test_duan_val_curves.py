"""experiments/duan/val_curves.py reads back what `ddsa-sim train` validated, step by step, and draws it."""

import pytest

from ddsa_sim.training.config import parse_config
from ddsa_sim.training.loop import run_training
from ddsa_sim.training.synthetic import write_synthetic_store


@pytest.fixture(scope="module")
def val_curves(experiment_script):
    return experiment_script("duan/val_curves.py")


def test_val_history_is_the_runs_validation_and_the_figure_is_written(val_curves, tmp_path):
    store = write_synthetic_store(tmp_path / "s.zarr", splits={"train": 2, "val": 1}, per_ct=2, size=32)
    cfg = parse_config({"seed": 1, "num_threads": 1, "device": "cpu",
                        "data": {"crop_size": 32, "patch_size": 32, "batch_size": 2, "in_memory": True},
                        "model": {"base_channels": 4, "depth": 2},
                        "optim": {"lr": 1e-2, "max_steps": 6, "val_every": 2, "ckpt_every": 2, "ema_decay": 0.5}})
    res = run_training(cfg, tmp_path / "runs" / "tiny_s0", store=store, progress=False)
    steps, psnr = val_curves.val_history(tmp_path / "runs" / "tiny_s0")
    assert list(steps) == [s for s, _ in res.val_history] == [2, 4, 6]
    assert list(psnr) == pytest.approx([m["psnr"] for _, m in res.val_history], rel=1e-6)
    png = tmp_path / "curves.png"
    val_curves.main([str(tmp_path), "-o", str(png), "--runs", "tiny", "--seeds", "0"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
