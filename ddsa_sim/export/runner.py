"""Run an export: plan, create or resume the store, render and write samples in parallel.

Execution back ends (the same tasks, the same store, bit-identical results):

* in-process (``workers=1``, no scheduler);
* local worker processes (``workers=N``): ``ProcessPoolExecutor`` with the ``spawn`` start method
  (zarr keeps an event-loop thread, which must not be forked);
* a Dask cluster (``scheduler="tcp://host:8786"``, or ``"local:N"`` for a ``LocalCluster`` of N
  single-threaded worker processes).

A task is a short list of sample specs of one CT; the worker renders and writes each sample
straight into the store (which must be on a filesystem all workers share) and returns the indices
it completed. Each worker process keeps its own :class:`~ddsa_sim.export.sample.CTCache`, so a CT
is read once per worker, not once per sample. With ``device: cuda`` worker ``k`` (numbered at its
start; Dask workers per host) renders on GPU ``k mod n_gpus`` (:mod:`ddsa_sim.export.devices`).

Faults: one export writes a store at a time (:func:`~ddsa_sim.export.store.writer_lock`). Local
workers die with their parent (Linux: a parent-death signal; elsewhere a thread watching the parent
pid), ignore SIGINT (the parent decides), and are terminated when the run stops early; Dask futures
are cancelled. SIGINT / SIGTERM end the run with :class:`ExportInterrupted`: the samples in flight
are dropped (their slots stay incomplete), the store stays resumable.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import shutil
import signal
import sys
import threading
import time
import uuid
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import groupby
from pathlib import Path

import numpy as np

from ddsa_sim import InputError
from ddsa_sim.export.config import DatasetConfig
from ddsa_sim.export.devices import check_device_available, set_worker_index
from ddsa_sim.export.format import PSEUDO_PATIENT_SEPARATOR, SPLIT_COUNTS_ATTR, SPLITS
from ddsa_sim.export.plan import (
    SampleSpec,
    plan_dataset,
    plan_fingerprint,
    resolve_ct_entries,
    resolve_cts,
)
from ddsa_sim.export.sample import ct_key, render_sample, scene_options, worker_cache
from ddsa_sim.export.store import (
    array_handles,
    check_resumable,
    completed,
    create_store,
    open_store,
    remove_partials,
    write_sample,
    writer_lock,
)
from ddsa_sim.scene.sources import generator_params
from ddsa_sim.volumes.readers import peek_voxels

__all__ = ["ExportInterrupted", "ExportResult", "export_chunk", "make_tasks", "preflight", "run_export"]


class ExportInterrupted(BaseException):
    """SIGINT or SIGTERM stopped an export; the store is resumable. ``signum``: the signal's number.

    A ``BaseException`` like ``KeyboardInterrupt``: the signal handler raises it wherever the main thread is, and
    no ``except Exception`` on the way (a reader's, which reports a file it cannot read) may take it for its own.
    """

    def __init__(self, signum: int, message: str = "") -> None:
        super().__init__(message or f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum


@dataclass
class ExportResult:
    """What a run did."""

    store: Path
    n_samples: int
    written: int
    skipped: int
    preview: Path | None = None
    indices: list[int] = field(default_factory=list)


def export_chunk(store_path: str, specs: list[SampleSpec], cache_size: int = 1, stop: str | None = None) -> list[int]:
    """Worker task: render and write ``specs`` into the store; returns the indices written.

    ``stop``: the name of a ``distributed.Event`` (a Dask run); once it is set the task writes no further
    sample (Dask cannot stop a running task: an interrupted export sets it and waits for its tasks).
    BLAS runs single-threaded meanwhile: its calls here are tiny, and BLAS threads left spinning
    after one would take the cores from the projector's threads (about 1.5x slower marches).
    """
    from threadpoolctl import threadpool_limits

    root = open_store(store_path, mode="r+")
    handles = array_handles(root)
    cache = worker_cache(cache_size)
    stopped = _stop_flag(stop)
    done = []
    with threadpool_limits(limits=1, user_api="blas"):
        for spec in specs:
            if stopped():
                break
            arrays = render_sample(spec, cache)
            write_sample(root, spec, arrays, handles)
            done.append(spec.index)
    return done


def _stop_flag(name: str | None) -> Callable[[], bool]:
    """Whether the Dask event ``name`` is set (a question to the scheduler per call); never without a name."""
    if name is None:
        return lambda: False
    from distributed import Event

    event = Event(name)
    return event.is_set


def make_tasks(specs: Iterable[SampleSpec], chunk_size: int) -> list[list[SampleSpec]]:
    """Group specs by CT (in plan order), then cut each group into chunks of ``chunk_size``."""
    tasks = []
    ordered = sorted(specs, key=lambda s: s.index)
    for _, group in groupby(ordered, key=ct_key):
        g = list(group)
        tasks.extend(g[j:j + chunk_size] for j in range(0, len(g), chunk_size))
    return tasks


def preflight(config: DatasetConfig, scheduler: str | None = None) -> None:
    """Fail fast, before any store is written: a ``local:N`` scheduler has N >= 1, the scene renderer's options
    suit ``device``, a CUDA ``device`` exists here (where the workers run on this machine), every CT exists and is
    not above ``max_ct_voxels`` (from the file header where the format allows), every vessel file exists, and the
    scene renderer knows every generator and parameter named."""
    local = scheduler is None or _local_workers(scheduler) is not None  # refuses local:0 now
    if config.renderer == "scene":
        scene_options(config.renderer_options, config.device)
    if local:
        check_device_available(config.device)
    for _, source, labels, _, _, i in resolve_cts(config):
        try:
            n = peek_voxels(source)
        except InputError as exc:
            raise InputError(f"cts.{i}.path: {exc}") from None
        if n is not None and n > config.max_ct_voxels:
            raise InputError(f"cts.{i}.path: {source}: CT has {n:,} voxels, above max_ct_voxels="
                             f"{config.max_ct_voxels:,} (about {n * 5 / 2**30:.1f} GiB per worker); crop or resample "
                             "it, or raise the limit")
        if labels is not None:
            try:
                peek_voxels(labels)
            except InputError as exc:
                raise InputError(f"cts.{i}.labels: {exc}") from None
    for i, src in enumerate(config.vessels.sources):
        for key in ("segmentation", "model"):
            value = getattr(src, key)
            if value and value != "ct-labels" and not Path(value).exists():
                raise InputError(f"vessels.sources.{i}.{key}: {value}: no such file or folder")
        if src.generator is not None and config.renderer == "scene":  # its name and parameters' (values: per tree)
            generator_params(src.generator, {}, f"vessels.sources.{i}.generator")
            if isinstance(src.params, dict):
                generator_params(src.generator, dict.fromkeys(src.params), f"vessels.sources.{i}.params")


def warn_empty_splits(config: DatasetConfig, specs: list[SampleSpec]) -> None:
    """Say which split the config gives a share (``split:``) gets no sample: splits are by CT, so a few CTs
    round some splits to none (one CT and its pseudo-patients: all train), which ``train`` (no validation)
    and ``evaluate`` (no test) meet only later."""
    counts = Counter(spec.split for spec in specs)
    empty = [name for name in SPLITS if getattr(config.split, name) > 0 and not counts[name]]
    if empty:
        cts = len({spec.ct_id.split(PSEUDO_PATIENT_SEPARATOR)[0] for spec in specs})
        warnings.warn(f"split: no sample in {' or '.join(repr(n) for n in empty)}: splits are by CT and "
                      f"{cts} CT{'s give' if cts != 1 else ' gives'} {dict(counts)} (train needs 'val' to select a model, "
                      "evaluate needs 'test'); give more CTs or set each CT's split (cts.N.split)", stacklevel=2)


def _progress(total: int, initial: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="sample", desc="export", disable=not enabled,
                smoothing=0.1, dynamic_ncols=True, file=sys.stderr)


def _exit_with_parent(parent_pid: int) -> None:
    """End this process as soon as ``parent_pid`` (its parent) is gone, however the parent died."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1  # <linux/prctl.h>: the kernel sends the signal when the parent exits
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGKILL))
    else:
        def watch() -> None:
            while os.getppid() == parent_pid:
                time.sleep(0.5)
            os._exit(1)

        threading.Thread(target=watch, daemon=True, name="watch-parent").start()
    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        os._exit(1)


def _worker_init(threads: int, parent_pid: int, counter) -> None:
    """Worker process start: die with the parent, leave SIGINT to it, take the next worker number
    (its GPU with ``device: cuda``) and share the cores between workers (numba threads per worker),
    so N workers do not oversubscribe the machine (results do not depend on the thread count).

    A worker holds no multiprocessing lock (:func:`_no_process_locks`): an interrupted run kills its workers,
    which then could not release one."""
    import numba

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _exit_with_parent(parent_pid)
    _no_process_locks()
    with counter.get_lock():
        set_worker_index(counter.value)
        counter.value += 1

    numba.set_num_threads(max(1, min(int(threads), numba.config.NUMBA_NUM_THREADS)))


def _no_process_locks() -> None:
    """Give tqdm's bars in this (worker) process a thread lock: its default lock holds a named semaphore (a
    multiprocessing lock under ``spawn``, a worker's start method), which a worker killed by an interrupted run
    cannot release, and the resource tracker the workers share with the export then warns at the export's exit,
    after its one ``error:`` line (``There appear to be 2 leaked semaphore objects``). A worker's bars (the
    renderer's) are its own: a thread lock does for them."""
    from tqdm import tqdm

    tqdm.set_lock(threading.RLock())


def _run_local(store: str, tasks: list[list[SampleSpec]], workers: int, cache_size: int,
               on_done: Callable[[list[int]], None]) -> None:
    if workers <= 1:
        for t in tasks:
            on_done(export_chunk(store, t, cache_size))
        return
    ctx = multiprocessing.get_context("spawn")
    threads = max(1, (os.cpu_count() or 1) // workers)
    before = set(multiprocessing.active_children())
    with cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_init,
                                initargs=(threads, os.getpid(), ctx.Value("i", 0))) as pool:
        futures = [pool.submit(export_chunk, store, t, cache_size) for t in tasks]
        try:
            for fut in cf.as_completed(futures):
                on_done(fut.result())
        except BaseException:
            # kill, do not cancel: the broken pool fails every pending future itself (Python 3.11's pool
            # raises InvalidStateError in its manager thread on a future cancelled meanwhile)
            for proc in set(multiprocessing.active_children()) - before:  # drop the samples in flight
                proc.kill()
            raise


def _number_dask_workers(client) -> None:
    """Number each Dask worker among those of its host (its GPU with ``device: cuda``)."""
    by_host: dict[str, list[str]] = {}
    for addr, info in sorted(client.scheduler_info()["workers"].items()):
        by_host.setdefault(info.get("host", addr), []).append(addr)
    for addrs in by_host.values():
        for k, addr in enumerate(addrs):
            client.run(set_worker_index, k, workers=[addr])


def _local_workers(scheduler: str) -> int | None:
    """N of a ``local:N`` scheduler (a LocalCluster of N processes); None for a scheduler's address."""
    if not scheduler.startswith("local:"):
        return None
    try:
        n = int(scheduler.split(":", 1)[1])
    except ValueError:
        n = 0
    if n < 1:
        raise InputError(f"--scheduler: '{scheduler}' should be local:N with N >= 1")
    return n


#: Longest an interrupted Dask export waits for its running tasks to finish their sample (s).
DASK_STOP_WAIT_S = 600.0


def _run_dask(store: str, tasks: list[list[SampleSpec]], scheduler: str, cache_size: int,
              on_done: Callable[[list[int]], None]) -> None:
    try:
        from distributed import Client, Event, LocalCluster, as_completed, wait
    except ImportError:
        raise InputError("--scheduler needs dask.distributed: pip install 'dask[distributed]'") from None
    cluster = None
    n = _local_workers(scheduler)
    if n is not None:
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None)
        client = Client(cluster)
    else:
        try:
            client = Client(scheduler, timeout="30s")
        except (OSError, ValueError) as exc:  # ValueError: not an address (no port)
            raise InputError(f"--scheduler: cannot connect to {scheduler} ({exc}); give a "
                             "scheduler's address, e.g. tcp://HOST:8786, or local:N") from None
    futures = []
    stop = Event(f"ddsa-sim-export-stop-{uuid.uuid4().hex}", client=client)
    try:
        _number_dask_workers(client)
        futures = [client.submit(export_chunk, store, t, cache_size, stop.name, pure=False) for t in tasks]
        for fut in as_completed(futures):
            on_done(fut.result())
    except BaseException:
        # Dask cannot stop a running task: each stops before its next sample, and the export waits for them, so
        # that none writes after the count, the lock and the exit (they had, into a store a resume then held)
        stop.set()
        wait(futures, timeout=DASK_STOP_WAIT_S)
        client.cancel(futures)
        raise
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


@contextmanager
def _signals_stop_export() -> Iterator[None]:
    """Turn SIGINT / SIGTERM into :class:`ExportInterrupted` in this (main) thread for the block;
    a second signal while stopping is ignored."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, _frame: object) -> None:
        for s in old:
            signal.signal(s, signal.SIG_IGN)
        raise ExportInterrupted(signum)

    # a signal ignored when we started (e.g. SIGINT of a background job, nohup) stays ignored
    old = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)
           if signal.getsignal(s) is not signal.SIG_IGN}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


def _open_or_create(config: DatasetConfig, store_path: Path, resume: bool, specs: list[SampleSpec],
                    fingerprint: str):
    """The store to write: the existing one (``resume``, checked against the config) or a new one, whose
    ``samples_per_split`` attribute holds the plan's count of samples per split (a reader of an interrupted export
    then knows how many each split lacks).
    """
    resolved = config.resolved()
    if resume and store_path.exists():
        root = open_store(store_path, mode="r+")
        check_resumable(root, resolved, fingerprint, store_path)
        remove_partials(store_path)
        return root
    return create_store(store_path, resolved, len(specs), config.image_shape,
                        extra_attrs={"plan_sha256": fingerprint,
                                     "cts": [vars(c) for c in resolve_ct_entries(config)],
                                     SPLIT_COUNTS_ATTR: dict(Counter(spec.split for spec in specs))},
                        frames=config.sequence.frames if config.sequence else 0)


def _discard_new_store(store_path: Path, made_here: bool) -> None:
    """Remove a store this export created and wrote no sample to (its creation or its first sample failed):
    nothing is left that only ``--resume`` could open. The folder goes if the export made it; an empty folder
    given for the store is emptied and kept."""
    shutil.rmtree(store_path, ignore_errors=True)
    if not made_here:
        store_path.mkdir(exist_ok=True)


def run_export(config: DatasetConfig, store_path: str | Path, workers: int = 1, scheduler: str | None = None,
               resume: bool = False, progress: bool = True, chunk_size: int | None = None,
               preview: bool = True) -> ExportResult:
    """Export a dataset (or finish an interrupted one with ``resume=True``).

    Parameters
    ----------
    config : DatasetConfig
        Validated config (``--count`` / ``--seed`` already applied).
    store_path : path
        Output Zarr store (a directory; on a shared filesystem for a multi-node cluster).
    workers : int
        Local worker processes (1: in this process). Ignored with ``scheduler``.
    scheduler : str, optional
        Dask scheduler address, or ``local:N`` to start a LocalCluster of N processes.
    resume : bool
        Continue an existing store: only incomplete samples are rendered. The store must have been
        created from the same config (else InputError).
    chunk_size : int, optional
        Samples per task (default: small enough to keep every worker busy, at most 16).
    preview : bool
        Write ``STORE/preview.png`` at the end.

    Raises
    ------
    InputError
        Existing store without ``resume``, different config on resume, missing or huge CT, or
        another export writing the same store.
    ExportInterrupted
        SIGINT / SIGTERM arrived: the samples in flight were dropped, the store is resumable.
    """
    if workers < 1:
        raise InputError(f"--workers must be >= 1, got {workers}")
    store_path = Path(store_path)
    specs = plan_dataset(config)
    fingerprint = plan_fingerprint(specs)
    preflight(config, scheduler)
    # a new store: nothing there, or an empty folder made for it (emptied again, not removed, if the run fails)
    made_here = not store_path.exists()
    fresh = made_here or (store_path.is_dir() and not any(store_path.iterdir()))
    with writer_lock(store_path), _signals_stop_export():
        try:
            root = _open_or_create(config, store_path, resume, specs, fingerprint)
        except BaseException:  # disk full, interrupted
            if fresh:
                _discard_new_store(store_path, made_here)
            raise
        warn_empty_splits(config, specs)  # once the store is open: not before a refusal that makes it moot
        done_mask = completed(root)
        pending = [s for s in specs if not done_mask[s.index]]
        n_par = workers if scheduler is None else 4
        size = chunk_size or max(1, min(16, len(pending) // (4 * n_par) or 1))
        tasks = make_tasks(pending, size)
        bar = _progress(len(specs), int(done_mask.sum()), progress)
        written: list[int] = []

        def on_done(idx: list[int]) -> None:
            written.extend(idx)
            bar.update(len(idx))

        try:
            if scheduler:
                _run_dask(str(store_path), tasks, scheduler, config.ct_cache_size, on_done)
            else:
                _run_local(str(store_path), tasks, workers, config.ct_cache_size, on_done)
        except ExportInterrupted as exc:
            remove_partials(store_path)
            n_done = int(completed(root).sum())
            raise ExportInterrupted(exc.signum, f"{store_path}: export {exc}, {n_done}/{len(specs)} samples "
                                    "complete; run the same command with --resume to finish it") from None
        except BaseException:
            if fresh and not completed(root).any():  # nothing to resume
                _discard_new_store(store_path, made_here)
            raise
        finally:
            bar.close()
        result = ExportResult(store_path, len(specs), len(written), len(specs) - len(pending),
                              indices=sorted(written))
        if not np.all(completed(root)):
            raise RuntimeError(f"{store_path}: {int((~completed(root)).sum())} sample(s) incomplete after the run")
        if preview:
            from ddsa_sim.export.preview import write_preview

            result.preview = write_preview(root, store_path / "preview.png", seed=config.seed)
    return result
