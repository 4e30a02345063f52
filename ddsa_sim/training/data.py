"""Torch datasets: exported Zarr stores (docs/store_format.md) and on-the-fly rendering.

Both datasets return, per index, a dict of float32 tensors of shape ``(1, H, W)`` in the -ln domain::

    {"contrast_clean", "contrast", "mask", "dsa_target"}  (+ "index": int64 scalar tensor)

Random crops, noise injection and augmentation are applied per *batch* on the training device by
:func:`ddsa_sim.training.augment.make_training_batch` (seeded by a ``torch.Generator``), so datasets are
deterministic functions of the index.

The on-the-fly contract (``render_fn``) is a plain callable ``index -> dict[str, np.ndarray]`` returning
at least the four 2-D float arrays above, all of one shape; it must be deterministic in ``index``
(derive the sample seed from the dataset seed and the index).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from ddsa_sim import InputError
from ddsa_sim.export.format import FORMAT, META_GROUP, READABLE_VERSIONS

__all__ = ["IMAGE_KEYS", "InfiniteSampler", "OnTheFlyDataset", "ZarrDDSADataset", "open_store"]

#: the images a dataset item carries (a subset of the store's :data:`~ddsa_sim.export.format.IMAGE_ARRAYS`)
IMAGE_KEYS: tuple[str, ...] = ("contrast_clean", "contrast", "mask", "dsa_target")


def _to_item(arrays: dict[str, np.ndarray], index: int) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    shape = None
    for k in IMAGE_KEYS:
        if k not in arrays:
            raise InputError(f"sample {index}: missing image '{k}'")
        a = np.asarray(arrays[k], dtype=np.float32)
        if a.ndim != 2:
            raise InputError(f"sample {index}: image '{k}' must be 2-D, got shape {a.shape}")
        if shape is not None and a.shape != shape:
            raise InputError(f"sample {index}: image '{k}' shape {a.shape} != {shape}")
        shape = a.shape
        out[k] = torch.from_numpy(np.ascontiguousarray(a))[None]
    out["index"] = torch.tensor(index, dtype=torch.int64)
    return out


def _str_array(a: Any) -> np.ndarray:
    """Any zarr string column (fixed-width, object or StringDType) -> numpy ``<U`` array."""
    return np.array([str(v) for v in np.asarray(a).tolist()], dtype=str)


def open_store(store: str | Path) -> Any:
    """Open an exported dataset store read-only and check its format header.

    Raises
    ------
    ddsa_sim.InputError
        Missing path, not a ddsa-sim store, or an unsupported version.
    """
    import zarr

    store = Path(store)
    if not store.exists():
        raise InputError(f"dataset store not found: {store}")
    try:
        group = zarr.open_group(str(store), mode="r")
    except Exception as exc:  # zarr raises various types for non-stores
        raise InputError(f"{store}: not a Zarr group ({type(exc).__name__})") from None
    attrs = dict(group.attrs)
    if attrs.get("format") != FORMAT:
        raise InputError(f"{store}: not a ddsa-sim dataset (format={attrs.get('format')!r})")
    if int(attrs.get("format_version", -1)) not in READABLE_VERSIONS:
        raise InputError(f"{store}: unsupported format_version {attrs.get('format_version')}")
    return group


class ZarrDDSADataset(Dataset):
    """Samples of one split of an exported Zarr store.

    Only complete samples (``meta/complete == 1``) of the split are served.

    Parameters
    ----------
    store
        Path of the Zarr group written by ``ddsa-sim export``.
    split
        ``"train"``, ``"val"`` or ``"test"``.
    in_memory
        Read all selected samples once into RAM (small stores, fast CPU training).
    max_samples
        Keep only the first ``max_samples`` samples of the split.
    """

    def __init__(
        self,
        store: str | Path,
        split: str,
        in_memory: bool = False,
        max_samples: int | None = None,
    ) -> None:
        self.store = Path(store)
        self.split = split
        group = open_store(self.store)
        meta = group[META_GROUP]
        splits = _str_array(meta["split"][:])
        complete = np.asarray(meta["complete"][:]).astype(bool)
        self.indices = np.nonzero((splits == split) & complete)[0]
        if max_samples is not None:
            self.indices = self.indices[:max_samples]
        self.image_shape = tuple(int(s) for s in group.attrs["image_shape"])
        self.ct_ids = _str_array(meta["ct_id"][:])[self.indices]
        self._group: Any = None
        self._cache: list[dict[str, torch.Tensor]] | None = None
        if in_memory:
            self._cache = [self._read(i) for i in range(len(self.indices))]

    def __len__(self) -> int:
        return len(self.indices)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_group"] = None  # reopened lazily in each worker
        return state

    def _read(self, i: int) -> dict[str, torch.Tensor]:
        if self._group is None:
            self._group = open_store(self.store)
        j = int(self.indices[i])
        arrays = {k: self._group[k][j] for k in IMAGE_KEYS}
        return _to_item(arrays, j)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        if i < 0 or i >= len(self):
            raise IndexError(i)
        if self._cache is not None:
            return self._cache[i]
        return self._read(i)

    def meta(self, i: int) -> dict[str, Any]:
        """Per-sample metadata (split, ct_id, vessel_id, pose, params) of item ``i``."""
        if self._group is None:
            self._group = open_store(self.store)
        j = int(self.indices[i])
        m = self._group[META_GROUP]
        out: dict[str, Any] = {"store_index": j}
        for k in ("split", "ct_id", "vessel_id", "alpha_deg", "beta_deg", "gamma_deg"):
            if k in m:
                v = m[k][j]
                out[k] = v.item() if hasattr(v, "item") else v
        if "params_json" in m:
            try:
                out["params"] = json.loads(str(m["params_json"][j]))
            except (TypeError, ValueError):
                pass
        return out


class OnTheFlyDataset(Dataset):
    """Samples rendered on demand by a plain callable (effectively infinite data).

    Parameters
    ----------
    render_fn
        ``index -> {"contrast_clean", "contrast", "mask", "dsa_target": 2-D float arrays}``,
        deterministic in ``index``.
    length
        Number of indices served (``0 .. length-1``).
    """

    def __init__(self, render_fn: Callable[[int], dict[str, np.ndarray]], length: int) -> None:
        if length < 1:
            raise InputError(f"OnTheFlyDataset: length must be >= 1, got {length}")
        self.render_fn = render_fn
        self.length = int(length)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        if i < 0 or i >= self.length:
            raise IndexError(i)
        return _to_item(self.render_fn(int(i)), int(i))


class InfiniteSampler(Sampler[int]):
    """Endless seeded shuffles of ``range(n)``, sharded over DDP ranks, resumable.

    Epoch ``e`` uses ``torch.randperm(n)`` from a generator seeded with ``seed + e``; rank ``r`` of
    ``world`` takes every ``world``-th element starting at ``r``. ``start`` skips that many draws of
    this rank (resume after ``step * batch_size`` draws).
    """

    def __init__(self, n: int, seed: int = 0, rank: int = 0, world: int = 1, start: int = 0) -> None:
        if n < 1:
            raise InputError("training split is empty")
        self.n, self.seed, self.rank, self.world, self.start = n, seed, rank, world, start

    def __iter__(self):  # type: ignore[override]
        epoch, skipped = 0, 0
        while True:
            g = torch.Generator().manual_seed(self.seed + epoch)
            perm = torch.randperm(self.n, generator=g)
            if self.n < self.world:  # tiny sets: every rank still gets data
                perm = perm.repeat(self.world)
            for idx in perm[self.rank :: self.world].tolist():
                if skipped < self.start:
                    skipped += 1
                    continue
                yield idx
            epoch += 1

    def __len__(self) -> int:  # pragma: no cover - infinite
        return 2**62
