"""Evaluate a checkpoint on a store split: network vs conventional log-subtraction DSA.

Conventional DSA of a sample is ``contrast - mask`` (from the store; it carries the motion
misregistration of the export). Both are scored against ``dsa_target`` in the -ln domain with the
metrics of :mod:`ddsa_sim.training.metrics`. PSNR/SSIM ``data_range`` is one fixed number per run:
``max(dsa_target) - min(dsa_target)`` over all evaluated samples; it is reported in the output.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from tqdm import tqdm

from ddsa_sim import InputError
from ddsa_sim.training.checkpoint import load_model
from ddsa_sim.training.data import ZarrDDSADataset
from ddsa_sim.training.loop import target_data_range
from ddsa_sim.training.metrics import all_metrics, summarize


def _to_u8(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return (np.clip((x - lo) / max(hi - lo, 1e-12), 0, 1) * 255).round().astype(np.uint8)


#: column titles of the comparison grid, left to right
GRID_COLUMNS = ("contrast", "contrast - mask", "network", "target")
_HEADER_PX = 16


def _header(widths: list[int], total: int) -> np.ndarray:
    """A white strip with :data:`GRID_COLUMNS` written over columns of ``widths`` (separators of 4 px)."""
    img = Image.new("L", (total, _HEADER_PX), 255)
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=11)
    x = 0
    for title, w in zip(GRID_COLUMNS, widths):
        draw.text((x + 2, 2), title, fill=0, font=font)
        x += w + 4
    return np.asarray(img)


def comparison_grid(rows: list[tuple[np.ndarray, ...]], path: str | Path) -> Path:
    """Write a PNG grid with a title strip, one row per sample: contrast | conventional DSA (contrast -
    mask) | network | target.

    Contrast is min-max scaled for display; the three DSA images share the target's window
    ``[min(target), max(target)]`` of that row (display only, values outside are clipped).
    """
    tiles = []
    for contrast, conv, pred, target in rows:
        lo, hi = float(target.min()), float(target.max())
        row = [_to_u8(contrast, float(contrast.min()), float(contrast.max()))]
        row += [_to_u8(a, lo, hi) for a in (conv, pred, target)]
        sep = np.full((contrast.shape[0], 4), 255, np.uint8)
        tiles.append(np.concatenate(sum(([r, sep] for r in row), [])[:-1], axis=1))
    width = max(t.shape[1] for t in tiles)
    padded = []
    for t in tiles:
        padded += [np.pad(t, ((0, 4), (0, width - t.shape[1])), constant_values=255)]
    header = _header([a.shape[1] for a in rows[0]], width)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate([header, *padded], axis=0)[:-4]).save(path)
    return path


@torch.no_grad()
def evaluate_checkpoint(
    checkpoint: str | Path,
    store: str | Path,
    split: str = "test",
    out_png: str | Path | None = None,
    device: str = "auto",
    max_samples: int | None = None,
    grid_rows: int = 4,
    progress: bool = True,
    verify: str = "refuse",
) -> dict[str, Any]:
    """Score the network and conventional DSA on one split.

    ``verify``: sample checksums on read (``"refuse"``, ``"skip"`` or ``"off"``,
    :class:`~ddsa_sim.training.data.ZarrDDSADataset`); skipped samples are counted in the result.

    Returns
    -------
    dict
        ``{"network": {...}, "conventional": {...}, "data_range": float, "split": str,
        "n_samples": int, ...}``; each metric block has means (``psnr``, ``ssim``, ``nmse``, ``mae``)
        and spreads (``<m>_std``, ``<m>_median``).
    """
    dev = torch.device("cuda" if device in ("auto", "cuda") and torch.cuda.is_available() else "cpu")
    model, norm, _, ckpt = load_model(checkpoint, dev)
    ds = ZarrDDSADataset(store, split, max_samples=max_samples, verify=verify)
    if len(ds) == 0:
        raise InputError(f"{store}: split '{split}' has no complete samples")
    data_range = target_data_range(ds)
    net_rows, conv_rows, grid = [], [], []
    for i in tqdm(range(len(ds)), desc=f"evaluate {split}", disable=not progress):
        item = ds[i]
        x = item["contrast"][None].to(dev)
        pred = norm.denorm_target(model(norm.norm_input(x)).float())[0, 0].cpu().numpy()
        contrast = item["contrast"][0].numpy()
        target = item["dsa_target"][0].numpy()
        conv = contrast - item["mask"][0].numpy()
        net_rows.append(all_metrics(pred, target, data_range))
        conv_rows.append(all_metrics(conv, target, data_range))
        if len(grid) < grid_rows:
            grid.append((contrast, conv, pred, target))
    result: dict[str, Any] = {
        "network": summarize(net_rows),
        "conventional": summarize(conv_rows),
        "data_range": float(data_range),
        "data_range_definition": "max(dsa_target) - min(dsa_target) over the evaluated split, -ln domain",
        "split": split,
        "n_samples": len(ds),
        "n_ct": len(set(ds.ct_ids.tolist())),
        "n_skipped_corrupted": len(ds.skipped),
        "checkpoint": str(checkpoint),
        "checkpoint_step": int(ckpt["step"]),
        "store": str(store),
    }
    if out_png is not None:
        result["grid_png"] = str(comparison_grid(grid, out_png))
    return result
