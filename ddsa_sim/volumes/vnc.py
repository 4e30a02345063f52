"""Virtual non-contrast: remove the enhancement of labelled vessels from a contrast-enhanced CT."""

from __future__ import annotations

import numpy as np

from ddsa_sim import InputError
from ddsa_sim.volumes.materials import BLOOD_HU, SOFT_TISSUE_MAX_HU
from ddsa_sim.volumes.volume import Volume

__all__ = ["ENHANCED_MIN_HU", "ENHANCED_VESSEL_STRUCTURES", "enhanced_vessel_mask", "virtual_non_contrast"]

ENHANCED_MIN_HU = 120.0  # iodinated blood in a CTA is ~200-500 HU; unenhanced blood 30-50 HU

#: Label-map structures (TotalSegmentator names) that hold blood, hence iodine in a contrast-enhanced CT.
ENHANCED_VESSEL_STRUCTURES = (
    "aorta", "pulmonary_artery", "pulmonary_vein", "heart", "atrial_appendage_left", "brachiocephalic_trunk",
    "subclavian_artery_left", "subclavian_artery_right", "common_carotid_artery_left",
    "common_carotid_artery_right", "brachiocephalic_vein_left", "brachiocephalic_vein_right",
    "superior_vena_cava", "inferior_vena_cava", "portal_vein_and_splenic_vein", "iliac_artery_left",
    "iliac_artery_right", "iliac_vena_left", "iliac_vena_right",
)


def enhanced_vessel_mask(ct: Volume, labels: np.ndarray, structures: dict[str, int],
                         names: tuple[str, ...] = ENHANCED_VESSEL_STRUCTURES) -> np.ndarray | None:
    """Voxels of the named blood structures that are contrast-enhanced in ``ct``, or None.

    A structure counts when its median HU is above :data:`ENHANCED_MIN_HU` (unenhanced blood is
    30-50 HU), so a non-contrast CT with the same label map gives None and is left as it is.

    Parameters
    ----------
    ct : Volume
        CT in HU.
    labels : ndarray
        Label map on the CT grid.
    structures : dict
        Structure name -> label id of ``labels``; names not in it are skipped.
    names : tuple of str
        Candidate blood structures (default :data:`ENHANCED_VESSEL_STRUCTURES`).
    """
    mask = np.zeros(ct.shape, dtype=bool)
    for name in names:
        if name in structures:
            voxels = labels == structures[name]
            if voxels.any() and float(np.median(ct.data[voxels])) > ENHANCED_MIN_HU:
                mask |= voxels
    return mask if mask.any() else None


def virtual_non_contrast(ct: Volume, vessel_mask: np.ndarray, blood_hu: float = BLOOD_HU,
                         rim_voxels: int = 1) -> tuple[Volume, np.ndarray]:
    """Replace enhanced vessel voxels by unenhanced blood.

    Parameters
    ----------
    ct : Volume
        Contrast-enhanced CT in HU.
    vessel_mask : ndarray of bool
        Labelled vessel lumen on the CT grid (e.g. TotalSegmentator aorta and carotids).
    blood_hu : float
        HU given to the vessel voxels (about 40 HU for blood).
    rim_voxels : int
        The label is grown by this many voxels into enhanced (> 120 HU) non-bone neighbours, so the
        partial-volume rim of the lumen is also cleared.

    Returns
    -------
    vnc : Volume
        The CT with the vessels at ``blood_hu`` (its material masks are dropped; recompute them).
    lumen : ndarray of bool
        The vessel geometry that was cleared, for the iodine volume.
    """
    mask = np.asarray(vessel_mask, dtype=bool)
    if mask.shape != ct.shape:
        raise InputError(f"vessel mask shape {mask.shape} differs from CT shape {ct.shape} ({ct.name})")
    if not mask.any():
        raise InputError(f"vessel mask of {ct.name} has no foreground voxel")
    lumen = mask.copy()
    if rim_voxels > 0:
        from scipy import ndimage  # here: reading and projecting a CT need no scipy

        grown = ndimage.binary_dilation(mask, iterations=rim_voxels)
        rim = grown & ~mask & (ct.data > ENHANCED_MIN_HU) & (ct.data <= SOFT_TISSUE_MAX_HU * 2)
        lumen |= rim
    data = ct.data.astype(np.float32, copy=True)
    data[lumen] = np.float32(blood_hu)
    return ct.with_data(data, materials={}), lumen
