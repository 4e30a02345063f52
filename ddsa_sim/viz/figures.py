"""Pictures people look at: PNG images and contact sheets with fixed, shared display windows."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Sequence

import numpy as np

from ddsa_sim.files import atomic_output, save_figure

__all__ = ["contact_sheet", "display_window", "image_grid", "save_figure", "save_png", "to_uint8"]


def display_window(images: Sequence[np.ndarray], lo_pct: float = 0.5, hi_pct: float = 99.5) -> tuple[float, float]:
    """One (low, high) display window shared by a set of images (percentiles over all of them)."""
    vals = np.concatenate([np.asarray(im, dtype=np.float32).ravel()[:: max(1, im.size // 200_000)] for im in images])
    vals = vals[np.isfinite(vals)]
    if vals.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(vals, [lo_pct, hi_pct])
    return float(lo), float(hi if hi > lo else lo + 1e-6)


def to_uint8(image: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """``image`` through ``window`` (low, high) as 0-255 grey levels (clipped, rounded)."""
    lo, hi = window
    return (np.clip((np.asarray(image, dtype=np.float64) - lo) / (hi - lo), 0, 1) * 255).round().astype(np.uint8)


def save_png(image: np.ndarray, path: str | Path, window: tuple[float, float] | None = None) -> Path:
    """Write a grey-level PNG of ``image`` shown through ``window`` (default: its own percentiles)."""
    from PIL import Image

    path = Path(path)
    with atomic_output(path) as tmp:
        Image.fromarray(to_uint8(image, window or display_window([image]))).save(tmp, format="PNG")
    return path


def image_grid(rows: Sequence[Sequence[np.ndarray]], path: str | Path, titles: Sequence[Sequence[str]] | None = None,
               windows: Sequence[tuple[float, float]] | None = None, cmap: str = "gray",
               suptitle: str | None = None, cell_inches: float = 2.2) -> Path:
    """A PNG grid of images (rows x columns) with titles; ``windows`` gives one window per column."""
    from matplotlib.figure import Figure  # not pyplot: a Jupyter kernel keeps its own backend

    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    if windows is None:
        windows = [display_window([r[c] for r in rows if c < len(r)]) for c in range(n_cols)]
    if suptitle:  # wrapped to the figure's width (9 pt characters are under 0.6 em wide): no words cut off at its edges
        width_chars = max(20, int(cell_inches * n_cols * 72 / (9 * 0.6)))
        suptitle = "\n".join(textwrap.fill(line, width_chars, break_on_hyphens=False) for line in suptitle.split("\n"))
    title_inches = 0.2 * (1 + suptitle.count("\n")) if suptitle else 0.0
    height = cell_inches * n_rows + 0.3 + title_inches
    fig = Figure(figsize=(cell_inches * n_cols, height))
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    for i, row in enumerate(rows):
        for j in range(n_cols):
            ax = axes[i][j]
            ax.axis("off")
            if j < len(row):
                ax.imshow(row[j], cmap=cmap, vmin=windows[j][0], vmax=windows[j][1], interpolation="nearest")
                if titles is not None and j < len(titles[i]):
                    ax.set_title(titles[i][j], fontsize=8)
    if suptitle:  # above the grid at a fixed height in inches (a figure fraction would fall into a tall grid)
        fig.suptitle(suptitle, fontsize=9, y=1.0 - 0.05 / height, va="top")
    fig.tight_layout(rect=(0.0, 0.0, 1.0, 1.0 - (title_inches + 0.05) / height if suptitle else 1.0))
    return save_figure(fig, path)


def contact_sheet(images: Sequence[np.ndarray], titles: Sequence[str], path: str | Path, n_cols: int = 6) -> Path:
    """All images of a sweep on one PNG, through one shared window."""
    window = display_window(images)
    rows = [list(images[i:i + n_cols]) for i in range(0, len(images), n_cols)]
    trows = [list(titles[i:i + n_cols]) for i in range(0, len(titles), n_cols)]
    return image_grid(rows, path, trows, windows=[window] * n_cols)
