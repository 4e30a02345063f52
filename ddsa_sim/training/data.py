"""Torch datasets: exported Zarr stores (docs/store_format.md) and on-the-fly rendering.

Both datasets return, per index, a dict of float32 tensors of shape ``(1, H, W)`` in the -ln domain::

    {"contrast_clean", "contrast", "mask", "dsa_target"}  (+ "index": int64 scalar tensor)

and the store dataset also ``"dose_ugy"``, a float64 scalar tensor: the frame's detector air kerma behind the
patient, uGy (the store's ``detector_air_kerma_ugy``; NaN in a store without it).

Random crops, noise injection and augmentation are applied per *batch* on the training device by
:func:`ddsa_sim.training.augment.make_training_batch` (seeded by a ``torch.Generator``), so datasets are
deterministic functions of the index.

A sequence store (``docs/store_format.md``: T contrast frames per sample) serves every frame as one
training pair: item ``i`` is frame ``frame_index[i]`` of store sample ``indices[i]``, with the
sample's one mask and that frame's contrast, clean contrast and target (items are sample-major:
the T frames of a sample follow each other). A verified read of a frame checks the whole sample's
checksum (all T frames).

Reads of a store verify each sample's checksum (:func:`~ddsa_sim.export.format.sample_checksum`,
over all six stored images, so a verified read reads two more images than an item needs; cost:
``docs/reliability.md``). ``verify="refuse"`` stops at a corrupted sample with one line naming the
store and sample, ``"skip"`` checks the whole split once when the dataset is made and leaves the
corrupted samples out (a warning counts them), ``"off"`` reads without checking.

The on-the-fly contract (``render_fn``) is a plain callable ``index -> dict[str, np.ndarray]`` returning
at least the four 2-D float arrays above, all of one shape; it must be deterministic in ``index``
(derive the sample seed from the dataset seed and the index).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from ddsa_sim import InputError
from ddsa_sim.export.format import IMAGE_ARRAYS, META_GROUP, SPLIT_COUNTS_ATTR, SPLITS, sample_checksum, store_frames
from ddsa_sim.export.store import open_store

__all__ = ["IMAGE_KEYS", "VERIFY_MODES", "InfiniteSampler", "OnTheFlyDataset", "ZarrDDSADataset", "open_store"]

#: what a store dataset does about sample checksums (see the module docstring)
VERIFY_MODES: tuple[str, ...] = ("refuse", "skip", "off")

#: the images a dataset item carries (a subset of the store's :data:`~ddsa_sim.export.format.IMAGE_ARRAYS`)
IMAGE_KEYS: tuple[str, ...] = ("contrast_clean", "contrast", "mask", "dsa_target")


def _frame(arrays: dict[str, np.ndarray], k: int) -> dict[str, np.ndarray]:
    """Frame ``k`` of a sequence sample's arrays (the mask is one per sample); ``k < 0``: a single-frame sample."""
    return arrays if k < 0 else {name: a if name == "mask" else a[k] for name, a in arrays.items()}


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
        Keep ``max_samples`` (sound) items of the split (frames, in a sequence store), evenly spaced in
        store order from its first to its last: a subset spans every CT of the split, not only the
        first CT's samples (a validation split of chest and head pseudo-patients, for example).
    verify
        ``"refuse"`` (default), ``"skip"`` or ``"off"``: see the module docstring.

    Attributes
    ----------
    indices
        Store sample of each item.
    frame_index
        Frame of each item within its sample (-1 in a single-frame store).
    frames
        T, contrast frames per sample (0: a single-frame store).
    skipped
        Store indices of the corrupted samples left out (``verify="skip"``).
    """

    def __init__(
        self,
        store: str | Path,
        split: str,
        in_memory: bool = False,
        max_samples: int | None = None,
        verify: str = "refuse",
    ) -> None:
        if verify not in VERIFY_MODES:
            raise InputError(f"verify: must be one of {', '.join(VERIFY_MODES)}, not {verify!r}")
        if split not in SPLITS:
            raise InputError(f"split: must be one of {', '.join(SPLITS)}, not {split!r}")
        self.store = Path(store)
        self.split = split
        self.verify = verify
        group = open_store(self.store)
        self._group: Any = group
        meta = group[META_GROUP]
        splits = _str_array(meta["split"][:])
        complete = np.asarray(meta["complete"][:]).astype(bool)
        self._checksums = _str_array(meta["checksum"][:])
        self.indices = np.nonzero((splits == split) & complete)[0]
        planned = int(group.attrs.get(SPLIT_COUNTS_ATTR, {}).get(split, np.count_nonzero(splits == split)))
        if len(self.indices) < planned:
            warnings.warn(f"{self.store}: {len(self.indices)} of {planned} samples of split "
                          f"'{split}' are complete (an interrupted export?): using those; finish the store with "
                          "`ddsa-sim export CONFIG -o STORE --resume`", stacklevel=2)
        self.skipped: list[int] = []
        if verify == "skip":
            self.skipped = [int(j) for j in self.indices if self._damage(int(j))[1] is not None]
            self.indices = np.setdiff1d(self.indices, self.skipped)
            if self.skipped:
                warnings.warn(f"{self.store}: skipped {len(self.skipped)} corrupted sample(s) of split '{split}' "
                              f"(store indices {self.skipped[:10]}{' ...' if len(self.skipped) > 10 else ''})",
                              stacklevel=2)
        self.frames = store_frames(group.attrs)
        self.frame_index = np.full(len(self.indices), -1, dtype=np.int64)
        if self.frames:  # every frame of a sequence is one item
            self.indices = np.repeat(self.indices, self.frames)
            self.frame_index = np.tile(np.arange(self.frames, dtype=np.int64), len(self.indices) // self.frames)
        if max_samples is not None and max_samples < len(self.indices):
            keep = np.unique(np.linspace(0, len(self.indices) - 1, max_samples).round().astype(np.int64))
            self.indices, self.frame_index = self.indices[keep], self.frame_index[keep]
        self.image_shape = tuple(int(s) for s in group.attrs["image_shape"])
        self.ct_ids = _str_array(meta["ct_id"][:])[self.indices]
        # per store sample; NaN in a version 1 store, which has no exposure arrays
        self._dose_ugy = (np.asarray(meta["detector_air_kerma_ugy"][:], np.float64) if "detector_air_kerma_ugy" in meta
                          else np.full(len(splits), np.nan))
        self._cache: list[dict[str, torch.Tensor]] | None = None
        if in_memory:
            self._cache = [self._read(i) for i in range(len(self.indices))]

    def __len__(self) -> int:
        return len(self.indices)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_group"] = None  # reopened lazily in each worker
        return state

    def _root(self) -> Any:
        """The store's root group, opened on first use (and again in each DataLoader worker)."""
        if self._group is None:
            self._group = open_store(self.store)
        return self._group

    @staticmethod
    def _frame_of(name: str, j: int, k: int) -> tuple[int, ...]:
        """Index of image ``name`` of store sample ``j``, frame ``k`` (-1: a single-frame store; the mask
        frame is one per sample)."""
        return (j,) if name == "mask" or k < 0 else (j, k)

    def _damage(self, j: int) -> tuple[dict[str, np.ndarray], str | None]:
        """Store sample ``j``'s images and what is wrong with them (None: the checksum matches)."""
        try:
            arrays = {k: self._root()[k][j] for k in IMAGE_ARRAYS}
        except Exception as exc:  # noqa: BLE001 - a codec's error on a damaged chunk, whatever its type
            return {}, f"unreadable chunk ({exc.__class__.__name__})"
        if sample_checksum(arrays) != self._checksums[j]:
            return arrays, "checksum mismatch"
        return arrays, None

    def _read(self, i: int) -> dict[str, torch.Tensor]:
        j, k = int(self.indices[i]), int(self.frame_index[i])
        if self.verify == "off":
            item = _to_item({name: self._root()[name][self._frame_of(name, j, k)]
                             for name in IMAGE_KEYS}, j)
        else:
            arrays, why = self._damage(j)
            if why is not None:
                raise InputError(f"{self.store}: sample {j} is corrupted ({why}); `ddsa-sim inspect {self.store}` "
                                 "lists all; --verify skip leaves them out, --verify off reads without checking")
            item = _to_item(_frame(arrays, k), j)
        item["dose_ugy"] = torch.tensor(self._dose_ugy[j], dtype=torch.float64)
        return item

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        if i < 0 or i >= len(self):
            raise IndexError(i)
        if self._cache is not None:
            return self._cache[i]
        return self._read(i)

    def dsa_target(self, i: int) -> np.ndarray:
        """The ``dsa_target`` of item ``i``, ``(H, W)`` float32 -ln, read without the item's other images
        (for the data range of a split; the checksum is verified when the item itself is read)."""
        if i < 0 or i >= len(self):
            raise IndexError(i)
        if self._cache is not None:
            return self._cache[i]["dsa_target"][0].numpy()
        j, k = int(self.indices[i]), int(self.frame_index[i])
        return np.asarray(self._root()["dsa_target"][self._frame_of("dsa_target", j, k)], dtype=np.float32)

    def vessel_mask(self, i: int) -> np.ndarray:
        """The store's ``vessel_mask`` of item ``i`` as a bool ``(H, W)`` array (for evaluation; the
        sample's checksum is verified when the item itself is read)."""
        if i < 0 or i >= len(self):
            raise IndexError(i)
        return np.asarray(self._root()["vessel_mask"][int(self.indices[i])]) != 0

    def pixel_mm(self) -> float | None:
        """Median pixel spacing at the isocenter of the split's samples, mm
        (:func:`~ddsa_sim.geometry.pixel_scale.pixel_spacing_at`); None where no sample has a C-arm geometry
        (an empty split, or images without one, such as :mod:`ddsa_sim.training.synthetic`'s)."""
        from ddsa_sim.geometry.pixel_scale import median_pixel_spacing

        m, samples = self._root()[META_GROUP], np.unique(self.indices)
        return median_pixel_spacing(np.asarray(m["projection_matrix"][:])[samples], np.asarray(m["isocenter_mm"][:])[samples])

    def meta(self, i: int) -> dict[str, Any]:
        """Per-sample metadata (split, ct_id, vessel_id, pose, params) of item ``i``."""
        j = int(self.indices[i])
        m = self._root()[META_GROUP]
        out: dict[str, Any] = {"store_index": j, "frame": int(self.frame_index[i])}
        if self.frames and "frame_times_s" in m:
            out["time_s"] = float(m["frame_times_s"][j][self.frame_index[i]])
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
