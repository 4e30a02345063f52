"""Learned vessel sources: a label volume sampled from a vessel-GAN checkpoint, as a lumen fraction.

The sample (:func:`vessel_models.gan.sample.sample_checkpoint`, on the CPU) is a pure function of the
checkpoint file, the seed and the sampling parameters, so a dataset sample regenerates bit for bit.
Its grid is centred on the world origin at the generator's voxel size; the scene builder places it
like a tree (a rigid transform of the grid, i.e. a new affine, from :func:`lumen_points`) and renders
it through the fraction-volume path (every vessel voxel is full lumen).

Bad input raises :class:`ddsa_sim.InputError` with one line naming ``field`` (``--vessels`` or a
config field such as ``vessels.sources[0]``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from ddsa_sim import InputError

__all__ = ["lumen_points", "model_volume"]


def model_volume(checkpoint: str, seed: int, params: dict[str, Any] | None = None,
                 field: str = "--vessels") -> tuple[np.ndarray, np.ndarray]:
    """The lumen fraction of one sample of a checkpoint, on a grid centred on the origin.

    Parameters
    ----------
    checkpoint : str
        Vessel-GAN checkpoint (``RUN/best.pt``).
    seed : int
        Seed of the sample (non-negative).
    params : dict, optional
        ``truncation`` (0, 2] and ``threshold`` (0, 1) (defaults 1 and 0.5).
    field : str
        Option / config field named in errors.

    Returns
    -------
    fraction : (D, H, W) float32
        1 in vessel voxels, 0 elsewhere.
    affine : (4, 4) float64
        Voxel index -> world mm, isotropic at the generator's voxel size, centre at the origin.
    """
    from vessel_models.gan.config import check_sample_params
    from vessel_models.gan.data import centred_affine
    from vessel_models.gan.sample import sample_checkpoint
    from vessel_models.tree import VesselInputError

    try:
        checked = check_sample_params(dict(params or {}), where=f"{field}.params")
    except VesselInputError as exc:
        raise InputError(str(exc)) from None
    try:
        label, spacing_mm = sample_checkpoint(checkpoint, int(seed), checked)
    except VesselInputError as exc:
        raise InputError(f"{field}: {str(exc).splitlines()[0]}") from None
    if not label.any():
        raise InputError(f"{field}: {checkpoint}: sample of seed {seed} has no vessel voxel at threshold "
                         f"{checked['threshold']:g}; try another seed, lower the threshold (an export config's "
                         "params.threshold) or train the model longer")
    return label.astype(np.float32), centred_affine(label.shape, spacing_mm)


def lumen_points(fraction: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """World positions (mm) of the lumen voxels, the one deepest inside the lumen first.

    The placement functions of :mod:`ddsa_sim.scene.placement` take a tree's node positions with its
    root first; for a volume the analogue of the root is its thickest vessel point (largest distance
    to the wall; the first in index order on ties).
    """
    lumen = np.asarray(fraction) > 0
    depth = ndimage.distance_transform_edt(np.pad(lumen, 1))[1:-1, 1:-1, 1:-1]
    ijk = np.argwhere(lumen)
    root = int(np.argmax(depth[lumen]))  # argwhere and boolean indexing share C order
    ijk = np.concatenate([ijk[root:root + 1], np.delete(ijk, root, axis=0)])
    aff = np.asarray(affine, dtype=np.float64)
    return ijk @ aff[:3, :3].T + aff[:3, 3]
