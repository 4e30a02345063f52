"""Number validation, written once: a bad argument becomes one :class:`~ddsa_sim.InputError` line naming it.

A neutral root module (it imports no subpackage), so geometry, volumes, physics and everything above
may use it. Each check returns the value as a ``float`` (arrays: unchanged) so a caller can write
``sigma = check_positive("sigma_px", sigma_px)``. ``name`` is what the user must fix, with any
context in front: ``"detector gain"``, ``"grid transmission_primary"``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ddsa_sim import InputError

__all__ = ["as_number", "check_array", "check_finite", "check_integer", "check_memory", "check_positive", "check_range"]


def as_number(name: str, value: Any) -> float:
    """``float(value)``, or ``InputError("<name> must be a number, got <value>")``."""
    try:
        return float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number, got {value!r}") from None


def check_finite(name: str, value: Any) -> float:
    """A finite number (not NaN, not +-inf)."""
    v = as_number(name, value)
    if not math.isfinite(v):
        raise InputError(f"{name} must be finite, got {value!r}")
    return v


def check_positive(name: str, value: Any, *, allow_zero: bool = False) -> float:
    """A finite number ``> 0`` (``>= 0`` with ``allow_zero``)."""
    v = as_number(name, value)
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise InputError(f"{name} must be {'>=' if allow_zero else '>'} 0, got {value!r}")
    return v


def check_range(name: str, value: Any, low: float, high: float, *, low_open: bool = False,
                high_open: bool = False) -> float:
    """A finite number in ``[low, high]``; ``low_open`` / ``high_open`` exclude the bound, e.g. ``(0, 1]``."""
    v = as_number(name, value)
    below = v <= low if low_open else v < low
    above = v >= high if high_open else v > high
    if not math.isfinite(v) or below or above:
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise InputError(f"{name} must be in {interval}, got {value!r}")
    return v


def check_integer(name: str, value: Any, low: int = 1, high: int | None = None) -> int:
    """A whole number (``3`` or ``3.0``) ``>= low`` (and ``<= high``), returned as ``int``."""
    interval = f">= {low}" if high is None else f"in [{low}, {high}]"
    try:
        v = int(value)
        whole = bool(v == value)
    except (TypeError, ValueError, OverflowError):
        whole = False
    if not whole or v < low or (high is not None and v > high):
        raise InputError(f"{name} must be an integer {interval}, got {value!r}")
    return v


def check_array(name: str, array: np.ndarray, *, positive: bool = False) -> np.ndarray:
    """Every element finite and ``>= 0`` (``> 0`` with ``positive``); the array itself is returned."""
    if not np.all(np.isfinite(array)) or (np.any(array <= 0) if positive else np.any(array < 0)):
        raise InputError(f"{name} must be finite and {'>' if positive else '>='} 0")
    return array


def check_memory(name: str, need_bytes: float, fix: str, max_bytes: int | None = None) -> None:
    """Refuse work whose arrays need more than 80 % of the memory available now (``max_bytes`` if given).

    Linux overcommits: a run past the memory is killed without a message, minutes in, so a run whose
    size is known up front is weighed before it starts. ``fix`` says what to change.
    """
    from vessel_models.voxelize import available_memory_bytes

    limit = int(max_bytes) if max_bytes is not None else int(0.8 * available_memory_bytes())
    if need_bytes > limit:
        raise InputError(f"{name}: needs about {need_bytes / 2**30:.1f} GiB, more than the {limit / 2**30:.1f} GiB "
                         f"this machine has free; {fix}")

