"""The folder ``ddsa-sim infer`` writes for one XA run, and its manifest ``run.json``.

Layout (``OUT`` = the folder)::

    OUT/run.json                 what was done: source, frames, frame times, mask, shifts, window
    OUT/network/dsa.dcm          derived multi-frame DICOM (ddsa_sim.angio.derived)
    OUT/network/frame_000.png    8-bit display frames, iodine dark (ddsa_sim.angio.media)
    OUT/network/dsa.gif          looping animation at the run's frame times
    OUT/network/dsa.mp4          H.264 animation at the median frame rate
    OUT/conventional/...         the same for the conventional DSA (runs of two frames or more)

Every picture of both methods uses one display window (``window`` in ``run.json``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ddsa_sim import InputError
from ddsa_sim.angio.derived import write_derived_run
from ddsa_sim.angio.media import to_display, write_gif, write_mp4, write_png_frames
from ddsa_sim.angio.xa import XARun
from ddsa_sim.files import atomic_output

__all__ = ["MANIFEST", "MANIFEST_FORMAT", "METHODS", "read_manifest", "write_method", "write_manifest"]

MANIFEST = "run.json"
MANIFEST_FORMAT = "ddsa-sim-dsa-run"
METHODS = ("network", "conventional")


def write_method(
    folder: Path,
    dsa: np.ndarray,
    run: XARun,
    frame_times_ms: np.ndarray,
    window: tuple[float, float],
    series_description: str,
    derivation: str,
) -> list[Path]:
    """Write one method's DSA ``(N, H, W)`` (-ln domain) as DICOM, PNG frames, GIF and MP4.

    Returns
    -------
    list of Path
        The files written.
    """
    folder.mkdir(parents=True, exist_ok=True)
    written = [write_derived_run(folder / "dsa.dcm", dsa, run.header, run.source_refs, frame_times_ms,
                                 series_description, derivation, window)]
    grey = to_display(dsa, window)
    written += write_png_frames(grey, folder)
    written.append(write_gif(grey, frame_times_ms, folder / "dsa.gif"))
    written.append(write_mp4(grey, frame_times_ms, folder / "dsa.mp4"))
    return written


def write_manifest(out: Path, info: dict[str, Any]) -> Path:
    """Write ``OUT/run.json`` (``info`` plus the format name) atomically."""
    path = out / MANIFEST
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps({"format": MANIFEST_FORMAT, **info}, indent=1))
    return path


def read_manifest(out: str | Path) -> dict[str, Any]:
    """The manifest of an ``infer`` output folder.

    Raises
    ------
    ddsa_sim.InputError
        The folder is not an ``infer`` output of an XA run.
    """
    path = Path(out) / MANIFEST
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        raise InputError(f"{out}: not a 'ddsa-sim infer' output of an XA run (no readable {MANIFEST})") from None
    if not isinstance(info, dict) or info.get("format") != MANIFEST_FORMAT:
        raise InputError(f"{path}: not a {MANIFEST_FORMAT} manifest")
    return info
