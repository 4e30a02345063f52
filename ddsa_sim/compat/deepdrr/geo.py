"""``deepdrr.geo``: DeepDRR 1.2's geometry module is killeengeo; this is the same, re-exported.

Points, vectors, frame transforms and camera projections (``geo.point``, ``geo.vector``,
``geo.FrameTransform``, ``geo.CameraProjection``...), all in mm.
"""

from killeengeo import *  # noqa: F401,F403  (the whole public API, as DeepDRR re-exports it)
from killeengeo import __all__  # noqa: F401
