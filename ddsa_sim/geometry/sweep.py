"""Pose sweeps: regular grids and seeded random draws of C-arm poses (angles in degrees, mm)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ddsa_sim import InputError
from ddsa_sim.geometry.carm import CArm

__all__ = ["MAX_POSES", "Pose", "grid_poses", "parse_range", "parse_span", "random_poses"]


@dataclass(frozen=True)
class Pose:
    """One C-arm pose: orbital ``alpha_deg``, angular ``beta_deg``, detector roll ``gamma_deg``, isocenter (world mm)."""

    alpha_deg: float
    beta_deg: float
    gamma_deg: float = 0.0
    isocenter_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def apply(self, carm: CArm) -> CArm:
        return carm.at(alpha_deg=self.alpha_deg, beta_deg=self.beta_deg, gamma_deg=self.gamma_deg,
                       isocenter_mm=tuple(self.isocenter_mm))


#: Most poses one sweep takes: a grid or a draw beyond it is a mistyped STEP (it would fill the memory).
MAX_POSES = 100_000


def parse_range(text: str, field: str) -> np.ndarray:
    """``"START:STOP:STEP"`` (STOP included when on the grid) or a single value ``"A"`` -> angles (deg)."""
    parts = _range_parts(text, field)
    if len(parts) == 1:
        return np.array(parts)
    start, stop, step = parts
    n = int(np.floor((stop - start) / step + 1e-9)) + 1
    if n > MAX_POSES:
        raise InputError(f"--{field}: {text!r} makes {n:.3g} angles, more than the {MAX_POSES} poses a sweep takes")
    return start + step * np.arange(n)


def parse_span(text: str, field: str) -> tuple[float, float]:
    """The interval ``(low, high)`` (deg) of ``"START:STOP[:STEP]"`` or of a single value ``"A"`` (``(A, A)``)."""
    parts = _range_parts(text, field, step_needed=False)
    start, stop = parts[0], parts[min(1, len(parts) - 1)]
    return min(start, stop), max(start, stop)


def _range_parts(text: str, field: str, step_needed: bool = True) -> list[float]:
    try:
        parts = [float(p) for p in text.split(":")]
    except ValueError:
        raise InputError(f"--{field}: expected START:STOP:STEP or a number, got {text!r}") from None
    if not all(np.isfinite(parts)):
        raise InputError(f"--{field}: angles must be finite numbers, got {text!r}")
    if len(parts) == 1 or (len(parts) == 2 and not step_needed):
        return parts
    if len(parts) != 3 or parts[2] == 0 or (parts[1] - parts[0]) / parts[2] < 0:
        raise InputError(f"--{field}: expected START:STOP:STEP with a step towards STOP, got {text!r}")
    return parts


def grid_poses(alphas_deg: np.ndarray, betas_deg: np.ndarray, isocenter_mm=(0.0, 0.0, 0.0),
               gamma_deg: float = 0.0) -> list[Pose]:
    """Every (alpha, beta) combination (degrees), alpha varying slowest, at detector roll ``gamma_deg`` and the
    isocenter (world mm)."""
    iso = tuple(float(x) for x in isocenter_mm)
    n = np.size(alphas_deg) * np.size(betas_deg)
    if n > MAX_POSES:
        raise InputError(f"a grid of {np.size(alphas_deg)} x {np.size(betas_deg)} angles is {n} poses, more than "
                         f"the {MAX_POSES} a sweep takes")
    return [Pose(float(a), float(b), float(gamma_deg), iso)
            for a in np.atleast_1d(alphas_deg) for b in np.atleast_1d(betas_deg)]


def random_poses(rng: np.random.Generator, n: int, alpha_range=(-30.0, 30.0), beta_range=(-20.0, 20.0),
                 isocenter_mm=(0.0, 0.0, 0.0), isocenter_jitter_mm: float = 0.0, gamma_range=(0.0, 0.0)) -> list[Pose]:
    """``n`` poses with uniform alpha, beta, gamma and an isocenter jittered uniformly within a cube (mm)."""
    if not 0 <= n <= MAX_POSES:
        raise InputError(f"number of poses must be 0..{MAX_POSES}, got {n}")
    for name, (lo, hi) in (("alpha_range", alpha_range), ("beta_range", beta_range), ("gamma_range", gamma_range)):
        if lo > hi:
            raise InputError(f"{name}: lower bound {lo} is above upper bound {hi}")
    if not 0.0 <= isocenter_jitter_mm < float("inf"):  # NaN fails too
        raise InputError(f"isocenter jitter must be a finite length >= 0 mm, got {isocenter_jitter_mm}")
    a = rng.uniform(*alpha_range, size=n)
    b = rng.uniform(*beta_range, size=n)
    g = rng.uniform(*gamma_range, size=n)
    j = rng.uniform(-isocenter_jitter_mm, isocenter_jitter_mm, size=(n, 3))
    iso = np.asarray(isocenter_mm, dtype=np.float64)
    return [Pose(float(a[i]), float(b[i]), float(g[i]), tuple((iso + j[i]).tolist())) for i in range(n)]
