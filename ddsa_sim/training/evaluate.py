"""Evaluate a checkpoint on a store split: network vs conventional log-subtraction DSA, known-anatomy
subtraction and an all-zero image.

Conventional DSA of a sample is ``contrast - mask`` (from the store; it carries the motion
misregistration of the export). Known-anatomy subtraction is ``contrast - (contrast_clean -
dsa_target)``: the contrast frame minus everything its noise-free version holds besides the target (the
anatomy, and scatter's share of the vessel signal), so its error is the contrast frame's own noise and
nothing else. It is what a network that removed the anatomy perfectly, and did not denoise, would score:
it tells a network's anatomy errors from the noise it was given. The all-zero image is the floor any DSA
method must beat: it has no false positives and scores well on whole-image PSNR where vessels are thin.
All are scored against ``dsa_target`` in the -ln domain with the metrics of
:mod:`ddsa_sim.training.metrics` and the vessel-aware metrics of :mod:`ddsa_sim.training.vessel_metrics`
(on the store's ``vessel_mask``); per-sample win counts of the network against each reference come with
them. PSNR/SSIM ``data_range`` is one fixed number per run: ``max(dsa_target) - min(dsa_target)`` over
all evaluated samples; it is reported in the output. Definitions: docs/results.md, "Evaluation metrics".
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from tqdm import tqdm

from ddsa_sim import InputError
from ddsa_sim.export.format import source_ct_id
from ddsa_sim.files import atomic_output
from ddsa_sim.training.checkpoint import load_model
from ddsa_sim.training.data import ZarrDDSADataset
from ddsa_sim.training.loop import target_data_range
from ddsa_sim.training.metrics import all_metrics, summarize
from ddsa_sim.training.pixel_grid import network_dsa_on_grid, network_grid
from ddsa_sim.training.vessel_metrics import BG_THRESHOLD, DILATION_PX, vessel_metrics, win_counts

__all__ = ["GRID_COLUMNS", "GRID_SUFFIXES", "METHODS", "check_grid_path", "comparison_grid", "dose_level",
           "evaluate_checkpoint", "format_table", "reference_images"]

#: the scored images, in table order
METHODS = ("network", "conventional", "known_anatomy", "zero")
#: table rows: (metric key, label, format)
_TABLE_ROWS = (
    ("psnr", "PSNR (dB)", "{:.2f}"),
    ("ssim", "SSIM", "{:.4f}"),
    ("nmse", "NMSE", "{:.4f}"),
    ("mae", "MAE", "{:.5f}"),
    ("vessel_psnr", "vessel PSNR (dB)", "{:.2f}"),
    ("vessel_nmse", "vessel NMSE", "{:.4f}"),
    ("bg_fp_energy", "background FP energy", "{:.4f}"),
    ("bg_fp_fraction", "background FP fraction", "{:.4f}"),
    ("vessel_cnr", "vessel CNR", "{:.2f}"),
    ("iodine_recovery", "iodine recovery", "{:.3f}"),
    ("psnr_background_exact", "PSNR, background exact (dB)", "{:.2f}"),
    ("psnr_vessels_exact", "PSNR, vessels exact (dB)", "{:.2f}"),
)


def _to_u8(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return (np.clip((x - lo) / max(hi - lo, 1e-12), 0, 1) * 255).round().astype(np.uint8)


#: column titles of the comparison grid, left to right
GRID_COLUMNS = ("contrast", "contrast - mask", "network", "target")
#: file name endings of the comparison grid (the format follows the ending)
GRID_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".pdf")
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


def check_grid_path(path: str | Path) -> Path:
    """``path`` as the comparison grid's file, checked before any work (``--out-png``): a picture file name
    (:data:`GRID_SUFFIXES`) whose nearest existing folder is a folder.

    Raises
    ------
    InputError
        ``path`` is a folder, has another ending, or lies under a file.
    """
    path = Path(path)
    if path.is_dir():
        raise InputError(f"--out-png: {path}: is a folder; give a picture file name, e.g. {path / 'eval.png'}")
    if path.suffix.lower() not in GRID_SUFFIXES:
        raise InputError(f"--out-png: {path}: not a picture file name; end it in {', '.join(GRID_SUFFIXES)}")
    folder = next(f for f in path.absolute().parents if f.exists())
    if not folder.is_dir():
        raise InputError(f"--out-png: {path}: {folder} is a file, not a folder; choose another path")
    return path


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
    with atomic_output(path) as tmp:  # an interrupted write leaves an older grid whole
        Image.fromarray(np.concatenate([header, *padded], axis=0)[:-4]).save(tmp)
    return path


def reference_images(item: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """The references of one :class:`~ddsa_sim.training.data.ZarrDDSADataset` item, ``(H, W)`` -ln images:
    ``conventional`` (``contrast - mask``), ``known_anatomy`` (``contrast - (contrast_clean - dsa_target)``) and
    ``zero`` (docs/results.md, "Evaluation metrics")."""
    contrast = item["contrast"][0].numpy()
    target = item["dsa_target"][0].numpy()
    anatomy = item["contrast_clean"][0].numpy() - target  # with scatter, not the mask frame (docs/dsa.md)
    return {"conventional": contrast - item["mask"][0].numpy(), "known_anatomy": contrast - anatomy,
            "zero": np.zeros_like(target)}


def dose_level(dose_ugy: float) -> str:
    """A frame's detector air kerma (uGy) as the nearest value of the 1-2-5 series on a log scale, e.g. ``"0.02"``
    (the grids exports draw doses from, docs/export.md), or ``"unknown"`` where the store has none (NaN)."""
    if not np.isfinite(dose_ugy) or dose_ugy <= 0:
        return "unknown"
    levels = 10.0 ** np.floor(np.log10(dose_ugy)) * np.array([1.0, 2.0, 5.0, 10.0])
    return f"{levels[np.argmin(np.abs(np.log(dose_ugy / levels)))]:.3g}"


def _dose_order(level: str) -> float:
    return np.inf if level == "unknown" else float(level)


def _group_summaries(groups: dict[str, dict[str, list[dict[str, float]]]], order: Callable[[str], Any]
                     ) -> dict[str, dict[str, Any]]:
    """``{group: {"n_samples": n, <method>: summary}}`` of per-sample metric rows grouped by a key, in ``order``."""
    return {k: {"n_samples": len(groups[k]["network"])} | {m: summarize(groups[k][m]) for m in METHODS}
            for k in sorted(groups, key=order)}


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
    tta: bool = False,
    native_grid: bool = False,
    stepped: bool = False,
) -> dict[str, Any]:
    """Score the network and the references (:data:`METHODS`) on one split.

    ``verify``: sample checksums on read (``"refuse"``, ``"skip"`` or ``"off"``,
    :class:`~ddsa_sim.training.data.ZarrDDSADataset`); skipped samples are counted in the result.
    ``tta``: the network's image is its average over the image symmetries
    (:func:`~ddsa_sim.training.predict.network_dsa`); the result says which.
    The network runs on the images resampled to the pixel spacing of its training images where the
    checkpoint records it and the store's differs (:mod:`ddsa_sim.training.pixel_grid`), unless
    ``native_grid`` (a store without C-arm geometry: on its own grid, with a warning); the result holds both
    spacings (``pixel_mm``, ``model_pixel_mm``) and ``network_grid``.
    ``stepped``: score the optimiser's weights of a weight-averaged run instead of the average
    (:func:`~ddsa_sim.training.checkpoint.load_model`); the result says which (``weights``).
    ``out_png``: the comparison grid's file (:func:`check_grid_path`, checked before any work), None: none.

    Returns
    -------
    dict
        ``{"network": {...}, "conventional": {...}, "known_anatomy": {...}, "zero": {...}, "wins": {...},
        "by_source_ct": {...}, "by_dose_ugy": {...}, "data_range": float, "split": str, "n_samples": int, ...}``;
        each metric block has means (``psnr``, ``ssim``, ``nmse``, ``mae`` and the vessel metrics of
        :func:`~ddsa_sim.training.vessel_metrics.vessel_metrics`) and spreads (``<m>_std``,
        ``<m>_median``); ``wins["network_vs_<reference>"]`` counts the samples where the network is
        strictly better than that reference, per metric; ``by_source_ct[<source CT>]`` holds
        ``n_samples`` and the four metric blocks over that CT's samples (its pseudo-patients together,
        :func:`~ddsa_sim.export.format.source_ct_id`), scored with the split's one data range;
        ``by_dose_ugy[<level>]`` the same over the frames of one detector dose level (:func:`dose_level`).
    """
    if out_png is not None:
        check_grid_path(out_png)
    dev = torch.device("cuda" if device in ("auto", "cuda") and torch.cuda.is_available() else "cpu")
    model, norm, _, ckpt = load_model(checkpoint, dev, stepped=stepped)
    ds = ZarrDDSADataset(store, split, max_samples=max_samples, verify=verify)
    if len(ds) == 0:
        raise InputError(f"{store}: split '{split}' has no complete samples")
    if max_samples is None:
        data_range = target_data_range(ds)
    else:  # the whole split's, so that an image's PSNR does not depend on how many are scored
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # said once, above
            data_range = target_data_range(ZarrDDSADataset(store, split, verify=verify))
    pixel_mm, model_pixel_mm = ds.pixel_mm(), ckpt.get("pixel_mm")
    on_grid = network_grid(ds.image_shape, None if pixel_mm is None else (pixel_mm, pixel_mm), model_pixel_mm,
                           native_grid, str(store))
    rows: dict[str, list[dict[str, float]]] = {m: [] for m in METHODS}
    groups: dict[str, dict[str, dict[str, list[dict[str, float]]]]] = {"by_source_ct": {}, "by_dose_ugy": {}}
    grid = []
    n_vessel_free = 0
    for i in tqdm(range(len(ds)), desc=f"evaluate {split}", disable=not progress):
        item = ds[i]
        x = item["contrast"][None].to(dev)
        pred = network_dsa_on_grid(model, norm, x, on_grid, tta)[0, 0].cpu().numpy()
        contrast = item["contrast"][0].numpy()
        target = item["dsa_target"][0].numpy()
        vessel = ds.vessel_mask(i)
        n_vessel_free += not vessel.any()
        images = {"network": pred} | reference_images(item)
        keys = {"by_source_ct": source_ct_id(str(ds.ct_ids[i])), "by_dose_ugy": dose_level(float(item["dose_ugy"]))}
        members = [groups[g].setdefault(k, {m: [] for m in METHODS}) for g, k in keys.items()]
        for method, image in images.items():
            metrics = all_metrics(image, target, data_range) | vessel_metrics(image, target, vessel, data_range)
            rows[method].append(metrics)
            for group in members:
                group[method].append(metrics)
        if len(grid) < grid_rows:
            grid.append((contrast, images["conventional"], pred, target))
    result: dict[str, Any] = {m: summarize(rows[m]) for m in METHODS}
    result |= {
        "wins": {f"network_vs_{m}": win_counts(rows["network"], rows[m]) for m in METHODS[1:]},
        "by_source_ct": _group_summaries(groups["by_source_ct"], str),
        "by_dose_ugy": _group_summaries(groups["by_dose_ugy"], _dose_order),
        "vessel_metrics": {
            "dilation_px": DILATION_PX,
            "bg_threshold": BG_THRESHOLD,
            "n_vessel_free_samples": n_vessel_free,
            "definition": "docs/results.md, Evaluation metrics",
        },
        "data_range": float(data_range),
        "data_range_definition": "max(dsa_target) - min(dsa_target) over the evaluated split (all its samples, also "
                                 "with max_samples), -ln domain",
        "split": split,
        "n_samples": len(ds),
        "n_ct": len(set(ds.ct_ids.tolist())),
        "n_skipped_corrupted": len(ds.skipped),
        "checkpoint": str(checkpoint),
        "checkpoint_step": int(ckpt["step"]),
        "tta": tta,
        "weights": "stepped" if stepped else "model",
        "store": str(store),
        "pixel_mm": pixel_mm,
        "model_pixel_mm": model_pixel_mm,
        "network_grid": None if on_grid is None else list(on_grid),
    }
    if out_png is not None:
        result["grid_png"] = str(comparison_grid(grid, out_png))
    return result


def _table_row(cells: list[str], widths: list[int]) -> str:
    return "  ".join(c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(cells, widths)))


def format_table(result: dict[str, Any]) -> str:
    """The metric means of :func:`evaluate_checkpoint`'s result as a plain-text table, one row per metric,
    one column per method, plus the network's per-sample wins against each baseline, and the PSNR per source CT and
    per detector dose level where the split holds several."""
    n = result["n_samples"]
    head = ["metric", *METHODS, *(f"net wins vs {m}" for m in METHODS[1:])]
    lines = []
    for key, label, fmt in _TABLE_ROWS:
        cells = [label, *(fmt.format(result[m][key]) for m in METHODS)]
        cells += [f"{result['wins'][f'network_vs_{m}'].get(key, 0)}/{n}" for m in METHODS[1:]]
        lines.append(cells)
    widths = [max(len(r[c]) for r in [head, *lines]) for c in range(len(head))]
    vm = result["vessel_metrics"]
    title = (f"{result['split']}: {n} samples of {result['n_ct']} CT(s); data range {result['data_range']:.4f}; "
             f"vessel mask dilated by {vm['dilation_px']} px, background FP threshold {vm['bg_threshold']}")
    out = [title, *(_table_row(r, widths) for r in [head, *lines])]
    for grouping, label, unit in (("by_source_ct", "source CT", ""), ("by_dose_ugy", "detector dose", " uGy")):
        if len(result[grouping]) > 1:
            out.append(f"PSNR (dB) per {label}:")
            out += [f"  {k}{unit if k != 'unknown' else ''} ({r['n_samples']} samples): "
                    + ", ".join(f"{m} {r[m]['psnr']:.2f}" for m in METHODS) for k, r in result[grouping].items()]
    return "\n".join(out)
