"""The parenchymal (capillary) blush: iodine in the brain tissue of the perfused territory.

A brain voxel holds ``CBV`` ml of blood per ml of tissue; while the bolus passes the capillaries that
blood carries the capillary concentration of :mod:`vessel_models.bolus`, so the voxel's iodine is
``CBV fraction x lumen iodine x capillary fill``. The source is a
:class:`~ddsa_sim.scene.vessels.FractionVessels` of value ``CBV fraction`` in the territory, driven
by the capillary curve (the scene's one fill model). The territory is the brain (the CT's
intracranial volume) within :data:`TERRITORY_RADIUS_MM` of a terminal branch of the injected arteries.
Values and their sources: docs/vessels.md, "Phases".
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from ddsa_sim import InputError
from ddsa_sim.scene.vessels import BolusParams, FractionVessels
from vessel_models.bolus import arterial_reach_mm, venous_nodes
from vessel_models.tree import VesselTree

__all__ = ["BLUSH_SPACING_MM", "BRAIN_DENSITY_G_PER_ML", "CBV_ML_PER_100G", "CEREBRAL_BOLUS", "TERRITORY_RADIUS_MM",
           "blush_source", "perfused_territory"]

#: Bolus of a cerebral run with a venous phase: gamma variates (fill and wash-out), a front at 300 mm/s
#: (below the proximal mean velocities of 38-62 cm/s: cortical branches are slower), capillary transit
#: 3.5 s; arterial 0-2 s, capillary 2-4 s, venous 5-8 s, siphon -> cortical veins about 4 s.
CEREBRAL_BOLUS = BolusParams(velocity_mm_per_s=300.0, mode="gamma")

#: Mean regional cerebral blood volume, ml blood / 100 g brain (x-ray fluorescence of iodinated contrast).
CBV_ML_PER_100G = 3.2
#: Brain tissue density, g/ml.
BRAIN_DENSITY_G_PER_ML = 1.04
#: Brain tissue within this distance of a terminal artery of the injected tree is its territory, mm.
TERRITORY_RADIUS_MM = 25.0
#: The blush is smooth: it is sampled on a grid no finer than this, mm.
BLUSH_SPACING_MM = 2.0
#: Width (Gaussian sigma) of the fall-off at a territory's border (watershed), mm.
TERRITORY_EDGE_MM = 4.0


def _terminals_mm(tree: VesselTree) -> np.ndarray:
    """Positions of the terminal arteries: leaves that are neither veins nor virtual connectors."""
    leaves = tree.leaves()
    virtual = {b for b, name in tree.labels.items() if name.startswith("virtual")}
    keep = ~venous_nodes(tree)[leaves] & ~np.isin(tree.branch_ids[leaves], list(virtual))
    return tree.positions_mm[leaves[keep]]


def _strided(brain: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``brain`` sampled every k-th voxel so its spacing is at least :data:`BLUSH_SPACING_MM`, and its affine."""
    affine = np.asarray(affine, dtype=np.float64)
    step = np.maximum(1, np.floor(BLUSH_SPACING_MM / np.linalg.norm(affine[:3, :3], axis=0) + 1e-9)).astype(int)
    out = affine.copy()
    out[:3, :3] = affine[:3, :3] * step
    return brain[::step[0], ::step[1], ::step[2]], out


def perfused_territory(tree: VesselTree, brain: np.ndarray, affine: np.ndarray,
                       radius_mm: float = TERRITORY_RADIUS_MM) -> tuple[np.ndarray, np.ndarray]:
    """The brain voxels perfused by ``tree``'s arteries, on a grid of at least :data:`BLUSH_SPACING_MM`.

    Parameters
    ----------
    tree : VesselTree
        Placed arterial tree (world mm); its terminal arteries define the territory.
    brain : (I, J, K) bool
        Brain (intracranial) mask on the CT grid.
    affine : (4, 4)
        Voxel -> world (mm) of ``brain``.
    radius_mm : float
        Reach of a terminal artery.

    Returns
    -------
    mask : (I', J', K') bool
        The territory on the strided grid.
    affine : (4, 4)
        Voxel -> world of ``mask``.
    """
    sub, out_affine = _strided(brain, affine)
    ijk = np.argwhere(sub)
    terminals = _terminals_mm(tree)
    mask = np.zeros(sub.shape, bool)
    if ijk.size and terminals.size:
        dist, _ = cKDTree(terminals).query(ijk @ out_affine[:3, :3].T + out_affine[:3, 3],
                                           distance_upper_bound=radius_mm)
        mask[tuple(ijk[np.isfinite(dist)].T)] = True
    return mask, out_affine


def blush_source(tree: VesselTree, brain: np.ndarray | None, affine: np.ndarray, name: str = "blush",
                 cbv_ml_per_100g: float = CBV_ML_PER_100G) -> FractionVessels:
    """The parenchymal blush of ``tree``'s territory as a capillary :class:`FractionVessels`: CBV
    fraction in the territory, its border smoothed over :data:`TERRITORY_EDGE_MM`, inside the brain.

    Raises
    ------
    InputError
        No brain in the CT, or no brain tissue near the tree's terminal arteries.
    """
    if brain is None or not brain.any():
        raise InputError(f"{name}: the parenchymal blush needs a head CT with a skull-enclosed brain; "
                         "leave out the venous phase with the generator parameter veins=false")
    mask, out_affine = perfused_territory(tree, brain, affine)
    if not mask.any():
        raise InputError(f"{name}: no brain tissue within {TERRITORY_RADIUS_MM:g} mm of the tree's terminal arteries")
    sigma_vox = TERRITORY_EDGE_MM / np.linalg.norm(out_affine[:3, :3], axis=0)
    perfused = ndimage.gaussian_filter(mask.astype(np.float32), sigma_vox) * _strided(brain, affine)[0]
    fraction = perfused * np.float32(cbv_ml_per_100g / 100.0 * BRAIN_DENSITY_G_PER_ML)
    return FractionVessels(fraction, out_affine, name=name, capillary_path_mm=arterial_reach_mm(tree))
