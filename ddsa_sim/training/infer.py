"""Run a trained DDSA model on PNG / TIFF / DICOM frames or sequences.

Input domain. The network works on ``-ln(I / I0)`` line integrals. ``input_domain="auto"`` treats
floating-point images (e.g. float32 TIFF exported by ddsa-sim) as already in the -ln domain and integer
images (PNG, 16-bit TIFF, DICOM) as detector intensities ``I`` converted with ``-ln(max(I, 1) / I0)``;
``I0`` defaults to the largest value of the stored bit depth (``2**BitsStored - 1`` for DICOM, the dtype
maximum otherwise).

Rules for the input (docs/export.md, "Inference"): give raw detector intensities (not windowed,
not inverted, not min-max stretched) with ``--i0`` the unattenuated value, or ``-ln`` images as float
TIFF. An 8-bit image holds at most 256 levels: if its values span fewer than
:data:`TINY_8BIT_RANGE` levels, ``-ln`` is a staircase and a warning says so (use 16-bit or float).

Outputs (``OUT`` = output path; for a directory input, a directory):

* TIFF in -> float32 TIFF of the DSA (-ln domain), one page per frame.
* DICOM in -> DICOM (uint16 + RescaleSlope/RescaleIntercept giving the -ln DSA), multi-frame if the
  input was, new SOP Instance UID, derived image type.
* PNG in -> 16-bit PNG, DSA linearly mapped ``[0, target_max] -> [0, 65535]`` (clipped;
  ``target_max`` from the model's normalisation, written in the PNG text chunk ``ddsa_scale``).
* Always also an 8-bit preview ``<stem>_preview.png`` (``_preview_<k>.png`` per frame of a sequence).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image, PngImagePlugin
from tqdm import tqdm

from ddsa_sim import InputError
from ddsa_sim.training.checkpoint import load_model
from ddsa_sim.training.normalization import Normalization

PNG_EXT = {".png"}
TIFF_EXT = {".tif", ".tiff"}
DICOM_EXT = {".dcm", ".dicom"}
Domain = Literal["auto", "log", "intensity"]
#: an 8-bit input whose values span fewer levels than this gets a warning
TINY_8BIT_RANGE = 32


@dataclass
class Frames:
    """Frames read from one file: ``data`` is ``(N, H, W)``; ``kind`` is png / tiff / dicom."""

    data: np.ndarray
    kind: str
    default_i0: float | None
    is_float: bool
    dicom: Any = None


def _kind(path: Path) -> str:
    ext = path.suffix.lower()
    if ext in PNG_EXT:
        return "png"
    if ext in TIFF_EXT:
        return "tiff"
    if ext in DICOM_EXT:
        return "dicom"
    # extension-less DICOM files are common
    with open(path, "rb") as fh:
        head = fh.read(132)
    if head[128:132] == b"DICM":
        return "dicom"
    raise InputError(f"{path}: unsupported input format (use PNG, TIFF or DICOM)")


def read_frames(path: str | Path) -> Frames:
    """Read a PNG, TIFF (single or multi-page) or DICOM (single or multi-frame) file."""
    path = Path(path)
    kind = _kind(path)
    try:
        if kind == "png":
            img = Image.open(path)
            if img.mode in ("RGB", "RGBA", "P", "LA"):
                img = img.convert("L")
            arr = np.asarray(img)
            data = arr[None]
        elif kind == "tiff":
            import tifffile

            arr = tifffile.imread(path)
            if arr.ndim == 2:
                data = arr[None]
            elif arr.ndim == 3 and arr.shape[-1] in (3, 4) and arr.shape[0] > 4:
                raise InputError(f"{path}: colour TIFF is not supported; give grey-level frames")
            elif arr.ndim == 3:
                data = arr
            else:
                raise InputError(f"{path}: TIFF must hold 2-D frames, got shape {arr.shape}")
        else:
            import pydicom

            ds = pydicom.dcmread(path)
            arr = ds.pixel_array
            data = arr[None] if arr.ndim == 2 else arr
            if data.ndim != 3:
                raise InputError(f"{path}: DICOM must hold grey-level frames, got shape {arr.shape}")
            bits = int(getattr(ds, "BitsStored", 16))
            return Frames(data, kind, float(2**bits - 1), False, ds)
    except InputError:
        raise
    except Exception as exc:  # decoder errors of the three libraries
        raise InputError(f"{path}: cannot read image ({type(exc).__name__}: {exc})") from None
    is_float = np.issubdtype(data.dtype, np.floating)
    i0 = None if is_float else float(np.iinfo(data.dtype).max)
    return Frames(data, kind, i0, is_float)


def to_log_domain(frames: Frames, domain: Domain = "auto", i0: float | None = None, name: str = "input") -> np.ndarray:
    """Frames -> float32 ``-ln(I/I0)`` line integrals ``(N, H, W)`` (see module docstring); warns about
    an 8-bit ``name`` whose values span fewer than :data:`TINY_8BIT_RANGE` levels."""
    if frames.data.dtype == np.uint8:
        lo, hi = int(frames.data.min()), int(frames.data.max())
        if hi - lo < TINY_8BIT_RANGE:
            warnings.warn(f"{name}: 8-bit image whose values span only {hi - lo + 1} levels ({lo}..{hi}): the "
                          "network sees a staircase, not the image; give 16-bit or float data", stacklevel=2)
    data = frames.data.astype(np.float64)
    if domain == "auto":
        domain = "log" if frames.is_float else "intensity"
    if domain == "log":
        return data.astype(np.float32)
    i0 = i0 if i0 is not None else frames.default_i0
    if i0 is None:
        i0 = float(data.max())
    if i0 <= 0:
        raise InputError("i0 must be > 0")
    return (-np.log(np.maximum(data, 1.0) / i0)).astype(np.float32)


@torch.no_grad()
def predict(
    model: torch.nn.Module,
    norm: Normalization,
    frames_log: np.ndarray,
    device: torch.device,
    progress: bool = False,
) -> np.ndarray:
    """DSA ``(N, H, W)`` float32 (-ln domain) for -ln-domain frames ``(N, H, W)``."""
    out = np.empty_like(frames_log, dtype=np.float32)
    for k in tqdm(range(frames_log.shape[0]), desc="infer", disable=not progress or frames_log.shape[0] < 2):
        x = torch.from_numpy(np.ascontiguousarray(frames_log[k]))[None, None].to(device)
        out[k] = norm.denorm_target(model(norm.norm_input(x)).float())[0, 0].cpu().numpy()
    return out


def _preview(dsa: np.ndarray, hi: float, path: Path) -> None:
    img = (np.clip(dsa / max(hi, 1e-12), 0, 1) * 255).round().astype(np.uint8)
    Image.fromarray(img).save(path)


def write_outputs(dsa: np.ndarray, frames: Frames, out: Path, scale_max: float) -> list[Path]:
    """Write the DSA in the input's format plus preview PNGs; returns written paths."""
    out.parent.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    if frames.kind == "tiff":
        import tifffile

        tifffile.imwrite(out, dsa if dsa.shape[0] > 1 else dsa[0], dtype=np.float32, photometric="minisblack")
    elif frames.kind == "png":
        if dsa.shape[0] != 1:
            raise InputError("PNG output holds one frame")
        u16 = (np.clip(dsa[0] / max(scale_max, 1e-12), 0, 1) * 65535).round().astype(np.uint16)
        info = PngImagePlugin.PngInfo()
        info.add_text("ddsa_scale", f"{scale_max:.9g}")
        info.add_text("ddsa_domain", "-ln(I_contrast/I_mask), value = pixel/65535*ddsa_scale")
        Image.fromarray(u16).save(out, pnginfo=info)
    else:
        _write_dicom(dsa, frames.dicom, out)
    written.append(out)
    stem = out.with_suffix("")
    for k in range(dsa.shape[0]):
        p = Path(f"{stem}_preview.png") if dsa.shape[0] == 1 else Path(f"{stem}_preview_{k:03d}.png")
        _preview(dsa[k], scale_max, p)
        written.append(p)
    return written


def _write_dicom(dsa: np.ndarray, src: Any, out: Path) -> None:
    import pydicom
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = src.copy()
    lo, hi = float(dsa.min()), float(dsa.max())
    slope = max(hi - lo, 1e-12) / 65535.0
    u16 = np.round((dsa - lo) / slope).clip(0, 65535).astype(np.uint16)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesDescription = "DDSA (ddsa-sim)"
    ds.ImageType = ["DERIVED", "SECONDARY", "DDSA"]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.Rows, ds.Columns = int(dsa.shape[1]), int(dsa.shape[2])
    ds.RescaleSlope = f"{slope:.10g}"[:16]
    ds.RescaleIntercept = f"{lo:.10g}"[:16]
    ds.RescaleType = "US"
    if dsa.shape[0] > 1 or "NumberOfFrames" in ds:
        ds.NumberOfFrames = int(dsa.shape[0])
    for tag in ("WindowCenter", "WindowWidth", "LargestImagePixelValue", "SmallestImagePixelValue"):
        if tag in ds:
            delattr(ds, tag)
    ds.PixelData = (u16 if dsa.shape[0] > 1 else u16[0]).tobytes()
    ds["PixelData"].VR = "OW"
    pydicom.dcmwrite(out, ds, enforce_file_format=True)


def _out_path(inp: Path, out: Path) -> Path:
    return out if out.suffix else out.with_suffix(inp.suffix)


def infer_path(
    checkpoint: str | Path,
    input_path: str | Path,
    out: str | Path,
    input_domain: Domain = "auto",
    i0: float | None = None,
    device: str = "auto",
    progress: bool = True,
) -> list[Path]:
    """Infer DSA for a file or for every PNG/TIFF/DICOM file of a directory.

    Returns
    -------
    list of Path
        Every file written.
    """
    input_path, out = Path(input_path), Path(out)
    if not input_path.exists():
        raise InputError(f"input not found: {input_path}")
    dev = torch.device("cuda" if device in ("auto", "cuda") and torch.cuda.is_available() else "cpu")
    model, norm, _, _ = load_model(checkpoint, dev)
    if input_path.is_dir():
        files = sorted(
            p
            for p in input_path.iterdir()
            if p.is_file() and p.suffix.lower() in PNG_EXT | TIFF_EXT | DICOM_EXT
        )
        if not files:
            raise InputError(f"{input_path}: no PNG/TIFF/DICOM files")
        pairs = [(p, out / p.name) for p in files]
    else:
        pairs = [(input_path, _out_path(input_path, out))]
    written: list[Path] = []
    for src, dst in tqdm(pairs, desc="infer", disable=not progress or len(pairs) < 2):
        frames = read_frames(src)
        dsa = predict(model, norm, to_log_domain(frames, input_domain, i0, str(src)), dev, progress)
        written += write_outputs(dsa, frames, dst, norm.target_max)
    return written
