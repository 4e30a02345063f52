"""Option parsers and typer option objects shared by the ``ddsa-sim`` commands.

Parsers raise :class:`ddsa_sim.InputError` with a one-line message naming the option; the app's
``main`` prints it as ``error: ...`` and exits with status 2. This module imports only typer: the
commands import the heavy parts of ddsa_sim inside their bodies, so ``ddsa-sim --help`` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import typer

from ddsa_sim import InputError

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

__all__ = [
    "CT_ARG", "DETECTOR", "DEVICE", "FILTER_AL", "ISOCENTER", "KVP", "KVP_RANGE", "MAX_DETECTOR_PIXELS", "METHOD",
    "OUT_DIR", "OVERWRITE", "PIXEL_MM", "SPECTRUM", "parse_angle_range", "parse_collimator", "parse_detector",
    "json_line", "parse_float_list", "parse_point", "spectrum_from_options",
]

#: largest detector side the commands accept, pixels (a flat panel has 1536-3072; 16384^2 float64 images are 2 GiB)
MAX_DETECTOR_PIXELS = 16384
#: tube voltages of ``--kvp``, kVp (as the dataset config's ``spectrum.kvp``)
KVP_RANGE = (40.0, 150.0)
#: ``--spectrum`` without ``--kvp`` / ``--filter-al``
DEFAULT_SPECTRUM = "90KV_AL40"


def file_of(value: str | None) -> str | None:
    """The file an option's value names, for the inputs an ``--overwrite`` must not delete: a ``model:`` checkpoint's
    or a ``file:`` spectrum's path without its prefix, any other value as it is."""
    if value is None:
        return None
    for prefix in ("model:", "file:"):
        if value.strip().lower().startswith(prefix):
            return value.strip()[len(prefix):].strip()
    return value


def json_line(result: dict) -> str:
    """``result`` as one line of strict JSON (:func:`vessel_models.io.json_safe`: a metric with nothing to
    measure, e.g. the PSNR of an exact prediction or a loss before the first step, is ``null``)."""
    import json

    from vessel_models.io import json_safe

    return json.dumps(json_safe(result), allow_nan=False)


def parse_detector(text: str) -> tuple[int, int]:
    """``"ROWSxCOLS"`` (e.g. ``"512x512"``) -> (rows, cols) in pixels, both >= 1."""
    try:
        rows, cols = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise InputError(f"--detector: expected ROWSxCOLS, e.g. 512x512, got {text!r}") from None
    if rows < 1 or cols < 1:
        raise InputError(f"--detector: sizes must be positive, got {text!r}")
    if max(rows, cols) > MAX_DETECTOR_PIXELS:
        raise InputError(f"--detector: {text!r} is above {MAX_DETECTOR_PIXELS} pixels a side (a flat panel has "
                         "1536-3072); use --pixel-mm for a larger field")
    return rows, cols


def parse_point(text: str | None, field: str) -> tuple[float, float, float] | None:
    """``"X,Y,Z"`` (mm) -> (x, y, z); None stays None. ``field`` names the option in errors."""
    if text is None:
        return None
    try:
        x, y, z = (float(v) for v in text.split(","))
    except ValueError:
        raise InputError(f"--{field}: expected X,Y,Z in mm, got {text!r}") from None
    return (x, y, z)


def parse_float_list(text: str, field: str) -> list[float]:
    """``"0"`` or ``"-30,0,30"`` -> a non-empty list of floats (e.g. angles in degrees)."""
    items = str(text).split(",")
    try:
        if any(not x.strip() for x in items):
            raise ValueError
        return [float(x) for x in items]
    except ValueError:
        raise InputError(f"--{field}: expected a number or a comma-separated list of numbers, got {text!r}") from None


def parse_collimator(text: str | None):
    """``--collimation L,R,T,B[,IRIS]`` -> a :class:`~ddsa_sim.physics.collimation.Collimator` (None: no option)."""
    from ddsa_sim.physics.collimation import Collimator

    if text is None:
        return None
    vals = parse_float_list(text, "collimation")
    if len(vals) not in (4, 5):
        raise InputError(f"--collimation: expected L,R,T,B or L,R,T,B,IRIS (fractions), got {text!r}")
    try:
        return Collimator(*vals)
    except InputError as exc:
        raise InputError(f"--collimation: {exc}") from None


def parse_angle_range(text: str, field: str) -> np.ndarray:
    """``"START:STOP:STEP"`` (inclusive) or one value, in degrees (:func:`ddsa_sim.geometry.parse_range`)."""
    from ddsa_sim.geometry import parse_range  # geometry pulls killeengeo and scipy: only when a command runs

    return parse_range(text, field)


def spectrum_from_options(kvp: Optional[float], filter_al: Optional[float], spectrum: Optional[str]) -> str | dict:
    """The spectrum of ``--kvp/--filter-al/--spectrum``: the ``--spectrum`` (default :data:`DEFAULT_SPECTRUM`), or a
    SpekPy spec when ``--kvp`` or ``--filter-al`` is given (the other defaults to 90 kVp / 4 mm Al); not both."""
    if kvp is not None and not KVP_RANGE[0] <= kvp <= KVP_RANGE[1]:
        raise InputError(f"--kvp: {kvp:g} is outside {KVP_RANGE[0]:g}..{KVP_RANGE[1]:g} kVp")
    if filter_al is not None and filter_al < 0:
        raise InputError(f"--filter-al: must be >= 0 mm, got {filter_al:g}")
    if kvp is None and filter_al is None:
        return spectrum or DEFAULT_SPECTRUM
    if spectrum is not None:
        raise InputError("--spectrum and --kvp / --filter-al both give the spectrum; use one")
    from ddsa_sim.physics.spectra import DEFAULT_FILTER_AL_MM

    return {"kvp": kvp if kvp is not None else 90.0,
            "filter_al_mm": filter_al if filter_al is not None else DEFAULT_FILTER_AL_MM}


CT_ARG = typer.Argument(..., help="CT: NIfTI file, DICOM series folder, or a builtin name (builtin:chest-ct).")
OUT_DIR = typer.Option(..., "-o", "--out", help="Output folder.")
DETECTOR = typer.Option("1536x1536", "--detector", help="Detector size ROWSxCOLS (pixels).")
PIXEL_MM = typer.Option(0.194, "--pixel-mm", help="Detector pixel size (mm).")
KVP = typer.Option(None, "--kvp", help="Tube voltage (kVp) for a SpekPy spectrum.")
FILTER_AL = typer.Option(None, "--filter-al", help="Aluminium filtration (mm) for a SpekPy spectrum.")
SPECTRUM = typer.Option(None, "--spectrum", help="Spectrum preset (60KV_AL35, 90KV_AL40 (default), 120KV_AL43) or "
                        "spec (e.g. spekpy:kvp=80,al=4, mono:40); or give --kvp / --filter-al.")
ISOCENTER = typer.Option(None, "--isocenter", help="Isocenter X,Y,Z in world mm (LPS); default: the CT centre.")
METHOD = typer.Option("trilinear", "--method", help="trilinear (smooth; samples on voxel planes) or siddon (exact "
                      "voxel traversal; shows thick CT slices as bands).")
DEVICE = typer.Option("cpu", "--device", help="cpu (numba kernels) or cuda / cuda:N (torch backend, trilinear).")
OVERWRITE = typer.Option(False, "--overwrite", help="Delete what an existing output folder holds first.")
