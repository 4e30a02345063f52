"""Image lag of a flat-panel detector: signal charge of one frame read out in the frames after it.

The a-Si:H photodiodes of an indirect flat panel trap part of each frame's signal charge and release
it over the next readouts. Siewerdsen & Jaffray (Med Phys 26(8):1624-41, 1999, "A ghost story")
measured the first-frame lag (the signal in the first frame read after an exposure, relative to that
exposure's own frame) at about 2-10 % depending on the exposure, and the second-, third- and
fourth-frame lag at about 0.7, 0.4 and 0.3 % (25 % of sensor saturation). Lag corrections model it as
linear and time-invariant in frames (Hsieh et al. 2000; Starman et al. 2011); so does this module:
with frame lags ``L_1 .. L_M`` a frame's readout is

    y_k = (1 - sum_m L_m) x_k + sum_m L_m x_(k-m),

``x`` the charge each frame generates (quantum noise included; the detector's electronic noise and
quantisation belong to the readout and come after). Charge is conserved: an exposure is read out in
full over ``M + 1`` frames, so a scene that does not change reads as it is and lag shows only where
it changes (a bolus, motion), plus a temporal averaging of the quantum noise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ddsa_sim import InputError

__all__ = ["check_lag", "lagged"]


def check_lag(fractions: Sequence[float], name: str = "detector lag") -> tuple[float, ...]:
    """Frame lags ``L_1 .. L_M`` (fractions of a frame's charge read 1 .. M frames later) as a tuple;
    ``name`` is the field an error names.

    Raises
    ------
    InputError
        A lag that is not a finite number in [0, 1), or lags summing to 1 or more (the frame itself
        would read nothing).
    """
    try:
        values = tuple(float(f) for f in fractions)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a list of fractions, got {fractions!r}") from None
    if any(not math.isfinite(f) or not 0.0 <= f < 1.0 for f in values):
        raise InputError(f"{name}: every frame lag must be a fraction in [0, 1), got {list(values)}")
    if sum(values) >= 1.0:
        raise InputError(f"{name}: the frame lags sum to {sum(values):.4g}; they must sum to less than 1 "
                         "(the rest is read in the exposure's own frame)")
    return values


def lagged(current: np.ndarray, previous: Sequence[np.ndarray], fractions: Sequence[float]) -> np.ndarray:
    """A frame's readout with lag: ``(1 - sum L) current + sum_m L_m previous[m - 1]``.

    Parameters
    ----------
    current : ndarray
        The charge this frame generated (any unit, e.g. flat-field relative intensity).
    previous : sequence of ndarray
        The charges of the frames before, the latest first; at least ``len(fractions)``.
    fractions : sequence of float
        Frame lags ``L_1 .. L_M`` (:func:`check_lag`).

    Returns
    -------
    ndarray
        ``current`` itself without lag (no arithmetic, so a lag-free frame is bit for bit the same).
    """
    if not fractions:
        return current
    if len(previous) < len(fractions):
        raise InputError(f"lag of {len(fractions)} frames needs as many frames before, got {len(previous)}")
    out = (1.0 - math.fsum(fractions)) * current
    for lag, frame in zip(fractions, previous):
        out = out + lag * frame
    return out
