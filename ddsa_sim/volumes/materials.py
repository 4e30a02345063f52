"""HU -> density and material segmentation, as DeepDRR 1.2.2 does it, plus label-map materials.

DeepDRR's conversion (DESIGN.md §3):
``rho = max(0, min(0.001029 * HU + 1.030, 0.0005886 * HU + 1.03))`` g/cm^3, and the thresholds
``air <= -800 HU < soft tissue <= 350 HU < bone``.
"""

from __future__ import annotations

import re

import numpy as np

from ddsa_sim import InputError
from ddsa_sim.volumes.volume import Volume

AIR_MAX_HU = -800.0
SOFT_TISSUE_MAX_HU = 350.0
BLOOD_HU = 40.0  # unenhanced blood, for the virtual non-contrast image

#: Default CT material names, in label order (label value = index).
CT_MATERIALS = ("air", "soft tissue", "bone")

# TotalSegmentator class name patterns -> material. First match wins; unmatched classes keep the
# threshold material. Lungs become "lung" (air-filled tissue), bones "bone", vessels and heart "blood".
TOTALSEG_MATERIAL_PATTERNS: tuple[tuple[str, str], ...] = (
    (r"^lung", "lung"),
    (r"^(vertebrae|rib|sternum|clavicula|scapula|humerus|hip|sacrum|femur|skull|costal)", "bone"),
    (r"(aorta|artery|vein|vena_cava|heart|atrial|ventricle|pulmonary|trunk|brachiocephalic|iliac_)", "blood"),
)


def hu_to_density(hu: np.ndarray) -> np.ndarray:
    """Mass density (g/cm^3, float32) from Hounsfield units, DeepDRR's piecewise-linear fit."""
    hu = np.asarray(hu, dtype=np.float32)
    # In place: two float32 temporaries, not six (a 7 M-voxel CT spent 0.1 s allocating them).
    rho = np.multiply(np.float32(0.001029), hu, out=np.empty_like(hu))
    rho += np.float32(1.030)
    line = np.multiply(np.float32(0.0005886), hu, out=np.empty_like(hu))
    line += np.float32(1.03)
    np.minimum(rho, line, out=rho)
    np.maximum(rho, np.float32(0.0), out=rho)
    return rho[()]  # a float32 scalar for a scalar, as numpy's operators give


def segment_by_threshold(hu: np.ndarray) -> dict[str, np.ndarray]:
    """Boolean masks ``air`` (HU <= -800), ``soft tissue`` (-800 < HU <= 350), ``bone`` (HU > 350)."""
    hu = np.asarray(hu)
    air = hu <= AIR_MAX_HU
    bone = hu > SOFT_TISSUE_MAX_HU
    return {"air": air, "soft tissue": ~air & ~bone, "bone": bone}


def material_for_class(class_name: str) -> str | None:
    """Material of a TotalSegmentator class name, or None when thresholds should decide."""
    for pattern, material in TOTALSEG_MATERIAL_PATTERNS:
        if re.search(pattern, class_name):
            return material
    return None


def as_label_ints(labels: np.ndarray) -> np.ndarray:
    """Integer label array (rounded when stored as floats), int32."""
    a = np.asarray(labels)
    if np.issubdtype(a.dtype, np.integer):
        return a.astype(np.int32, copy=False)
    return np.rint(a).astype(np.int32)


def labels_in(labels: np.ndarray, ids: list[int]) -> np.ndarray:
    """Boolean mask of voxels whose label is one of ``ids`` (one lookup-table pass)."""
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


def segment_with_labels(hu: np.ndarray, labels: np.ndarray, classes: dict[str, int]) -> dict[str, np.ndarray]:
    """Threshold materials refined by a label map (e.g. TotalSegmentator).

    Labelled voxels take the material of their class (``lung``, ``bone``, ``blood``); bone classes
    keep air as air, vessel classes become blood only where the thresholds say soft tissue (bone
    thresholds still win: calcifications). One pass over the volume per material, whatever the
    number of classes.
    """
    lab = as_label_ints(labels)
    if lab.shape != np.shape(hu):
        raise InputError(f"label map shape {lab.shape} differs from CT shape {np.shape(hu)}")
    masks = segment_by_threshold(hu)
    air, soft = masks["air"].copy(), masks["soft tissue"].copy()
    by_material: dict[str, list[int]] = {}
    for name, value in classes.items():
        material = material_for_class(name)
        if material is not None:
            by_material.setdefault(material, []).append(int(value))
    for material, ids in by_material.items():
        sel = labels_in(lab, ids)
        take = sel & ~air if material == "bone" else sel & soft if material == "blood" else sel
        if not take.any():
            continue
        for m in masks.values():
            m &= ~take
        masks[material] = masks.get(material, np.zeros(lab.shape, bool)) | take
    return masks


def material_labels(materials: dict[str, np.ndarray]) -> tuple[np.ndarray, tuple[str, ...]]:
    """Mutually exclusive boolean masks -> (uint8 label volume, material names by label)."""
    names = tuple(materials)
    if len(names) > 255:
        raise InputError("at most 255 materials per volume")
    first = np.asarray(next(iter(materials.values())))
    shape = first.shape
    # In the masks' memory order (a NIfTI's are Fortran-ordered): mixing orders made every pass strided.
    labels = np.zeros_like(first, dtype=np.uint8)
    count = np.zeros_like(first, dtype=np.uint8)  # masks covering each voxel (element-wise: no fancy indexing)
    for i, name in enumerate(names):
        m = np.asarray(materials[name], dtype=bool).view(np.uint8)
        count += m
        if i:
            labels += m * np.uint8(i)
    if count.max() > 1:
        covered = np.zeros(shape, dtype=bool)
        for name in names:
            m = np.asarray(materials[name], dtype=bool)
            if np.any(covered & m):
                raise InputError(f"material '{name}' overlaps another material")
            covered |= m
    if count.min() == 0:
        raise InputError("material masks leave voxels without a material")
    return labels, names


def ct_with_materials(ct: Volume, labels: Volume | None = None, classes: dict[str, int] | None = None) -> Volume:
    """The CT with its material masks filled in (thresholds, refined by a label map if given)."""
    if labels is not None:
        if classes is None:
            raise InputError("a label map needs its class names (classes=...)")
        if labels.shape != ct.shape or not np.allclose(labels.affine, ct.affine, atol=1e-3):
            raise InputError(f"{labels.name}: label map grid differs from the CT grid of {ct.name}")
        mats = segment_with_labels(ct.data, labels.data, classes)
    else:
        mats = segment_by_threshold(ct.data)
    return ct.with_data(ct.data, materials=mats)
