"""Preview PNG of a dataset: a grid of random complete samples, or of chosen ones.

Columns: mask | contrast | conventional DSA (contrast - mask) | DSA target. Each column has ONE
display window for all its rows (the 1st..99th percentile over the shown images of that column),
so brightness differences between samples are real, not a per-image min-max stretch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import zarr

from ddsa_sim.export.format import META_GROUP
from ddsa_sim.export.store import completed

__all__ = ["COLUMNS", "column_windows", "write_grid", "write_preview"]

COLUMNS = ("mask", "contrast", "contrast - mask", "dsa_target")


def column_windows(images: np.ndarray) -> list[tuple[float, float]]:
    """Per-column (vmin, vmax) over all rows: 1st and 99th percentile. ``images``: (rows, cols, H, W)."""
    out = []
    for c in range(images.shape[1]):
        lo, hi = np.percentile(images[:, c], [1.0, 99.0])
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
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    rows = []
    for i in pick:
        mask, contrast = root["mask"][i], root["contrast"][i]
        rows.append([mask, contrast, contrast - mask, root["dsa_target"][i]])
    images = np.asarray(rows, dtype=np.float32)
    windows = column_windows(images)
    splits = root[META_GROUP]["split"]
    fig, axes = plt.subplots(len(pick), 4, figsize=(4 * 2.2, len(pick) * 2.2), squeeze=False)
    for r, i in enumerate(pick):
        for c in range(4):
            ax = axes[r, c]
            ax.imshow(images[r, c], cmap="gray", vmin=windows[c][0], vmax=windows[c][1], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"{COLUMNS[c]}\n[{windows[c][0]:.3g}, {windows[c][1]:.3g}]", fontsize=8)
            if c == 0:
                ax.set_ylabel(f"#{int(i)} {splits[int(i)]}", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
