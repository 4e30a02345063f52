"""The catheter's way in through a labelled artery: from where the lumen leaves the CT to the feeding path.

A diagnostic catheter enters at the groin and reaches the heart and the neck through the aorta: up the
descending aorta, over the arch and down the ascending aorta to a coronary ostium, or into an arch branch.
Where the CT has the artery's label (TotalSegmentator's ``aorta``), :class:`ArteryRoutes` finds that way:
the minimum-cost path through the lumen from the exit where the lumen leaves the CT lowest (the femoral
side) to the lumen point nearest the template's feeding path, with a cost per mm of
``1 / (WALL_CLEARANCE_MM + d)^2`` at distance ``d`` from the wall, so the path keeps to the lumen's centre
(a real catheter leans on the outer curve of the arch; the centre line is our approximation). Each connected
piece of the lumen (a slab may cut the arch) has its own lowest exit; the costs from it are computed once
and serve every tree placed in that CT. Lengths in mm, world frame LPS.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.graph import MCP_Geometric

from ddsa_sim import InputError

__all__ = ["ARRIVAL_MM", "FEEDING_ARTERIES", "MAX_JOIN_GAP_MM", "WALL_CLEARANCE_MM", "ArteryRoutes"]

#: Label structures a catheter's way in may follow (TotalSegmentator names).
FEEDING_ARTERIES = ("aorta",)
#: The path's cost per mm is ``1 / (WALL_CLEARANCE_MM + distance to the wall)^2`` (mm): the centre is cheapest.
WALL_CLEARANCE_MM = 0.5
#: Farthest the feeding path's first point may lie from the labelled lumen for the way in to join it (mm): the
#: coronary template is registered to the heart, not to the aorta; on the builtin chest CT its feeding path's first
#: point lies 4-8 mm off the aorta's label.
MAX_JOIN_GAP_MM = 15.0
#: Length over which the way in's arrival direction is read (mm).
ARRIVAL_MM = 10.0
#: Standard deviation of the smoothing along the voxel path (mm): a catheter bends smoothly.
SMOOTHING_MM = 3.0


class ArteryRoutes:
    """Ways in through one labelled lumen on a CT grid.

    Parameters
    ----------
    lumen : (I, J, K) bool
        The artery's voxels on the CT grid.
    affine : (4, 4) float
        Voxel index -> world mm.
    """

    def __init__(self, lumen: np.ndarray, affine: np.ndarray) -> None:
        lumen = np.asarray(lumen, dtype=bool)
        idx = np.argwhere(lumen)
        if idx.size == 0:
            raise InputError("catheter route: the artery's label has no voxel")
        self.affine = np.asarray(affine, dtype=np.float64)
        self.lo = np.maximum(idx.min(axis=0) - 1, 0)
        hi = np.minimum(idx.max(axis=0) + 2, lumen.shape)
        box = lumen[tuple(slice(a, b) for a, b in zip(self.lo, hi))]
        self.spacing = tuple(float(s) for s in np.linalg.norm(self.affine[:3, :3], axis=0))
        self.cost = np.where(box, 1.0 / (WALL_CLEARANCE_MM + ndimage.distance_transform_edt(box, sampling=self.spacing))
                             ** 2, np.inf)
        self.pieces, _ = ndimage.label(box, structure=np.ones((3, 3, 3), bool))
        inner = np.argwhere(box)
        whole = inner + self.lo
        self._inner, self._world = inner, self._to_world(inner)
        on_edge = np.any(whole == 0, axis=1) | np.any(whole == np.asarray(lumen.shape) - 1, axis=1)
        self._exits = inner[on_edge]
        self._costs: dict[int, MCP_Geometric | None] = {}

    def _to_world(self, inner: np.ndarray) -> np.ndarray:
        return (inner + self.lo) @ self.affine[:3, :3].T + self.affine[:3, 3]

    def _from_exit(self, piece: int) -> MCP_Geometric | None:
        """The costs from the lowest exit of a connected piece of the lumen (None: it does not leave the CT)."""
        if piece not in self._costs:
            exits = self._exits[self.pieces[tuple(self._exits.T)] == piece]
            if len(exits) == 0:
                self._costs[piece] = None
            else:
                z = self._to_world(exits)[:, 2]
                mcp = MCP_Geometric(self.cost, sampling=self.spacing)
                mcp.find_costs([tuple(e) for e in exits[z <= z.min() + min(self.spacing)]])
                self._costs[piece] = mcp
        return self._costs[piece]

    def route(self, join_mm: np.ndarray, heading: np.ndarray) -> np.ndarray | None:
        """The way in (K, 3) world mm, from the lumen's exit to the lumen point nearest ``join_mm``.

        ``heading``: the direction the catheter goes on in from ``join_mm`` (the feeding path's). None when
        ``join_mm`` is farther than :data:`MAX_JOIN_GAP_MM` from the lumen, its piece of the lumen does not leave
        the CT, or the way arrives against ``heading`` over its last :data:`ARRIVAL_MM` (a catheter does not
        turn back on itself: in a slab that cuts the arch off, the descending aorta beside the heart is not the
        way to an aortic root).
        """
        d2 = np.sum((self._world - np.asarray(join_mm, dtype=np.float64)) ** 2, axis=1)
        nearest = int(np.argmin(d2))
        if d2[nearest] > MAX_JOIN_GAP_MM**2:
            return None
        end = self._inner[nearest]
        mcp = self._from_exit(int(self.pieces[tuple(end)]))
        if mcp is None:
            return None
        path = _smooth(self._to_world(np.asarray(mcp.traceback(tuple(end)))))
        back = np.linalg.norm(path - path[-1], axis=1)
        arrival = path[-1] - path[int(np.argmax(back <= ARRIVAL_MM))]
        return path if float(arrival @ np.asarray(heading, dtype=np.float64)) > 0 else None


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
