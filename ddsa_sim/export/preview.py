"""Preview PNG of a dataset: a grid of random complete samples, or of chosen ones.

Columns: mask | contrast | conventional DSA (contrast - mask) | DSA target. Each column has ONE
display window for all its rows (the 1st..99th percentile over the shown images of that column),
so brightness differences between samples are real, not a per-image min-max stretch. In a sequence
store a row shows the sample's frame with the most iodine (its title names the frame);
:func:`write_sequence_strip` shows all frames of one sample.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import zarr

from ddsa_sim.export.format import META_GROUP, exposed_field, store_frames
from ddsa_sim.export.store import completed
from ddsa_sim.files import save_figure

__all__ = ["COLUMNS", "column_windows", "peak_frame", "write_grid", "write_preview", "write_sequence_strip"]

COLUMNS = ("mask", "contrast", "contrast - mask", "dsa_target")


def column_windows(images: np.ndarray, exposed: np.ndarray | None = None) -> list[tuple[float, float]]:
    """Per-column (vmin, vmax) over all rows: 1st and 99th percentile. ``images``: (rows, cols, H, W);
    ``exposed``: (rows, H, W) bool, the pixels counted (a collimated sample's unexposed border left out)."""
    out = []
    for c in range(images.shape[1]):
        values = images[:, c] if exposed is None else images[:, c][exposed]
        lo, hi = np.percentile(values, [1.0, 99.0])
        out.append((float(lo), float(hi) if hi > lo else float(lo) + 1e-6))
    return out


def write_preview(root: zarr.Group, path: str | Path, n: int = 6, seed: int = 0) -> Path | None:
    """Write a PNG grid of up to ``n`` random complete samples; None when none is complete."""
    done = np.flatnonzero(completed(root))
    if done.size == 0:
        return None
    rng = np.random.default_rng(seed)
    return write_grid(root, np.sort(rng.choice(done, size=min(n, done.size), replace=False)), path)


def write_grid(root: zarr.Group, pick: np.ndarray | list[int], path: str | Path) -> Path:
    """Write the PNG grid of the store samples ``pick`` (one row each, the :data:`COLUMNS`)."""
    from matplotlib.figure import Figure  # not pyplot: a Jupyter kernel keeps its own backend

    rows, labels, exposed = [], [], []
    meta = root[META_GROUP]
    for i in pick:
        k = peak_frame(root, int(i))
        at = (int(i),) if k is None else (int(i), k)
        mask, contrast = root["mask"][int(i)], root["contrast"][at]
        rows.append([mask, contrast, contrast - mask, root["dsa_target"][at]])
        collimation = meta["collimation"][int(i)] if "collimation" in meta else None
        exposed.append(exposed_field(collimation, mask.shape))
        collimated = collimation is not None and np.any(np.asarray(collimation) != 0)
        labels.append(("" if k is None else f" f{k}") + (" coll." if collimated else ""))
    images = np.asarray(rows, dtype=np.float32)
    windows = column_windows(images, np.asarray(exposed))
    splits = root[META_GROUP]["split"]
    fig = Figure(figsize=(4 * 2.2, len(pick) * 2.2))
    axes = fig.subplots(len(pick), 4, squeeze=False)
    for r, i in enumerate(pick):
        for c in range(4):
            ax = axes[r, c]
            ax.imshow(images[r, c], cmap="gray", vmin=windows[c][0], vmax=windows[c][1], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"{COLUMNS[c]}\n[{windows[c][0]:.3g}, {windows[c][1]:.3g}]", fontsize=8)
            if c == 0:
                ax.set_ylabel(f"#{int(i)}{labels[r]} {splits[int(i)]}", fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def peak_frame(root: zarr.Group, index: int) -> int | None:
    """The frame of sample ``index`` with the most projected iodine (None in a single-frame store)."""
    if not store_frames(root.attrs):
        return None
    return int(np.argmax(np.asarray(root["iodine_mg_per_cm2"][index], dtype=np.float64).sum(axis=(1, 2))))


def write_sequence_strip(root: zarr.Group, index: int, path: str | Path) -> Path:
    """PNG of every frame of sequence sample ``index``: rows contrast - mask and DSA target (one window
    per row over all frames), one column per frame titled with its time (s)."""
    from matplotlib.figure import Figure  # not pyplot: a Jupyter kernel keeps its own backend

    mask = np.asarray(root["mask"][index], dtype=np.float32)
    rows = np.stack([np.asarray(root["contrast"][index], dtype=np.float32) - mask,
                     np.asarray(root["dsa_target"][index], dtype=np.float32)])
    times = np.asarray(root[META_GROUP]["frame_times_s"][index], dtype=np.float64)
    n = rows.shape[1]
    fig = Figure(figsize=(n * 1.8, 2 * 1.9))
    axes = fig.subplots(2, n, squeeze=False)
    for r, name in enumerate(("contrast - mask", "dsa_target")):
        lo, hi = np.percentile(rows[r], [1.0, 99.0])
        for k in range(n):
            ax = axes[r, k]
            ax.imshow(rows[r, k], cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1e-6, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"t = {times[k]:.2f} s", fontsize=8)
            if k == 0:
                ax.set_ylabel(name, fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)
