"""``deepdrr.utils.image_utils``: save an image as DeepDRR does (float in [0, 1] -> 8-bit grey)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ddsa_sim import InputError
from ddsa_sim.files import atomic_output

__all__ = ["as_uint8", "save"]


def as_uint8(image: np.ndarray) -> np.ndarray:
    """DeepDRR's conversion: floats in [0, 1] -> ``clip(255 x)`` truncated to uint8; bool -> 0/255."""
    image = np.asarray(image)
    if image.dtype.kind == "f":
        return np.clip(image * 255, 0, 255).astype(np.uint8)
    if image.dtype == bool:
        return image.astype(np.uint8) * 255
    return image.astype(np.uint8)


def save(path: str | Path, image: np.ndarray, mkdir: bool = True) -> Path:
    """Write ``image`` ((H, W), (H, W, C) or (C, H, W) with C = 3 or 4) to ``path``; the suffix picks
    the format (``.png``...). Floats are taken to be in [0, 1] (a ``neglog=True`` projector image).
    The file is written atomically."""
    from PIL import Image

    path = Path(path)
    if mkdir:
        path.parent.mkdir(parents=True, exist_ok=True)
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[0] in (3, 4):
        image = image.transpose(1, 2, 0)
    if image.ndim not in (2, 3):
        raise InputError(f"{path}: expected a 2-D image or (H, W, C), got shape {image.shape}")
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise InputError(f"{path}: unknown image format {path.suffix!r} (use .png, .jpg, .tif...)")
    with atomic_output(path) as tmp:
        Image.fromarray(as_uint8(image)).save(tmp, format=fmt)
    return path
