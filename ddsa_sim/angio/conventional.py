"""Conventional DSA of a run: each frame minus a mask frame in the -ln domain, with optional pixel shift.

``dsa_k = L_k - shift(L_mask, s_k)`` with ``L = -ln(I / I0)``, i.e. ``-ln(I_k / I_mask)`` (0 = no
contrast, larger = more iodine). Pixel shift is what angiography systems offer against patient motion:
a rigid translation ``s_k`` of the mask onto frame ``k``, applied with cubic-spline interpolation
(edge values repeated). It is found in two steps:

1. whole pixels: masked normalised cross-correlation (``skimage.registration.phase_cross_correlation``
   with masks, which treats the non-periodic image edges correctly) of block-averaged copies at most
   ``COARSE_SIZE`` pixels wide, scaled back;
2. sub-pixel: Gauss-Newton least squares of ``L_k - shift(L_mask, s)`` over the inner image, each step
   ignoring pixels whose residual is more than 3 robust standard deviations (MAD) from the median:
   the iodine, which is in the frame and not in the mask, would otherwise pull the shift.

On the test phantom (tests/test_infer_xa.py) the shift comes back to 1e-3 pixel with the vessel present.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import ndimage
from skimage.registration import phase_cross_correlation
from skimage.transform import downscale_local_mean

from ddsa_sim import InputError

__all__ = ["COARSE_SIZE", "MAX_SHIFT_FRACTION", "check_mask_frame", "conventional_dsa", "mask_shift"]

#: Largest side, pixels, of the block-averaged images of the whole-pixel search.
COARSE_SIZE = 128
#: Largest pixel shift, as a fraction of the image side: patients move millimetres during a run, a few percent of
#: the field; a match farther away is a repeating pattern's (a grid, a periodic phantom), and the mask is not shifted.
MAX_SHIFT_FRACTION = 0.25


def _whole_pixel_shift(mask: np.ndarray, frame: np.ndarray) -> np.ndarray:
    block = max(1, int(np.ceil(max(mask.shape) / COARSE_SIZE)))
    rows, cols = (mask.shape[0] // block) * block, (mask.shape[1] // block) * block
    small_mask = downscale_local_mean(mask[:rows, :cols], (block, block))
    small_frame = downscale_local_mean(frame[:rows, :cols], (block, block))
    everywhere = np.ones(small_mask.shape, dtype=bool)
    shift = phase_cross_correlation(small_frame, small_mask, reference_mask=everywhere, moving_mask=everywhere)[0]
    return np.asarray(shift, dtype=np.float64) * block


def mask_shift(mask: np.ndarray, frame: np.ndarray, max_iterations: int = 10, tol_px: float = 1e-3) -> np.ndarray:
    """Shift ``(row, col)``, pixels, that moves ``mask`` onto ``frame`` (both ``(H, W)``, -ln domain).

    See the module docstring; ``max_iterations`` / ``tol_px`` bound the sub-pixel refinement. A whole-pixel match
    beyond :data:`MAX_SHIFT_FRACTION` of the image side is no patient motion (a repeating pattern's): it warns and the
    refinement starts from no shift; one that runs beyond it warns and gives ``(0, 0)``.
    """
    limit = MAX_SHIFT_FRACTION * np.asarray(mask.shape, dtype=np.float64)
    shift = _whole_pixel_shift(mask, frame)
    if np.any(np.abs(shift) > limit):  # refined from no shift instead: patient motion is small
        warnings.warn(f"pixel shift: the best whole-pixel match lies {shift[0]:g}, {shift[1]:g} px away, more than a "
                      "quarter of the image: a repeating pattern's, not patient motion; searched near no shift",
                      stacklevel=2)
        shift = np.zeros(2)
    for _ in range(max_iterations):
        border = int(np.ceil(np.abs(shift).max())) + 3
        inner = (slice(border, -border), slice(border, -border))
        moved = ndimage.shift(mask, shift, order=3, mode="nearest")
        grad_rows, grad_cols = np.gradient(moved)
        residual = (frame - moved)[inner].ravel()
        residual = residual - np.median(residual)
        spread = 3 * 1.4826 * np.median(np.abs(residual))
        keep = np.abs(residual) <= spread + 1e-12
        jacobian = -np.stack([grad_rows[inner].ravel(), grad_cols[inner].ravel()], axis=1)[keep]
        step = np.linalg.lstsq(jacobian, residual[keep], rcond=None)[0]
        shift = shift + step
        if np.any(np.abs(shift) > limit):  # the refinement ran off: no match near
            warnings.warn("pixel shift: no match within a quarter of the image; this frame's mask is not shifted",
                          stacklevel=2)
            return np.zeros(2)
        if np.abs(step).max() < tol_px:
            break
    return shift


def check_mask_frame(mask_frame: int, n_frames: int, field: str = "mask frame") -> None:
    """Raise :class:`ddsa_sim.InputError` (naming ``field``) unless ``mask_frame`` indexes a run of ``n_frames`` frames
    (negative counts from the end)."""
    if not -n_frames <= mask_frame < n_frames:
        raise InputError(f"{field}: {mask_frame} is outside the run's {n_frames} frames (0..{n_frames - 1}, or "
                         f"-{n_frames}..-1 from the end)")


def conventional_dsa(
    log_frames: np.ndarray, mask_frame: int = 0, pixel_shift: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Log-subtraction DSA of every frame of a run.

    Parameters
    ----------
    log_frames
        ``(N, H, W)`` frames in the -ln domain.
    mask_frame
        Index of the mask frame (negative counts from the end).
    pixel_shift
        Shift the mask onto each frame before subtracting (motion correction).

    Returns
    -------
    dsa : (N, H, W) float32
        The DSA frames (the mask frame's own DSA is 0).
    shifts : (N, 2) float64
        Mask shift ``(row, col)`` applied per frame, pixels (zeros without ``pixel_shift``).
    """
    n = log_frames.shape[0]
    check_mask_frame(mask_frame, n)
    mask = log_frames[mask_frame].astype(np.float64)
    dsa = np.empty(log_frames.shape, dtype=np.float32)
    shifts = np.zeros((n, 2))
    for k in range(n):
        frame = log_frames[k].astype(np.float64)
        shifted = mask
        if pixel_shift and k != mask_frame % n:
            shifts[k] = mask_shift(mask, frame)
            shifted = ndimage.shift(mask, shifts[k], order=3, mode="nearest")
        dsa[k] = frame - shifted
    return dsa, shifts
