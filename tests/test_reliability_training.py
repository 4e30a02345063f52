"""Training faults: damaged samples are seen by train and evaluate, runs are not overwritten, a missing
validation split is said, and a file that is no checkpoint gets our message."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
import typer
import yaml
import zarr
from test_training_loop import TINY
from typer.testing import CliRunner

from ddsa_sim import InputError
from ddsa_sim.cli.train import register
from ddsa_sim.export.inspect import inspect_store
from ddsa_sim.geometry import CArm
from ddsa_sim.training.data import ZarrDDSADataset
from ddsa_sim.training.synthetic import write_synthetic_store


@pytest.fixture(scope="module")
def app():
    a = typer.Typer()
    register(a)
    return a


@pytest.fixture(scope="module")
def sound_store(tmp_path_factory):
    return write_synthetic_store(tmp_path_factory.mktemp("rel") / "ok.zarr",
                                 splits={"train": 2, "val": 1, "test": 1}, per_ct=3, size=48)


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    path = tmp_path_factory.mktemp("cfg") / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


def _chunk(store, name: str, index: int):
    return store / name / "c" / str(index) / "0" / "0"


def _damaged(src, dst, how: str):
    """A copy of ``src`` with sample 0 (train) and sample 9 (test) damaged: a flipped byte in a chunk
    file (``"flip"``), or a value changed through zarr without a new checksum (``"value"``)."""
    shutil.copytree(src, dst)
    for i in (0, 9):
        if how == "flip":
            f = _chunk(dst, "contrast", i)
            raw = bytearray(f.read_bytes())
            raw[len(raw) // 2] ^= 0x01
            f.write_bytes(bytes(raw))
        else:
            arr = zarr.open_group(str(dst), mode="r+")["dsa_target"]
            img = arr[i]
            img[10, 10] += 0.5
            arr[i] = img
    return dst


@pytest.mark.parametrize("how", ["flip", "value"])
def test_train_and_evaluate_see_a_damaged_sample(app, sound_store, config, tmp_path, how):
    store = _damaged(sound_store, tmp_path / "bad.zarr", how)
    assert {i for i, _ in inspect_store(store).corrupted} == {0, 9}
    r = CliRunner().invoke(app, ["train", str(config), "--data", str(store), "--max-steps", "2",
                                 "-o", str(tmp_path / "run")])
    lines = r.stderr.strip().splitlines()
    assert r.exit_code == 2 and len(lines) == 1, r.output
    assert f"{store}: sample 0 is corrupted" in lines[0] and "--verify skip" in lines[0]
    assert not (tmp_path / "run").exists()  # nothing written for a refused run
    with pytest.warns(UserWarning, match="skipped 1 corrupted sample"):
        ds = ZarrDDSADataset(store, "train", verify="skip")
    assert ds.skipped == [0] and len(ds) == 5 and 0 not in ds.indices
    with pytest.warns(UserWarning, match=r"skipped 1 corrupted sample\(s\) of split 'train'"):
        r = CliRunner().invoke(app, ["train", str(config), "--data", str(store), "--max-steps", "2",
                                     "-o", str(tmp_path / "run"), "--verify", "skip"])
    assert r.exit_code == 0, r.output
    ckpt = tmp_path / "run" / "best.pt"
    r = CliRunner().invoke(app, ["evaluate", str(ckpt), "--data", str(store), "--out-png", str(tmp_path / "e.png")])
    assert r.exit_code == 2 and f"{store}: sample 9 is corrupted" in r.stderr, r.output
    with pytest.warns(UserWarning, match="skipped 1 corrupted sample"):
        r = CliRunner().invoke(app, ["evaluate", str(ckpt), "--data", str(store), "--out-png",
                                     str(tmp_path / "e.png"), "--verify", "skip"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["n_skipped_corrupted"] == 1 and res["n_samples"] == 2
    assert all(np.isfinite(res["network"][k]) for k in ("psnr", "ssim", "mae"))
    if how == "value":  # --verify off reads a changed value without complaint (it decodes)
        assert len(ZarrDDSADataset(store, "train", verify="off")) == 6


def test_verified_reads_return_what_unverified_reads_return(sound_store):
    a, b = ZarrDDSADataset(sound_store, "train"), ZarrDDSADataset(sound_store, "train", verify="off")
    for i in range(len(a)):
        for k in ("contrast", "mask", "dsa_target", "contrast_clean"):
            assert np.array_equal(a[i][k].numpy(), b[i][k].numpy())
    with pytest.raises(InputError, match="verify: must be one of refuse, skip, off"):
        ZarrDDSADataset(sound_store, "train", verify="maybe")


def test_runs_are_not_overwritten(app, sound_store, config, tmp_path):
    run = tmp_path / "run"
    base = ["train", str(config), "--data", str(sound_store), "-o", str(run)]
    r = CliRunner().invoke(app, [*base, "--resume", "--max-steps", "2"])
    assert r.exit_code == 2 and f"--resume: no {run / 'last.pt'}" in r.stderr, r.output
    assert CliRunner().invoke(app, [*base, "--max-steps", "2"]).exit_code == 0
    stale = run / "stale_from_an_old_run.txt"
    stale.write_text("x")
    before = (run / "last.pt").read_bytes()
    r = CliRunner().invoke(app, [*base, "--max-steps", "3"])
    assert r.exit_code == 2 and "exists and is not empty" in r.stderr and "--overwrite" in r.stderr, r.output
    assert (run / "last.pt").read_bytes() == before and stale.exists()
    r = CliRunner().invoke(app, [*base, "--max-steps", "3", "--resume"])
    assert r.exit_code == 0 and json.loads(r.stdout.strip().splitlines()[-1])["start_step"] == 2, r.output
    assert "note: --resume under a config" not in r.stderr and "training process" not in r.stderr
    # resuming under another process count (a run of torchrun --nproc_per_node 2, here written into last.pt) is said
    ckpt = torch.load(run / "last.pt", weights_only=True)
    assert ckpt["world_size"] == 1
    torch.save({**ckpt, "world_size": 2}, run / "last.pt")
    r = CliRunner().invoke(app, [*base, "--max-steps", "3", "--resume"])
    assert r.exit_code == 0 and "note: --resume with 1 training process; the run was trained with 2" in r.stderr, r.output
    # a change of recipe mid-run is said; a store of another pixel size is refused (one run learns one scale)
    changed = yaml.safe_load(config.read_text())
    changed["optim"]["lr"] = 0.05
    (tmp_path / "changed.yaml").write_text(yaml.safe_dump(changed))
    r = CliRunner().invoke(app, ["train", str(tmp_path / "changed.yaml"), *base[2:], "--max-steps", "4", "--resume"])
    assert r.exit_code == 0 and "differs from the run's" in r.stderr and "optim.lr " in r.stderr, r.output
    assert json.loads((run / "config.json").read_text())["optim"]["lr"] == 0.05
    r = CliRunner().invoke(app, [*base, "--max-steps", "2", "--overwrite"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout.strip().splitlines()[-1])["start_step"] == 0 and not stale.exists()
    run_mm = tmp_path / "run_mm"  # stores with a C-arm geometry: detector pixels of 0.8 mm, then 0.4 mm
    for pixel_mm in (0.8, 0.4):
        store = _with_geometry(tmp_path / f"mm{pixel_mm}.zarr", CArm(sensor_height=48, sensor_width=48,
                                                                     pixel_mm=pixel_mm))
        r = CliRunner().invoke(app, ["train", str(config), "--data", str(store), "-o", str(run_mm), "--max-steps",
                                     "2" if pixel_mm == 0.8 else "3", *(["--resume"] if pixel_mm == 0.4 else [])])
    at_isocenter = [f"{mm * 530.0 / 1020.0:.4g}" for mm in (0.8, 0.4)]  # magnification: source-isocenter / SDD
    assert r.exit_code == 2, r.output
    assert f"trained on images of {at_isocenter[0]} mm pixels, this store's are {at_isocenter[1]} mm" in r.stderr


def _with_geometry(path, carm):
    """A synthetic store whose samples were all seen by ``carm`` (its projection matrix and isocenter)."""
    store = write_synthetic_store(path, splits={"train": 2, "val": 1}, per_ct=2, size=48)
    meta = zarr.open_group(str(store), mode="r+")["meta"]
    n = meta["projection_matrix"].shape[0]
    meta["projection_matrix"][:] = np.repeat(carm.projection_matrix[None], n, axis=0)
    meta["isocenter_mm"][:] = np.repeat(np.asarray(carm.isocenter_mm, float)[None], n, axis=0)
    return store


def test_without_validation_split_train_says_what_best_means(app, tmp_path, config):
    store = write_synthetic_store(tmp_path / "noval.zarr", splits={"train": 2, "test": 1}, per_ct=2, size=48)
    with pytest.warns(UserWarning, match="no validation samples .* best.pt is a copy of last.pt"):
        r = CliRunner().invoke(app, ["train", str(config), "--data", str(store), "--max-steps", "2",
                                     "-o", str(tmp_path / "run")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "run" / "best.pt").read_bytes() == (tmp_path / "run" / "last.pt").read_bytes()


def test_a_file_that_is_not_a_checkpoint(app, sound_store, tmp_path):
    for name, data in (("notes.txt", b"hello"), ("image.png", b"\x89PNG\r\n\x1a\n" + bytes(32))):
        f = tmp_path / name
        f.write_bytes(data)
        r = CliRunner().invoke(app, ["evaluate", str(f), "--data", str(sound_store)])
        assert r.exit_code == 2 and "not a ddsa-sim checkpoint" in r.stderr and "weights_only" not in r.stderr
