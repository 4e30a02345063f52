"""DeepDRR 1.2.2's MobileCArm-based API over ddsa-sim: port a DeepDRR script by changing its imports.

>>> from ddsa_sim.compat.deepdrr import geo, Volume, MobileCArm      # doctest: +SKIP
>>> from ddsa_sim.compat.deepdrr.projector import Projector         # doctest: +SKIP

Names and call shapes are DeepDRR's (``Volume.from_nifti``, ``orient_patient``, ``place_center``,
``position_patient``, ``MobileCArm.move_to``, the ``Projector`` context manager, ``utils.image_utils.save``); the
physics is ours, on the CPU by default (``Projector(..., device="cuda")`` for the torch GPU backend).
Contrast: any volume may use the material ``"iodine"`` (pure iodine channel) or
``"iodinated blood:<mgI/ml>"`` (:data:`CONTRAST_MATERIALS`), which DeepDRR lacks. Tools (``Mesh``,
``KWire``) displace the anatomy they occupy. DeepDRR 1.2's ``SimpleDevice`` / ``set_view``, ``project_seg`` and
``LineAnnotation`` are not provided. Every call, difference and missing name: docs/deepdrr_migration.md.
"""

from ddsa_sim.compat.deepdrr import geo, utils
from ddsa_sim.compat.deepdrr.device import MobileCArm
from ddsa_sim.compat.deepdrr.projector import Projector
from ddsa_sim.compat.deepdrr.vol import KWire, Mesh, PatientPose, Volume

#: Contrast material names DeepDRR lacks: pure iodine, and iodinated blood at a concentration (mgI/ml).
CONTRAST_MATERIALS = ("iodine", "iodinated blood:<mgI/ml>")

__all__ = ["CONTRAST_MATERIALS", "KWire", "Mesh", "MobileCArm", "PatientPose", "Projector", "Volume", "geo",
           "utils"]
