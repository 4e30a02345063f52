"""APIs shaped like other simulators', over ddsa-sim: port a script by changing its imports.

``ddsa_sim.compat.deepdrr``  DeepDRR 1.2's public API (``geo``, ``Volume``, ``MobileCArm``,
                             ``Projector``, ``utils.image_utils``); see docs/deepdrr_migration.md.
"""

__all__: list[str] = []
