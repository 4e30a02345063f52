"""Image losses: L1, L2 and SSIM (``1 - SSIM``), combined by weights from the config."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pytorch_msssim import ssim as _ssim


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


class CombinedLoss(torch.nn.Module):
    """Weighted sum of ``l1``, ``l2`` and ``ssim`` losses.

    Parameters
    ----------
    weights
        e.g. ``{"l1": 1.0}`` or ``{"l1": 1.0, "ssim": 0.2}``.
    ssim_data_range
        Data range for the SSIM term (network units).
    """

    def __init__(self, weights: dict[str, float], ssim_data_range: float = 1.0) -> None:
        super().__init__()
        unknown = set(weights) - {"l1", "l2", "ssim"}
        if unknown:
            raise ValueError(f"unknown loss terms: {sorted(unknown)}")
        self.weights = {k: float(v) for k, v in weights.items() if v != 0}
        self.ssim_data_range = float(ssim_data_range)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Weighted loss (scalar)."""
        total = pred.new_zeros((), dtype=torch.float32)
        for k, w in self.weights.items():
            if k == "l1":
                total = total + w * F.l1_loss(pred.float(), target.float())
            elif k == "l2":
                total = total + w * F.mse_loss(pred.float(), target.float())
            else:
                total = total + w * ssim_loss(pred, target, self.ssim_data_range)
        return total
