"""The Projector API and its backends (CPU numba kernels always; GPU and DeepDRR when asked for)."""

from ddsa_sim.projector.projector import ProjectionImages, Projector
from ddsa_sim.projector.volumes import ProjectorVolume

__all__ = ["ProjectionImages", "Projector", "ProjectorVolume"]
