"""The voxel layout the march kernels read: longest axes innermost, labels in the density's low bits.

A :class:`~ddsa_sim.projector.volumes.ProjectorVolume` stores its density this way once, when it is
made; :func:`march_layout` does the reordering and the label packing in one parallel pass over the
voxels (numpy took four passes and a strided copy per array: 0.2 s of a 7 M-voxel CT).
"""

from __future__ import annotations

import numba
import numpy as np

import ddsa_sim._openmp  # noqa: F401  (before numba runs a parallel kernel)

__all__ = ["label_mask", "longest_axes_last", "march_layout"]


def label_mask(n_materials: int) -> int:
    """Mask of the lowest mantissa bits of a float32 density that carry one of ``n_materials`` labels.

    ``ceil(log2 n)`` bits: a relative change of the density below ``2**-(23 - bits)`` (2e-6 for up to
    16 materials), far under any CT's precision; 0 (nothing packed) for a single material.
    """
    return (1 << max(0, int(np.ceil(np.log2(n_materials))))) - 1 if n_materials > 1 else 0


def longest_axes_last(shape: tuple[int, ...]) -> tuple[int, ...]:
    """The axis order that puts the longest axes innermost (stable for equal lengths).

    Rays cross many voxels of the long axes; keeping those contiguous makes consecutive samples
    share cache lines. A CT stored as 512 x 512 x 133 (short axis innermost, as NIfTI slices come)
    marches about 2.5x faster as 133 x 512 x 512.
    """
    return tuple(int(a) for a in np.argsort(shape, kind="stable"))


@numba.njit(parallel=True, cache=True)
def _pack(bits, labels, keep, out_bits, out_labels):
    """``out_bits = (bits & keep) | labels`` and ``out_labels = labels``, element-wise (any input strides)."""
    n0, n1, n2 = bits.shape
    for i in numba.prange(n0):
        for j in range(n1):
            for k in range(n2):
                lab = labels[i, j, k]
                out_bits[i, j, k] = (bits[i, j, k] & keep) | numba.uint32(lab)
                out_labels[i, j, k] = lab


def march_layout(density: np.ndarray, labels: np.ndarray, order: tuple[int, ...], mask: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Density and labels transposed to ``order``, C-contiguous, each label in its density's low bits.

    Parameters
    ----------
    density : float32 (I, J, K), any memory layout
        Mass density (g/cm^3).
    labels : uint8 (I, J, K)
        Material label per voxel, each below ``mask + 1``.
    order : tuple of int
        Axis order of the result (see :func:`longest_axes_last`).
    mask : int
        :func:`label_mask` of the volume's material count; 0 keeps the density's bits unchanged.

    Returns
    -------
    density : float32, C-contiguous, axes in ``order``, the labels in its lowest ``mask`` bits
    labels : uint8, C-contiguous, axes in ``order``
    """
    if order == tuple(range(density.ndim)) and mask == 0:
        return np.ascontiguousarray(density), np.ascontiguousarray(labels)
    bits = density.transpose(order).view(np.uint32)
    lab = labels.transpose(order)
    out_bits = np.empty(bits.shape, np.uint32)
    out_labels = np.empty(lab.shape, np.uint8)
    _pack(bits, lab, np.uint32(~mask & 0xFFFFFFFF), out_bits, out_labels)
    return out_bits.view(np.float32), out_labels
