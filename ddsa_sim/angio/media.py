"""Pictures of a DSA run: display window, 8-bit PNG frames, GIF and MP4 animations (imageio).

Display follows angiography consoles: iodine dark on a light background. A DSA value ``d`` (-ln
domain) maps to grey ``255 * (1 - clip((d - low) / (high - low), 0, 1))``; the window ``[low, high]``
is shared by every picture of one run (network and conventional alike, so a reader compares like with
like): ``high`` = the largest 99.5th percentile of the given runs, ``low = -high / 10`` (noise below
zero stays visible).
"""

from __future__ import annotations

from pathlib import Path

import imageio.v2 as iio2
import imageio.v3 as iio
import numpy as np
from PIL import Image

from ddsa_sim.files import atomic_output

__all__ = ["display_window", "gif_bytes", "to_display", "write_gif", "write_mp4", "write_png_frames"]


def display_window(*runs: np.ndarray) -> tuple[float, float]:
    """Shared ``(low, high)`` window of one or more DSA runs (see the module docstring)."""
    high = max(float(np.percentile(run, 99.5)) for run in runs)
    high = high if high > 0 else 1.0
    return -high / 10.0, high


def to_display(dsa: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """DSA ``(..., H, W)`` -> uint8 grey, iodine dark (see the module docstring)."""
    low, high = window
    scaled = np.clip((dsa - low) / (high - low), 0.0, 1.0)
    return np.round(255.0 * (1.0 - scaled)).astype(np.uint8)


def write_png_frames(frames: np.ndarray, folder: Path, stem: str = "frame") -> list[Path]:
    """Write uint8 ``(N, H, W)`` as ``folder/<stem>_000.png`` ...; returns the paths."""
    paths = []
    for k, frame in enumerate(frames):
        path = folder / f"{stem}_{k:03d}.png"
        with atomic_output(path) as tmp:
            Image.fromarray(frame).save(tmp, format="PNG")
        paths.append(path)
    return paths


def gif_bytes(frames: np.ndarray, frame_times_ms: np.ndarray) -> bytes:
    """Looping GIF of uint8 ``(N, H, W)``; each frame shown until the next one's start time.

    GIF stores durations in 1/100 s: each is rounded to 10 ms (at least 20 ms, browsers' floor);
    the last frame lasts as long as the median interval (a single frame: 100 ms).
    """
    intervals = np.diff(frame_times_ms)
    durations = np.append(intervals, np.median(intervals) if intervals.size else 100.0)
    durations = [int(max(20, 10 * round(d / 10))) for d in durations]
    # Pillow wants one number for a one-frame GIF
    return iio.imwrite("<bytes>", frames, extension=".gif", loop=0,
                       duration=durations if len(durations) > 1 else durations[0])


def write_gif(frames: np.ndarray, frame_times_ms: np.ndarray, path: Path) -> Path:
    """Write :func:`gif_bytes` to ``path`` atomically."""
    with atomic_output(path) as tmp:
        tmp.write_bytes(gif_bytes(frames, frame_times_ms))
    return path


def write_mp4(frames: np.ndarray, frame_times_ms: np.ndarray, path: Path) -> Path:
    """H.264 MP4 (ffmpeg of imageio-ffmpeg) of uint8 ``(N, H, W)`` at the run's median frame rate.

    MP4 plays at one constant rate: ``1000 / median interval`` frames per second. H.264 with yuv420p
    needs even sizes, so an odd last row / column is repeated once. CRF 12: visually lossless.
    """
    intervals = np.diff(frame_times_ms)
    fps = 1000.0 / float(np.median(intervals)) if intervals.size else 10.0
    pad = ((0, 0), (0, frames.shape[1] % 2), (0, frames.shape[2] % 2))
    even = np.pad(frames, pad, mode="edge")
    with atomic_output(path) as tmp:
        iio2.mimwrite(tmp, list(even), format="FFMPEG", fps=fps, codec="libx264", macro_block_size=1,
                      quality=None, pixelformat="yuv420p", output_params=["-crf", "12"])
    return path
