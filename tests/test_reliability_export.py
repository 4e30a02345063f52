"""Export faults: a killed parent takes its workers along, SIGTERM / SIGINT stop cleanly, one writer per
store, and operating-system errors (disk full, read-only, a file in the way) end with one line."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import zarr
from test_export_runner import REPO, N, write_config

from ddsa_sim import InputError
from ddsa_sim.export.config import load_config
from ddsa_sim.export.inspect import inspect_store
from ddsa_sim.export.plan import plan_dataset
from ddsa_sim.export.runner import run_export
from ddsa_sim.export.store import open_store, writer_lock
from ddsa_sim.training.data import ZarrDDSADataset

ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests"), os.environ.get("PYTHONPATH", "")])}


def _start(cfg: Path, store: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "ddsa_sim.cli", "export", str(cfg), "-o", str(store), "--no-progress",
           "--no-preview", *extra]
    # SIGINT at its default even when this test runs as a background job (which ignores it)
    return subprocess.Popen(cmd, cwd=REPO, env=ENV, start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _kill_group(proc: subprocess.Popen) -> None:
    """Clean-up: whatever is left of a test's export process group."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _n_complete(store: Path) -> int:
    try:
        return int((open_store(store)["meta"]["complete"][:] == 1).sum())
    except (InputError, KeyError, FileNotFoundError):
        return 0


def _wait_for_samples(proc: subprocess.Popen, store: Path, n: int, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while _n_complete(store) < n:
        assert proc.poll() is None, f"export ended early: {proc.stderr.read()}"
        assert time.monotonic() < deadline, "export made no progress"
        time.sleep(0.05)


@pytest.fixture
def slow_config(tmp_path):
    return write_config(tmp_path, delay_s=0.4)


def test_sigkill_of_the_parent_takes_the_workers_along(slow_config, tmp_path):
    store = tmp_path / "orphan.zarr"
    proc = _start(slow_config, store, "--workers", "2")
    try:
        _wait_for_samples(proc, store, 1)
        workers = psutil.Process(proc.pid).children(recursive=True)
        assert len(workers) >= 2
        os.kill(proc.pid, signal.SIGKILL)  # the parent only, as a batch system or OOM killer would
        proc.wait()
        _, alive = psutil.wait_procs(workers, timeout=5)
        assert not alive, f"orphaned workers still running: {[p.pid for p in alive]}"
    finally:
        _kill_group(proc)
    n = _n_complete(store)
    time.sleep(1.0)
    assert _n_complete(store) == n < N  # nobody writes into the store any more
    assert inspect_store(store).ok


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_cleanly_and_the_store_resumes(slow_config, tmp_path, sig):
    store = tmp_path / "stopped.zarr"
    proc = _start(slow_config, store, "--workers", "2")
    try:
        _wait_for_samples(proc, store, 2)
        workers = psutil.Process(proc.pid).children(recursive=True)
        os.kill(proc.pid, sig)
        _, err = proc.communicate(timeout=30)
        _, alive = psutil.wait_procs(workers, timeout=5)
    finally:
        _kill_group(proc)
    assert proc.returncode == 128 + sig
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "--resume" in lines[0], err
    assert signal.Signals(sig).name in lines[0] and str(store) in lines[0]
    assert not alive
    assert not (tmp_path / "stopped.zarr.lock").exists()
    assert not list(store.rglob("*.partial"))
    report = inspect_store(store)
    assert report.ok and 2 <= report.n_complete < N
    # the store knows the plan's samples per split from its creation: training on it says what the interruption
    # left out (a never-written slot has no split of its own)
    planned = [spec.split for spec in plan_dataset(load_config(slow_config))]
    root = open_store(store)
    assert root.attrs["samples_per_split"] == {s: planned.count(s) for s in set(planned)}
    lacking = next(planned[i] for i, done in enumerate(root["meta"]["complete"][:]) if not done)
    with pytest.warns(UserWarning, match=rf"of {planned.count(lacking)} samples of split '{lacking}' are complete"):
        ZarrDDSADataset(store, lacking)
    res = run_export(load_config(slow_config), store, resume=True, progress=False, preview=False)
    assert res.skipped == report.n_complete and res.written == N - report.n_complete
    assert inspect_store(store).n_complete == N  # bit-identity after resume: test_export_runner


def test_two_writers_one_store(slow_config, tmp_path):
    store = tmp_path / "shared.zarr"
    first = _start(slow_config, store)
    try:
        _wait_for_samples(first, store, 1)
        # Paused (still holding its lock) while the others try: on a loaded machine the first export could
        # otherwise finish before a second Python process has even started.
        os.killpg(first.pid, signal.SIGSTOP)
        try:
            for extra in ((), ("--resume",)):  # a second export, and a --resume meanwhile
                second = _start(slow_config, store, *extra)
                _, err = second.communicate(timeout=60)
                assert second.returncode == 2, err
                lines = err.strip().splitlines()
                assert len(lines) == 1 and "another export is writing" in lines[0], err
                assert f"pid={first.pid}" in lines[0] and socket.gethostname() in lines[0]
        finally:
            os.killpg(first.pid, signal.SIGCONT)
        _, err = first.communicate(timeout=120)
        assert first.returncode == 0, err
    finally:
        _kill_group(first)
    assert inspect_store(store).ok and _n_complete(store) == N
    assert not (tmp_path / "shared.zarr.lock").exists()


def test_stale_lock_is_taken_over_live_one_refused(tmp_path):
    store = tmp_path / "s.zarr"
    lock = tmp_path / "s.zarr.lock"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock.write_text(f"host={socket.gethostname()} pid={dead.pid}\n")
    with pytest.warns(UserWarning, match="stale lock"), writer_lock(store):
        assert lock.read_text().strip() == f"host={socket.gethostname()} pid={os.getpid()}"
        with pytest.raises(InputError, match="another export is writing"), writer_lock(store):
            pass
    assert not lock.exists()
    lock.write_text("host=some-other-node pid=12\n")  # flock may not reach across hosts: honour it
    with pytest.raises(InputError, match="locked by host=some-other-node pid=12.*delete the lock file"), \
            writer_lock(store):
        pass


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ddsa_sim.cli", *args], cwd=REPO, env=ENV, capture_output=True,
                          text=True, timeout=120)


def _one_error_line(res: subprocess.CompletedProcess) -> str:
    lines = res.stderr.strip().splitlines()
    assert res.returncode != 0 and len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    return lines[0]


def test_output_is_a_file_or_under_a_file(tmp_path):
    cfg = write_config(tmp_path)
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    line = _one_error_line(_cli("export", str(cfg), "-o", str(a_file), "--no-progress"))
    assert str(a_file) in line and "is a file" in line
    line = _one_error_line(_cli("export", str(cfg), "-o", str(a_file / "ds.zarr"), "--no-progress"))
    assert f"{a_file}: is a file, not a folder" in line
    assert a_file.read_text() == "x"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder(tmp_path):
    cfg = write_config(tmp_path)
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        line = _one_error_line(_cli("export", str(cfg), "-o", str(ro / "ds.zarr"), "--no-progress"))
    finally:
        ro.chmod(0o755)
    assert str(ro) in line and "permission" in line.lower()
    assert not list(ro.iterdir())


def _mount_tmpfs(target: Path, size: str) -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    target.mkdir()
    ok = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(target)],
                        capture_output=True).returncode == 0
    return ok


def test_disk_full_is_one_line_and_resumable(tmp_path):
    mnt = tmp_path / "tiny"
    if not _mount_tmpfs(mnt, "256k"):
        pytest.skip("needs root and a tmpfs mount")
    try:
        cfg = write_config(tmp_path)
        store = mnt / "ds.zarr"
        res = _cli("export", str(cfg), "-o", str(store), "--no-progress", "--no-preview", "--count", "40")
        line = _one_error_line(res)
        assert res.returncode == 1 and "No space left on device" in line and "--resume" in line
        assert not (mnt / "ds.zarr.lock").exists()
        if store.exists():  # what was written still verifies; a bigger disk finishes it with --resume
            bigger = tmp_path / "big"
            bigger.mkdir()
            shutil.copytree(store, bigger / "ds.zarr")
            report = inspect_store(bigger / "ds.zarr")
            assert report.ok
            res = _cli("export", str(cfg), "-o", str(bigger / "ds.zarr"), "--no-progress", "--no-preview",
                       "--count", "40", "--resume")
            assert res.returncode == 0, res.stderr
            assert inspect_store(bigger / "ds.zarr").n_complete == 40
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


def test_store_with_attributes_but_no_arrays(tmp_path):
    store = tmp_path / "empty.zarr"
    root = zarr.open_group(str(store), mode="w", zarr_format=3)
    root.attrs.update({"format": "ddsa-sim-dataset", "format_version": 1})
    for args in (("inspect", str(store)),):
        line = _one_error_line(_cli(*args))
        assert str(store) in line and "lacks array(s) mask" in line
    with pytest.raises(InputError, match="lacks array"):
        open_store(store)


def test_an_interruption_inside_a_reader_stays_an_interruption(monkeypatch, tmp_path):
    """SIGINT / SIGTERM raise ExportInterrupted wherever the main thread is; a CT reader's ``except Exception``
    (which reports a file it cannot read) must not turn it into "cannot read NIfTI" and exit code 2."""
    from ddsa_sim.export.runner import ExportInterrupted
    from ddsa_sim.volumes import readers

    def interrupted(*_args, **_kwargs):
        raise ExportInterrupted(signal.SIGINT)

    monkeypatch.setattr(readers._import_nibabel(), "load", interrupted)
    with pytest.raises(ExportInterrupted):
        readers.read_nifti(tmp_path / "ct.nii.gz")


def test_sigint_of_a_dask_export_waits_for_its_running_tasks(slow_config, tmp_path):
    """QA found: on a Dask cluster Ctrl-C cancelled only the queued tasks; a running one went on writing after the
    command had counted the samples, released the store's lock and exited (into a store a --resume then held).
    Now the running tasks stop before their next sample and the export waits for them: the count it reports is
    final and nothing is written after the exit. A scheduler and one worker on the loopback, as a user's cluster."""
    pytest.importorskip("distributed")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "cwd": REPO, "env": ENV,
             "start_new_session": True}
    cluster = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                                 "--port", str(port), "--dashboard-address", "127.0.0.1:0"], **quiet)]
    cluster.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1",
                                     "--nworkers", "1", "--host", "127.0.0.1", "--dashboard-address", "127.0.0.1:0"],
                                    **quiet))
    store = tmp_path / "dask.zarr"
    proc = _start(slow_config, store, "--scheduler", address)
    try:
        _wait_for_samples(proc, store, 2, timeout=120)
        os.kill(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=120)
        n = _n_complete(store)
        time.sleep(2.0)  # five of the fake renderer's samples (0.4 s): a task still running would have written
        assert _n_complete(store) == n
    finally:
        for p in (proc, *cluster):
            _kill_group(p)
    assert proc.returncode == 128 + signal.SIGINT, err
    assert f"{n}/{N} samples complete" in err, err
    assert not (tmp_path / "dask.zarr.lock").exists() and not list(store.rglob("*.partial"))
    assert inspect_store(store).ok
