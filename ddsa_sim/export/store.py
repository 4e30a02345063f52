"""The dataset store (docs/store_format.md): create, write one sample, read one sample.

Atomicity
---------
Every array has one chunk per sample (images ``(1, H, W)``, metadata ``(1,)``), so parallel writers
never touch the same file. zarr 3's ``LocalStore`` writes each chunk to a ``*.partial`` temporary
file and ``os.replace``-s it into place (``zarr.storage._local._atomic_write``), so a chunk file is
either the old or the new one, never half written. :func:`write_sample` writes the images, then
the metadata with the checksum, and ``meta/complete[i] = 1`` last: a sample whose ``complete`` flag
is set has all its data. A run killed by SIGKILL leaves incomplete slots (re-rendered on resume) and
maybe ``*.partial`` files (removed by :func:`remove_partials`). Not covered: power loss without the
OS flushing its cache (no fsync is done).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import zarr

import ddsa_sim
from ddsa_sim import InputError
from ddsa_sim.export.plan import SampleSpec
from ddsa_sim.export.sample import IMAGE_ARRAYS, IMAGE_DTYPES

FORMAT = "ddsa-sim-dataset"
FORMAT_VERSION = 1

#: meta/ arrays: name -> (dtype, per-sample shape)
META_ARRAYS: dict[str, tuple[Any, tuple[int, ...]]] = {
    "complete": (np.uint8, ()),
    "checksum": (str, ()),
    "split": (str, ()),
    "ct_id": (str, ()),
    "vessel_id": (str, ()),
    "seed": (np.uint64, ()),
    "alpha_deg": (np.float64, ()),
    "beta_deg": (np.float64, ()),
    "gamma_deg": (np.float64, ()),
    "isocenter_mm": (np.float64, (3,)),
    "projection_matrix": (np.float64, (3, 4)),
    "kvp": (np.float64, ()),
    "photons_per_pixel": (np.float64, ()),
    "iodine_mg_per_ml": (np.float64, ()),
    "params_json": (str, ()),
}

_ZARR_CONFIG = {"write_empty_chunks": True}  # every written sample has its chunk files (same bytes every run)


def create_store(path: str | Path, config: dict[str, Any], n_samples: int, image_shape: tuple[int, int],
                 extra_attrs: dict[str, Any] | None = None) -> zarr.Group:
    """Create an empty store with every array preallocated (N slots, ``complete`` all 0).

    Raises
    ------
    InputError
        If something already exists at ``path``.
    """
    path = Path(path)
    if path.exists():
        raise InputError(f"{path}: already exists; use --resume to continue it, or choose another output")
    h, w = (int(image_shape[0]), int(image_shape[1]))
    root = zarr.open_group(str(path), mode="w-", zarr_format=3)
    for name in IMAGE_ARRAYS:
        root.create_array(name, shape=(n_samples, h, w), chunks=(1, h, w), dtype=IMAGE_DTYPES[name],
                          fill_value=0, config=_ZARR_CONFIG)
    meta = root.create_group("meta")
    for name, (dtype, shape) in META_ARRAYS.items():
        fill = "" if dtype is str else 0
        meta.create_array(name, shape=(n_samples, *shape), chunks=(1, *shape), dtype=dtype, fill_value=fill,
                          compressors=None, config=_ZARR_CONFIG)  # a few bytes: compression only costs time
    # attributes last: a store without `format` is not a finished creation
    root.attrs.update({
        **(extra_attrs or {}),
        "software_version": ddsa_sim.__version__,
        "config": config,
        "n_samples": int(n_samples),
        "image_shape": [h, w],
        "format_version": FORMAT_VERSION,
        "format": FORMAT,
    })
    return root


def open_store(path: str | Path, mode: str = "r") -> zarr.Group:
    """Open a dataset store (``mode`` "r" or "r+").

    Raises
    ------
    InputError
        Not a ddsa-sim dataset store, or an unknown format version.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such store")
    try:
        root = zarr.open_group(str(path), mode=mode)
    except Exception as exc:
        raise InputError(f"{path}: not a Zarr group ({exc.__class__.__name__})") from None
    attrs = root.attrs
    if attrs.get("format") != FORMAT:
        raise InputError(f"{path}: not a ddsa-sim dataset store (no format attribute: creation interrupted? delete it and export again)")
    if attrs.get("format_version") != FORMAT_VERSION:
        raise InputError(f"{path}: store format_version {attrs.get('format_version')} is not {FORMAT_VERSION}")
    return root


def sample_checksum(arrays: dict[str, np.ndarray]) -> str:
    """sha256 (hex) of a sample's image bytes, in :data:`IMAGE_ARRAYS` order (C order, as stored)."""
    h = hashlib.sha256()
    for name in IMAGE_ARRAYS:
        h.update(np.ascontiguousarray(arrays[name], dtype=IMAGE_DTYPES[name].newbyteorder("<")).tobytes())
    return h.hexdigest()


def params_json(spec: SampleSpec) -> str:
    """The per-sample parameters not in their own meta array, as canonical JSON."""
    return json.dumps({
        "vessel_source": spec.vessel_source,
        "filter_al_mm": spec.filter_al_mm,
        "isocenter_offset_mm": list(spec.isocenter_offset_mm),
        "noise": spec.noise,
        "scatter": spec.scatter,
        "motion": spec.motion,
        "ct_source": spec.ct_source,
        "labels_source": spec.labels_source,
        "renderer": spec.renderer,
    }, sort_keys=True)


def array_handles(root: zarr.Group) -> dict[str, zarr.Array]:
    """Open every array of the store once (``"meta/<name>"`` for metadata); reuse for many writes."""
    handles = {name: root[name] for name in IMAGE_ARRAYS}
    meta = root["meta"]
    handles.update({f"meta/{name}": meta[name] for name in META_ARRAYS})
    return handles


def write_sample(root: zarr.Group, spec: SampleSpec, arrays: dict[str, np.ndarray],
                 handles: dict[str, zarr.Array] | None = None) -> str:
    """Write one sample into its slot: images, then metadata and checksum, then ``complete = 1``.

    Returns the checksum. Only incomplete slots are (re)written by the runner; a resumed run overwrites them.
    ``handles`` (from :func:`array_handles`) saves re-opening the arrays for every sample.
    """
    i = spec.index
    h = handles if handles is not None else array_handles(root)
    _write_many([(h[name], i, arrays[name]) for name in IMAGE_ARRAYS])
    values = {
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
        "photons_per_pixel": spec.photons_per_pixel,
        "iodine_mg_per_ml": spec.iodine_mg_per_ml,
        "params_json": params_json(spec),
        "checksum": sample_checksum(arrays),
    }
    _write_many([(h[f"meta/{name}"], i, value) for name, value in values.items()])
    h["meta/complete"][i] = 1
    return values["checksum"]


def _write_many(items: list[tuple[zarr.Array, int, Any]]) -> None:
    """Write ``array[index] = value`` for all items concurrently; returns when all are on disk.

    Each is a different chunk file; ordering between calls is what :func:`write_sample` relies on.
    """
    try:
        from zarr.core.sync import sync
    except ImportError:  # pragma: no cover - zarr moved it: fall back to sequential writes
        for arr, i, value in items:
            arr[i] = value
        return

    async def _all() -> None:
        await asyncio.gather(*(arr.async_array.setitem(i, value) for arr, i, value in items))

    sync(_all())


def read_sample(root: zarr.Group, index: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """One sample's images and metadata (reads only that sample's chunks)."""
    arrays = {name: root[name][index] for name in IMAGE_ARRAYS}
    meta = {}
    for name in META_ARRAYS:
        v = root["meta"][name][index]
        meta[name] = v.item() if np.ndim(v) == 0 and hasattr(v, "item") else v
    return arrays, meta


def completed(root: zarr.Group) -> np.ndarray:
    """Boolean array (N,): which samples are complete."""
    return np.asarray(root["meta"]["complete"][:]) == 1


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


def check_resumable(root: zarr.Group, config: dict[str, Any], plan_sha256: str, path: str | Path) -> None:
    """Refuse to resume a store made from another config (one line naming the differing fields)."""
    stored = root.attrs.get("config")
    if stored != config:
        keys = sorted(set(stored or {}) | set(config))
        diff = [k for k in keys if (stored or {}).get(k) != config.get(k)]
        raise InputError(f"{path}: store was created from a different config (differs in: {', '.join(diff)}); "
                         "cannot resume it with this one")
    if root.attrs.get("plan_sha256") != plan_sha256:
        raise InputError(f"{path}: store was created from a different dataset plan (CT files changed?); "
                         "cannot resume it")
    if root.attrs.get("software_version") != ddsa_sim.__version__:
        warnings.warn(f"{path}: written by ddsa-sim {root.attrs.get('software_version')}, resuming with "
                      f"{ddsa_sim.__version__}; samples may differ between versions", stacklevel=2)
