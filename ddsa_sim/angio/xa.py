"""Read an X-ray angiography run from DICOM: one (enhanced) XA multi-frame file or a folder of frames.

A run is ``N`` grey-level frames of one series with their start times. Pixel values are returned in
the MONOCHROME2 sense (larger = brighter = more X-rays reached the detector): a MONOCHROME1 frame
``v`` becomes ``2**BitsStored - 1 - v``. Frame times (milliseconds from the first frame) come from,
in this order: Frame Time Vector (0018,1065), Frame Time (0018,1063), the per-frame Frame
Acquisition / Reference DateTime of an enhanced multi-frame, Cine Rate (0018,0040) or Recommended
Display Frame Rate (0008,2144); for a folder of single frames, from Acquisition DateTime, Acquisition
Date/Time or Content Date/Time. A source whose times do not rise from frame to frame (a Frame Time Vector of
zeros, a negative Frame Time: some systems write them) is passed over for the next. A folder's frames are
sorted by Instance Number (frame number) when every file has a distinct one, else by acquisition time.

The pixel spacing at the isocenter (mm; :attr:`XARun.pixel_mm`, what ``ddsa-sim infer`` resamples to the
network's scale) comes from Imager Pixel Spacing (0018,1164) times Distance Source to Patient (0018,1111) or
Distance Source to Isocenter (0018,9402) over Distance Source to Detector (0018,1110), else Imager Pixel
Spacing over Estimated Radiographic Magnification Factor (0018,1114), else Pixel Spacing (0028,0030), looked
up in the dataset, then in the first item of each sequence of its shared and first per-frame functional
groups (enhanced XA); None when none of them is there.

Refused, with one line naming the file: missing pixel data, colour, signed or more than 16-bit
pixels, compressed pixel data whose decoder is not installed, frames of several series or of
different sizes in one folder.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.pixels import get_decoder
from pydicom.valuerep import DT, TM

from ddsa_sim import InputError

__all__ = ["XARun", "is_dicom_file", "is_dicom_run", "read_run"]

DICOM_EXT = {".dcm", ".dicom"}
#: Tags describing a pixel module; dropped from the header kept for identifiers.
_PIXEL_TAGS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


@dataclass(frozen=True)
class XARun:
    """One angiography run.

    Attributes
    ----------
    pixels
        ``(N, H, W)`` unsigned integers, MONOCHROME2 sense, in ``[0, 2**bits_stored - 1]``.
    bits_stored
        Bits Stored of the source (8-16).
    frame_times_ms
        ``(N,)`` start time of each frame from the first one, ms; None when the files give none.
    header
        The first source dataset without its pixel data (patient, study and series identifiers).
    sources
        The files read, in frame order.
    source_refs
        ``(SOP Class UID, SOP Instance UID)`` of each source instance.
    pixel_mm
        ``(row, column)`` pixel spacing at the isocenter, mm (module docstring); None when unknown.
    pixel_mm_from
        The tags ``pixel_mm`` was computed from.
    times_passed_over
        The frame-time sources the files hold that were passed over, each with why (e.g. ``"Frame Time -66.7
        ms: do not rise"``).
    """

    pixels: np.ndarray
    bits_stored: int
    frame_times_ms: np.ndarray | None
    header: Dataset
    sources: tuple[Path, ...]
    source_refs: tuple[tuple[str, str], ...]
    pixel_mm: tuple[float, float] | None = None
    pixel_mm_from: str | None = None
    times_passed_over: tuple[str, ...] = ()

    @property
    def max_value(self) -> float:
        """The largest storable value ``2**bits_stored - 1``."""
        return float(2**self.bits_stored - 1)


def is_dicom_file(path: Path) -> bool:
    """Whether ``path`` is a DICOM file (``.dcm`` / ``.dicom`` or the ``DICM`` preamble marker)."""
    if path.suffix.lower() in DICOM_EXT:
        return True
    try:
        with open(path, "rb") as fh:
            return fh.read(132)[128:132] == b"DICM"
    except OSError:
        return False


def _dicom_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and is_dicom_file(p))


def is_dicom_run(path: str | Path) -> bool:
    """Whether ``path`` is a DICOM file or a folder holding DICOM files (an XA run to read)."""
    path = Path(path)
    return is_dicom_file(path) if path.is_file() else path.is_dir() and bool(_dicom_files(path))


def _check_pixel_module(ds: Dataset, path: Path) -> None:
    if not any(tag in ds for tag in _PIXEL_TAGS):
        raise InputError(f"{path}: no pixel data")
    if "PixelData" not in ds:
        raise InputError(f"{path}: floating-point pixel data is not an X-ray angiography image")
    photometric = str(ds.get("PhotometricInterpretation", ""))
    samples = int(ds.get("SamplesPerPixel", 1))
    if samples == 1 and not photometric:  # a required tag: which of the two greys (bright = more or less X-ray) is unknown
        raise InputError(f"{path}: no PhotometricInterpretation (MONOCHROME1 or MONOCHROME2): whether bright pixels "
                         "are more or fewer X-rays is unknown")
    if samples != 1 or photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise InputError(f"{path}: colour images ({photometric if samples == 1 else f'SamplesPerPixel {samples}'}) "
                         "are not supported; give a grey-level (MONOCHROME1/2) run")
    for tag in ("BitsAllocated", "BitsStored"):
        if tag not in ds:
            raise InputError(f"{path}: no {tag} (a required tag of the image pixel module)")
    bits = int(ds.get("BitsStored", 0))
    if int(ds.get("BitsAllocated", 0)) not in (8, 16) or not 1 <= bits <= 16:
        raise InputError(f"{path}: BitsAllocated {ds.get('BitsAllocated')} / BitsStored {bits} not supported "
                         "(8- or 16-bit words, at most 16 bits stored)")
    if int(ds.get("PixelRepresentation", 0)) != 0:
        raise InputError(f"{path}: signed pixel data is not supported for X-ray angiography")
    syntax = ds.file_meta.TransferSyntaxUID
    if syntax.is_compressed and not get_decoder(syntax).is_available:
        need = "; ".join(get_decoder(syntax).missing_dependencies)
        raise InputError(f"{path}: {syntax.name} pixel data needs a decoder that is not installed ({need})")


def _read(path: Path) -> tuple[Dataset, np.ndarray]:
    """One file -> (header without pixels, ``(n, H, W)`` MONOCHROME2 values)."""
    try:
        ds = pydicom.dcmread(path)
    except Exception as exc:  # pydicom raises many types for broken files
        raise InputError(f"{path}: not a readable DICOM file ({type(exc).__name__}: {exc})") from None
    _check_pixel_module(ds, path)
    try:
        arr = ds.pixel_array
    except Exception as exc:  # decoder errors
        raise InputError(f"{path}: cannot decode pixel data ({type(exc).__name__}: {exc})") from None
    frames = arr[None] if arr.ndim == 2 else arr
    if frames.ndim != 3:
        raise InputError(f"{path}: expected grey-level frames, got pixel array shape {arr.shape}")
    if ds.PhotometricInterpretation == "MONOCHROME1":
        frames = (2 ** int(ds.BitsStored) - 1) - frames
    for tag in _PIXEL_TAGS:
        if tag in ds:
            delattr(ds, tag)
    return ds, frames


def _datetime(date: object, time: object) -> dt.datetime | None:
    """A DICOM DA + TM (or one DT string as ``date`` with ``time=None``) as a datetime."""
    try:
        if time is None:
            return DT(str(date)) if date else None
        if not time:
            return None
        t = TM(str(time))
        d = dt.datetime.strptime(str(date), "%Y%m%d").date() if date else dt.date(2000, 1, 1)
        return dt.datetime.combine(d, t)
    except ValueError:
        return None


def _find(ds: Dataset, keyword: str) -> object:
    """``keyword``'s value in ``ds``, else in the first item of a sequence of its shared, then its first
    per-frame, functional groups (enhanced multi-frame); None if absent or empty."""
    if ds.get(keyword) not in (None, ""):
        return ds.get(keyword)
    for groups in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        for element in (ds.get(groups) or [Dataset()])[0]:
            if element.VR == "SQ" and element.value and element.value[0].get(keyword) not in (None, ""):
                return element.value[0].get(keyword)
    return None


def _isocenter_pixel_mm(ds: Dataset, path: Path) -> tuple[tuple[float, float] | None, str | None]:
    """(row, column) pixel spacing at the isocenter, mm, and the tags it came from (module docstring)."""
    try:
        imager = _find(ds, "ImagerPixelSpacing")
        sdd = _find(ds, "DistanceSourceToDetector")
        sod_tag = "DistanceSourceToPatient" if _find(ds, "DistanceSourceToPatient") is not None else "DistanceSourceToIsocenter"
        sod = _find(ds, sod_tag)
        magnification = _find(ds, "EstimatedRadiographicMagnificationFactor")
        calibrated = _find(ds, "PixelSpacing")
        if imager is not None and sdd is not None and sod is not None:
            factor, source = float(sod) / float(sdd), f"ImagerPixelSpacing x {sod_tag} / DistanceSourceToDetector"
        elif imager is not None and magnification is not None:
            factor, source = 1.0 / float(magnification), "ImagerPixelSpacing / EstimatedRadiographicMagnificationFactor"
        elif calibrated is not None:
            imager, factor, source = calibrated, 1.0, "PixelSpacing"
        else:
            return None, None
        spacing = np.atleast_1d(np.asarray(imager, dtype=np.float64)) * factor
        row, col = float(spacing[0]), float(spacing[-1])  # one value: square pixels
    except (TypeError, ValueError, IndexError, ZeroDivisionError):
        raise InputError(f"{path}: pixel spacing, source distances or magnification are not positive numbers") from None
    if not (row > 0 and col > 0):
        raise InputError(f"{path}: pixel spacing at the isocenter must be > 0, got ({row}, {col}) mm from {source}")
    return (row, col), source


def _ms_from_first(stamps: list[dt.datetime]) -> np.ndarray:
    t0 = stamps[0]
    return np.array([(s - t0).total_seconds() * 1000.0 for s in stamps])


def _rising(times_ms: np.ndarray | None) -> bool:
    """Whether frame start times (ms) are finite and rise from frame to frame (what a GIF's or MP4's timing needs)."""
    return times_ms is not None and bool(np.all(np.isfinite(times_ms)) and np.all(np.diff(times_ms) > 0))


def _multiframe_times(ds: Dataset, n: int) -> tuple[np.ndarray | None, list[str]]:
    """Frame start times (ms) of a multi-frame file from the first of its sources whose times rise, or None (see
    the module docstring for the order), and the sources passed over before it, each with why."""
    passed: list[str] = []
    for name, times in _multiframe_time_sources(ds, n):
        if _rising(times):
            return times, passed
        passed.append(name if times is None else f"{name}: do not rise")
    return None, passed


def _multiframe_time_sources(ds: Dataset, n: int) -> Iterator[tuple[str, np.ndarray | None]]:
    """(name, times) of each source the file holds, in the module docstring's order; times None: unusable."""
    vector = np.atleast_1d(np.asarray(ds.get("FrameTimeVector", []), dtype=np.float64))  # one value: scalar
    if vector.size == n:
        yield "Frame Time Vector", np.cumsum(np.concatenate([[0.0], vector[1:]]))
    elif vector.size:
        yield f"Frame Time Vector ({vector.size} values for {n} frames)", None
    if ds.get("FrameTime"):
        yield f"Frame Time {float(ds.FrameTime):g} ms", np.arange(n) * float(ds.FrameTime)
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame is not None and len(per_frame) == n:
        stamps = []
        for item in per_frame:
            content = item.get("FrameContentSequence")
            first = content[0] if content else Dataset()
            stamp = _datetime(first.get("FrameAcquisitionDateTime") or first.get("FrameReferenceDateTime"), None)
            stamps.append(stamp)
        if all(s is not None for s in stamps):
            yield "per-frame Frame Acquisition / Reference DateTime", _ms_from_first(stamps)  # type: ignore[arg-type]
    for name, rate in (("Cine Rate", ds.get("CineRate")), ("Recommended Display Frame Rate",
                                                          ds.get("RecommendedDisplayFrameRate"))):
        if rate:
            yield f"{name} {float(rate):g}/s", np.arange(n) * (1000.0 / float(rate))


def _single_frame_time(ds: Dataset) -> dt.datetime | None:
    return (_datetime(ds.get("AcquisitionDateTime"), None)
            or _datetime(ds.get("AcquisitionDate") or ds.get("ContentDate"), ds.get("AcquisitionTime"))
            or _datetime(ds.get("ContentDate"), ds.get("ContentTime")))


def _read_folder(folder: Path) -> tuple[list[Path], list[Dataset], np.ndarray, np.ndarray | None, list[str]]:
    files = _dicom_files(folder)
    if len(files) == 1:
        ds, frames = _read(files[0])
        return files, [ds], frames, *_multiframe_times(ds, frames.shape[0])
    items = []
    for path in files:
        ds, frames = _read(path)
        if frames.shape[0] != 1:
            raise InputError(f"{path}: a folder run holds single frames; this file has {frames.shape[0]} "
                             "(give a multi-frame file on its own)")
        items.append((path, ds, frames[0]))
    first_path, first, first_frame = items[0]
    for path, ds, frame in items[1:]:
        if ds.get("SeriesInstanceUID") != first.get("SeriesInstanceUID"):
            raise InputError(f"{path}: another series than {first_path.name} (one run per folder)")
        if frame.shape != first_frame.shape:
            raise InputError(f"{path}: frame size {frame.shape} differs from {first_path.name} {first_frame.shape}")
        if int(ds.BitsStored) != int(first.BitsStored):
            raise InputError(f"{path}: BitsStored {ds.BitsStored} differs from {first_path.name} {first.BitsStored}")
    numbers = [ds.get("InstanceNumber") for _, ds, _ in items]
    stamps = [_single_frame_time(ds) for _, ds, _ in items]
    if None not in numbers and len(set(map(int, numbers))) == len(numbers):
        order = sorted(range(len(items)), key=lambda i: int(numbers[i]))
    elif None not in stamps:
        order = sorted(range(len(items)), key=lambda i: stamps[i])  # type: ignore[arg-type, return-value]
    else:
        bad = items[numbers.index(None) if None in numbers else stamps.index(None)][0]
        raise InputError(f"{bad}: no distinct Instance Number and no acquisition time to order the frames")
    items = [items[i] for i in order]
    ordered = [stamps[i] for i in order]
    times = _ms_from_first(ordered) if None not in ordered else None  # type: ignore[arg-type]
    passed = []
    if times is not None and not _rising(times):  # of the wrong order or equal (second resolution): no timing
        times, passed = None, ["the frames' acquisition times: do not rise"]
    return [p for p, _, _ in items], [ds for _, ds, _ in items], np.stack([f for _, _, f in items]), times, passed


def read_run(path: str | Path) -> XARun:
    """Read an XA run from a (multi-frame) DICOM file or a folder of single-frame DICOM files.

    Raises
    ------
    ddsa_sim.InputError
        One line naming the file (see the module docstring).
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"input not found: {path}")
    if path.is_dir():
        if not _dicom_files(path):
            raise InputError(f"{path}: no DICOM files")
        files, headers, pixels, times, passed = _read_folder(path)
    else:
        ds, pixels = _read(path)
        files, headers = [path], [ds]
        times, passed = _multiframe_times(ds, pixels.shape[0])
    refs = tuple((str(ds.get("SOPClassUID", "")), str(ds.get("SOPInstanceUID", ""))) for ds in headers)
    pixel_mm, pixel_mm_from = _isocenter_pixel_mm(headers[0], files[0])
    return XARun(pixels, int(headers[0].BitsStored), times, headers[0], tuple(files), refs, pixel_mm, pixel_mm_from,
                 tuple(passed))
