"""CT volumes: readers, the Volume type, HU -> density and materials, virtual non-contrast."""

from ddsa_sim.volumes.materials import (
    CT_MATERIALS,
    ct_with_materials,
    hu_to_density,
    labels_in,
    material_labels,
    segment_by_threshold,
    segment_with_labels,
)
from ddsa_sim.volumes.readers import (
    check_ct,
    from_array,
    read_ct,
    read_dicom_series,
    read_nifti,
    read_nrrd,
    read_volume,
)
from ddsa_sim.volumes.vnc import virtual_non_contrast
from ddsa_sim.volumes.volume import Volume

__all__ = [
    "CT_MATERIALS", "Volume", "check_ct", "ct_with_materials", "from_array", "hu_to_density", "labels_in", "material_labels",
    "read_ct", "read_dicom_series", "read_nifti", "read_nrrd", "read_volume", "segment_by_threshold", "segment_with_labels",
    "virtual_non_contrast",
]
