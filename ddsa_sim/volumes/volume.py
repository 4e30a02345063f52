"""The one volume type of ddsa-sim: a voxel array placed in the world by an affine."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from ddsa_sim import InputError


@dataclass
class Volume:
    """A 3D image placed in the world.

    Parameters
    ----------
    data : ndarray, shape (I, J, K)
        Voxel values (HU for a CT, g/cm^3 for a density, a fraction or mgI/ml for a vessel volume).
    affine : ndarray, shape (4, 4)
        Voxel index (i, j, k, 1) -> world position in mm, patient LPS frame.
    materials : dict of str -> ndarray of bool or float, optional
        Per-material masks or fractions on the same grid (e.g. ``{"bone": ..., "soft tissue": ...}``).
    name : str
        Where the volume came from (file path or builtin name), used in messages.
    """

    data: np.ndarray
    affine: np.ndarray
    materials: dict[str, np.ndarray] = field(default_factory=dict)
    name: str = "<array>"

    def __post_init__(self) -> None:
        self.data = np.asarray(self.data)
        self.affine = np.asarray(self.affine, dtype=np.float64)
        if self.data.ndim != 3:
            raise InputError(f"{self.name}: volume data must be 3D, got shape {self.data.shape}")
        if 0 in self.data.shape:
            raise InputError(f"{self.name}: volume has no voxels along an axis, shape {self.data.shape}")
        if self.affine.shape != (4, 4) or not np.all(np.isfinite(self.affine)):
            raise InputError(f"{self.name}: affine must be a finite 4x4 matrix")
        spacing = self.spacing_mm
        if not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
            raise InputError(f"{self.name}: voxel spacing must be positive and finite, got {spacing} mm")
        if abs(np.linalg.det(self.affine[:3, :3])) < 1e-12:
            raise InputError(f"{self.name}: affine is singular")
        for key, mat in self.materials.items():
            if mat.shape != self.data.shape:
                raise InputError(f"{self.name}: material '{key}' has shape {mat.shape}, data has {self.data.shape}")

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.data.shape)  # type: ignore[return-value]

    @property
    def spacing_mm(self) -> np.ndarray:
        """Voxel edge lengths (mm) along i, j, k."""
        return np.linalg.norm(self.affine[:3, :3], axis=0)

    @property
    def center_mm(self) -> np.ndarray:
        """World position (mm, LPS) of the volume's centre."""
        return self.voxel_to_world((np.array(self.shape) - 1) / 2.0)

    def voxel_to_world(self, ijk: np.ndarray) -> np.ndarray:
        ijk = np.asarray(ijk, dtype=np.float64)
        return ijk @ self.affine[:3, :3].T + self.affine[:3, 3]

    def world_to_voxel(self, xyz: np.ndarray) -> np.ndarray:
        inv = np.linalg.inv(self.affine)
        return np.asarray(xyz, dtype=np.float64) @ inv[:3, :3].T + inv[:3, 3]

    def corners_mm(self) -> np.ndarray:
        """World positions (mm) of the 8 outer voxel corners, shape (8, 3)."""
        lo, hi = -0.5, np.array(self.shape) - 0.5
        ijk = np.array([[x, y, z] for x in (lo, hi[0]) for y in (lo, hi[1]) for z in (lo, hi[2])])
        return self.voxel_to_world(ijk)

    def with_data(self, data: np.ndarray, **changes) -> "Volume":
        """A copy on the same grid with other voxel values."""
        return replace(self, data=data, **changes)

    def translated(self, offset_mm: np.ndarray) -> "Volume":
        """The same volume moved rigidly by ``offset_mm`` (world mm)."""
        affine = self.affine.copy()
        affine[:3, 3] += np.asarray(offset_mm, dtype=np.float64)
        return replace(self, affine=affine)

    def transformed(self, world_from_world: np.ndarray) -> "Volume":
        """The same volume moved by a 4x4 rigid world transform (applied after the current placement)."""
        return replace(self, affine=np.asarray(world_from_world, dtype=np.float64) @ self.affine)

    def crop(self, lo: tuple[int, int, int], hi: tuple[int, int, int]) -> "Volume":
        """Sub-volume of voxels ``lo <= ijk < hi``, keeping its world placement."""
        lo_a, hi_a = np.clip(lo, 0, self.shape), np.clip(hi, 0, self.shape)
        if np.any(hi_a <= lo_a):
            raise InputError(f"{self.name}: empty crop {tuple(lo)}..{tuple(hi)} of shape {self.shape}")
        sl = tuple(slice(int(a), int(b)) for a, b in zip(lo_a, hi_a))
        affine = self.affine.copy()
        affine[:3, 3] = self.voxel_to_world(lo_a.astype(float))
        return Volume(self.data[sl], affine, {k: v[sl] for k, v in self.materials.items()}, self.name)

    def resampled(self, spacing_mm: float | tuple[float, float, float], order: int = 1) -> "Volume":
        """Resample to a new voxel spacing (mm) on the same axes and extent.

        Material maps are resampled with nearest neighbour (order 0) when boolean, linear otherwise.
        """
        new_spacing = np.broadcast_to(np.asarray(spacing_mm, dtype=np.float64), (3,))
        if np.any(new_spacing <= 0) or not np.all(np.isfinite(new_spacing)):
            raise InputError(f"spacing_mm must be positive, got {spacing_mm}")
        extent = np.array(self.shape) * self.spacing_mm
        new_shape = np.maximum(1, np.round(extent / new_spacing)).astype(int)
        zoom = new_shape / np.array(self.shape)
        directions = self.affine[:3, :3] / self.spacing_mm
        affine = np.eye(4)
        affine[:3, :3] = directions * new_spacing
        # keep the outer corner at the same place: voxel centres shift by half a (new) voxel
        corner = self.voxel_to_world(np.full(3, -0.5))
        affine[:3, 3] = corner + directions @ (new_spacing / 2)

        from scipy import ndimage  # here: reading and projecting a CT need no scipy (0.1 s to import)

        def zoom_one(a: np.ndarray, o: int) -> np.ndarray:
            out = ndimage.zoom(a, zoom, order=o, mode="nearest", grid_mode=True)
            return out

        data = zoom_one(self.data.astype(np.float32), order)
        mats = {
            k: (zoom_one(v.astype(np.uint8), 0).astype(bool) if v.dtype == bool else zoom_one(v, 1))
            for k, v in self.materials.items()
        }
        return Volume(data, affine, mats, self.name)
