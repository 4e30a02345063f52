"""Pose sweeps: regular grids and seeded random draws of C-arm poses (angles in degrees, mm)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ddsa_sim import InputError
from ddsa_sim.geometry.carm import CArm

__all__ = ["Pose", "grid_poses", "parse_range", "random_poses"]


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


def parse_range(text: str, field: str) -> np.ndarray:
    """``"START:STOP:STEP"`` (STOP included when on the grid) or a single value ``"A"`` -> angles (deg)."""
    try:
        parts = [float(p) for p in text.split(":")]
    except ValueError:
        raise InputError(f"--{field}: expected START:STOP:STEP or a number, got {text!r}") from None
    if len(parts) == 1:
        return np.array(parts)
    if len(parts) != 3 or parts[2] == 0 or (parts[1] - parts[0]) / parts[2] < 0:
        raise InputError(f"--{field}: expected START:STOP:STEP with a step towards STOP, got {text!r}")
    start, stop, step = parts
    n = int(np.floor((stop - start) / step + 1e-9)) + 1
    return start + step * np.arange(n)


def grid_poses(alphas_deg: np.ndarray, betas_deg: np.ndarray, isocenter_mm=(0.0, 0.0, 0.0),
               gamma_deg: float = 0.0) -> list[Pose]:
    """Every (alpha, beta) combination (degrees), alpha varying slowest, at detector roll ``gamma_deg`` and the
    isocenter (world mm)."""
    iso = tuple(float(x) for x in isocenter_mm)
    return [Pose(float(a), float(b), float(gamma_deg), iso)
            for a in np.atleast_1d(alphas_deg) for b in np.atleast_1d(betas_deg)]


def random_poses(rng: np.random.Generator, n: int, alpha_range=(-30.0, 30.0), beta_range=(-20.0, 20.0),
                 isocenter_mm=(0.0, 0.0, 0.0), isocenter_jitter_mm: float = 0.0, gamma_range=(0.0, 0.0)) -> list[Pose]:
    """``n`` poses with uniform alpha, beta, gamma and an isocenter jittered uniformly within a cube (mm)."""
    if n < 0:
        raise InputError(f"number of poses must be >= 0, got {n}")
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
