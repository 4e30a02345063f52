"""Label-map helpers that stay fast on full CTs (one lookup table pass instead of one per class).

:func:`materials_from_labels` gives the same masks as
:func:`ddsa_sim.volumes.materials.segment_with_labels` (thresholds refined by TotalSegmentator
classes: lung classes -> ``lung``, bone classes -> ``bone`` except air, vessel/heart classes ->
``blood`` where the thresholds say soft tissue), in a few passes over the volume whatever the
number of classes.
"""

from __future__ import annotations

import numpy as np

from ddsa_sim import InputError
from ddsa_sim.volumes.materials import (
    AIR_MAX_HU,
    SOFT_TISSUE_MAX_HU,
    material_for_class,
)


def as_label_ints(labels: np.ndarray) -> np.ndarray:
    """Integer label array (rounded if stored as floats), int32."""
    a = np.asarray(labels)
    if np.issubdtype(a.dtype, np.integer):
        return a.astype(np.int32, copy=False)
    return np.rint(a).astype(np.int32)


def labels_in(labels: np.ndarray, ids: list[int]) -> np.ndarray:
    """Boolean mask of voxels whose label is one of ``ids`` (lookup table, one pass)."""
    lab = as_label_ints(labels)
    if lab.size == 0:
        return np.zeros(lab.shape, bool)
    lo, hi = int(lab.min()), int(lab.max())
    if lo < 0:
        raise InputError(f"label map has negative labels (min {lo})")
    lut = np.zeros(hi + 1, dtype=bool)
    for i in ids:
        if 0 <= int(i) <= hi:
            lut[int(i)] = True
    return lut[lab]


def materials_from_labels(hu: np.ndarray, labels: np.ndarray, classes: dict[str, int]) -> dict[str, np.ndarray]:
    """Material masks (air, soft tissue, bone, + lung / blood) of a CT refined by a label map."""
    lab = as_label_ints(labels)
    if lab.shape != np.shape(hu):
        raise InputError(f"label map shape {lab.shape} differs from CT shape {np.shape(hu)}")
    hu = np.asarray(hu)
    air = hu <= AIR_MAX_HU
    bone = hu > SOFT_TISSUE_MAX_HU
    soft = ~air & ~bone
    masks = {"air": air, "soft tissue": soft, "bone": bone}
    by_material: dict[str, list[int]] = {}
    for name, value in classes.items():
        m = material_for_class(name)
        if m is not None:
            by_material.setdefault(m, []).append(int(value))
    for material, ids in by_material.items():
        sel = labels_in(lab, ids)
        if material == "bone":
            take = sel & ~air
        elif material == "blood":
            take = sel & soft
        else:
            take = sel
        if not take.any():
            continue
        for m in masks.values():
            m &= ~take
        masks[material] = masks.get(material, np.zeros(hu.shape, bool)) | take
    return masks
