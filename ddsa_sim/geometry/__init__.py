"""C-arm geometry (DeepDRR MobileCArm-compatible, killeengeo types) and pose sweeps.

Names are imported lazily: ``ddsa_sim.geometry.limits`` (and a config that checks poses against it)
does not pull in killeengeo and scipy.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - for type checkers; the names load on first use
    from ddsa_sim.geometry.carm import SUPINE_WORLD_FROM_DEVICE, CArm
    from ddsa_sim.geometry.limits import ALPHA_LIMITS_DEG, BETA_LIMITS_DEG
    from ddsa_sim.geometry.sweep import Pose, grid_poses, parse_range, parse_span, random_poses

_EXPORTS = {
    "ALPHA_LIMITS_DEG": "ddsa_sim.geometry.limits",
    "BETA_LIMITS_DEG": "ddsa_sim.geometry.limits",
    "CArm": "ddsa_sim.geometry.carm",
    "Pose": "ddsa_sim.geometry.sweep",
    "SUPINE_WORLD_FROM_DEVICE": "ddsa_sim.geometry.carm",
    "grid_poses": "ddsa_sim.geometry.sweep",
    "parse_range": "ddsa_sim.geometry.sweep",
    "parse_span": "ddsa_sim.geometry.sweep",
    "random_poses": "ddsa_sim.geometry.sweep",
}
__all__ = ["ALPHA_LIMITS_DEG", "BETA_LIMITS_DEG", "CArm", "Pose", "SUPINE_WORLD_FROM_DEVICE", "grid_poses",
           "parse_range", "parse_span", "random_poses"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'ddsa_sim.geometry' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
