"""Run a network at the pixel scale it was trained at: frames resampled to it, its DSA resampled back.

A U-Net learns vessels and anatomy in pixels, not millimetres: the Duan networks, trained on 128 x 128
images of 0.60 mm at the isocenter, draw a straight 8-pixel tube at 1.0-1.5 times its iodine and a
16-pixel one not at all (docs/results.md, v17), so on a clinical run of 0.1-0.3 mm pixels, where an
internal carotid artery is 15-50 pixels wide, they leave the large vessels out. ``ddsa-sim infer`` therefore
resamples each frame to the training images' spacing at the isocenter (recorded in the checkpoint,
:func:`ddsa_sim.geometry.pixel_scale.pixel_spacing_at`), runs the network there and resamples its DSA back
to the frame's grid. The DSA then has the network's resolution, not the run's.

Frames are resampled as intensities ``exp(-y)`` (a detector pixel sums the photons that reach it, so a
coarser pixel holds the mean intensity of the finer ones, not their mean line integral), with an
anti-aliasing filter when shrinking; the DSA, a difference of line integrals, is resampled as is.
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F

from ddsa_sim import InputError
from ddsa_sim.training.normalization import Normalization
from ddsa_sim.training.predict import network_dsa

__all__ = ["RESAMPLE_TOLERANCE", "from_network_grid", "network_dsa_on_grid", "network_grid", "network_shape",
           "to_network_grid"]

#: a frame whose spacing is within this relative difference of the network's is used on its own grid
RESAMPLE_TOLERANCE = 0.01
#: most a frame is resampled by, either way: C-arm pixels at the isocenter are 0.1-0.6 mm, a network's 0.3-1.5 mm;
#: beyond it a spacing is in the wrong unit (um for mm, 20 for 0.20) or wrongly tagged
MAX_RESAMPLE_FACTOR = 16.0
#: least pixels a side of the network's grid has: fewer are no image for a U-Net that downsamples 8-16 times
MIN_GRID_PX = 16


def network_shape(shape: tuple[int, int], pixel_mm: tuple[float, float], model_pixel_mm: float) -> tuple[int, int] | None:
    """The frame's grid at the network's pixel spacing, or None where no resampling is needed.

    Parameters
    ----------
    shape
        ``(rows, columns)`` of the frames.
    pixel_mm
        ``(row, column)`` pixel spacing of the frames at the isocenter, mm.
    model_pixel_mm
        Pixel spacing at the isocenter of the network's training images, mm.

    Returns
    -------
    tuple of int or None
        ``(rows, columns)`` covering the same field at ``model_pixel_mm``; None when both spacings are within
        :data:`RESAMPLE_TOLERANCE` of it.
    """
    if all(abs(p / model_pixel_mm - 1.0) <= RESAMPLE_TOLERANCE for p in pixel_mm):
        return None
    return tuple(max(1, round(n * p / model_pixel_mm)) for n, p in zip(shape, pixel_mm))  # type: ignore[return-value]


def network_grid(shape: tuple[int, int], pixel_mm: tuple[float, float] | None, model_pixel_mm: float | None,
                 native_grid: bool = False, name: str = "input") -> tuple[int, int] | None:
    """Where the network runs on frames of ``shape``: :func:`network_shape`, or None (their own grid) with
    ``native_grid``, when the network's scale is unknown, or when the frames' is, which warns naming ``name``.

    Parameters
    ----------
    shape
        ``(rows, columns)`` of the frames.
    pixel_mm
        ``(row, column)`` pixel spacing of the frames at the isocenter, mm; None: unknown.
    model_pixel_mm
        Pixel spacing at the isocenter of the network's training images, mm (the checkpoint's); None: unknown.
    native_grid
        Keep the frames' grid whatever the spacings.
    name
        The input named in the warning (a file, a store).

    Raises
    ------
    InputError
        The spacings differ by more than :data:`MAX_RESAMPLE_FACTOR` (a wrong unit), or the network's grid would be
        under :data:`MIN_GRID_PX` a side.
    """
    if native_grid or model_pixel_mm is None:
        return None
    if pixel_mm is None:
        warnings.warn(f"{name}: pixel spacing unknown, the network runs on the input's own pixel grid; give its spacing "
                      f"at the isocenter (ddsa-sim infer --pixel-mm) for a network trained at {model_pixel_mm:.3g} mm, "
                      "or --native-grid to keep the grid without this warning", stacklevel=2)
        return None
    factors = [p / model_pixel_mm for p in pixel_mm]
    if not all(1.0 / MAX_RESAMPLE_FACTOR <= f <= MAX_RESAMPLE_FACTOR for f in factors):
        raise InputError(f"{name}: pixel spacing {pixel_mm[0]:.4g} x {pixel_mm[1]:.4g} mm against the network's "
                         f"{model_pixel_mm:.3g} mm means resampling by {max(factors, key=lambda f: abs(math.log(f))):.3g}"
                         f" (at most {MAX_RESAMPLE_FACTOR:g}x either way); check its unit (--pixel-mm, in mm at the "
                         "isocenter), or keep the input's grid with --native-grid")
    grid = network_shape(shape, pixel_mm, model_pixel_mm)
    if grid is not None and min(grid) < MIN_GRID_PX:
        raise InputError(f"{name}: {shape[0]} x {shape[1]} pixels of {pixel_mm[0]:.4g} x {pixel_mm[1]:.4g} mm are "
                         f"{grid[0]} x {grid[1]} at the network's {model_pixel_mm:.3g} mm, under {MIN_GRID_PX} a side; "
                         "run it on the input's own grid with --native-grid")
    return grid


def _resize(x: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    if shape[0] <= x.shape[-2] and shape[1] <= x.shape[-1]:  # shrink: each pixel the mean over its area
        return F.adaptive_avg_pool2d(x, shape)
    return F.interpolate(x, size=shape, mode="bilinear", align_corners=False)


def to_network_grid(frames: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """``-ln`` frames ``(B, 1, H, W)`` resampled to ``shape`` as intensities (module docstring)."""
    low = frames.amin(dim=(-2, -1), keepdim=True)  # exp(-(y - low)) <= 1: no overflow, no underflow of the bright
    intensity = torch.exp(-(frames - low).double())
    return (low - torch.log(_resize(intensity, shape).clamp_min(1e-300))).to(frames.dtype)


def from_network_grid(dsa: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """The network's DSA ``(B, 1, h, w)`` resampled to the frames' ``shape`` (-ln units, as is)."""
    return _resize(dsa, shape)


def network_dsa_on_grid(model: torch.nn.Module, norm: Normalization, frames: torch.Tensor,
                        grid: tuple[int, int] | None, tta: bool = False) -> torch.Tensor:
    """:func:`~ddsa_sim.training.predict.network_dsa` of ``-ln`` frames ``(B, 1, H, W)`` run on them resampled to
    ``grid`` (``(rows, columns)``) and resampled back; ``grid`` None: on the frames' own grid."""
    if grid is None:
        return network_dsa(model, norm, frames, tta)
    return from_network_grid(network_dsa(model, norm, to_network_grid(frames, grid), tta), tuple(frames.shape[-2:]))
