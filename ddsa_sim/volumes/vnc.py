"""Virtual non-contrast: remove the enhancement of labelled vessels from a contrast-enhanced CT."""

from __future__ import annotations

import numpy as np

from ddsa_sim import InputError
from ddsa_sim.volumes.materials import BLOOD_HU, SOFT_TISSUE_MAX_HU
from ddsa_sim.volumes.volume import Volume

ENHANCED_MIN_HU = 120.0  # iodinated blood in a CTA is ~200-500 HU; unenhanced blood 30-50 HU


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
