"""The catheter's way in through a labelled artery: from where the lumen leaves the CT to the feeding path.

A diagnostic catheter enters at the groin and reaches the heart and the neck through the aorta: up the
descending aorta, over the arch and down the ascending aorta to a coronary ostium, or into an arch branch.
Where the CT has the arteries' labels (TotalSegmentator's ``aorta``, its arch branches and the iliac arteries,
:data:`FEEDING_ARTERIES`), :class:`ArteryRoutes` finds that way through their union:
the minimum-cost path through the lumen's voxels from the exit where the lumen leaves the CT lowest (the femoral
side) to the lumen point nearest the template's feeding path, with a cost per mm of
``1 / (WALL_CLEARANCE_MM + d)^2`` at distance ``d`` from the wall, so the path keeps to the lumen's centre
(a real catheter leans on the outer curve of the arch; the centre line is our approximation). Each connected
piece of the lumen (a slab may cut the arch) has its own lowest exit; the costs from it are computed once
and serve every tree placed in that CT. Lengths in mm, world frame LPS.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.sparse import csgraph, csr_matrix
from scipy.spatial import cKDTree

from ddsa_sim import InputError

__all__ = ["ARRIVAL_MM", "FEEDING_ARTERIES", "MAX_JOIN_GAP_MM", "WALL_CLEARANCE_MM", "ArteryRoutes"]

#: Label structures a catheter's way in may follow (TotalSegmentator names): their union is one lumen, so a way in
#: comes up the iliac arteries where the CT holds them, and goes on from the arch into its branches. The subclavian
#: arteries are in it for the brachiocephalic bifurcation: a label map may draw it as the right subclavian's, the
#: right common carotid's label starting above it (the builtin chest CT's does).
FEEDING_ARTERIES = ("iliac_artery_left", "iliac_artery_right", "aorta", "brachiocephalic_trunk",
                    "common_carotid_artery_left", "common_carotid_artery_right", "subclavian_artery_left",
                    "subclavian_artery_right")
#: The path's cost per mm is ``1 / (WALL_CLEARANCE_MM + distance to the wall)^2`` (mm): the centre is cheapest.
WALL_CLEARANCE_MM = 0.5
#: Farthest the feeding path's first point may lie from the labelled lumen for the way in to join it (mm): the
#: coronary template is registered to the heart, not to the aorta; on the builtin chest CT its feeding path's first
#: point lies 4-8 mm off the aorta's label.
MAX_JOIN_GAP_MM = 15.0
#: Length over which the way in's arrival direction is read (mm): the vessel's course, not the last few mm where the
#: way leaves the lumen's centre for the point nearest the join (in a wide aortic root that hop runs sideways).
ARRIVAL_MM = 30.0
#: Standard deviation of the smoothing along the voxel path (mm): a catheter bends smoothly.
SMOOTHING_MM = 3.0


class ArteryRoutes:
    """Ways in through one labelled lumen on a CT grid.

    The lumen's voxels are the nodes of a graph, each joined to its 26 neighbours in the lumen by an edge that
    costs the mean of the two voxels' costs per mm times the step's length (mm), as scikit-image's
    ``MCP_Geometric`` prices a step; the shortest paths are scipy's Dijkstra (:func:`scipy.sparse.csgraph.dijkstra`).
    Memory and time go with the lumen's voxels, not with its bounding box (the builtin chest CT's aorta and its
    branches fill 3 % of theirs; a whole-body CT's from the iliac arteries to the neck less).

    Parameters
    ----------
    lumen : (I, J, K) bool
        The arteries' voxels on the CT grid.
    affine : (4, 4) float
        Voxel index -> world mm.
    """

    def __init__(self, lumen: np.ndarray, affine: np.ndarray) -> None:
        lumen = np.asarray(lumen, dtype=bool)
        idx = np.argwhere(lumen)
        if idx.size == 0:
            raise InputError("catheter route: the artery's label has no voxel")
        self.affine = np.asarray(affine, dtype=np.float64)
        spacing = np.linalg.norm(self.affine[:3, :3], axis=0)
        steps, neighbour, inside = _neighbours(idx, lumen.shape)
        # the distance to the wall: to the nearest voxel centre outside the lumen, as ndimage.distance_transform_edt
        # measures it, found among the outside voxels next to the lumen (the nearest one always is: its neighbour
        # towards the lumen voxel is nearer still, so it is in the lumen)
        outside = np.concatenate([idx[inside[:, k] & (neighbour[:, k] < 0)] + steps[k] for k in range(26)])
        shell = np.column_stack(np.unravel_index(np.unique(np.ravel_multi_index(outside.T, lumen.shape)), lumen.shape))
        wall_mm = cKDTree(shell * spacing).query(idx * spacing)[0] if len(shell) else np.zeros(len(idx))  # all lumen
        cost = 1.0 / (WALL_CLEARANCE_MM + wall_mm) ** 2
        rows, cols, weights = [], [], []
        for k in (k for k, s in enumerate(steps) if tuple(s) > (0, 0, 0)):  # each pair of neighbours once
            here = np.nonzero(neighbour[:, k] >= 0)[0]
            there = neighbour[here, k]
            rows.append(here)
            cols.append(there)
            weights.append(0.5 * (cost[here] + cost[there]) * float(np.linalg.norm(steps[k] * spacing)))
        rows = np.concatenate(rows)  # one list at a time, each freed once joined
        cols = np.concatenate(cols)
        weights = np.concatenate(weights)
        self._graph = csr_matrix((weights, (rows, cols)), shape=(len(idx), len(idx)))
        self._world = idx @ self.affine[:3, :3].T + self.affine[:3, 3]
        self._piece = csgraph.connected_components(self._graph, directed=False)[1]
        on_edge = np.any(idx == 0, axis=1) | np.any(idx == np.asarray(lumen.shape) - 1, axis=1)
        self._exits = np.nonzero(on_edge)[0]
        self._step = float(spacing.min())
        self._predecessors: dict[int, np.ndarray | None] = {}

    def _from_exit(self, piece: int) -> np.ndarray | None:
        """Each voxel's predecessor on its shortest path from the lowest exit of a connected piece of the lumen
        (None: the piece does not leave the CT).

        Where the lumen leaves the CT's lowest slice in several places, the exit is the hindmost of them (largest
        LPS y, the patient supine): a slab cut through the arch's base cuts the ascending aorta and the descending
        one behind it, and the femoral catheter comes up the descending aorta, over the arch. (From both, a way to
        a carotid would come straight up the ascending aorta.) Two iliac arteries: the one further back.
        """
        if piece not in self._predecessors:
            exits = self._exits[self._piece[self._exits] == piece]
            if len(exits) == 0:
                self._predecessors[piece] = None
            else:
                low = exits[self._world[exits, 2] <= self._world[exits, 2].min() + self._step]
                _, place = csgraph.connected_components(self._graph[low][:, low], directed=False)
                back = [self._world[low[place == c], 1].mean() for c in range(place.max() + 1)]
                _, pred, _ = csgraph.dijkstra(self._graph, directed=False, indices=low[place == int(np.argmax(back))],
                                              min_only=True, return_predecessors=True)
                self._predecessors[piece] = pred
        return self._predecessors[piece]

    def route(self, join_mm: np.ndarray, heading: np.ndarray) -> np.ndarray | None:
        """The way in (K, 3) world mm, from the lumen's exit to the lumen point nearest ``join_mm``.

        ``heading``: the direction the catheter goes on in from ``join_mm`` (the feeding path's). None when
        ``join_mm`` is farther than :data:`MAX_JOIN_GAP_MM` from the lumen, its piece of the lumen does not leave
        the CT, or the way arrives against ``heading`` over its last :data:`ARRIVAL_MM` (a catheter does not
        turn back on itself: in a slab that cuts the arch off, the descending aorta beside the heart is not the
        way to an aortic root).
        """
        d2 = np.sum((self._world - np.asarray(join_mm, dtype=np.float64)) ** 2, axis=1)
        end = int(np.argmin(d2))
        if d2[end] > MAX_JOIN_GAP_MM**2:
            return None
        pred = self._from_exit(int(self._piece[end]))
        if pred is None:
            return None
        chain = [end]
        while pred[chain[-1]] >= 0:
            chain.append(int(pred[chain[-1]]))
        path = _smooth(self._world[chain[::-1]])
        back = np.linalg.norm(path - path[-1], axis=1)
        arrival = path[-1] - path[int(np.argmax(back <= ARRIVAL_MM))]
        return path if float(arrival @ np.asarray(heading, dtype=np.float64)) > 0 else None


def _neighbours(idx: np.ndarray, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The 26 neighbours of the voxels ``idx`` (N, 3) of a set on a grid of ``shape``.

    Returns the 26 steps (26, 3), each voxel's neighbour's row in ``idx`` per step (N, 26; -1 where the neighbour is
    not in the set) and whether the neighbour lies on the grid (N, 26). ``idx`` must be in C order (np.argwhere's):
    memory goes with the set's voxels, not with the grid.
    """
    steps = np.array([s for s in np.ndindex(3, 3, 3) if s != (1, 1, 1)]) - 1
    linear = np.ravel_multi_index(idx.T, shape)  # ascending
    neighbour = np.full((len(idx), 26), -1, dtype=np.int32 if len(idx) < 2**31 else np.int64)
    inside = np.zeros((len(idx), 26), dtype=bool)
    for k, step in enumerate(steps):
        there = idx + step
        inside[:, k] = np.all((there >= 0) & (there < np.asarray(shape)), axis=1)
        where = np.nonzero(inside[:, k])[0]
        at = np.ravel_multi_index(there[where].T, shape)
        pos = np.minimum(np.searchsorted(linear, at), len(linear) - 1)
        hit = linear[pos] == at
        neighbour[where[hit], k] = pos[hit]
    return steps, neighbour, inside


def _smooth(points: np.ndarray, step_mm: float = 1.0) -> np.ndarray:
    """A voxel path resampled every ``step_mm`` and smoothed along its length; its end points kept."""
    seg = np.linalg.norm(np.diff(points, axis=0), axis=1)
    arc = np.concatenate([[0.0], np.cumsum(seg)])
    if arc[-1] < 2 * step_mm:
        return points[[0, -1]] if len(points) > 1 else points
    s = np.linspace(0.0, arc[-1], int(np.ceil(arc[-1] / step_mm)) + 1)
    res = np.stack([np.interp(s, arc, points[:, k]) for k in range(3)], axis=1)
    out = ndimage.gaussian_filter1d(res, SMOOTHING_MM / step_mm, axis=0, mode="nearest")
    out[0], out[-1] = res[0], res[-1]
    return out
