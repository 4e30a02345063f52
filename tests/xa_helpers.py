"""Realistic X-ray angiography runs written with pydicom, an analytic phantom, and a tiny checkpoint.

The phantom: anatomy ``A`` (smooth random texture, -ln units 0.3-1.5) and one iodine vessel ``V_k``
(Gaussian profile, peak 0.6 times the bolus curve ``c_k``) give detector values
``I_k = round(0.9 * (2**bits - 1) * exp(-(A_k + V_k)))``; frame 0 has no iodine, so
``-ln(I_k / I_0) = V_k`` up to quantisation: the truth of conventional DSA.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.tag import Tag
from pydicom.uid import EnhancedXAImageStorage, ExplicitVRLittleEndian, XRayAngiographicImageStorage, generate_uid
from scipy import ndimage

BOLUS = np.array([0.0, 0.2, 0.6, 1.0, 0.8, 0.5])
#: Frame intervals of the runs, ms (irregular on purpose: GIF stores 1/100 s, so multiples of 10).
INTERVALS_MS = np.array([100.0, 100.0, 120.0, 100.0, 100.0])
STUDY = {"PatientName": "Doe^Jane", "PatientID": "PAT-0042", "PatientBirthDate": "19600102", "PatientSex": "F",
         "StudyInstanceUID": "1.2.826.0.1.3680043.8.498.1", "StudyDate": "20240315", "StudyTime": "101500",
         "AccessionNumber": "ACC123", "StudyID": "7", "ReferringPhysicianName": "Ref^Doc"}


@dataclass
class Phantom:
    """A run's detector values and its truth."""

    intensity: np.ndarray  # (N, H, W) int64, MONOCHROME2 sense
    iodine: np.ndarray  # (N, H, W) -ln units, in each frame's own coordinates
    bits: int
    times_ms: np.ndarray


def phantom(bits: int = 12, shape: tuple[int, int] = (48, 57), shift: tuple[int, int] = (0, 0),
            seed: int = 0) -> Phantom:
    """Six frames; frames 1.. see the anatomy moved by the integer ``shift`` (row, col) pixels."""
    h, w = shape
    pad = 12
    rng = np.random.default_rng(seed)
    canvas = ndimage.gaussian_filter(rng.standard_normal((h + 2 * pad, w + 2 * pad)), 2.5)
    canvas = 0.3 + 1.2 * (canvas - canvas.min()) / np.ptp(canvas)
    yy, xx = np.mgrid[0:h, 0:w]
    vessel = 0.6 * np.exp(-((yy - 0.5 * xx - 10.0) ** 2) / (2 * 1.5**2))  # a line y = x/2 + 10
    frames, iodine = [], []
    for k, c in enumerate(BOLUS):
        dy, dx = (0, 0) if k == 0 else shift
        anatomy = canvas[pad - dy:pad - dy + h, pad - dx:pad - dx + w]  # content moves by (+dy, +dx)
        iodine.append(c * vessel)
        frames.append(anatomy + c * vessel)
    top = 2**bits - 1
    intensity = np.round(0.9 * top * np.exp(-np.array(frames))).astype(np.int64)
    times = np.concatenate([[0.0], np.cumsum(INTERVALS_MS)])
    return Phantom(intensity, np.array(iodine), bits, times)


def _base(sop_class: str, bits: int, photometric: str, rows: int, cols: int) -> FileDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("", Dataset(), file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
    for key, value in STUDY.items():
        setattr(ds, key, value)
    ds.Modality, ds.SeriesNumber, ds.SeriesDescription = "XA", 3, "Left ICA"
    ds.Manufacturer, ds.InstanceNumber, ds.PatientOrientation, ds.Laterality = "Phantom Angio", 1, ["P", "F"], "L"
    ds.PositionerMotion = "STATIC"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "SINGLE PLANE"]
    ds.PositionerPrimaryAngle, ds.PositionerSecondaryAngle = "-30", "15"
    ds.DistanceSourceToDetector, ds.DistanceSourceToPatient = "1195", "785"
    ds.KVP, ds.XRayTubeCurrent, ds.ExposureTime = "80", 250, 8
    ds.ImagerPixelSpacing, ds.RadiationSetting, ds.PixelIntensityRelationship = [0.154, 0.154], "GR", "LIN"
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = rows, cols, 1, photometric
    ds.BitsAllocated = 8 if bits <= 8 else 16
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits - 1, 0
    return ds


def _stored(values: np.ndarray, bits: int, photometric: str) -> bytes:
    stored = (2**bits - 1) - values if photometric == "MONOCHROME1" else values
    return stored.astype(np.uint8 if bits <= 8 else np.uint16).tobytes()


def write_multiframe(path: Path, ph: Phantom, photometric: str = "MONOCHROME2", enhanced: bool = False) -> Dataset:
    """An XA multi-frame file of the phantom with its frame time vector (dciodvfy: no errors), or an
    enhanced XA one carrying, of its functional groups, only the per-frame acquisition date-times."""
    n, rows, cols = ph.intensity.shape
    ds = _base(EnhancedXAImageStorage if enhanced else XRayAngiographicImageStorage, ph.bits, photometric, rows, cols)
    ds.SeriesInstanceUID = generate_uid()
    ds.NumberOfFrames = n
    if enhanced:  # per-frame acquisition date-times in the functional groups, no Frame Time
        start = dt.datetime(2024, 3, 15, 10, 20, 0)
        groups = []
        for t in ph.times_ms:
            content = Dataset()
            content.FrameAcquisitionDateTime = (start + dt.timedelta(milliseconds=float(t))).strftime(
                "%Y%m%d%H%M%S.%f")
            group = Dataset()
            group.FrameContentSequence = [content]
            groups.append(group)
        ds.PerFrameFunctionalGroupsSequence = groups
    else:
        ds.FrameIncrementPointer = Tag("FrameTimeVector")
        ds.FrameTimeVector = [0.0, *ph.times_ms[1:] - ph.times_ms[:-1]]
        ds.CineRate = 10
    ds.PixelData = _stored(ph.intensity, ph.bits, photometric)
    ds.save_as(path, enforce_file_format=True)
    return ds


def write_frames(folder: Path, ph: Phantom, instance_numbers: bool = True) -> list[Path]:
    """One single-frame XA file per frame, file names in reverse frame order, acquisition times set."""
    folder.mkdir(parents=True, exist_ok=True)
    series = generate_uid()
    n, rows, cols = ph.intensity.shape
    paths = []
    for k in range(n):
        ds = _base(XRayAngiographicImageStorage, ph.bits, "MONOCHROME2", rows, cols)
        ds.SeriesInstanceUID = series
        if instance_numbers:
            ds.InstanceNumber = k + 1
        t = dt.datetime(2024, 3, 15, 10, 20, 0) + dt.timedelta(milliseconds=float(ph.times_ms[k]))
        ds.AcquisitionDate, ds.AcquisitionTime = t.strftime("%Y%m%d"), t.strftime("%H%M%S.%f")
        ds.PixelData = _stored(ph.intensity[k], ph.bits, "MONOCHROME2")
        path = folder / f"IM{n - k:04d}"  # extension-less, as archives export them
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def tiny_checkpoint(path: Path, pixel_mm: float | None = None) -> Path:
    """An untrained 2-level U-Net saved through the project's checkpoint module (trained at ``pixel_mm``)."""
    import torch

    from ddsa_sim.training.checkpoint import save_checkpoint
    from ddsa_sim.training.config import parse_config
    from ddsa_sim.training.normalization import Normalization
    from ddsa_sim.training.unet import UNet

    cfg = parse_config({"model": {"base_channels": 4, "depth": 2}})
    torch.manual_seed(0)
    return save_checkpoint(path, config=cfg, norm=Normalization(offset=1.0, scale=0.5, target_max=0.6),
                           model=UNet(cfg.model), step=0, pixel_mm=pixel_mm)
