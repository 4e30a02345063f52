"""Synthetic 2-D DDSA phantoms and a tiny store writer (for tests, demos and CPU smoke runs).

Not physics: a smooth "anatomy" background with sharp-edged "bones" (the mask, -ln domain) plus random
Gaussian-profile line "vessels" (the DSA target). The contrast frame is recorded after a sub-pixel
rigid shift of the anatomy (patient motion), so conventional ``contrast - mask`` shows misregistration.
Each "CT" (background) is drawn from ``(seed, ct)``, each sample's vessels and motion from
``(seed, ct, k)``. :func:`write_synthetic_store` writes them through the dataset store writer
(:mod:`ddsa_sim.export.store`, format of ``docs/store_format.md``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["SyntheticRenderer", "phantom_sample", "write_synthetic_store"]


def _background(rng: np.random.Generator, size: int):
    blobs = [
        (rng.uniform(0, size, 2), rng.uniform(size / 10, size / 3), rng.uniform(0.3, 1.5)) for _ in range(6)
    ]
    bones = [
        (
            rng.uniform(0.2 * size, 0.8 * size, 2),
            rng.uniform(size / 12, size / 5, 2),
            rng.uniform(0, np.pi),
            rng.uniform(0.5, 1.2),
        )
        for _ in range(3)
    ]

    def bg(yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
        out = np.full(yy.shape, 2.0)
        for (cy, cx), s, a in blobs:
            out += a * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
        for (cy, cx), (ry, rx), th, a in bones:
            c, s = np.cos(th), np.sin(th)
            u = ((xx - cx) * c + (yy - cy) * s) / rx
            v = (-(xx - cx) * s + (yy - cy) * c) / ry
            r = np.sqrt(u * u + v * v)
            out += a / (1 + np.exp((r - 1) * min(rx, ry) / 0.5))  # edge width ~0.5 px
        return out

    return bg


def _vessels(rng: np.random.Generator, size: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    out = np.zeros((size, size))
    for _ in range(int(rng.integers(3, 7))):
        pts = [rng.uniform(0, size, 2)]
        for _ in range(int(rng.integers(2, 5))):
            pts.append(np.clip(pts[-1] + rng.normal(0, size / 4, 2), 0, size - 1))
        w, amp = rng.uniform(0.7, 2.0), rng.uniform(0.15, 0.5)
        for p, q in zip(pts[:-1], pts[1:]):
            d = q - p
            t = np.clip(((yy - p[0]) * d[0] + (xx - p[1]) * d[1]) / max(d @ d, 1e-9), 0, 1)
            dist2 = (yy - p[0] - t * d[0]) ** 2 + (xx - p[1] - t * d[1]) ** 2
            out = np.maximum(out, amp * np.exp(-dist2 / (2 * w * w)))
    return out


def _noisy(img: np.ndarray, photons: float, rng: np.random.Generator) -> np.ndarray:
    counts = rng.poisson(photons * np.exp(-img))
    return -np.log(np.maximum(counts, 1) / photons)


def phantom_sample(
    seed: int, ct: int, k: int, size: int = 64, motion_px: float = 1.5, photons: float = 1e5
) -> dict[str, np.ndarray]:
    """One synthetic sample (float32 images, -ln domain) of background ``ct``, draw ``k``."""
    bg = _background(np.random.default_rng([seed, ct]), size)
    rng = np.random.default_rng([seed, ct, k, 1])
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    dy, dx = rng.uniform(-motion_px, motion_px, 2)
    mask_clean = bg(yy, xx)
    moved = bg(yy - dy, xx - dx)
    target = _vessels(rng, size)
    contrast_clean = moved + target
    out = {
        "mask": _noisy(mask_clean, photons, rng),
        "contrast": _noisy(contrast_clean, photons, rng),
        "contrast_clean": contrast_clean,
        "dsa_target": target,
        "iodine_mg_per_cm2": target * 20.0,
        "vessel_mask": (target > 1e-3).astype(np.uint8),
    }
    return {k2: v.astype(np.float32) if v.dtype != np.uint8 else v for k2, v in out.items()}


class SyntheticRenderer:
    """Picklable ``index -> sample`` callable for :class:`~ddsa_sim.training.data.OnTheFlyDataset`."""

    def __init__(self, seed: int = 0, n_ct: int = 8, size: int = 64, motion_px: float = 1.5) -> None:
        self.seed, self.n_ct, self.size, self.motion_px = seed, n_ct, size, motion_px

    def __call__(self, index: int) -> dict[str, np.ndarray]:
        return phantom_sample(self.seed, index % self.n_ct, index // self.n_ct, self.size, self.motion_px)


def write_synthetic_store(
    path: str | Path,
    splits: dict[str, int] | None = None,
    per_ct: int = 4,
    size: int = 64,
    seed: int = 0,
    motion_px: float = 1.5,
    incomplete: int = 0,
) -> Path:
    """Write a store of :func:`phantom_sample` images through the dataset store writer; CTs are split, never images.

    The store is written by :mod:`ddsa_sim.export.store`, so it has every array and attribute of an
    exported store (``docs/store_format.md``) and the same checksums. The phantoms have no C-arm
    geometry: ``isocenter_mm`` and ``projection_matrix`` are NaN, the pose angles 0. Whatever is at
    ``path`` is replaced.

    Parameters
    ----------
    splits
        Number of CTs per split, default ``{"train": 6, "val": 1, "test": 2}``.
    per_ct
        Samples per CT.
    size
        Image side, pixels.
    incomplete
        Extra "train" sample slots left incomplete (``meta/complete == 0``, zero images, no checksum),
        as a killed export leaves them.
    """
    from ddsa_sim.export.store import array_handles, create_store, write_meta, write_slot

    splits = splits or {"train": 6, "val": 1, "test": 2}
    plan = [(name, ct) for ct, name in enumerate(n for n, c in splits.items() for _ in range(c))]
    rows = [(name, ct, k) for name, ct in plan for k in range(per_ct)]
    n = len(rows) + incomplete
    config = {"synthetic": True, "seed": seed, "size": size, "motion_px": motion_px}
    root = create_store(path, config, n, (size, size), overwrite=True)
    handles = array_handles(root)

    def meta(i: int, split: str, ct_id: str, vessel_id: str, params: str) -> dict[str, Any]:
        return {
            "split": split, "ct_id": ct_id, "vessel_id": vessel_id, "seed": np.uint64(i),
            "alpha_deg": 0.0, "beta_deg": 0.0, "gamma_deg": 0.0,
            "isocenter_mm": np.full(3, np.nan), "projection_matrix": np.full((3, 4), np.nan),
            "kvp": 90.0, "photons_per_pixel": 1e5, "iodine_mg_per_ml": 350.0, "params_json": params,
            "mas": np.nan, "air_kerma_ugy": np.nan, "detector_air_kerma_ugy": np.nan,
            "frame_times_s": np.full(1, np.nan), "mask_time_s": np.nan,
        }

    for i, (name, ct, k) in enumerate(rows):
        images = phantom_sample(seed, ct, k, size, motion_px)
        write_slot(root, i, images,
                   meta(i, name, f"synthetic-ct-{ct:03d}", f"lines-{ct:03d}-{k:03d}",
                        json.dumps({"motion_px": motion_px})), handles)
    for i in range(len(rows), n):
        write_meta(root, i, meta(i, "train", "unfinished", "", "{}"), handles)
    return Path(path)
