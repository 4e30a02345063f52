"""Animations people look at: a pose sweep or a bolus sequence as an animated GIF or MP4 (imageio).

Every frame goes through ONE display window (shared percentiles), so brightness changes between
frames are real, not re-scaling. MP4 needs the ``imageio-ffmpeg`` package (H.264, even sizes: frames
are padded by one row/column when odd).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ddsa_sim import InputError
from ddsa_sim.files import atomic_output
from ddsa_sim.viz.figures import display_window, to_uint8

__all__ = ["save_animation"]


def save_animation(frames: Sequence[np.ndarray], path: str | Path, fps: float = 5.0,
                   window: tuple[float, float] | None = None, invert: bool = False) -> Path:
    """Write ``frames`` ((H, W) each) as an animated ``.gif`` or ``.mp4`` (by the suffix), atomically.

    Parameters
    ----------
    frames : sequence of (H, W) arrays
        e.g. ``-ln(I/I0)`` views of a sweep, or DSA frames of a bolus.
    path : str or Path
        Output file; ``.gif`` (loops forever) or ``.mp4``.
    fps : float
        Frames per second.
    window : (low, high), optional
        Display window; default: the 0.5-99.5 percentiles over all frames.
    invert : bool
        Show high values dark (the fluoroscopy convention for attenuation images).
    """
    import imageio.v3 as iio

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".gif", ".mp4"):
        raise InputError(f"{path}: animations are .gif or .mp4")
    frames = [np.asarray(f) for f in frames]
    if not frames or any(f.ndim != 2 or f.shape != frames[0].shape for f in frames):
        raise InputError(f"{path}: need at least one frame, all 2-D of one shape")
    if not fps > 0:
        raise InputError(f"{path}: fps must be positive, got {fps}")
    lo, hi = window or display_window(frames)
    grey = np.stack([to_uint8(f, (lo, hi)) for f in frames])
    if invert:
        grey = 255 - grey
    with atomic_output(path) as tmp:
        if suffix == ".gif":
            iio.imwrite(tmp, grey, extension=".gif", duration=1000.0 / fps, loop=0)
        else:
            try:
                import imageio_ffmpeg  # noqa: F401  (the MP4 writer's backend)
            except ImportError:
                raise InputError(f"{path}: writing MP4 needs imageio-ffmpeg (pip install imageio-ffmpeg)") from None
            h, w = grey.shape[1:]
            grey = np.pad(grey, ((0, 0), (0, h % 2), (0, w % 2)), mode="edge")
            iio.imwrite(tmp, np.repeat(grey[..., None], 3, axis=-1), plugin="FFMPEG", extension=".mp4", fps=fps,
                        codec="libx264", macro_block_size=1)
    return path
