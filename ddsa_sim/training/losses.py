"""Image losses: L1, L2 and SSIM (``1 - SSIM``), combined by weights from the config.

How the pixels of a batch count is a choice of the config (``optim.loss_reduction``,
``optim.vessel_weight``): by default every pixel alike, so a frame with strong vessels (row k of issue
17: a chest slab's mean squared target is 2-4x a head's) weighs more than one with faint vessels.
``"image"`` divides each image's L1 and L2 by its own target's mean ``|t|`` and ``t^2`` (normalised
errors, as NMSE), and a vessel weight above 1 makes vessel pixels count more than background within
each image. Neither helped the heads of issue 17 (docs/results.md, v10).
"""

from __future__ import annotations

from typing import Literal

import torch
from pytorch_msssim import ssim as _ssim

#: ``"image"`` reduction: a target's energy is floored at this fraction of the batch's mean energy, so an
#: image with (almost) no vessels weighs at most 1 / floor times a typical one instead of without bound.
ENERGY_FLOOR_FRACTION = 0.25


def ssim_loss(
    pred: torch.Tensor, target: torch.Tensor, data_range: float, win_size: int = 11
) -> torch.Tensor:
    """``1 - SSIM`` (Gaussian window, computed in float32).

    Parameters
    ----------
    pred, target
        ``(B, C, H, W)``; H and W must be at least ``win_size``.
    data_range
        Dynamic range used in the SSIM constants (same units as the images).
    """
    return 1.0 - _ssim(
        pred.float(), target.float(), data_range=data_range, win_size=win_size, size_average=True
    )


def reduce_error(
    error: torch.Tensor,
    reference: torch.Tensor,
    pixel_weight: torch.Tensor | None = None,
    reduction: Literal["pixel", "image"] = "pixel",
) -> torch.Tensor:
    """Mean of a per-pixel error over a batch, each image normalised or not.

    Parameters
    ----------
    error
        ``(B, C, H, W)`` per-pixel error, e.g. ``|p - t|`` or ``(p - t)^2``.
    reference
        ``(B, C, H, W)`` the same function of the target alone (``|t|``, ``t^2``): its mean per image is
        the image's energy for ``reduction="image"``.
    pixel_weight
        ``(B, C, H, W)`` weights; each image's error is then its weighted mean. None: plain mean.
    reduction
        ``"pixel"``: the images' errors averaged. ``"image"``: each image's error divided by its energy
        (floored at ``ENERGY_FLOOR_FRACTION`` times the batch's mean energy) and multiplied by the batch's
        mean energy, so the loss keeps its usual scale while every image counts by its relative error.

    Returns
    -------
    torch.Tensor
        Scalar.
    """
    dims = tuple(range(1, error.ndim))
    if pixel_weight is None:
        per_image = error.mean(dims)
    else:
        per_image = (pixel_weight * error).sum(dims) / pixel_weight.sum(dims)
    if reduction == "pixel":
        return per_image.mean()
    energy = reference.detach().mean(dims)
    mean_energy = energy.mean()
    if float(mean_energy) <= 0:  # no vessel anywhere in the batch: nothing to normalise by
        return per_image.mean()
    factor = mean_energy / energy.clamp_min(ENERGY_FLOOR_FRACTION * mean_energy)
    return (per_image * factor).mean()


class CombinedLoss(torch.nn.Module):
    """Weighted sum of ``l1``, ``l2`` and ``ssim`` losses.

    Parameters
    ----------
    weights
        e.g. ``{"l1": 1.0}`` or ``{"l1": 1.0, "ssim": 0.2}``.
    ssim_data_range
        Data range for the SSIM term (network units).
    reduction
        How the L1 and L2 terms average over a batch (:func:`reduce_error`); SSIM is a per-image
        similarity already and is averaged over the images.
    vessel_weight
        Weight of pixels whose target exceeds ``vessel_threshold`` in the L1 and L2 terms, relative to 1
        for the others (1: all pixels alike).
    vessel_threshold
        Target value (network units) above which a pixel counts as vessel.
    """

    def __init__(
        self,
        weights: dict[str, float],
        ssim_data_range: float = 1.0,
        reduction: Literal["pixel", "image"] = "pixel",
        vessel_weight: float = 1.0,
        vessel_threshold: float = 0.0,
    ) -> None:
        super().__init__()
        unknown = set(weights) - {"l1", "l2", "ssim"}
        if unknown:
            raise ValueError(f"unknown loss terms: {sorted(unknown)}")
        if reduction not in ("pixel", "image"):
            raise ValueError(f"reduction must be 'pixel' or 'image', not {reduction!r}")
        self.weights = {k: float(v) for k, v in weights.items() if v != 0}
        self.ssim_data_range = float(ssim_data_range)
        self.reduction = reduction
        self.vessel_weight = float(vessel_weight)
        self.vessel_threshold = float(vessel_threshold)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Weighted loss (scalar)."""
        pred, target = pred.float(), target.float()
        pixel_weight = None
        if self.vessel_weight != 1.0:
            pixel_weight = torch.where(target > self.vessel_threshold, self.vessel_weight, 1.0)
        total = pred.new_zeros(())
        for k, w in self.weights.items():
            if k == "l1":
                term = reduce_error((pred - target).abs(), target.abs(), pixel_weight, self.reduction)
            elif k == "l2":
                term = reduce_error((pred - target) ** 2, target**2, pixel_weight, self.reduction)
            else:
                term = ssim_loss(pred, target, self.ssim_data_range)
            total = total + w * term
        return total
