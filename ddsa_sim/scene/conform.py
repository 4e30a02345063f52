"""A placed vessel template conformed to the patient's compartments: each node pushed into the band of a signed
distance map where it belongs, the pushes smoothed along the tree.

A template registered by a similarity (:mod:`ddsa_sim.scene.placement`) is an ellipsoid's anatomy in a patient's
body: the coronary arteries float off the heart label or sink into it, the cerebral template's scalp arteries lie in
the air beside a head and its cortical branches in the skull. :func:`push_into_bands` moves each node whose
centreline lies outside its band of a :class:`SignedDistance` (e.g. "at least its radius inside the intracranial
volume") along that map's normal, every node by the Gaussian-weighted mean of its neighbours' pushes along the tree
(:func:`along_tree_weights`), in rounds of at most a few mm with the normals read anew, so that an artery bends into
place smoothly and its branches go with it. :func:`conform_cerebral` uses it for the cerebral template;
:func:`~ddsa_sim.scene.placement.lay_on_epicardium` for the coronary one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage, sparse
from scipy.sparse import csgraph

from ddsa_sim.volumes import Volume

if TYPE_CHECKING:
    from vessel_models.tree import VesselTree

__all__ = [
    "signed_distance_mm",
    "sample",
    "index_from_world",
    "in_grid",
    "SignedDistance",
    "along_tree_weights",
    "push_into_bands",
    "cerebral_compartments",
    "conform_cerebral",
    "CEREBRAL_COMPARTMENT_OF",
    "TISSUE_HU",
]


def signed_distance_mm(mask: np.ndarray, grid_mm: np.ndarray) -> np.ndarray:
    """Signed distance (mm) from a label: positive outside it, negative inside; measured, as Euclidean distance
    transforms do, to the nearest voxel centre on the other side (the surface between them lies half a voxel nearer)."""
    return ndimage.distance_transform_edt(~mask, sampling=grid_mm) - ndimage.distance_transform_edt(mask,
                                                                                                    sampling=grid_mm)


def sample(volume: np.ndarray, box_from_world: np.ndarray, world: np.ndarray) -> np.ndarray:
    """``volume`` at the world points (N, 3) mm, trilinear; the box's edge value beyond it."""
    ijk = world @ box_from_world[:3, :3].T + box_from_world[:3, 3]
    return ndimage.map_coordinates(volume, ijk.T, order=1, mode="nearest")


def index_from_world(box: tuple[slice, ...], affine: np.ndarray) -> np.ndarray:
    """4x4 matrix from world (mm) to the indices of the ``box`` (slices, with steps) of a grid of ``affine``."""
    stride = np.array([s.step or 1 for s in box])
    lo = np.array([s.start or 0 for s in box])
    m = np.diag([*(1.0 / stride), 1.0]) @ np.linalg.inv(affine)
    m[:3, 3] -= lo / stride
    return m


def in_grid(world: np.ndarray, grid_from_world: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Whether each world point (N, 3) mm lies within the voxels of a grid of ``shape`` (``grid_from_world``: the
    inverse of its affine)."""
    ijk = world @ grid_from_world[:3, :3].T + grid_from_world[:3, 3]
    return np.all((ijk > -0.5) & (ijk < np.asarray(shape) - 0.5), axis=1)


class SignedDistance:
    """The signed distance (mm; positive outside) of a mask on a box of its CT grid, and its normal.

    Parameters
    ----------
    mask
        (I, J, K) bool on the CT grid.
    affine
        The CT's 4x4 voxel-to-world matrix (mm).
    box
        Slices of the CT grid the map covers (a step: a coarser grid).
    normal_smoothing_mm
        Standard deviation (mm) of the Gaussian smoothing of the map whose gradient gives the normal: a crease of
        the mask would part neighbouring nodes to either side.
    """

    def __init__(self, mask: np.ndarray, affine: np.ndarray, box: tuple[slice, ...],
                 normal_smoothing_mm: float) -> None:
        grid = np.linalg.norm(affine[:3, :3], axis=0) * np.array([s.step or 1 for s in box])
        self.box_from_world = index_from_world(box, affine)
        self.outside = signed_distance_mm(np.asarray(mask[box], dtype=bool), grid)
        # the gradient per box index, then per world mm through the index's derivative: exact for any affine
        self.slope = np.stack(np.gradient(ndimage.gaussian_filter(self.outside, normal_smoothing_mm / grid)), axis=-1)

    @property
    def flat(self) -> bool:
        """Whether the box is too thin (under 2 voxels along an axis) to read a normal from."""
        return min(self.outside.shape) < 2

    def read(self, world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Signed distance (N,) mm and unit outward normal (N, 3) at the world points (N, 3) mm."""
        d = sample(self.outside, self.box_from_world, world)
        normal = np.stack([sample(self.slope[..., k], self.box_from_world, world) for k in range(3)],
                          axis=1) @ self.box_from_world[:3, :3]
        normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-9)
        return d, normal


def _along_tree(positions_mm: np.ndarray, parents: np.ndarray, edges: np.ndarray | None) -> sparse.csr_matrix:
    """(N, N) sparse graph of the tree's edges (child, parent) weighted by their lengths (mm); ``edges``: (N,) bool,
    whether each node's edge to its parent counts (default: all but the root's)."""
    n = len(parents)
    child = np.nonzero(parents >= 0 if edges is None else edges & (parents >= 0))[0]
    length = np.linalg.norm(positions_mm[child] - positions_mm[parents[child]], axis=1)
    return sparse.csr_matrix((np.maximum(length, 1e-6), (child, parents[child])), shape=(n, n))


def along_tree_weights(positions_mm: np.ndarray, parents: np.ndarray, sigma_mm: float, edges: np.ndarray | None = None,
                       riders: np.ndarray | None = None, chunk: int = 512) -> sparse.csr_matrix:
    """(N, N) sparse row-normalised weights: ``exp(-0.5 (s / sigma)^2)`` of the distance ``s`` (mm) along the tree,
    cut at 3 ``sigma_mm``.

    ``edges``: (N,) bool, whether each node's edge to its parent counts (a virtual connector's does not; default: all
    but the root's); ``riders``: (N,) bool, nodes that take their neighbours' moves but give none (their columns
    zero). Built in chunks of rows (a cerebral tree has ~15 000 nodes: a dense matrix would need 1.8 GB).
    """
    n = len(parents)
    along = _along_tree(positions_mm, parents, edges)
    rows, cols, vals = [], [], []
    for start in range(0, n, chunk):
        s = csgraph.dijkstra(along, directed=False, indices=np.arange(start, min(start + chunk, n)),
                             limit=3.0 * sigma_mm)
        r, c = np.nonzero(np.isfinite(s))  # inf beyond the limit
        if riders is not None:
            r, c = r[~riders[c]], c[~riders[c]]
        rows.append(r + start)
        cols.append(c)
        vals.append(np.exp(-0.5 * (s[r, c] / sigma_mm) ** 2))
    weights = sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
    total = np.asarray(weights.sum(axis=1)).ravel()
    return sparse.diags(1.0 / np.maximum(total, 1e-12)) @ weights


def push_into_bands(positions_mm: np.ndarray, fields: list[SignedDistance], which: np.ndarray, low: np.ndarray,
                    high: np.ndarray, weights: np.ndarray | sparse.spmatrix, fade: np.ndarray,
                    ct_from_world: np.ndarray, ct_shape: tuple[int, ...], step_mm: float, rounds: int,
                    tolerance_mm: float, settled_mm: float = 0.0) -> np.ndarray:
    """Nodes moved into their bands: node ``i`` to ``low[i] <= d <= high[i]`` of the signed distance
    ``fields[which[i]]`` (``which[i] < 0``: no band; it moves with its neighbours).

    In rounds (at most ``rounds``): each node in a band's reach (within the CT, ``ct_from_world`` and ``ct_shape``:
    beyond it the anatomy is unknown) is pushed along its field's normal by its miss, at most ``step_mm``; every node
    then moves by ``fade`` times the ``weights``-mean of the pushes ((N, N), rows summing to 1; the nodes without a
    push count as zero, so a stretch that fits holds its neighbours); until no node misses by more than
    ``tolerance_mm``, or no node moves by more than ``settled_mm`` in a round (the rest cannot reach their bands: a
    compartment thinner than a vessel, pushes that cancel). Returns the new positions (N, 3) mm.
    """
    pos = positions_mm.copy()
    for _ in range(rounds):
        free = (which >= 0) & in_grid(pos, ct_from_world, ct_shape)
        push = np.zeros_like(pos)
        worst = 0.0
        for f, field in enumerate(fields):
            sel = np.nonzero(free & (which == f))[0]
            if not len(sel):
                continue
            d, normal = field.read(pos[sel])
            miss = np.clip(d, low[sel], high[sel]) - d
            worst = max(worst, float(np.abs(miss).max()))
            push[sel] = np.clip(miss, -step_mm, step_mm)[:, None] * normal
        if worst < tolerance_mm:
            break
        move = fade[:, None] * (weights @ push)
        pos += move
        if settled_mm > 0.0 and np.abs(move).max() <= settled_mm:
            break
    return pos


# ---------------------------------------------------------------------------------------------- the cerebral template

#: The compartment of each named segment of the cerebral template (its name without ``_L`` / ``_R``; the unnamed
#: distal twigs take their named artery's): ``soft tissue``, the tissue outside the cranial cavity and below
#: :data:`BONE_HU` (the scalp's superficial temporal and occipital arteries, the face's and the neck's vessels: the
#: maxillary artery runs in the fossae between the bones, not through them; the ophthalmic artery in the orbit's
#: fat); ``extracranial``, the tissue outside the cavity, bone allowed (the vertebral artery runs in the transverse
#: foramina and round the atlas); ``None``, no band (the ICA through the carotid canal and the cavernous sinus, the
#: ophthalmic artery through the optic canal, the virtual connector): they follow their neighbours.
#: Every other segment is ``intracranial``: inside the cranial cavity.
CEREBRAL_COMPARTMENT_OF: dict[str, str | None] = {
    "STA": "soft tissue", "STA_frontal": "soft tissue", "STA_parietal": "soft tissue", "OccA": "soft tissue",
    "CCA": "soft tissue", "ECA": "soft tissue",
    "ECA_distal": "soft tissue", "FacA": "soft tissue", "MaxA": "soft tissue", "MMA": "soft tissue",
    "ICA_cervical": "soft tissue",
    "SupThyA": "soft tissue", "LingA": "soft tissue", "PAA": "soft tissue", "OphA_orbital": "soft tissue",
    "IJV": "soft tissue", "VA": "extracranial", "VA_V3": "extracranial",
    "ICA_petrous": None, "ICA_cavernous": None, "OphA": None, "virtual": None,
}
#: The bands' order in :func:`cerebral_compartments`.
CEREBRAL_COMPARTMENTS = ("intracranial", "soft tissue", "extracranial")
#: How far inside its compartment a vessel's centreline is laid (mm): its radius plus this.
CEREBRAL_MARGIN_MM = 0.5
#: The smoothing of the moves along the tree (mm, standard deviation), of the maps whose gradients give the normals
#: (mm; the scalp is 4-7 mm thick), the largest push per round (mm), the rounds at most and the tolerance (mm).
CEREBRAL_SMOOTHING_MM = 8.0
CEREBRAL_NORMAL_SMOOTHING_MM = 1.5
CEREBRAL_STEP_MM = 2.0
#: Along the tree within this distance (mm) of where a vessel passes from one compartment into another, it keeps no
#: band and follows its neighbours (the two bands there lie apart by the bone between them).
CEREBRAL_CROSSING_MM = 10.0
CEREBRAL_ROUNDS = 150
CEREBRAL_TOLERANCE_MM = 0.1
CEREBRAL_SETTLED_MM = 0.02
#: The maps' grid (mm): the CT's voxels taken every few, to about this size (a 1 mm head: every second voxel, six
#: distance transforms in 1 s instead of 8 s; the surfaces are known to about half of it).
CEREBRAL_GRID_MM = 2.0
#: Bone (HU) that the soft-tissue compartment's vessels stay out of (the skull's tables and diploe, the mandible).
BONE_HU = 300.0
#: Tissue (HU): above it a voxel is inside the skin (air cavities, the nose and sinuses, are not).
TISSUE_HU = -300.0


def cerebral_compartments(ct: Volume, intracranial: np.ndarray, body: np.ndarray) -> list[SignedDistance]:
    """The signed distance maps of :data:`CEREBRAL_COMPARTMENTS` on ``ct``'s grid: the cranial cavity
    (``intracranial``, :func:`~ddsa_sim.scene.placement.intracranial_mask`), the soft tissue outside it and below
    :data:`BONE_HU`, and the tissue outside it (``body``: :func:`~ddsa_sim.scene.placement.body_mask` at
    :data:`TISSUE_HU`). Computed once per patient: about a second for a 1 mm head."""
    data = np.asarray(ct.data)
    tissue = body & ~intracranial
    stride = np.maximum(1, np.floor(CEREBRAL_GRID_MM / np.linalg.norm(ct.affine[:3, :3], axis=0))).astype(int)
    box = tuple(slice(0, n, k) for n, k in zip(data.shape, stride))
    return [SignedDistance(mask, ct.affine, box, CEREBRAL_NORMAL_SMOOTHING_MM)
            for mask in (intracranial, tissue & (data < BONE_HU), tissue)]


def _segment_names(tree: VesselTree) -> np.ndarray:
    """Each node's named segment without its side (a distal twig: its named artery's)."""
    return np.array([n[:-2] if n.endswith(("_L", "_R")) else n for n in tree.node_labels()])


def _within_along_tree(tree: VesselTree, nodes: np.ndarray, reach_mm: float, edges: np.ndarray) -> np.ndarray:
    """(N,) bool: the nodes within ``reach_mm`` along the tree (its ``edges``, as in :func:`along_tree_weights`) of
    any of ``nodes``."""
    return np.isfinite(csgraph.dijkstra(_along_tree(tree.positions_mm, tree.parents, edges), directed=False,
                                        indices=nodes, limit=reach_mm, min_only=True))


def conform_cerebral(tree: VesselTree, compartments: list[SignedDistance], affine: np.ndarray,
                     shape: tuple[int, ...]) -> VesselTree:
    """The placed cerebral template with each vessel in its compartment (:data:`CEREBRAL_COMPARTMENT_OF`): its
    centreline at least its radius plus :data:`CEREBRAL_MARGIN_MM` inside (:func:`push_into_bands`; where a
    compartment is thinner than that, on its middle).

    ``compartments``: :func:`cerebral_compartments` of the CT (``affine``, ``shape``). The similarity of
    :func:`~ddsa_sim.scene.placement.place_cerebral` fits the template's brain ellipsoid to the cranial cavity, not
    the head around it: on the builtin heads half to nine tenths of the scalp arteries' nodes lay in the air beside
    the head, occipital branches up to 26 mm out, the V3 segments of the vertebral arteries 15 mm outside the neck and
    half of some cortical trees in the skull (docs/vessels.md).
    """
    names = _segment_names(tree)
    which = np.array([CEREBRAL_COMPARTMENTS.index(c) if (c := CEREBRAL_COMPARTMENT_OF.get(n, "intracranial"))
                      else -1 for n in names])
    high = -(tree.radii_mm + CEREBRAL_MARGIN_MM)
    low = np.full(tree.n_nodes, -np.inf)
    virtual = names == "virtual"
    connector = virtual | np.where(tree.parents >= 0, virtual[tree.parents], True)  # edges to or from it
    # where a vessel passes from one compartment to another (the sigmoid sinus into the jugular vein at the
    # jugular foramen, the vertebral artery through the foramen magnum) both bands cannot hold at once
    parent_which = np.where(tree.parents >= 0, which[tree.parents], -1)
    crossing = np.nonzero((which >= 0) & (parent_which >= 0) & (which != parent_which) & ~connector)[0]
    if len(crossing):
        which[_within_along_tree(tree, crossing, CEREBRAL_CROSSING_MM, ~connector)] = -1
    weights = along_tree_weights(tree.positions_mm, tree.parents, CEREBRAL_SMOOTHING_MM, edges=~connector)
    pos = push_into_bands(tree.positions_mm, compartments, which, low, high, weights, np.ones(tree.n_nodes),
                          np.linalg.inv(affine), shape, CEREBRAL_STEP_MM, CEREBRAL_ROUNDS, CEREBRAL_TOLERANCE_MM,
                          CEREBRAL_SETTLED_MM)
    out = tree.copy()
    out.positions_mm = pos
    return out
