"""Runner: --workers 2 == --workers 1 == Dask LocalCluster, and SIGKILL + --resume == uninterrupted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml

from ddsa_sim import InputError
from ddsa_sim.export.config import load_config
from ddsa_sim.export.inspect import inspect_store
from ddsa_sim.export.runner import run_export
from ddsa_sim.export.sample import IMAGE_ARRAYS
from ddsa_sim.export.store import META_ARRAYS, open_store

REPO = Path(__file__).resolve().parent.parent
N = 16


def write_config(folder: Path, delay_s: float = 0.0) -> Path:
    (folder / "cts").mkdir(parents=True, exist_ok=True)
    for k in range(3):
        d = np.full((10, 12, 14), -1000.0, np.float32)
        d[2:-2, 2:-2, 2:-2] = 30.0 * k
        nib.save(nib.Nifti1Image(d, np.diag([2.5, 2.0, 1.5, 1.0])), str(folder / "cts" / f"p{k}.nii.gz"))
    cfg = {
        "cts": [{"path": "cts/p*.nii.gz"}],
        "vessels": {"per_ct": 2, "sources": [{"generator": "lsystem", "params": {"n": {"grid": [3, 4]}}}]},
        "detector": {"rows": 32, "cols": 32, "pixel_mm": 2.0, "binning": 1},
        "effects": {"noise": True, "motion": "rigid"},
        "split": {"train": 0.34, "val": 0.33, "test": 0.33},
        "count": N,
        "seed": 3,
        "renderer": "synthetic_renderer:render_synthetic",
        "renderer_options": {"delay_s": delay_s},
    }
    path = folder / "ds.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def assert_same_store(a: Path, b: Path) -> None:
    ra, rb = open_store(a), open_store(b)
    assert ra.attrs["config"] == rb.attrs["config"]
    for name in IMAGE_ARRAYS:
        xa, xb = ra[name][:], rb[name][:]
        assert xa.dtype == xb.dtype and xa.tobytes() == xb.tobytes(), name
    for name in META_ARRAYS:
        xa, xb = ra["meta"][name][:], rb["meta"][name][:]
        if xa.dtype.kind == "f":  # NaN (an exposure a fake renderer does not know) equals NaN here
            assert np.array_equal(xa, xb, equal_nan=True), name
        else:
            assert xa.tolist() == xb.tolist(), name


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    base = tmp_path_factory.mktemp("ref")
    cfg_path = write_config(base, delay_s=0.1)
    run_export(load_config(cfg_path), base / "ref.zarr", workers=1, progress=False, preview=False)
    return cfg_path, base / "ref.zarr"


def test_reference_is_complete_with_all_splits(reference):
    _, ref = reference
    report = inspect_store(ref)
    assert report.ok and report.n_complete == N
    assert report.cts_per_split == {"train": 1, "val": 1, "test": 1}
    seeds = open_store(ref)["meta"]["seed"][:]
    assert len(set(seeds.tolist())) == N  # no duplicate sample


def test_two_local_workers_equal_one(reference, tmp_path):
    cfg_path, ref = reference
    run_export(load_config(cfg_path), tmp_path / "w2.zarr", workers=2, progress=False, preview=False,
               chunk_size=3)
    assert_same_store(ref, tmp_path / "w2.zarr")


def test_dask_local_cluster_equals_local_run(reference, tmp_path):
    pytest.importorskip("distributed")
    cfg_path, ref = reference
    run_export(load_config(cfg_path), tmp_path / "dask.zarr", scheduler="local:2", progress=False, preview=False,
               chunk_size=4)
    assert_same_store(ref, tmp_path / "dask.zarr")


def _n_complete_files(store: Path) -> int:
    folder = store / "meta" / "complete" / "c"
    return len([f for f in os.listdir(folder) if not f.endswith(".partial")]) if folder.exists() else 0


def test_sigkill_then_resume_equals_uninterrupted(reference, tmp_path):
    cfg_path, ref = reference
    store = tmp_path / "killed.zarr"
    cmd = [sys.executable, "-m", "ddsa_sim.cli", "export", str(cfg_path), "-o", str(store),
           "--workers", "2", "--no-progress", "--no-preview"]
    # the repo, and tests/ for the fake renderer of the config
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 90
    try:
        while _n_complete_files(store) < 4:
            assert proc.poll() is None, f"export ended before it was killed: {proc.stdout.read().decode()}"
            assert time.monotonic() < deadline, "export made no progress"
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the runner and its worker processes, mid-run
        proc.wait()
    done_before = set(np.flatnonzero(open_store(store)["meta"]["complete"][:] == 1).tolist())
    assert 4 <= len(done_before) < N, done_before
    killed = inspect_store(store)  # every sample marked complete verifies: none is half written
    assert killed.ok and killed.n_complete == len(done_before) and len(killed.incomplete) == N - len(done_before)
    res = run_export(load_config(cfg_path), store, workers=1, resume=True, progress=False, preview=False)
    assert res.skipped == len(done_before) and res.written == N - len(done_before)
    assert set(res.indices).isdisjoint(done_before) and set(res.indices) | done_before == set(range(N))
    report = inspect_store(store)
    assert report.ok and report.n_complete == N and not report.incomplete
    assert not list(store.rglob("*.partial"))
    assert_same_store(ref, store)


def render_with_a_progress_bar(spec, cache):
    """The fake renderer behind a tqdm bar, as the scene renderer shows one over a sequence's frames."""
    from synthetic_renderer import render_synthetic
    from tqdm import tqdm

    for _ in tqdm(range(1), disable=True):
        pass
    return render_synthetic(spec, cache)


def test_ctrl_c_with_two_workers_prints_one_line(reference, tmp_path):
    """SIGINT mid-run with --workers 2: the one ``error:`` line and nothing after it. Each worker, which the runner
    kills, had made a named semaphore with its first tqdm bar, which the shared resource tracker then reported at
    exit: ``There appear to be 2 leaked semaphore objects``."""
    data = yaml.safe_load(reference[0].read_text())
    cfg_path = tmp_path / "ds.yaml"
    cfg_path.write_text(yaml.safe_dump({**data, "cts": [{"path": str(reference[0].parent / "cts" / "p*.nii.gz")}],
                                        "renderer": "test_export_runner:render_with_a_progress_bar"}))
    store = tmp_path / "interrupted.zarr"
    cmd = [sys.executable, "-m", "ddsa_sim.cli", "export", str(cfg_path), "-o", str(store),
           "--workers", "2", "--no-progress", "--no-preview"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests"), os.environ.get("PYTHONPATH", "")])}
    # SIGINT as a terminal's Ctrl-C delivers it (a background job of a shell would ignore it)
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 90
    try:
        while _n_complete_files(store) < 2:  # the workers started and rendered (tqdm bars included)
            assert proc.poll() is None, f"export ended before it was interrupted: {proc.stderr.read().decode()}"
            assert time.monotonic() < deadline, "export made no progress"
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    lines = err.decode().splitlines()
    assert proc.returncode == 128 + signal.SIGINT
    assert len(lines) == 1 and lines[0].startswith("error: ") and "interrupted by SIGINT" in lines[0], lines


def test_resume_rewrites_half_written_samples(reference, tmp_path):
    """Slots with some data written but no complete flag (a writer killed mid-sample) are re-rendered."""
    import shutil

    cfg_path, ref = reference
    store = tmp_path / "half.zarr"
    shutil.copytree(ref, store)
    root = open_store(store, mode="r+")
    for i in (2, 9):
        root["meta"]["complete"][i] = 0
        root["mask"][i] = np.full(root["mask"].shape[1:], 7.0, np.float32)  # stale / partial data
        root["meta"]["checksum"][i] = ""
    (store / "mask" / "c" / "2" / "0" / "0.deadbeef.partial").write_bytes(b"junk")
    res = run_export(load_config(cfg_path), store, resume=True, progress=False, preview=False)
    assert sorted(res.indices) == [2, 9]
    assert not list(store.rglob("*.partial"))
    assert_same_store(ref, store)


def test_a_run_that_fails_before_any_sample_leaves_no_store(tmp_path):
    """A store with nothing to resume would only stand in the way of the corrected command (it asked for
    --resume, which the corrected config then refused)."""
    cfg = load_config(write_config(tmp_path))
    store = tmp_path / "s.zarr"
    for scheduler, needle in (("local:0", "should be local:N with N >= 1"), ("bogus", "cannot connect to bogus")):
        with pytest.raises(InputError, match=needle):
            run_export(cfg, store, scheduler=scheduler, progress=False, preview=False)
        assert not store.exists()
    with pytest.raises(RuntimeError, match="fake renderer failure"):
        run_export(cfg.model_copy(update={"renderer_options": {"fail": True}}), store, progress=False, preview=False)
    assert not store.exists()
    store.mkdir()  # a folder made for the store is emptied, not removed
    with pytest.raises(RuntimeError, match="fake renderer failure"):
        run_export(cfg.model_copy(update={"renderer_options": {"fail": True}}), store, progress=False, preview=False)
    assert store.is_dir() and not any(store.iterdir())
    run_export(cfg, store, progress=False, preview=False)  # the corrected command runs as a first one
    assert inspect_store(store).n_complete == N


def test_a_store_whose_creation_fails_is_removed_and_an_existing_one_is_kept(tmp_path, monkeypatch):
    """A creation that fails half-way (disk full) leaves nothing behind: the store's folder goes if the export made
    it, and an empty folder given for it is emptied, not left holding half a store (it was, before the two
    cleanups were one); a store already there is never touched by a run that did not create it."""
    import ddsa_sim.export.runner as runner

    def half_made(path, *_args, **_kwargs):
        (Path(path) / "zarr.json").write_text("{}")
        raise OSError(28, "No space left on device")

    cfg = load_config(write_config(tmp_path))
    done = tmp_path / "done.zarr"
    run_export(cfg, done, progress=False, preview=False)
    before = {p: p.read_bytes() for p in done.rglob("*") if p.is_file()}
    monkeypatch.setattr(runner, "create_store", lambda path, *a, **k: (Path(path).mkdir(), half_made(path))[1])
    with pytest.raises(OSError, match="No space"):
        run_export(cfg, tmp_path / "new.zarr", progress=False, preview=False)
    assert not (tmp_path / "new.zarr").exists()
    given = tmp_path / "given.zarr"
    given.mkdir()
    monkeypatch.setattr(runner, "create_store", half_made)
    with pytest.raises(OSError, match="No space"):
        run_export(cfg, given, progress=False, preview=False)
    assert given.is_dir() and not any(given.iterdir())
    monkeypatch.undo()
    with pytest.raises(InputError, match="exists"):  # no --resume: the creation is refused, the store kept whole
        run_export(cfg, done, progress=False, preview=False)
    assert {p: p.read_bytes() for p in done.rglob("*") if p.is_file()} == before
