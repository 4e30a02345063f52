"""Write a derived DSA run as one multi-frame DICOM (Multi-frame Grayscale Word Secondary Capture).

The file keeps the source's patient and study identifiers, gets a new series and SOP instance UID,
``ImageType DERIVED\\SECONDARY``, a Derivation Description and a Source Image Sequence naming the
source instances. Pixel values are uint16 with ``value = pixel * RescaleSlope + RescaleIntercept``
giving the DSA in the -ln domain (``-ln(I_frame / I_mask)``; 0 = no contrast, larger = more iodine);
the slope is ``(max - min) / 65535`` so the quantisation error is at most half of it. Frame times go
to Frame Time Vector (0018,1065), pointed at by Frame Increment Pointer.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.tag import Tag
from pydicom.uid import ExplicitVRLittleEndian, MultiFrameGrayscaleWordSecondaryCaptureImageStorage, generate_uid

import ddsa_sim
from ddsa_sim.files import atomic_output

__all__ = ["KEPT_TAGS", "write_derived_run"]

#: Patient and study identifiers copied from the source (when present).
KEPT_TAGS = ("SpecificCharacterSet", "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "PatientAge",
             "IssuerOfPatientID", "StudyInstanceUID", "StudyDate", "StudyTime", "StudyID", "AccessionNumber",
             "ReferringPhysicianName", "StudyDescription", "Modality", "BodyPartExamined", "Laterality",
             "PatientOrientation")
#: Type 2 attributes of the output's modules (patient, general study, general series, SC image): present, and empty
#: where the source has none (an anonymised run).
TYPE_2_TAGS = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime", "StudyID",
               "AccessionNumber", "ReferringPhysicianName", "Laterality", "PatientOrientation")


def _meta(sop_uid: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MultiFrameGrayscaleWordSecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return meta


def write_derived_run(
    path: str | Path,
    dsa: np.ndarray,
    source: Dataset,
    source_refs: tuple[tuple[str, str], ...],
    frame_times_ms: np.ndarray,
    series_description: str,
    derivation: str,
    window: tuple[float, float],
) -> Path:
    """Write ``dsa`` ``(N, H, W)`` (-ln domain) as a derived multi-frame DICOM, atomically.

    Parameters
    ----------
    path
        Output file.
    dsa
        The DSA frames, -ln domain (dimensionless).
    source
        Header of the source run (identifiers are copied from it).
    source_refs
        ``(SOP Class UID, SOP Instance UID)`` of the source instances.
    frame_times_ms
        ``(N,)`` start times from the first frame, ms.
    series_description, derivation
        Series Description and Derivation Description texts.
    window
        ``(low, high)`` display window in DSA units (Window Center / Width).

    Returns
    -------
    Path
        The written file.
    """
    path = Path(path)
    n, rows, cols = dsa.shape
    lo, hi = float(dsa.min()), float(dsa.max())
    slope = max(hi - lo, 1e-12) / 65535.0
    pixels = np.round((dsa - lo) / slope).clip(0, 65535).astype(np.uint16)
    now = dt.datetime.now()
    ds = Dataset()
    for tag in KEPT_TAGS:
        if tag in source:
            ds[tag] = source[tag]
    for tag in TYPE_2_TAGS:  # present, empty when the source has none
        ds.setdefault(tag, None)
    if not ds.get("StudyInstanceUID"):  # an anonymised source may lack it: one study for every output of the run
        ds.StudyInstanceUID = generate_uid(entropy_srcs=[uid for _, uid in source_refs if uid] or None)
    if not ds.get("Modality"):
        ds.Modality = "OT"  # type 1; "other" where the source does not say
    ds.SOPClassUID = MultiFrameGrayscaleWordSecondaryCaptureImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = int(source.get("SeriesNumber", 0) or 0) + 1000
    ds.SeriesDescription = series_description[:64]
    ds.InstanceNumber = 1
    ds.ContentDate, ds.ContentTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.DerivationDescription = derivation[:1024]
    ds.ConversionType = "WSD"
    ds.Manufacturer = "ddsa-sim"
    ds.SoftwareVersions = ddsa_sim.__version__
    ds.BurnedInAnnotation = "NO"
    refs = []
    for class_uid, instance_uid in source_refs:
        if instance_uid:
            item = Dataset()
            item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = class_uid, instance_uid
            refs.append(item)
    if refs:
        ds.SourceImageSequence = refs
    ds.Rows, ds.Columns, ds.NumberOfFrames = rows, cols, n
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = f"{lo:.10g}"[:16], f"{slope:.10g}"[:16], "US"
    ds.PresentationLUTShape = "IDENTITY"
    ds.WindowCenter = f"{(window[0] + window[1]) / 2:.6g}"
    ds.WindowWidth = f"{max(window[1] - window[0], 1e-6):.6g}"
    ds.VOILUTFunction = "LINEAR_EXACT"  # the window is in DSA units, narrower than 1
    if n > 1:  # type 1C: only for more than one frame
        ds.FrameIncrementPointer = Tag("FrameTimeVector")
        ds.FrameTimeVector = [0.0] + [round(float(d), 3) for d in np.diff(frame_times_ms)]
    ds.PixelData = pixels.tobytes()
    ds["PixelData"].VR = "OW"
    ds.file_meta = _meta(ds.SOPInstanceUID)
    with atomic_output(path) as tmp:
        pydicom.dcmwrite(tmp, ds, enforce_file_format=True)
    return path
