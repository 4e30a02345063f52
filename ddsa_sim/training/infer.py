"""Run a trained DDSA model on PNG / TIFF frames or on an X-ray angiography run (DICOM).

Input domain. The network works on ``-ln(I / I0)`` line integrals. ``input_domain="auto"`` treats
floating-point images (e.g. float32 TIFF exported by ddsa-sim) as already in the -ln domain and integer
images (PNG, 16-bit TIFF, DICOM) as detector intensities ``I`` converted with ``-ln(max(I, 1) / I0)``;
``I0`` defaults to the largest value of the stored bit depth (``2**BitsStored - 1`` for DICOM, the type's
maximum for 8- and 16-bit unsigned images; wider or signed integers need ``i0``; an image with more than
:data:`NEGATIVE_INTENSITY_SHARE` negative intensities is refused, fewer are floored with a warning).
Floating-point intensities (``input_domain="intensity"``) have no one-count unit: they are
floored at :data:`FLOAT_INTENSITY_FLOOR` ``* I0`` instead, and without ``i0`` their ``I0`` is the image's own
maximum (a warning says so).

Rules for the input (docs/export.md, "Inference"): give raw detector intensities (not windowed,
not inverted, not min-max stretched) with ``--i0`` the unattenuated value, or ``-ln`` images as float
TIFF. An 8-bit image holds at most 256 levels: if its values span fewer than
:data:`TINY_8BIT_RANGE` levels, ``-ln`` is a staircase and a warning says so (use 16-bit or float).

Pixel scale. The network runs on each frame resampled to the pixel spacing at the isocenter of its training
images (the checkpoint's ``pixel_mm``) and its DSA is resampled back (:mod:`ddsa_sim.training.pixel_grid`);
the frames' spacing comes from an XA run's tags (:mod:`ddsa_sim.angio.xa`) or ``pixel_mm`` (PNG / TIFF).

Outputs (``OUT`` = output path; for a directory of PNG / TIFF files, a directory of files named as the
inputs). A PNG / TIFF input's output format follows ``OUT``'s extension (:data:`OUT_FORMATS`; none: the input's):

* ``.tif`` / ``.tiff`` -> float32 TIFF of the DSA (-ln domain), one page per frame.
* ``.png`` -> 16-bit PNG of one frame, DSA linearly mapped ``[0, target_max] -> [0, 65535]`` (clipped;
  ``target_max`` from the model's normalisation, written in the PNG text chunk ``ddsa_scale``).
  Both also get an 8-bit preview ``<stem>_preview.png`` (``_preview_<k>.png`` per frame of a sequence);
  an existing output or preview is replaced only when asked (``overwrite``).
* DICOM in (a multi-frame XA file or a folder of single frames of one series, read by
  :mod:`ddsa_sim.angio.xa`) -> the folder ``OUT`` of :mod:`ddsa_sim.angio.outputs`: the network's DSA
  run and, beside it, the conventional DSA of the same run (:mod:`ddsa_sim.angio.conventional`), each
  as derived multi-frame DICOM, PNG frames, GIF and MP4, plus ``run.json``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image, PngImagePlugin
from tqdm import tqdm

from ddsa_sim import InputError
from ddsa_sim.angio.conventional import check_mask_frame, conventional_dsa
from ddsa_sim.angio.media import display_window
from ddsa_sim.angio.outputs import write_manifest, write_method
from ddsa_sim.angio.xa import XARun, is_dicom_run, read_run
from ddsa_sim.files import claim_output, clear_output
from ddsa_sim.training.checkpoint import load_model
from ddsa_sim.training.normalization import Normalization
from ddsa_sim.training.pixel_grid import network_dsa_on_grid, network_grid

__all__ = ["Frames", "infer_path", "infer_run", "predict", "read_frames", "to_log_domain", "write_outputs"]

PNG_EXT = {".png"}
TIFF_EXT = {".tif", ".tiff"}
#: what a PNG / TIFF input's output is written as, by the output's extension
OUT_FORMATS = {".png": "16-bit PNG, one frame", ".tif": "float32 TIFF", ".tiff": "float32 TIFF"}
#: floor of floating-point intensities, a fraction of I0: -ln(I/I0) <= 13.8, past any transmission a detector
#: resolves (a 16-bit count's floor of 1 stops at 11.1), so a zero pixel stays finite
FLOAT_INTENSITY_FLOOR = 1e-6
Domain = Literal["auto", "log", "intensity"]
#: share of an intensity image's pixels that may be negative (an offset-corrected detector's dark pixels, floored);
#: above it the image is refused (more likely -ln data read as intensities)
NEGATIVE_INTENSITY_SHARE = 0.01
#: an 8-bit input whose values span fewer levels than this gets a warning
TINY_8BIT_RANGE = 32


@dataclass
class Frames:
    """Frames read from one file: ``data`` is ``(N, H, W)``; ``kind`` is png / tiff / dicom."""

    data: np.ndarray
    kind: str
    default_i0: float | None
    is_float: bool


def _format(path: Path) -> str | None:
    """``"png"`` or ``"tiff"`` by the extension of ``path``; None for any other."""
    ext = path.suffix.lower()
    return "png" if ext in PNG_EXT else "tiff" if ext in TIFF_EXT else None


def _kind(path: Path) -> str:
    kind = _format(path)
    if kind is None:
        raise InputError(f"{path}: unsupported input format (use PNG, TIFF or DICOM)")
    return kind


def _grey(arr: np.ndarray, path: Path, kind: str) -> np.ndarray:
    """Frames whose last axis holds colour channels (3 or 4) -> their grey level, where the colour channels are
    equal (a grey image saved as RGB, alpha dropped); real colour is refused (the network reads detector
    intensities, not a rendering of them)."""
    rgb = arr[..., :3]
    if np.any(rgb != rgb[..., :1]):
        raise InputError(f"{path}: colour {kind.upper()} is not supported; give grey-level frames")
    return rgb[..., 0]


def _tiff_colour(shape: tuple[int, ...]) -> bool:
    """Whether a TIFF array of ``shape`` is one frame with colour channels last (else 2-D frames)."""
    return len(shape) == 3 and shape[-1] in (3, 4) and shape[0] > 4


def _unreadable(path: Path, exc: Exception) -> InputError:
    return InputError(f"{path}: cannot read image ({type(exc).__name__}: {exc})")


def _frame_count(path: Path) -> int:
    """The number of frames :func:`read_frames` gives for ``path``, from its header alone (no pixels decoded)."""
    if _kind(path) == "png":
        return 1
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            shape = tif.series[0].shape  # what tifffile.imread reads
    except Exception as exc:  # the decoder's errors, as in read_frames
        raise _unreadable(path, exc) from None
    return shape[0] if len(shape) == 3 and not _tiff_colour(shape) else 1


def read_frames(path: str | Path) -> Frames:
    """Read a PNG or TIFF (single or multi-page) file of grey levels (integers, or real numbers all finite)."""
    path = Path(path)
    kind = _kind(path)
    try:
        if kind == "png":
            img = Image.open(path)
            if img.mode == "LA":
                img = img.getchannel("L")
            elif img.mode in ("RGB", "RGBA", "P"):
                img = img.convert("RGBA" if img.mode != "RGB" else "RGB")
            arr = np.asarray(img)
            data = (_grey(arr, path, kind) if arr.ndim == 3 else arr)[None]
        elif kind == "tiff":
            import tifffile

            arr = tifffile.imread(path)
            if _tiff_colour(arr.shape):
                arr = _grey(arr, path, kind)
            if arr.ndim == 2:
                data = arr[None]
            elif arr.ndim == 3:
                data = arr
            else:
                raise InputError(f"{path}: TIFF must hold 2-D frames, got shape {arr.shape}")
    except InputError:
        raise
    except Exception as exc:  # decoder errors of the two libraries
        raise _unreadable(path, exc) from None
    is_float = np.issubdtype(data.dtype, np.floating)
    if not (is_float or np.issubdtype(data.dtype, np.integer)) or data.dtype == np.bool_:
        raise InputError(f"{path}: pixels of type {data.dtype} are not supported; give integer or real grey levels")
    if is_float and not np.all(np.isfinite(data)):
        raise InputError(f"{path}: holds NaN or infinite values")
    # a 8- or 16-bit count's white level is its type's top; a wider or signed integer's is no detector's
    narrow = not is_float and data.dtype.kind == "u" and data.dtype.itemsize <= 2
    return Frames(data, kind, float(np.iinfo(data.dtype).max) if narrow else None, is_float)


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
    negative = float(np.mean(data < 0))
    if negative > NEGATIVE_INTENSITY_SHARE:
        raise InputError(f"{name}: {100 * negative:.1f} % of the intensities are negative (the smallest "
                         f"{data.min():g}): is it -ln data? give --input-domain log")
    if negative:  # an offset-corrected frame's dark pixels: floored below as any other dark pixel
        warnings.warn(f"{name}: {100 * negative:.3g} % of the intensities are negative (the smallest {data.min():g}): "
                      "read as the floor", stacklevel=2)
    i0 = i0 if i0 is not None else frames.default_i0
    if i0 is None and not frames.is_float:
        raise InputError(f"{name}: {frames.data.dtype} pixels have no white level to read -ln(I/I0) from; give --i0, "
                         "the unattenuated (flat-field) value")
    if i0 is None:
        i0 = float(data.max())
        warnings.warn(f"{name}: floating-point intensities without --i0: I0 = the image's maximum, {i0:.6g}; give "
                      "--i0 the unattenuated value if the image has no unattenuated pixel", stacklevel=2)
    if not (np.isfinite(i0) and i0 > 0):
        raise InputError(f"{name}: I0 must be a finite intensity > 0, not {i0:g}")
    # below one count an integer detector value is noise; a float one has no count unit, only a scale (I0)
    floor = i0 * FLOAT_INTENSITY_FLOOR if frames.is_float else 1.0
    return (-np.log(np.maximum(data, floor) / i0)).astype(np.float32)


def predict(
    model: torch.nn.Module,
    norm: Normalization,
    frames_log: np.ndarray,
    device: torch.device,
    progress: bool = False,
    tta: bool = False,
    grid: tuple[int, int] | None = None,
) -> np.ndarray:
    """DSA ``(N, H, W)`` float32 (-ln domain) for -ln-domain frames ``(N, H, W)``.

    ``tta``: averaged over the image symmetries (:func:`ddsa_sim.training.predict.network_dsa`). ``grid``:
    the network runs on each frame resampled to ``(rows, columns)`` and its DSA is resampled back
    (:mod:`ddsa_sim.training.pixel_grid`; None: on the frame's own grid).
    """
    out = np.empty_like(frames_log, dtype=np.float32)
    for k in tqdm(range(frames_log.shape[0]), desc="infer", disable=not progress or frames_log.shape[0] < 2):
        x = torch.from_numpy(np.ascontiguousarray(frames_log[k]))[None, None].to(device)
        out[k] = network_dsa_on_grid(model, norm, x, grid, tta)[0, 0].cpu().numpy()
    return out


def _preview(dsa: np.ndarray, hi: float, path: Path) -> None:
    img = (np.clip(dsa / max(hi, 1e-12), 0, 1) * 255).round().astype(np.uint8)
    Image.fromarray(img).save(path)


def _out_format(out: Path, frames: int) -> str:
    """``"png"`` or ``"tiff"``: the format the output file ``out`` is written in, by its extension.

    Raises
    ------
    InputError
        ``out``'s extension is not one of :data:`OUT_FORMATS`, or it is a PNG and ``frames`` (the number of DSA
        frames) is not 1.
    """
    fmt = _format(out)
    if fmt is None:
        accepted = ", ".join(f"{ext} ({what})" for ext, what in OUT_FORMATS.items())
        raise InputError(f"-o {out}: cannot write {out.suffix or 'a file without extension'}; use {accepted}")
    if fmt == "png" and frames != 1:
        raise InputError(f"-o {out}: a PNG holds one frame, the DSA has {frames}; use .tif or .tiff")
    return fmt


def _previews(out: Path, frames: int) -> list[Path]:
    """The 8-bit previews of the output ``out`` of ``frames`` frames, one per frame."""
    return [out.parent / (f"{out.stem}_preview.png" if frames == 1 else f"{out.stem}_preview_{k:03d}.png")
            for k in range(frames)]


def write_outputs(dsa: np.ndarray, out: Path, scale_max: float) -> list[Path]:
    """Write the DSA in the format of ``out``'s extension (:func:`_out_format`) plus preview PNGs.

    Parameters
    ----------
    dsa
        ``(N, H, W)`` DSA frames, -ln domain.
    out
        Output file: ``.tif`` / ``.tiff`` (float32, one page per frame) or ``.png`` (16-bit, one frame,
        ``value = pixel / 65535 * ddsa_scale``, ``ddsa_scale`` in a text chunk).
    scale_max
        DSA value mapped to 65535 in a PNG, and to white in the previews (the model's ``target_max``).

    Returns
    -------
    list of Path
        ``out`` and its previews (:func:`_previews`).
    """
    n = dsa.shape[0]
    fmt = _out_format(out, n)
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "tiff":
        import tifffile

        tifffile.imwrite(out, dsa if n > 1 else dsa[0], dtype=np.float32, photometric="minisblack")
    else:
        u16 = (np.clip(dsa[0] / max(scale_max, 1e-12), 0, 1) * 65535).round().astype(np.uint16)
        info = PngImagePlugin.PngInfo()
        info.add_text("ddsa_scale", f"{scale_max:.9g}")
        info.add_text("ddsa_domain", "-ln(I_contrast/I_mask), value = pixel/65535*ddsa_scale")
        Image.fromarray(u16).save(out, pnginfo=info)
    previews = _previews(out, n)
    for k, p in enumerate(previews):
        _preview(dsa[k], scale_max, p)
    return [out, *previews]


def _out_path(inp: Path, out: Path) -> Path:
    return out if out.suffix else out.with_suffix(inp.suffix)


def _check_outputs(pairs: list[tuple[Path, Path]], overwrite: bool) -> None:
    """Refuse, before any work, an (input, output file) pair that cannot be written as asked.

    Raises
    ------
    InputError
        An input that is not PNG / TIFF or whose header cannot be read; an output whose extension is not one of
        :data:`OUT_FORMATS`, or a PNG for a sequence; an output or one of its previews (:func:`_previews`) that is
        an input (even with ``overwrite``), that exists (without it), or that another input's outputs need too.
    """
    inputs = {src.resolve() for src, _ in pairs}
    # what each path would hold: in a folder, a.png's preview is a_preview.png's DSA, and a.tif's preview too
    holds = {dst.resolve(): f"the DSA of {src.name}" for src, dst in pairs}
    for src, dst in pairs:
        previews = _previews(dst, _frame_count(src))
        _out_format(dst, len(previews))
        for p in previews:
            what = f"a preview of the DSA of {src.name}"
            if holds.setdefault(p.resolve(), what) != what:
                raise InputError(f"{p}: would be both {holds[p.resolve()]} and {what}; rename one of the inputs")
        for p in [dst, *previews]:
            if p.resolve() in inputs:
                raise InputError(f"{p}: is the input; choose another output")
            if p.exists() and not overwrite:
                what = "" if p == dst else f" (the preview of {dst.name})"
                raise InputError(f"{p}: exists{what}; choose another output, or --overwrite to replace it")


#: Longest frame interval a GIF can show (ms): it stores durations as 16-bit counts of 10 ms.
MAX_FRAME_TIME_MS = 655350.0


def _check_frame_time(frame_time_ms: float | None) -> None:
    if frame_time_ms is not None and not (np.isfinite(frame_time_ms) and 0 < frame_time_ms <= MAX_FRAME_TIME_MS):
        raise InputError(f"--frame-time-ms must be a finite interval in (0, {MAX_FRAME_TIME_MS:g}] ms, not "
                         f"{frame_time_ms:g}")


def _run_times(run: XARun, frame_time_ms: float | None) -> tuple[np.ndarray, str]:
    """Frame start times (ms) of a run and where they came from; ``frame_time_ms`` overrides the files."""
    n = run.pixels.shape[0]
    if frame_time_ms is not None:
        _check_frame_time(frame_time_ms)
        return np.arange(n) * float(frame_time_ms), "--frame-time-ms"
    if run.frame_times_ms is not None:
        return run.frame_times_ms, "dicom"
    if n == 1:
        return np.zeros(1), "single frame"
    unusable = f"; passed over: {'; '.join(run.times_passed_over)}" if run.times_passed_over else ""
    raise InputError(f"{run.sources[0]}: no frame times (Frame Time, Frame Time Vector, Cine Rate or acquisition "
                     f"times{unusable}); give --frame-time-ms")


def infer_run(
    model: torch.nn.Module,
    norm: Normalization,
    device: torch.device,
    run_path: Path,
    out: Path,
    input_domain: Domain = "auto",
    i0: float | None = None,
    mask_frame: int = 0,
    pixel_shift: bool = False,
    frame_time_ms: float | None = None,
    progress: bool = True,
    tta: bool = False,
    model_pixel_mm: float | None = None,
    pixel_mm: float | None = None,
    native_grid: bool = False,
    overwrite: bool = False,
) -> list[Path]:
    """Network DSA and conventional DSA of one XA run into the folder ``out`` (module docstring).

    Parameters
    ----------
    model, norm, device
        The loaded network (:func:`ddsa_sim.training.checkpoint.load_model`).
    run_path
        A DICOM file or a folder of single-frame DICOM files of one series.
    out
        Output folder (created).
    input_domain, i0
        How stored values become ``-ln(I / I0)`` (module docstring).
    mask_frame
        Mask frame of the conventional DSA (negative counts from the end).
    pixel_shift
        Motion-correct the conventional DSA by shifting the mask (phase correlation).
    frame_time_ms
        Frame interval, ms, replacing the run's own frame times.
    progress
        Show tqdm bars.
    tta
        Average the network over the image symmetries (:func:`ddsa_sim.training.predict.network_dsa`).
    model_pixel_mm
        Pixel spacing at the isocenter of the network's training images, mm (the checkpoint's; None: unknown).
    pixel_mm
        The run's pixel spacing at the isocenter, mm, replacing the one its files give
        (:attr:`~ddsa_sim.angio.xa.XARun.pixel_mm`).
    native_grid
        Run the network on the run's own pixel grid instead of resampling the frames to ``model_pixel_mm``
        (:mod:`ddsa_sim.training.pixel_grid`).
    overwrite
        Empty ``out`` (claimed by the caller) once the run is read, checked and its DSA computed, just before
        writing: a run that cannot be read keeps the older results.

    Returns
    -------
    list of Path
        Every file written.
    """
    run = read_run(run_path)
    # the conventional DSA's mask, checked before the network runs (a single frame: 0 or -1, itself, no DSA)
    check_mask_frame(mask_frame, run.pixels.shape[0], "--mask-frame")
    times, times_from = _run_times(run, frame_time_ms)
    log = to_log_domain(Frames(run.pixels, "dicom", run.max_value, False), input_domain, i0, str(run.sources[0]))
    spacing, spacing_from = ((pixel_mm, pixel_mm), "--pixel-mm") if pixel_mm is not None else (run.pixel_mm,
                                                                                               run.pixel_mm_from)
    grid = network_grid(log.shape[-2:], spacing, model_pixel_mm, native_grid, str(run.sources[0]))
    network = predict(model, norm, log, device, progress, tta, grid)
    methods = {"network": network}
    shifts = np.zeros((log.shape[0], 2))
    if log.shape[0] > 1:
        methods["conventional"], shifts = conventional_dsa(log, mask_frame, pixel_shift)
    window = display_window(*methods.values())
    mask = mask_frame % log.shape[0]
    texts = {
        "network": ("DDSA network (ddsa-sim)", "DSA extracted from each frame by a U-Net (ddsa-sim), "
                    + ("averaged over the frame's flips and quarter turns, " if tta else "")
                    + "-ln(I_frame/I_mask) units; no mask frame used"),
        "conventional": (f"Conventional DSA mask {mask}" + (" pixel shift" if pixel_shift else ""),
                         f"Log subtraction of frame {mask} (mask) from every frame, -ln(I_frame/I_mask) units"
                         + ("; mask pixel-shifted per frame by phase correlation" if pixel_shift else "")),
    }
    if overwrite:
        clear_output(out)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name, dsa in tqdm(methods.items(), desc="write", disable=not progress):
        written += write_method(out / name, dsa, run, times, window, *texts[name])
    written.append(write_manifest(out, {
        "sources": [str(p) for p in run.sources],
        "frames": int(log.shape[0]), "rows": int(log.shape[1]), "columns": int(log.shape[2]),
        "bits_stored": run.bits_stored, "input_domain": input_domain,
        "i0": None if input_domain == "log" else i0 if i0 is not None else run.max_value,  # the one used
        "frame_times_ms": [round(float(t), 3) for t in times], "frame_times_from": times_from,
        "mask_frame": mask if "conventional" in methods else None, "pixel_shift": pixel_shift,
        "mask_shifts_px": shifts.round(3).tolist(), "window": list(window), "methods": list(methods), "tta": tta,
        "pixel_mm": None if spacing is None else [round(float(v), 6) for v in spacing], "pixel_mm_from": spacing_from,
        "model_pixel_mm": model_pixel_mm, "network_grid": None if grid is None else list(grid),
    }))
    return written


def infer_path(
    checkpoint: str | Path,
    input_path: str | Path,
    out: str | Path,
    input_domain: Domain = "auto",
    i0: float | None = None,
    device: str = "auto",
    progress: bool = True,
    mask_frame: int = 0,
    pixel_shift: bool = False,
    frame_time_ms: float | None = None,
    tta: bool = False,
    pixel_mm: float | None = None,
    native_grid: bool = False,
    overwrite: bool = False,
) -> list[Path]:
    """Infer DSA for an XA run (DICOM file or folder), a PNG/TIFF file or a folder of PNG/TIFF files.

    ``mask_frame``, ``pixel_shift`` and ``frame_time_ms`` apply to XA runs (see :func:`infer_run`); ``tta``
    averages the network over the image symmetries (:func:`ddsa_sim.training.predict.network_dsa`).
    ``pixel_mm`` is the input's pixel spacing at the isocenter (mm; an XA run's files give it): the frames
    are resampled to the spacing of the network's training images, unless ``native_grid``
    (:mod:`ddsa_sim.training.pixel_grid`). A PNG / TIFF input's output is written in the format of ``out``'s
    extension (:data:`OUT_FORMATS`; without one, the input's). An existing output (an XA run's folder, or a file or
    one of its previews) is refused unless ``overwrite`` (an XA run's folder is then emptied just before writing, once
    the run is read and checked); an output that
    is the input always. All this is checked before the network runs.

    Returns
    -------
    list of Path
        Every file written.
    """
    input_path, out = Path(input_path), Path(out)
    if not input_path.exists():
        raise InputError(f"input not found: {input_path}")
    dev = torch.device("cuda" if device in ("auto", "cuda") and torch.cuda.is_available() else "cpu")
    if pixel_mm is not None and not pixel_mm > 0:
        raise InputError(f"--pixel-mm must be > 0, not {pixel_mm}")
    if i0 is not None and not (np.isfinite(i0) and i0 > 0):
        raise InputError(f"--i0 must be a finite intensity > 0, not {i0:g}")
    _check_frame_time(frame_time_ms)
    model, norm, _, ckpt = load_model(checkpoint, dev)
    model_pixel_mm = ckpt.get("pixel_mm")
    if is_dicom_run(input_path):
        if out.suffix.lower() in OUT_FORMATS.keys() | {".dcm", ".dicom", ".gif", ".mp4"}:
            raise InputError(f"{out}: an XA run's output is a folder (network/, conventional/, run.json); give a "
                             "folder name, not a file's")
        claim_output(out, overwrite, inputs=[input_path, checkpoint])
        return infer_run(model, norm, dev, input_path, out, input_domain, i0, mask_frame, pixel_shift,
                         frame_time_ms, progress, tta, model_pixel_mm, pixel_mm, native_grid, overwrite)
    ignored = [flag for flag, given in (("--mask-frame", mask_frame != 0), ("--frame-time-ms", frame_time_ms is not None),
                                        ("--pixel-shift", pixel_shift)) if given]
    if ignored:  # conventional DSA and timing are an XA run's: a PNG / TIFF gets the network's DSA alone
        warnings.warn(f"{input_path}: {', '.join(ignored)} apply to an XA run (DICOM); a PNG / TIFF input ignores "
                      f"{'it' if len(ignored) == 1 else 'them'}", stacklevel=2)
    if input_path.is_dir():
        files = sorted(p for p in input_path.iterdir() if p.is_file() and p.suffix.lower() in PNG_EXT | TIFF_EXT)
        if not files:
            raise InputError(f"{input_path}: no PNG/TIFF/DICOM files")
        pairs = [(p, out / p.name) for p in files]
    else:
        pairs = [(input_path, _out_path(input_path, out))]
    _check_outputs(pairs, overwrite)
    written: list[Path] = []
    for src, dst in tqdm(pairs, desc="infer", disable=not progress or len(pairs) < 2):
        frames = read_frames(src)
        log = to_log_domain(frames, input_domain, i0, str(src))
        grid = network_grid(log.shape[-2:], None if pixel_mm is None else (pixel_mm, pixel_mm), model_pixel_mm,
                             native_grid, str(src))
        dsa = predict(model, norm, log, dev, progress, tta, grid)
        written += write_outputs(dsa, dst, norm.target_max)
    return written
