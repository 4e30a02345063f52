"""``ddsa-sim dsa`` (stub: the command still lives in :mod:`ddsa_sim.scene_cli` until it moves here)."""

from ddsa_sim.scene_cli import register  # noqa: F401
