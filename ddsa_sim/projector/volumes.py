"""What the projector needs of a volume: density (g/cm^3), material labels and a world placement."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np

from ddsa_sim import InputError
from ddsa_sim.projector.layout import label_mask, longest_axes_last, march_layout
from ddsa_sim.volumes import Volume, hu_to_density, material_labels, segment_by_threshold


@dataclass
class ProjectorVolume:
    """A volume ready for ray marching.

    Parameters
    ----------
    name : str
        Key of this volume in the projector's outputs (e.g. ``"ct"``, ``"vessels"``).
    density_g_per_cc : float32 (I, J, K)
        Mass density of the material in each voxel (g/cm^3); zero voxels cost nothing and add nothing.
    labels : uint8 (I, J, K)
        Index into ``materials`` per voxel.
    materials : tuple of str
        Material names (physics.attenuation names) by label value.
    world_from_voxel : float64 (4, 4)
        Voxel index -> world mm (LPS).
    displaces : dict of str -> float
        Mass of another material removed per unit mass of this volume (g/g): an iodine volume
        displacing blood. Applied linearly to the area densities when volumes are combined.
    """

    name: str
    density_g_per_cc: np.ndarray
    labels: np.ndarray
    materials: tuple[str, ...]
    world_from_voxel: np.ndarray
    displaces: dict[str, float] = field(default_factory=dict)
    _occupancy: tuple[np.ndarray, int] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        density = np.asarray(self.density_g_per_cc, dtype=np.float32)
        labels = np.asarray(self.labels, dtype=np.uint8)
        self.world_from_voxel = np.asarray(self.world_from_voxel, dtype=np.float64)
        if density.ndim != 3 or labels.shape != density.shape:
            raise InputError(f"volume '{self.name}': density and labels must be 3D arrays of one shape")
        if not np.all(np.isfinite(density)):
            raise InputError(f"volume '{self.name}': density has NaN or infinite voxels")
        if np.any(density < 0):
            raise InputError(f"volume '{self.name}': density must be non-negative")
        if labels.size and int(labels.max()) >= len(self.materials):
            raise InputError(f"volume '{self.name}': label {int(labels.max())} has no material name")
        order = longest_axes_last(density.shape)
        # The kernels read one array: each voxel's label in the lowest mantissa bits of its density
        # (see layout.label_mask); ``labels`` stays for the other backends.
        self.density_g_per_cc, self.labels = march_layout(density, labels, order, self.label_mask)
        if order != (0, 1, 2):
            permute = np.eye(4)[list(order) + [3]]  # new index = permute @ old index
            self.world_from_voxel = self.world_from_voxel @ permute.T

    @property
    def label_mask(self) -> int:
        """Mask of the lowest mantissa bits of the density that carry the material label."""
        return label_mask(len(self.materials))

    @property
    def density_bits(self) -> np.ndarray:
        """The density's float32 bits as uint32 (same memory): the kernels read label and density at once."""
        return self.density_g_per_cc.view(np.uint32)

    def occupancy(self) -> tuple[np.ndarray, int]:
        """Empty-space skipping bricks of the density (computed once; see ``kernels_cpu.brick_occupancy``)."""
        if self._occupancy is None:
            from ddsa_sim.projector.kernels_cpu import brick_occupancy

            self._occupancy = brick_occupancy(self.density_g_per_cc)
        return self._occupancy

    def scaled(self, factor: float, name: str | None = None, displaces: dict[str, float] | None = None,
               material: str | None = None) -> "ProjectorVolume":
        """This single-material volume with its density times ``factor`` (>= 0), e.g. one vessel
        volume at many iodine concentrations or fill times (0: empty, its bricks kept).

        The checks, the axis order and the empty-space bricks carry over (a positive factor keeps
        every zero voxel zero), so only the multiplication is paid. ``name``, ``displaces`` and the
        one ``material`` default to this volume's.
        """
        if self.label_mask:
            raise InputError(f"volume '{self.name}': only a single-material volume can be scaled "
                             f"(the labels share the density's bits)")
        if not (np.isfinite(factor) and factor >= 0):
            raise InputError(f"volume '{self.name}': scale factor must be a number >= 0, got {factor}")
        out = copy.copy(self)
        out.density_g_per_cc = self.density_g_per_cc * np.float32(factor)
        out.name = self.name if name is None else name
        out.displaces = dict(self.displaces if displaces is None else displaces)
        out.materials = self.materials if material is None else (material,)
        out._occupancy = self.occupancy()
        return out

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.density_g_per_cc.shape)  # type: ignore[return-value]

    @property
    def nbytes(self) -> int:
        return self.density_g_per_cc.nbytes + self.labels.nbytes

    def corners_mm(self) -> np.ndarray:
        lo, hi = -0.5, np.array(self.shape) - 0.5
        ijk = np.array([[x, y, z, 1.0] for x in (lo, hi[0]) for y in (lo, hi[1]) for z in (lo, hi[2])])
        return (ijk @ self.world_from_voxel.T)[:, :3]

    @classmethod
    def from_ct(cls, ct: Volume, name: str = "ct") -> "ProjectorVolume":
        """A CT in HU -> DeepDRR density and its material masks (thresholds when it has none)."""
        mats = ct.materials or segment_by_threshold(ct.data)
        labels, names = material_labels(mats)
        return cls(name, hu_to_density(ct.data), labels, names, ct.affine)

    @classmethod
    def single_material(cls, name: str, density_g_per_cc: np.ndarray, affine: np.ndarray, material: str,
                        displaces: dict[str, float] | None = None) -> "ProjectorVolume":
        """A volume of one material, e.g. iodine (g/cm^3 = mgI/ml / 1000) on a fine vessel grid."""
        dens = np.asarray(density_g_per_cc, dtype=np.float32)
        return cls(name, dens, np.zeros(dens.shape, np.uint8), (material,), affine, dict(displaces or {}))

    @classmethod
    def tool(cls, name: str, occupancy: np.ndarray, affine: np.ndarray, material: str, density_g_per_cc: float,
             displaced_material: str = "soft tissue", displaced_density_g_per_cc: float = 1.03) -> "ProjectorVolume":
        """A tool or implant (K-wire, screw, catheter) of one material, added over the anatomy.

        The tool displaces what it occupies: each cm^3 of tool removes ``displaced_density_g_per_cc``
        g of ``displaced_material`` from the images it is combined into (see ``displaces``), so a
        wire through a soft-tissue slab of thickness T attenuates as ``L`` of metal plus ``T - L`` of
        tissue, not ``T + L``.

        Parameters
        ----------
        occupancy : float (I, J, K)
            Fraction of each voxel inside the tool, in [0, 1] (a binary mask or partial volume).
        affine : float64 (4, 4)
            Tool voxel index -> world mm (the tool's own grid and resolution, posed in world).
        material, density_g_per_cc : str, float
            The tool's material (physics.attenuation name) and its density (g/cm^3).
        displaced_material, displaced_density_g_per_cc : str, float
            What the tool pushes aside where it sits (default: soft tissue at 1.03 g/cm^3, DeepDRR's
            density of 0 HU); ``displaced_density_g_per_cc=0`` lays the tool over the anatomy.
        """
        occ = np.asarray(occupancy, dtype=np.float32)
        if occ.size and (not np.all(np.isfinite(occ)) or occ.min() < 0 or occ.max() > 1):
            raise InputError(f"tool '{name}': occupancy must be a fraction in [0, 1] per voxel")
        if not (np.isfinite(density_g_per_cc) and density_g_per_cc > 0):
            raise InputError(f"tool '{name}': density_g_per_cc must be positive, got {density_g_per_cc}")
        if not (np.isfinite(displaced_density_g_per_cc) and displaced_density_g_per_cc >= 0):
            raise InputError(f"tool '{name}': displaced_density_g_per_cc must be >= 0, got {displaced_density_g_per_cc}")
        displaces = {displaced_material: displaced_density_g_per_cc / density_g_per_cc} if displaced_density_g_per_cc else {}
        return cls.single_material(name, occ * np.float32(density_g_per_cc), affine, material, displaces)
