"""C-arm geometry (DeepDRR MobileCArm-compatible, killeengeo types) and pose sweeps."""

from ddsa_sim.geometry.carm import SUPINE_WORLD_FROM_DEVICE, CArm
from ddsa_sim.geometry.sweep import Pose, grid_poses, parse_range, random_poses

__all__ = ["CArm", "Pose", "SUPINE_WORLD_FROM_DEVICE", "grid_poses", "parse_range", "random_poses"]
