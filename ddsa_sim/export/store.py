"""The dataset store writer and reader (docs/store_format.md): create, write one sample, read one sample.

The format's facts (names, dtypes, version, checksum) come from :mod:`ddsa_sim.export.format`; this
module is the one writer of that format: the exporter writes through :func:`write_sample`, other
writers (the synthetic training stores) through :func:`create_store` and :func:`write_slot`.

Atomicity
---------
Every array has one chunk per sample (images ``(1, H, W)`` or ``(1, T, H, W)``, metadata ``(1,)``), so parallel writers
never touch the same file. zarr 3's ``LocalStore`` writes each chunk to a ``*.partial`` temporary
file and ``os.replace``-s it into place (``zarr.storage._local._atomic_write``), so a chunk file is
either the old or the new one, never half written. :func:`write_slot` writes the images, then
the metadata with the checksum, and ``meta/complete[i] = 1`` last: a sample whose ``complete`` flag
is set has all its data. A run killed by SIGKILL leaves incomplete slots (re-rendered on resume) and
maybe ``*.partial`` files (removed by :func:`remove_partials`). Not covered: power loss without the
OS flushing its cache (no fsync is done).

One writer
----------
:func:`writer_lock` holds ``<store>.lock`` (beside the store) while an export writes: an exclusive
``flock`` (released by the kernel when its holder dies) on a file naming the holder's host and pid.
A second export, or a ``--resume`` while the first runs, is refused with one line. A lock file left
by a dead process of this host is stale and taken over; one naming another host is honoured (its
liveness cannot be checked from here) until it is deleted.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import socket
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import zarr

import ddsa_sim
from ddsa_sim import InputError
from ddsa_sim.export.format import (
    COLLIMATION_META,
    FORMAT,
    FORMAT_VERSION,
    FRAMES_ATTR,
    IMAGE_ARRAYS,
    IMAGE_DTYPES,
    META_ARRAYS,
    META_GROUP,
    OPTIONAL_META_ARRAYS,
    READABLE_VERSIONS,
    SAMPLE_META_ARRAYS,
    V2_META_ARRAYS,
    V3_META_ARRAYS,
    image_sample_shape,
    meta_sample_shape,
    sample_checksum,
    sample_chunks,
)
from ddsa_sim.files import make_folder

if TYPE_CHECKING:
    from ddsa_sim.export.plan import SampleSpec

# the format's names are re-exported: ``from ddsa_sim.export.store import META_ARRAYS`` keeps working
__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "META_ARRAYS",
    "array_handles",
    "check_resumable",
    "completed",
    "create_store",
    "open_store",
    "params_json",
    "read_meta",
    "read_sample",
    "remove_partials",
    "sample_checksum",
    "sample_meta",
    "write_meta",
    "write_sample",
    "write_slot",
    "writer_lock",
]

# zarr's runtime config of the handles made here, not stored with the arrays: the workers' handles
# (open_store) keep zarr's default and write no chunk that equals the fill value (a sample without vessels has no
# vessel_mask chunk file; inspect checks files only for the meta arrays that never hold their fill value)
_ZARR_CONFIG = {"write_empty_chunks": True}


def create_store(path: str | Path, config: dict[str, Any], n_samples: int, image_shape: tuple[int, int],
                 extra_attrs: dict[str, Any] | None = None, *, overwrite: bool = False,
                 frames: int = 0) -> zarr.Group:
    """Create an empty store with every array preallocated (N slots, ``complete`` all 0).

    Parameters
    ----------
    path
        Directory of the new Zarr v3 group.
    config
        The resolved config that made the store (root attribute ``config``, JSON-serialisable).
    n_samples
        N, the number of sample slots.
    image_shape
        ``(H, W)`` of every image, pixels.
    extra_attrs
        Further root attributes (e.g. ``plan_sha256``, ``cts``).
    overwrite
        Replace whatever is at ``path`` (its contents are deleted) instead of refusing.
    frames
        Contrast frames per sample: 0 for single-frame samples, T >= 1 for sequences (the
        :data:`~ddsa_sim.export.format.FRAME_ARRAYS` get a frame axis, ``(N, T, H, W)``).

    Raises
    ------
    InputError
        If something already exists at ``path`` and ``overwrite`` is false.
    """
    path = Path(path)
    if path.is_file():
        raise InputError(f"{path}: is a file, not a store folder; choose another output")
    if path.exists() and not overwrite and any(path.iterdir()):  # an empty folder made for it is no store yet
        if not (path / "zarr.json").is_file():  # nothing --resume could continue
            raise InputError(f"{path}: already exists and is not a dataset store; choose another output")
        raise InputError(f"{path}: already exists; use --resume to continue it, or choose another output")
    h, w = (int(image_shape[0]), int(image_shape[1]))
    root = zarr.open_group(str(path), mode="w" if overwrite else "w-", zarr_format=3)
    if isinstance(frames, bool) or int(frames) != frames or frames < 0:
        raise InputError(f"store frames must be an integer >= 0, got {frames!r}")
    for name in IMAGE_ARRAYS:
        shape = image_sample_shape(name, (h, w), frames)
        root.create_array(name, shape=(n_samples, *shape), chunks=sample_chunks(shape), dtype=IMAGE_DTYPES[name],
                          fill_value=0, config=_ZARR_CONFIG)
    meta = root.create_group(META_GROUP)
    for name, (dtype, _) in META_ARRAYS.items():
        shape = meta_sample_shape(name, frames)
        fill = "" if dtype is str else 0
        meta.create_array(name, shape=(n_samples, *shape), chunks=sample_chunks(shape), dtype=dtype,
                          fill_value=fill, compressors=None,
                          config=_ZARR_CONFIG)  # a few bytes: compression only costs time
    # attributes last: a store without `format` is not a finished creation
    root.attrs.update({
        **(extra_attrs or {}),
        "software_version": ddsa_sim.__version__,
        "config": config,
        "n_samples": int(n_samples),
        "image_shape": [h, w],
        FRAMES_ATTR: int(frames),
        "format_version": FORMAT_VERSION,
        "format": FORMAT,
    })
    return root


def open_store(path: str | Path, mode: str = "r") -> zarr.Group:
    """Open a dataset store (``mode`` "r" or "r+").

    Readers (``"r"``) accept every version of :data:`~ddsa_sim.export.format.READABLE_VERSIONS` (a
    version-1 store lacks the exposure meta arrays, versions 1-2 the frame times); a writer (``"r+"``,
    resume) only the current one.

    Raises
    ------
    InputError
        Not a ddsa-sim dataset store, an unknown format version, arrays missing, or an array's metadata
        (``zarr.json``) damaged (the message names the file).
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: dataset store not found")
    try:
        root = zarr.open_group(str(path), mode=mode)
    except Exception as exc:
        raise InputError(f"{path}: not a Zarr group ({exc.__class__.__name__})") from None
    attrs = root.attrs
    if attrs.get("format") != FORMAT:
        raise InputError(f"{path}: not a ddsa-sim dataset store (no format attribute: creation interrupted? "
                         f"delete it and export again)")
    version = attrs.get("format_version")
    readable = READABLE_VERSIONS if mode == "r" else (FORMAT_VERSION,)
    if version not in readable:
        raise InputError(f"{path}: store format_version {version} is not {' or '.join(map(str, readable))}")
    try:
        with warnings.catch_warnings():  # the export's preview picture lies in the store's folder, beside the arrays
            warnings.filterwarnings("ignore", message=r"Object at preview\.png is not recognized")
            names = set(root.array_keys())
            meta = root.get(META_GROUP)
            meta_names = set(meta.array_keys()) if isinstance(meta, zarr.Group) else set()
    except Exception as exc:  # noqa: BLE001 - zarr's error on a damaged zarr.json of an array, whatever its type
        raise InputError(_unreadable_member(path, exc)) from None
    expected_meta = [n for n in META_ARRAYS if (version >= 2 or n not in V2_META_ARRAYS)
                     and (version >= 3 or n not in V3_META_ARRAYS) and n not in OPTIONAL_META_ARRAYS]
    missing = [n for n in IMAGE_ARRAYS if n not in names] + [f"{META_GROUP}/{n}" for n in expected_meta
                                                             if n not in meta_names]
    if missing:
        raise InputError(f"{path}: store has the format attributes but lacks array(s) {', '.join(missing[:4])}"
                         f"{' ...' if len(missing) > 4 else ''}; it is damaged: export it again")
    return root


def _unreadable_member(path: Path, exc: Exception) -> str:
    """The one line for a store whose arrays cannot be listed: the first array or group (of the root or of
    ``meta/``) whose ``zarr.json`` does not open is named; ``exc`` is the error of the listing."""
    for member in sorted([*path.glob("*/zarr.json"), *path.glob(f"{META_GROUP}/*/zarr.json")]):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                zarr.open(str(member.parent), mode="r")
        except Exception as err:  # noqa: BLE001 - as the caller's
            return (f"{member}: damaged array metadata ({err.__class__.__name__}); the store cannot be read: "
                    "export it again")
    return f"{path}: cannot list the store's arrays ({exc.__class__.__name__}); it is damaged: export it again"


def params_json(spec: SampleSpec, motion_applied: str | None = None) -> str:
    """The per-sample parameters not in their own meta array, as canonical JSON (a generator's parameters in its
    fields' types, as the tree was made: ``iterations: 5``, not the plan's drawn ``5.0``): every value the plan
    drew for the sample (``electronic_noise``; ``aim_u`` with ``pose.aim``) and, with motion, what the renderer
    drew while rendering (``motion_applied``: the renderer's JSON list of each contrast frame's motion, e.g. a
    rigid motion's ``world_from_world`` transform; docs/store_format.md)."""
    from ddsa_sim.scene.sources import generator_params

    source = spec.vessel_source
    if source["kind"] == "generator" and isinstance(source.get("params"), dict):
        try:
            source = {**source, "params": generator_params(source["name"], source["params"])}
        except InputError:  # parameters of a renderer of one's own, not the generator's: as drawn
            pass
    return json.dumps({
        "vessel_source": source,
        "filter_al_mm": spec.filter_al_mm,
        "isocenter_offset_mm": list(spec.isocenter_offset_mm),
        "noise": spec.noise,
        "scatter": spec.scatter,
        "motion": spec.motion,
        **({"motion_params": spec.motion_params} if spec.motion_params else {}),
        **({"collimation": spec.collimation} if spec.collimation else {}),  # with its distance and leakage
        **({"motion_applied": json.loads(motion_applied)} if motion_applied and spec.motion != "none" else {}),
        "electronic_noise": spec.electronic_noise,
        **({"aim_u": spec.aim_u} if spec.aim else {}),
        "ct_source": spec.ct_source,
        "labels_source": spec.labels_source,
        "renderer": spec.renderer,
    }, sort_keys=True)


def sample_meta(spec: SampleSpec, arrays: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """The :data:`SAMPLE_META_ARRAYS` values of an exported sample (its spec and rendered geometry)."""
    return {
        "split": spec.split,
        "ct_id": spec.ct_id,
        "vessel_id": spec.vessel_id,
        "seed": np.uint64(spec.seed),
        "alpha_deg": spec.alpha_deg,
        "beta_deg": spec.beta_deg,
        "gamma_deg": spec.gamma_deg,
        "isocenter_mm": np.asarray(arrays["isocenter_mm"], dtype=np.float64),
        "projection_matrix": np.asarray(arrays["projection_matrix"], dtype=np.float64),
        "kvp": spec.kvp,
        "photons_per_pixel": float(arrays.get("photons_per_pixel", np.nan if spec.photons_per_pixel is None
                                              else spec.photons_per_pixel)),
        "iodine_mg_per_ml": spec.iodine_mg_per_ml,
        "params_json": params_json(spec, str(arrays["motion_applied"]) if "motion_applied" in arrays else None),
        **{name: float(arrays.get(name, np.nan)) for name in V2_META_ARRAYS},
        "filter_al_mm": spec.filter_al_mm,
        "filter_cu_mm": spec.filter_cu_mm,
        "grid": np.uint8(spec.scatter and spec.grid),
        "detector_mtf50_cycles_per_mm": (np.nan if spec.detector_mtf50_cycles_per_mm is None
                                         else spec.detector_mtf50_cycles_per_mm),
        "bit_depth": np.uint8(spec.bit_depth or 0),
        "frame_times_s": np.asarray(arrays.get("frame_times_s", np.full(max(spec.frames, 1), np.nan)),
                                    dtype=np.float64),
        "mask_time_s": float(arrays.get("mask_time_s", np.nan)),
        "collimation": np.array([0.0] * len(COLLIMATION_META) if spec.collimation is None else
                                [spec.collimation[k] for k in COLLIMATION_META]),
    }


def array_handles(root: zarr.Group) -> dict[str, zarr.Array]:
    """Open every array of the store once (``"meta/<name>"`` for metadata); reuse for many writes."""
    handles = {name: root[name] for name in IMAGE_ARRAYS}
    meta = root[META_GROUP]
    present = set(meta.array_keys())
    handles.update({f"meta/{name}": meta[name] for name in META_ARRAYS if name in present})
    return handles


def write_sample(root: zarr.Group, spec: SampleSpec, arrays: dict[str, np.ndarray],
                 handles: dict[str, zarr.Array] | None = None) -> str:
    """Write one exported sample into slot ``spec.index`` (see :func:`write_slot`).

    Returns the checksum. Only incomplete slots are (re)written by the runner; a resumed run overwrites them.
    ``handles`` (from :func:`array_handles`) saves re-opening the arrays for every sample.
    """
    return write_slot(root, spec.index, arrays, sample_meta(spec, arrays), handles)


def write_slot(root: zarr.Group, index: int, images: Mapping[str, np.ndarray], meta: Mapping[str, Any],
               handles: dict[str, zarr.Array] | None = None) -> str:
    """Write one sample into slot ``index``: images, then metadata and checksum, then ``complete = 1``.

    Parameters
    ----------
    images
        Every array of :data:`IMAGE_ARRAYS`, of its per-sample shape in this store (``(H, W)``; ``(T, H, W)``
        for a sequence store's frame arrays, :func:`~ddsa_sim.export.format.image_sample_shape`);
        other keys are ignored.
    meta
        The :data:`SAMPLE_META_ARRAYS` values (the checksum and ``complete`` are this writer's); those of
        :data:`OPTIONAL_META_ARRAYS` may be left out (they keep their fill value, 0).
    handles
        From :func:`array_handles`, to write many samples without re-opening the arrays.

    Returns
    -------
    str
        The sample's checksum (:func:`sample_checksum`).
    """
    missing = set(SAMPLE_META_ARRAYS) - set(OPTIONAL_META_ARRAYS) - set(meta)
    extra = set(meta) - set(SAMPLE_META_ARRAYS)
    if missing or extra:
        raise ValueError(f"write_slot: meta must name every sample meta array (missing {sorted(missing)}, "
                         f"unknown {sorted(extra)})")
    i = int(index)
    h = handles if handles is not None else array_handles(root)
    _write_many([(h[name], i, images[name]) for name in IMAGE_ARRAYS])
    checksum = sample_checksum(images)
    write_meta(root, i, {**meta, "checksum": checksum}, h)
    h["meta/complete"][i] = 1
    return checksum


def write_meta(root: zarr.Group, index: int, values: Mapping[str, Any],
               handles: dict[str, zarr.Array] | None = None) -> None:
    """Write some metadata of slot ``index`` (never ``complete``: only :func:`write_slot` sets it)."""
    unknown = set(values) - (set(META_ARRAYS) - {"complete"})
    if unknown:
        raise ValueError(f"write_meta: not writable meta arrays {sorted(unknown)}")
    h = handles if handles is not None else array_handles(root)
    _write_many([(h[f"meta/{name}"], int(index), value) for name, value in values.items()
                 if f"meta/{name}" in h])  # an optional array a store made before it lacks


def _write_many(items: list[tuple[zarr.Array, int, Any]]) -> None:
    """Write ``array[index] = value`` for all items concurrently; returns when all are on disk, and raises the first
    error only once every write has ended (none is left writing into a store the caller then removes, as a first
    run that fails, e.g. on a full disk, does).

    Each is a different chunk file; ordering between calls is what :func:`write_slot` relies on.
    """
    try:
        from zarr.core.sync import sync
    except ImportError:  # pragma: no cover - zarr moved it: fall back to sequential writes
        for arr, i, value in items:
            arr[i] = value
        return

    async def _all() -> list:
        return await asyncio.gather(*(arr.async_array.setitem(i, value) for arr, i, value in items),
                                    return_exceptions=True)

    errors = [r for r in sync(_all()) if isinstance(r, BaseException)]
    if errors:
        raise errors[0]


def read_sample(root: zarr.Group, index: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """One sample's images and metadata (reads only that sample's chunks)."""
    arrays = {name: root[name][index] for name in IMAGE_ARRAYS}
    meta = {}
    present = set(root[META_GROUP].array_keys())
    for name in (n for n in META_ARRAYS if n in present):  # optional arrays: absent from older stores
        v = root[META_GROUP][name][index]
        meta[name] = v.item() if np.ndim(v) == 0 and hasattr(v, "item") else v
    return arrays, meta


def read_meta(root: zarr.Group, name: str) -> tuple[np.ndarray, dict[int, str]]:
    """Every sample's value of meta array ``name``, reading past chunks that cannot be decoded.

    A sound array is read at once; a damaged one is split in halves down to its bad chunks (one per sample),
    so the good samples keep their values.

    Returns
    -------
    values : numpy.ndarray
        ``(N, ...)``; a sample whose chunk cannot be decoded has the array's fill value.
    unreadable : dict of int to str
        Sample index -> the decoder's error class, for the samples whose chunk cannot be decoded.
    """
    arr = root[META_GROUP][name]
    unreadable: dict[int, str] = {}

    def read(lo: int, hi: int) -> list[np.ndarray]:
        try:
            return [np.asarray(arr[lo:hi])]
        except Exception as exc:  # noqa: BLE001 - a codec's error on a damaged chunk, whatever its type
            if hi - lo == 1:
                unreadable[lo] = exc.__class__.__name__
                return [np.full((1, *arr.shape[1:]), arr.fill_value, dtype=arr.dtype)]
            mid = (lo + hi) // 2
            return read(lo, mid) + read(mid, hi)

    n = arr.shape[0]
    values = np.concatenate(read(0, n)) if n else np.asarray(arr[:])
    return values, unreadable


def completed(root: zarr.Group) -> np.ndarray:
    """Boolean array (N,): which samples are complete. A flag whose chunk cannot be decoded counts as not
    complete (a resumed export writes the sample again); :func:`read_meta` tells which those are."""
    return read_meta(root, "complete")[0] == 1


def remove_partials(path: str | Path) -> int:
    """Delete ``*.partial`` temporaries a killed writer left behind; returns how many."""
    n = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            if f.endswith(".partial"):
                try:
                    os.remove(os.path.join(dirpath, f))
                    n += 1
                except FileNotFoundError:
                    pass
    return n


#: Config fields that set how an export runs, not what it writes (CTs kept per worker: memory): a resume may change
#: them, e.g. after its workers ran out of memory.
RUN_ONLY_FIELDS = ("ct_cache_size",)


def check_resumable(root: zarr.Group, config: dict[str, Any], plan_sha256: str, path: str | Path) -> None:
    """Refuse to resume a store made from another config (one line naming the differing fields; the
    :data:`RUN_ONLY_FIELDS` may differ)."""
    stored = {k: v for k, v in (root.attrs.get("config") or {}).items() if k not in RUN_ONLY_FIELDS}
    config = {k: v for k, v in config.items() if k not in RUN_ONLY_FIELDS}
    if stored != config:
        keys = sorted(set(stored) | set(config))
        diff = [k for k in keys if stored.get(k) != config.get(k)]
        raise InputError(f"{path}: store was created from a different config (differs in: {', '.join(diff)}); "
                         "cannot resume it with this one")
    if root.attrs.get("plan_sha256") != plan_sha256:
        raise InputError(f"{path}: store was created from a different dataset plan (CT files changed?); "
                         "cannot resume it")
    if root.attrs.get("software_version") != ddsa_sim.__version__:
        warnings.warn(f"{path}: written by ddsa-sim {root.attrs.get('software_version')}, resuming with "
                      f"{ddsa_sim.__version__}; samples may differ between versions", stacklevel=2)


def _lock_holder(fd: int) -> str:
    """The ``host=... pid=...`` line of an open lock file ("" when empty)."""
    os.lseek(fd, 0, os.SEEK_SET)
    return os.read(fd, 256).decode(errors="replace").strip()


def _holder_alive(holder: str) -> bool:
    """Whether the process a lock line names may still run (a process of another host: assumed so)."""
    fields = dict(kv.split("=", 1) for kv in holder.split() if "=" in kv)
    if fields.get("host") != socket.gethostname():
        return bool(fields)
    try:
        os.kill(int(fields.get("pid", "0")), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError):
        return True
    return int(fields["pid"]) != os.getpid()


@contextmanager
def writer_lock(path: str | Path) -> Iterator[Path]:
    """Hold the one-writer lock of the store ``path`` (the file ``<path>.lock``) for a ``with`` block.

    Raises
    ------
    InputError
        Another live process holds it (the message names its host and pid), or a file is in the
        way of the store's folder.
    OSError
        The lock file cannot be created (read-only filesystem, no permission).
    """
    path = Path(path)
    lock = path.with_name(path.name + ".lock")
    make_folder(lock.parent)
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _lock_holder(fd) or "another process"
            os.close(fd)
            raise InputError(f"{path}: another export is writing this store ({holder}); wait for it to end "
                             f"or stop it, then use --resume") from None
        try:
            same_file = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:  # the last holder removed it between our open and flock: try again
            same_file = False
        if same_file:
            break
        os.close(fd)
    try:
        holder = _lock_holder(fd)
        if holder and _holder_alive(holder):  # flock not shared across hosts (some network filesystems)
            raise InputError(f"{path}: locked by {holder} ({lock}); if that process is gone, delete the lock file")
        if holder:
            warnings.warn(f"{lock}: stale lock of {holder} (no such process) taken over", stacklevel=3)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"host={socket.gethostname()} pid={os.getpid()}\n".encode(), 0)
    except BaseException:
        os.close(fd)
        raise
    try:
        yield lock
    finally:
        lock.unlink(missing_ok=True)
        os.close(fd)
