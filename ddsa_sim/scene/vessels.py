"""Vessel sources -> iodine volumes for the projector.

A vessel source is either a centreline tree (voxelized on a fine grid around it, default
0.25 mm, as the lumen fraction times the bolus fill) or a fraction volume (a segmentation or a
NIfTI mask, values in [0, 1]). A voxel holds ``f * rho_lumen`` g/cm^3 of the lumen material
(iodinated blood, :func:`ddsa_sim.physics.attenuation.iodinated_blood`) with f the fraction, and
displaces the same volume of the CT's blood (docs/dsa.md §1).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ddsa_sim import InputError
from ddsa_sim.projector import ProjectorVolume
from vessel_models.bolus import GAMMA_ALPHA, arrival_times_s, compartment_curve, contrast_fraction, venous_nodes
from vessel_models.tree import VesselTree
from vessel_models.voxelize import grid_around_tree, voxelize_tree

VIRTUAL_LABEL = "virtual"


@dataclass(frozen=True)
class BolusParams:
    """Bolus / fill-state model of :mod:`vessel_models.bolus` (per node and compartment, in [0, 1]).

    ``mode="filling"``: the lumen is full where the front has arrived (arterial filling, partial
    distal filling before that); ``"bolus"``: a travelling Gaussian bolus; ``"gamma"``: a gamma
    variate per node, filling then washing out (a sequence arterial -> capillary -> venous).
    ``venous_delay_s``: capillary transit from the capillary arrival to the cortical vein tips (s);
    ``dispersion``: how many times wider (and lower) the capillary and venous curves are than the
    arterial one. Defaults: docs/vessels.md, "Phases".
    """

    velocity_mm_per_s: float = 100.0
    sigma_s: float = 0.3
    mode: str = "filling"
    t0_s: float = 0.0
    venous_delay_s: float = 3.5
    dispersion: float = 3.0


@dataclass
class TreeVessels:
    """A vessel tree in world mm (LPS), voxelized on an axis-aligned grid of ``spacing_mm`` around it.

    Branches labelled ``virtual`` (zero-size connectors of some generators) carry no iodine. When
    the grid at ``spacing_mm`` would exceed ``max_voxels``, the spacing is coarsened uniformly until
    it fits (a Circle of Willis of 16 x 16 x 12 cm at 0.25 mm would need 800 MB).
    """

    tree: VesselTree
    spacing_mm: float = 0.25
    name: str = "tree"
    max_voxels: int = 48_000_000
    _grid: tuple[np.ndarray, tuple[int, int, int]] | None = field(default=None, init=False, repr=False)

    @property
    def grid(self) -> tuple[np.ndarray, tuple[int, int, int]]:
        if self._grid is None:
            lo, hi = self.tree.bounds_mm()
            extent = hi - lo + 4.0 * self.spacing_mm
            spacing = float(self.spacing_mm)
            n = float(np.prod(np.ceil(extent / spacing) + 1))
            if n > self.max_voxels:
                spacing *= (n / self.max_voxels) ** (1.0 / 3.0) * 1.01
            self._grid = grid_around_tree(self.tree, spacing, margin_mm=2.0 * spacing)
        return self._grid

    def virtual_nodes(self) -> np.ndarray:
        """Bool (N,): nodes of ``virtual`` branches that have no child in a real branch."""
        labels = self.tree.labels
        virt_b = {b for b, name in labels.items() if name.startswith(VIRTUAL_LABEL)}
        virt = np.isin(self.tree.branch_ids, list(virt_b)) if virt_b else np.zeros(self.tree.n_nodes, bool)
        if virt.any():
            has_real_child = np.zeros(self.tree.n_nodes, bool)
            kids = np.arange(1, self.tree.n_nodes)
            real_kids = kids[~virt[kids]]
            has_real_child[self.tree.parents[real_kids]] = True
            virt &= ~has_real_child
        return virt

    def fill(self, t_s: float | None, bolus: BolusParams) -> np.ndarray:
        """Per-node fill in [0, 1] at time ``t_s`` (None = a still frame: every artery filled, veins
        empty, i.e. the arterial phase of a tree with a venous part); virtual nodes 0."""
        if t_s is None:
            f = np.where(venous_nodes(self.tree), 0.0, 1.0)
        else:
            f = contrast_fraction(self.tree, float(t_s), bolus.velocity_mm_per_s, bolus.sigma_s, bolus.mode,
                                  bolus.t0_s, bolus.venous_delay_s, bolus.dispersion)
        f = np.clip(f, 0.0, 1.0)
        f[self.virtual_nodes()] = 0.0
        return f

    def fraction(self, t_s: float | None, bolus: BolusParams) -> tuple[np.ndarray, np.ndarray]:
        """(lumen fraction x fill (float32), voxel -> world affine)."""
        affine, shape = self.grid
        f = self.fill(t_s, bolus)
        vol = voxelize_tree(self.tree, affine, shape, node_values=f)
        return vol, affine

    def iodine_volume(self, name: str, t_s: float | None, bolus: BolusParams, material: str,
                      density_g_per_cc: float, displaces: dict[str, float]) -> ProjectorVolume:
        """The lumen volume at fill time ``t_s`` (voxelized for this call; see :func:`iodine_volume`)."""
        frac, affine = self.fraction(t_s, bolus)
        return iodine_volume(name, frac, affine, material, density_g_per_cc, displaces)

    def end_time_s(self, bolus: BolusParams) -> float:
        """Time at which the bolus reaches the farthest node (s), its curve's peak in ``"gamma"`` mode."""
        t = arrival_times_s(self.tree, bolus.velocity_mm_per_s, bolus.t0_s, bolus.venous_delay_s)
        if bolus.mode == "gamma":
            t = t + GAMMA_ALPHA * bolus.sigma_s * np.where(venous_nodes(self.tree), bolus.dispersion, 1.0)
        return float(t.max())


@dataclass
class FractionVessels:
    """A lumen-fraction volume (values in [0, 1]) on its own grid.

    Static (no bolus) unless ``capillary_path_mm`` is given: then it is a capillary bed (a
    parenchymal blush) whose iodine follows the capillary curve of :mod:`vessel_models.bolus`,
    reached at ``bolus.t0_s + capillary_path_mm / bolus.velocity_mm_per_s``: when the arterial
    front has run the tree's longest arterial path (:func:`vessel_models.bolus.capillary_arrival_s`).
    """

    fraction_volume: np.ndarray
    affine: np.ndarray
    name: str = "volume"
    capillary_path_mm: float | None = None
    _unit: ProjectorVolume | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        f = np.asarray(self.fraction_volume, dtype=np.float32)
        if f.ndim != 3:
            raise InputError(f"{self.name}: vessel volume must be 3D, got shape {f.shape}")
        if not np.all(np.isfinite(f)) or f.min() < 0 or f.max() > 1:
            raise InputError(f"{self.name}: vessel fraction values must lie in [0, 1]")
        if not f.any():
            raise InputError(f"{self.name}: vessel volume has no foreground voxel")
        self.fraction_volume, self.affine = crop_to_foreground(f, np.asarray(self.affine, dtype=np.float64))

    def fill(self, t_s: float | None, bolus: BolusParams) -> float:
        """Fill factor in [0, 1] at time ``t_s``: 1 for a static volume; a capillary bed is empty in a
        still frame (``t_s`` None, the arterial phase) and follows its curve otherwise."""
        if self.capillary_path_mm is None:
            return 1.0
        if t_s is None:
            return 0.0
        dt = float(t_s) - self._arrival_s(bolus)
        return float(compartment_curve(dt, bolus.sigma_s, bolus.mode, bolus.dispersion))

    def fraction(self, t_s: float | None, bolus: BolusParams) -> tuple[np.ndarray, np.ndarray]:
        f = self.fill(t_s, bolus)
        return (self.fraction_volume if f == 1.0 else self.fraction_volume * np.float32(f)), self.affine

    def iodine_volume(self, name: str, t_s: float | None, bolus: BolusParams, material: str,
                      density_g_per_cc: float, displaces: dict[str, float]) -> ProjectorVolume:
        """The lumen volume at fill time ``t_s``, equal to :func:`iodine_volume` of :meth:`fraction`.

        The projector volume of the fraction (density 1) is built once and scaled per call, so a
        source seen at many concentrations (a dataset) or times pays its checks, axis order and bricks once.
        """
        if self._unit is None:
            self._unit = iodine_volume(name, self.fraction_volume, self.affine, material, 1.0, {})
        return self._unit.scaled(density_g_per_cc * self.fill(t_s, bolus), name=name, displaces=displaces,
                                 material=material)

    def end_time_s(self, bolus: BolusParams) -> float:
        """``t0`` for a static volume; a capillary bed's curve peak (its arrival with a filling front)."""
        if self.capillary_path_mm is None:
            return bolus.t0_s
        peak = GAMMA_ALPHA * bolus.sigma_s * bolus.dispersion if bolus.mode == "gamma" else 0.0
        return self._arrival_s(bolus) + peak

    def _arrival_s(self, bolus: BolusParams) -> float:
        return bolus.t0_s + float(self.capillary_path_mm) / bolus.velocity_mm_per_s


VesselSource = TreeVessels | FractionVessels


def crop_to_foreground(vol: np.ndarray, affine: np.ndarray | None = None, pad: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Crop a volume to its non-zero bounding box plus ``pad`` voxels; the affine follows."""
    nz = np.argwhere(vol != 0)
    lo = np.maximum(nz.min(axis=0) - pad, 0)
    hi = np.minimum(nz.max(axis=0) + 1 + pad, vol.shape)
    aff = np.eye(4) if affine is None else np.asarray(affine, dtype=np.float64).copy()
    out_aff = aff.copy()
    out_aff[:3, 3] = aff[:3, :3] @ lo + aff[:3, 3]
    return np.ascontiguousarray(vol[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]), out_aff


def iodine_volume(name: str, fraction: np.ndarray, affine: np.ndarray, material: str, density_g_per_cc: float,
                  displaces: dict[str, float]) -> ProjectorVolume:
    """Lumen ProjectorVolume: ``f * density_g_per_cc`` g/cm^3 of ``material`` (iodinated blood),
    removing ``displaces[m]`` g of material m per g of it."""
    dens = np.asarray(fraction, dtype=np.float32) * np.float32(density_g_per_cc)
    return ProjectorVolume.single_material(name, dens, affine, material, displaces=dict(displaces))
