"""Training data of the vessel GANs: binary label volumes at one spacing, and batches drawn from them.

Sources: a folder of NIfTI label volumes (binary or multi-label, any spacing: every selected label
is vessel), resampled by nearest neighbour to a common isotropic spacing; or label volumes voxelized
from the project's procedural generators (:func:`procedural_volumes`), for tests and users without
data. Batches are random patches or centred crops (zero padded where a volume is smaller), randomly
flipped along each axis.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from scipy import ndimage

from vessel_models.tree import VesselInputError

__all__ = ["distance_target", "draw_batch", "label_files", "load_label_folder", "procedural_volumes",
           "resample_labels", "save_label_volume", "soft_target", "training_target"]


def label_files(folder: str | os.PathLike, where: str = "--data") -> list[Path]:
    """The ``.nii`` / ``.nii.gz`` files of ``folder``, sorted by name; errors begin with ``where``.

    Raises
    ------
    VesselInputError
        A missing folder or one without NIfTI files.
    """
    root = Path(folder)
    if not root.is_dir():
        raise VesselInputError(f"{where}: {root}: no such folder")
    files = sorted(p for p in root.iterdir() if p.name.lower().endswith((".nii", ".nii.gz")))
    if not files:
        raise VesselInputError(f"{where}: {root}: no .nii / .nii.gz label volume in it")
    return files


def resample_labels(mask: np.ndarray, spacing_mm: np.ndarray, target_mm: float) -> np.ndarray:
    """Nearest-neighbour resampling of a boolean volume from ``spacing_mm`` (3,) to isotropic ``target_mm``."""
    zoom = np.asarray(spacing_mm, dtype=np.float64) / float(target_mm)
    if np.allclose(zoom, 1.0):
        return np.asarray(mask, dtype=bool)
    return ndimage.zoom(np.asarray(mask, dtype=np.uint8), zoom, order=0, grid_mode=True, mode="grid-constant") > 0


def load_label_folder(folder: str | os.PathLike, spacing_mm: float, labels: list[int] | None = None,
                      where: str = "--data") -> list[np.ndarray]:
    """Every label volume of ``folder`` as a boolean array at isotropic ``spacing_mm``.

    Parameters
    ----------
    folder : str or PathLike
        Folder of NIfTI label volumes.
    spacing_mm : float
        Common voxel size (mm).
    labels : list of int, optional
        Label values that are vessel (default: every non-zero voxel).
    where : str
        Name of the folder in error messages (a command-line option).

    Returns
    -------
    list of numpy.ndarray
        ``(D, H, W)`` bool volumes in file-name order.
    """
    from vessel_models.segmentation import load_label_volume

    out = []
    for path in label_files(folder, where):
        data, affine = load_label_volume(path)
        mask = data != 0 if not labels else np.isin(data, labels)
        spacing = np.linalg.norm(affine[:3, :3], axis=0)
        out.append(resample_labels(mask, spacing, spacing_mm))
    empty = sum(not m.any() for m in out)
    if empty == len(out):  # a generator that learns to draw nothing would score perfectly against them
        raise VesselInputError(f"{where}: {folder}: none of its {len(out)} label volumes holds a vessel voxel"
                               + (f" of labels {labels}" if labels else ""))
    if empty:
        warnings.warn(f"{where}: {folder}: {empty} of its {len(out)} label volumes hold no vessel voxel", stacklevel=2)
    return out


def save_label_volume(label: np.ndarray, spacing_mm: float, path: str | os.PathLike) -> Path:
    """Write a label volume as uint8 NIfTI, centred on the origin, isotropic ``spacing_mm`` (LPS frame)."""
    from vessel_models.io import save_nifti

    return save_nifti(np.asarray(label, dtype=np.uint8), centred_affine(label.shape, spacing_mm), path,
                      dtype=np.uint8)


def centred_affine(shape: tuple[int, ...], spacing_mm: float) -> np.ndarray:
    """Voxel -> LPS mm affine of an isotropic grid whose centre is the origin."""
    affine = np.diag([float(spacing_mm)] * 3 + [1.0])
    affine[:3, 3] = -0.5 * (np.asarray(shape[:3], dtype=np.float64) - 1) * float(spacing_mm)
    return affine


def procedural_volumes(n: int, shape: tuple[int, int, int], spacing_mm: float, seed: int,
                       generator: str = "lsystem", params: dict | None = None) -> list[np.ndarray]:
    """Label volumes voxelized from seeded procedural trees, each centred on its tree's bounding box.

    Tree ``t`` uses seed ``seed + t``; a voxel is vessel where its lumen fraction is at least 0.5.

    Parameters
    ----------
    n : int
        Number of volumes.
    shape : tuple of int
        ``(D, H, W)`` grid.
    spacing_mm : float
        Voxel size (mm).
    seed : int
        First tree seed.
    generator : str
        A name of :data:`vessel_models.generators.GENERATORS`.
    params : dict, optional
        Generator parameters.

    Returns
    -------
    list of numpy.ndarray
        ``n`` bool volumes of ``shape``.
    """
    from vessel_models.generators import generate
    from vessel_models.voxelize import voxelize_tree

    out = []
    for t in range(int(n)):
        tree = generate(generator, int(seed) + t, **dict(params or {}))
        lo, hi = tree.bounds_mm()
        affine = centred_affine(shape, spacing_mm)
        affine[:3, 3] += 0.5 * (lo + hi)
        out.append(voxelize_tree(tree, affine, shape, supersample=2) >= 0.5)
    return out


def soft_target(label: np.ndarray, sigma_vox: float, margin: float = 0.0) -> np.ndarray:
    """A binary volume as a soft training target: Gaussian-blurred by ``sigma_vox`` voxels, then mapped
    from [0, 1] to [``margin``, 1 - ``margin``].

    The 0.5 level stays near the label's boundary (exactly, for a flat boundary), so thresholding a
    soft target at 0.5 gives back the label. The volume is extended by its edge values ("nearest"): a
    vessel leaving the volume stays a vessel up to its face. ``sigma_vox`` 0: no blur; ``margin`` 0:
    the full [0, 1] range.
    """
    out = np.asarray(label, dtype=np.float32)
    if sigma_vox > 0:
        out = ndimage.gaussian_filter(out, float(sigma_vox), mode="nearest")
    return (margin + (1 - 2 * margin) * out).astype(np.float32) if margin > 0 else out


def distance_target(label: np.ndarray, clip_vox: float, margin: float = 0.0) -> np.ndarray:
    """A binary volume as a clipped signed distance in [``margin``, 1 - ``margin``], 0.5 at the boundary.

    ``sd`` is the distance (voxels) from a voxel's centre to the nearest voxel of the other class, less
    half a voxel, positive inside: +-0.5 on the two sides of a boundary. The target is
    ``1/2 + 1/2 clip(sd / clip_vox, -1, 1)``, mapped like :func:`soft_target`: a vessel's axis lies
    ``r / clip_vox`` above the half level (r: its radius in voxels), and background within ``clip_vox``
    of a vessel slopes towards it, so a gap in a vessel, or a vessel too close to another, changes a
    whole neighbourhood instead of a few voxels. Thresholding at 0.5 gives the label back exactly. The
    volume is extended by its edge values ("nearest"), as in :func:`soft_target`.
    """
    fg = np.asarray(label, dtype=bool)
    pad = int(np.ceil(clip_vox)) + 1
    padded = np.pad(fg, pad, mode="edge")
    inside = ndimage.distance_transform_edt(padded) if padded.any() else np.zeros(padded.shape)
    outside = ndimage.distance_transform_edt(~padded) if not padded.all() else np.zeros(padded.shape)
    sd = np.where(padded, inside - 0.5, 0.5 - outside)[pad:-pad, pad:-pad, pad:-pad]
    out = 0.5 + 0.5 * np.clip(sd / float(clip_vox), -1.0, 1.0)
    return (margin + (1 - 2 * margin) * out).astype(np.float32)


def training_target(label: np.ndarray, sigma_vox: float = 0.0, margin: float = 0.0,
                    distance_clip_vox: float = 0.0) -> np.ndarray:
    """The training target of a label volume: :func:`distance_target` when ``distance_clip_vox`` > 0,
    else :func:`soft_target` (the label itself with ``sigma_vox`` and ``margin`` 0)."""
    if distance_clip_vox > 0:
        return distance_target(label, distance_clip_vox, margin)
    return soft_target(label, sigma_vox, margin)


def _window(vol: np.ndarray, shape: tuple[int, int, int], rng: np.random.Generator, centred: bool) -> np.ndarray:
    """A ``shape`` window of ``vol``: centred or at a random offset; zero padded where ``vol`` is smaller."""
    out = np.zeros(shape, dtype=vol.dtype)
    src, dst = [], []
    for size, want in zip(vol.shape, shape):
        if size >= want:
            start = (size - want) // 2 if centred else int(rng.integers(0, size - want + 1))
            src.append(slice(start, start + want))
            dst.append(slice(0, want))
        else:
            pad = (want - size) // 2
            src.append(slice(0, size))
            dst.append(slice(pad, pad + size))
    out[tuple(dst)] = vol[tuple(src)]
    return out


def draw_batch(volumes: list[np.ndarray], batch_size: int, shape: tuple[int, int, int],
               rng: np.random.Generator, mode: str = "patch", flips: bool = True) -> np.ndarray:
    """A batch of windows of randomly chosen volumes.

    Parameters
    ----------
    volumes : list of numpy.ndarray
        Bool label volumes or soft targets in [0, 1] (:func:`soft_target`).
    batch_size : int
    shape : tuple of int
        Window ``(D, H, W)``.
    rng : numpy.random.Generator
        All random choices (volume, offset, flips).
    mode : {"patch", "crop"}
        Random patches or centred crops.
    flips : bool
        Flip each window along each axis with probability 1/2.

    Returns
    -------
    numpy.ndarray
        ``(batch_size, 1, D, H, W)`` float32 in [0, 1].
    """
    if mode not in ("patch", "crop"):
        raise VesselInputError(f"data.mode: use patch or crop, got {mode!r}")
    batch = np.empty((batch_size, 1, *shape), dtype=np.float32)
    for b in range(batch_size):
        win = _window(volumes[int(rng.integers(len(volumes)))], shape, rng, centred=mode == "crop")
        if flips:
            axes = tuple(a for a in range(3) if rng.random() < 0.5)
            win = np.flip(win, axes) if axes else win
        batch[b, 0] = win
    return batch
