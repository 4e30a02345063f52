"""Vessels from real segmentations: label/mask volumes -> lumen fraction or centreline tree.

Inputs are NIfTI label maps (e.g. a TotalSegmentator output: aorta, carotids, subclavians)
or in-memory arrays with a voxel -> mm affine. NIfTI affines are RAS; they are converted
to the project's patient frame, LPS mm, with ``diag(-1, -1, 1, 1) @ affine_ras``. Every
affine returned or accepted here maps voxel indices ``(i, j, k)`` to LPS mm.

``mask_to_tree`` skeletonizes the mask (scikit-image, 3-D), builds a graph on the 26-connected
skeleton voxels, keeps the largest connected piece (saying what it drops), prunes short spurs (terminal
chains shorter than ``prune_factor`` x the radius at their junction, whatever the root), roots it (the
remaining endpoint with the largest radius, or the skeleton voxel nearest a given point), smooths each
branch's voxel staircase, resamples it to a regular node spacing and measures each node's radius as the
area-equivalent radius of the mask's cross-section normal to the centreline there (median over the node
and its branch neighbours); the distance transform's inscribed radius, which skeleton voxels off the axis
of a rough label shorten, serves as the first guess and where no section can be read.
"""

from __future__ import annotations

import os
import warnings
from collections import deque
from pathlib import Path

import numpy as np
from scipy import ndimage

from vessel_models.lsystem import perpendicular
from vessel_models.tree import VesselInputError, VesselTree

__all__ = ["RAS_TO_LPS", "load_label_volume", "mask_to_tree", "mask_to_volume"]

RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])
"""4x4 matrix flipping x and y: RAS mm -> LPS mm (its own inverse)."""
#: An end of the skeleton within this many voxels of the volume's border is where the field of view cuts a vessel.
CUT_MARGIN_VOXELS = 3.0
#: Standard deviation (skeleton voxels along a chain) of the smoothing of the centreline's voxel staircase.
STAIRCASE_SIGMA_VOXELS = 2.0

_OFFSETS = np.array(
    [(di, dj, dk) for di in (-1, 0, 1) for dj in (-1, 0, 1) for dk in (-1, 0, 1) if (di, dj, dk) != (0, 0, 0)],
    dtype=np.int64,
)


# ---------------------------------------------------------------------------- loading
def load_label_volume(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read a NIfTI label/mask volume.

    Parameters
    ----------
    path : str or PathLike
        ``.nii`` / ``.nii.gz`` file.

    Returns
    -------
    labels : numpy.ndarray
        ``(I, J, K)`` integer array (rounded if stored as floats).
    affine_lps : numpy.ndarray
        ``(4, 4)`` voxel index -> LPS mm.

    Raises
    ------
    VesselInputError
        If the file is missing, unreadable or not 3-D.
    """
    import nibabel as nib

    p = Path(path)
    if not p.is_file():
        raise VesselInputError(f"mask file not found: {p}")
    try:
        img = nib.load(str(p))
        data = np.asanyarray(img.dataobj)
    except Exception as exc:  # noqa: BLE001 - any reader failure is a bad input file
        raise VesselInputError(f"cannot read mask {p}: {exc}") from None
    data = np.squeeze(data)
    if data.ndim != 3:
        raise VesselInputError(f"mask {p} must be a 3-D volume, got shape {data.shape}")
    if not np.issubdtype(data.dtype, np.integer) and data.dtype != bool:
        if not np.all(np.isfinite(data)):
            n = int(data.size - np.count_nonzero(np.isfinite(data)))
            raise VesselInputError(f"mask {p}: {n} voxel(s) are NaN or infinite")
        data = np.rint(data).astype(np.int64)
    return data, RAS_TO_LPS @ np.asarray(img.affine, dtype=np.float64)


def _select(
    mask: str | os.PathLike | np.ndarray, labels: list[int] | None, affine: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Boolean foreground and LPS affine from a path or an array."""
    if isinstance(mask, (str, os.PathLike)):
        data, aff = load_label_volume(mask)
        if affine is not None:
            aff = np.asarray(affine, dtype=np.float64)
    else:
        data = np.asarray(mask)
        if data.ndim != 3:
            raise VesselInputError(f"mask must be a 3-D array, got shape {data.shape}")
        aff = np.eye(4) if affine is None else np.asarray(affine, dtype=np.float64)
    if aff.shape != (4, 4) or not np.all(np.isfinite(aff)) or abs(np.linalg.det(aff[:3, :3])) == 0:
        raise VesselInputError("affine must be a finite, non-singular 4x4 array")
    if labels is None or len(labels) == 0:
        fg = data != 0
    else:
        fg = np.isin(data, np.asarray(list(labels)))
    if not fg.any():
        which = "" if not labels else f" for labels {list(labels)}"
        raise VesselInputError(f"mask has no foreground voxels{which}")
    return fg, aff


# ---------------------------------------------------------------------------- volume
def mask_to_volume(
    mask: str | os.PathLike | np.ndarray,
    labels: list[int] | None = None,
    affine: np.ndarray | None = None,
    smooth_sigma_vox: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Vessel fraction volume straight from a label/mask volume, on the mask's own grid.

    Parameters
    ----------
    mask : str, PathLike or numpy.ndarray
        NIfTI path (affine read from the file, RAS -> LPS) or a 3-D label array.
    labels : list of int, optional
        Label values counted as vessel; default: every non-zero voxel.
    affine : numpy.ndarray, optional
        ``(4, 4)`` voxel -> LPS mm for an array input (default identity); overrides the
        file's affine for a path.
    smooth_sigma_vox : float
        Gaussian sigma in voxels for optional partial-volume smoothing of the binary
        mask (0 = none). The total vessel volume is preserved.

    Returns
    -------
    volume : numpy.ndarray
        ``(I, J, K)`` float32 vessel fraction in [0, 1].
    affine_lps : numpy.ndarray
        ``(4, 4)`` voxel -> LPS mm.

    Raises
    ------
    VesselInputError
        Unreadable file, wrong dimensionality, or no foreground.
    """
    fg, aff = _select(mask, labels, affine)
    vol = fg.astype(np.float32)
    if smooth_sigma_vox < 0 or not np.isfinite(smooth_sigma_vox):
        raise VesselInputError(f"smooth_sigma_vox must be >= 0, got {smooth_sigma_vox!r}")
    if smooth_sigma_vox > 0:
        vol = ndimage.gaussian_filter(vol, float(smooth_sigma_vox), mode="constant")
        np.clip(vol, 0.0, 1.0, out=vol)
    return vol, aff


# ---------------------------------------------------------------------------- tree
def _crop(fg: np.ndarray, aff: np.ndarray, pad: int = 2) -> tuple[np.ndarray, np.ndarray]:
    lo = np.zeros(3, dtype=np.int64)
    hi = np.zeros(3, dtype=np.int64)
    for ax in range(3):
        hit = np.nonzero(fg.any(axis=tuple(a for a in range(3) if a != ax)))[0]
        lo[ax] = max(int(hit[0]) - pad, 0)
        hi[ax] = min(int(hit[-1]) + pad + 1, fg.shape[ax])
    sub = fg[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
    out = aff.copy()
    out[:3, 3] = aff[:3, :3] @ lo + aff[:3, 3]
    # pad with background so the distance transform sees a border everywhere
    sub = np.pad(sub, 1)
    out[:3, 3] = out[:3, 3] - aff[:3, :3] @ np.ones(3)
    return sub, out


def _resample_isotropic(fg: np.ndarray, aff: np.ndarray, spacing_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Linear resampling of a binary mask to isotropic voxels (threshold 0.5)."""
    old = np.linalg.norm(aff[:3, :3], axis=0)
    ratio = spacing_mm / old  # input voxels per output voxel
    shape = tuple(int(np.floor((n - 1) / r)) + 1 for n, r in zip(fg.shape, ratio))
    res = ndimage.affine_transform(
        fg.astype(np.float32), ratio, output_shape=shape, order=1, mode="constant", cval=0.0
    )
    out = aff.copy()
    out[:3, :3] = aff[:3, :3] * ratio[None, :]
    return res >= 0.5, out


def _largest_component(fg: np.ndarray) -> np.ndarray:
    lab, n = ndimage.label(fg, structure=np.ones((3, 3, 3), dtype=bool))
    if n <= 1:
        return fg
    counts = np.bincount(lab.ravel())
    counts[0] = 0
    return lab == int(np.argmax(counts))


def _distance_to_background(fg: np.ndarray, coords: np.ndarray, aff: np.ndarray) -> np.ndarray:
    """Distance (mm) from voxels ``coords`` to the nearest background voxel centre.

    Same values as a Euclidean distance transform at those voxels, but only the
    background shell (background voxels 6-adjacent to the foreground, which always holds
    the nearest one) is searched, with a k-d tree.
    """
    from scipy.spatial import cKDTree

    shell = ndimage.binary_dilation(fg) & ~fg
    a3 = aff[:3, :3]
    tree = cKDTree(np.argwhere(shell) @ a3.T)
    dist, _ = tree.query(coords @ a3.T)
    return dist


def _skeleton_graph(skel: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Voxel coordinates and 26-neighbour lists of the skeleton voxels."""
    coords = np.argwhere(skel)
    index = np.full(skel.shape, -1, dtype=np.int64)
    index[tuple(coords.T)] = np.arange(len(coords))
    padded = np.pad(index, 1, constant_values=-1)
    nbr = np.stack([padded[tuple((coords + 1 + o).T)] for o in _OFFSETS], axis=1)  # (n, 26)
    return coords, [row[row >= 0] for row in nbr]


def _bfs(root: int, nbrs: list[np.ndarray], n: int) -> np.ndarray:
    """Parent of every voxel reached from ``root`` (-1 the root, -2 unreached), breadth first."""
    parent = np.full(n, -2, dtype=np.int64)
    parent[root] = -1
    dq = deque([root])
    while dq:
        v = dq.popleft()
        for w in nbrs[v]:
            if parent[w] == -2:
                parent[w] = v
                dq.append(int(w))
    return parent


def _children(parent: np.ndarray, alive: np.ndarray) -> list[list[int]]:
    ch: list[list[int]] = [[] for _ in range(len(parent))]
    for v in np.nonzero(alive)[0]:
        p = parent[v]
        if p >= 0 and alive[p]:
            ch[p].append(int(v))
    return ch


def _prune_spurs(nbrs: list[np.ndarray], pos: np.ndarray, rad: np.ndarray, alive: np.ndarray,
                 factor: float) -> np.ndarray:
    """Remove terminal chains (an endpoint to the nearest junction) shorter than ``factor`` x the radius at their
    junction, on the undirected skeleton graph, until none is left: skeletonization spurs into a thick lumen, which
    would otherwise also be taken for the widest end and rooted there."""
    for _ in range(len(alive)):
        deg = np.array([np.count_nonzero(alive[nb]) if alive[v] else 0 for v, nb in enumerate(nbrs)])
        removed = False
        for end_voxel in np.nonzero(alive & (deg == 1))[0]:
            if not alive[end_voxel] or deg[end_voxel] != 1:
                continue
            chain, prev, v = [int(end_voxel)], -1, int(end_voxel)
            while True:
                nxt = [int(w) for w in nbrs[v] if alive[w] and w != prev and w not in chain]
                if len(nxt) != 1:
                    break
                prev, v = v, nxt[0]
                if deg[v] != 2:
                    break
                chain.append(v)
            if deg[v] < 3:
                continue  # an isolated chain (the whole piece): no junction to prune it from
            pts = np.vstack([pos[chain], pos[v][None]])
            if float(np.linalg.norm(np.diff(pts, axis=0), axis=1).sum()) < factor * rad[v]:
                alive[chain] = False
                deg[chain] = 0
                deg[v] -= 1
                removed = True
        if not removed:
            break
    return alive


def _widest_spanning_tree(nbrs: list[np.ndarray], rad: np.ndarray, keep: np.ndarray) -> list[np.ndarray]:
    """Neighbour lists of the spanning tree of the skeleton voxels ``keep`` that runs through the widest lumen:
    the minimum spanning tree (scipy) of the 26-neighbour graph with edge weights ``1 / (r_u + r_v)``."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import minimum_spanning_tree

    u = np.concatenate([np.full(len(nb), v) for v, nb in enumerate(nbrs)]).astype(np.int64)
    w = np.concatenate(nbrs).astype(np.int64) if len(nbrs) else np.zeros(0, np.int64)
    sel = keep[u] & keep[w] & (u < w)
    n = len(nbrs)
    graph = coo_matrix((1.0 / (rad[u[sel]] + rad[w[sel]]), (u[sel], w[sel])), shape=(n, n)).tocsr()
    mst = minimum_spanning_tree(graph).tocoo()
    linked: list[list[int]] = [[] for _ in range(n)]
    for a, b in zip(mst.row, mst.col):
        linked[a].append(int(b))
        linked[b].append(int(a))
    return [np.asarray(nb, dtype=np.int64) for nb in linked]


def _section_radius(fg: np.ndarray, ijk_from_mm: np.ndarray, centre: np.ndarray, tangent: np.ndarray,
                    guess: float, step: float) -> float | None:
    """Area-equivalent radius (mm) of the mask's cross-section through ``centre`` normal to ``tangent``: the
    connected piece of the section that holds the centre (or lies nearest it, within ``guess``), sampled every
    ``step`` mm (trilinear, threshold 0.5); None where the piece reaches the sampled square's edge (a section
    along a bend or through a junction) or there is none."""
    u = perpendicular(tangent)  # the section's plane: u, v normal to the tangent
    v = np.cross(tangent, u)
    half = max(3.0 * guess, 4.0 * step)
    n = int(np.ceil(half / step))
    a = np.arange(-n, n + 1) * step
    grid = centre + a[:, None, None] * u + a[None, :, None] * v  # (2n+1, 2n+1, 3) mm
    ijk = grid.reshape(-1, 3) @ ijk_from_mm[:3, :3].T + ijk_from_mm[:3, 3]
    inside = (ndimage.map_coordinates(fg, ijk.T, order=1, mode="constant", cval=0.0) >= 0.5).reshape(grid.shape[:2])
    pieces, count = ndimage.label(inside)
    if count == 0:
        return None
    piece = pieces[n, n]
    if piece == 0:  # the centre fell just outside: the piece nearest it
        hits = np.argwhere(pieces > 0)
        near = np.linalg.norm(hits - n, axis=1)
        if near.min() * step > guess:
            return None
        piece = pieces[tuple(hits[np.argmin(near)])]
    mine = pieces == piece
    if mine[0].any() or mine[-1].any() or mine[:, 0].any() or mine[:, -1].any():
        return None
    return float(np.sqrt(np.count_nonzero(mine) * step * step / np.pi))


def _section_radii(tree: VesselTree, fg: np.ndarray, aff: np.ndarray, step: float) -> np.ndarray:
    """Each node's cross-section radius (:func:`_section_radius`, normal to the centreline through its branch
    neighbours), the median over the node and its neighbours on its branch; the tree's own radius (the
    distance-transform guess) where no section can be read."""
    ijk_from_mm = np.linalg.inv(aff)
    grey = fg.astype(np.float32)
    pos, par, bid = tree.positions_mm, tree.parents, tree.branch_ids
    kids = tree.children_lists()
    same = [[c for c in kids[i] if bid[c] == bid[i]] or kids[i][:1] for i in range(tree.n_nodes)]
    raw = np.full(tree.n_nodes, np.nan)
    for i in range(tree.n_nodes):
        before = pos[par[i]] if par[i] >= 0 else pos[i]
        after = pos[same[i][0]] if same[i] else pos[i]
        t = after - before
        if np.linalg.norm(t) == 0:
            continue
        r = _section_radius(grey, ijk_from_mm, pos[i], t / np.linalg.norm(t), float(tree.radii_mm[i]), step)
        if r is not None:
            raw[i] = r
    out = tree.radii_mm.copy()
    for i in range(tree.n_nodes):
        window = [i] + ([par[i]] if par[i] >= 0 and bid[par[i]] == bid[i] else []) + same[i][:1]
        vals = raw[window]
        if np.isfinite(vals).any():
            out[i] = float(np.nanmedian(vals))
    return out


def mask_to_tree(
    mask: str | os.PathLike | np.ndarray,
    affine: np.ndarray | None = None,
    labels: list[int] | None = None,
    root_mm: np.ndarray | None = None,
    node_spacing_mm: float | None = None,
    isotropic_mm: float | None = None,
    prune_factor: float = 1.5,
) -> VesselTree:
    """Centreline tree with radii from a vessel mask (skeleton; cross-section radii; module docstring).

    Parameters
    ----------
    mask : str, PathLike or numpy.ndarray
        NIfTI path (RAS affine converted to LPS) or a 3-D label/boolean array.
    affine : numpy.ndarray, optional
        ``(4, 4)`` voxel -> LPS mm for an array (default identity); overrides a file's.
    labels : list of int, optional
        Label values that are vessel; default: every non-zero voxel.
    root_mm : numpy.ndarray, optional
        ``(3,)`` LPS mm point; the root is the skeleton voxel nearest to it. Default: the
        endpoint with the largest radius, after pruning, that the volume's border does not cut
        (e.g. the aortic valve end of an aorta label).
    node_spacing_mm : float, optional
        Target distance between output nodes along a branch, mm (default 2 voxels).
    isotropic_mm : float, optional
        Resample the (cropped) mask to this isotropic spacing before skeletonizing.
        Default: the smallest voxel spacing if the voxels are anisotropic by more than
        20 %, else no resampling.
    prune_factor : float
        Terminal skeleton branches shorter than this many times the radius at their
        junction are treated as skeletonization spurs and removed.

    Returns
    -------
    VesselTree
        Tree in LPS mm; radii = the area-equivalent radius of the mask's cross-section normal to
        the centreline, mm (median over the node and its branch neighbours; the distance transform's
        inscribed radius where no section can be read). ``metadata["generator"] = "segmentation"``.

    Raises
    ------
    VesselInputError
        No foreground, or a skeleton with fewer than two voxels.
    """
    from skimage.morphology import skeletonize

    fg, aff = _select(mask, labels, affine)
    full_shape, ijk_from_full = np.asarray(fg.shape), np.linalg.inv(aff)
    fg, aff = _crop(fg, aff)
    spacing = np.linalg.norm(aff[:3, :3], axis=0)
    if isotropic_mm is None and spacing.max() > 1.2 * spacing.min():
        isotropic_mm = float(spacing.min())
    if isotropic_mm is not None:
        if not np.isfinite(isotropic_mm) or isotropic_mm <= 0:
            raise VesselInputError(f"isotropic_mm must be > 0, got {isotropic_mm!r}")
        fg, aff = _resample_isotropic(fg, aff, float(isotropic_mm))
        spacing = np.linalg.norm(aff[:3, :3], axis=0)
        if not fg.any():
            raise VesselInputError("mask has no foreground left after resampling; use a finer isotropic_mm")
    # interior cavities would turn into skeleton shells and loops
    largest = _largest_component(fg)
    if largest.sum() < fg.sum():
        pieces = ndimage.label(fg, structure=np.ones((3, 3, 3), dtype=bool))[1]
        warnings.warn(f"mask_to_tree: the mask falls in {pieces} separate pieces; kept the largest "
                      f"({100.0 * largest.sum() / fg.sum():.0f} % of its voxels), dropped the others (a tree has one "
                      "root: extract each vessel with its own labels)", stacklevel=2)
    fg = ndimage.binary_fill_holes(largest)
    skel = skeletonize(fg) > 0
    if skel.sum() < 2:
        raise VesselInputError("mask is too small or too thin to skeletonize into a centreline")
    coords, nbrs = _skeleton_graph(skel)
    # largest connected piece of the skeleton graph
    n = len(coords)
    comp = np.full(n, -1, dtype=np.int64)
    n_comp = 0
    for s in range(n):
        if comp[s] >= 0:
            continue
        comp[s] = n_comp
        stack = [s]
        while stack:
            v = stack.pop()
            for w in nbrs[v]:
                if comp[w] < 0:
                    comp[w] = n_comp
                    stack.append(int(w))
        n_comp += 1
    main = int(np.argmax(np.bincount(comp)))
    pos = coords @ aff[:3, :3].T + aff[:3, 3]
    # the distance to the nearest background voxel centre: the inscribed radius at the skeleton voxel, short where
    # the voxel lies off the axis of a rough label; the first guess of the cross-section radii below
    rad = np.maximum(_distance_to_background(fg, coords, aff), 0.5 * spacing.min())
    members = np.nonzero(comp == main)[0]
    if len(members) < 2:
        raise VesselInputError("skeleton of the mask has fewer than two connected voxels")
    # the skeleton of a rough lumen holds loops (tunnels through it): its spanning tree through the widest lumen
    # (scipy's minimum spanning tree of the voxel graph weighted 1 / (r_u + r_v)) drops their narrowest links
    linked = _widest_spanning_tree(nbrs, rad, comp == main)
    alive = _prune_spurs(linked, pos, rad, comp == main, float(prune_factor))
    members = np.nonzero(alive)[0]
    if root_mm is not None:
        r = np.asarray(root_mm, dtype=np.float64).reshape(3)
        root = int(members[np.argmin(np.linalg.norm(pos[members] - r, axis=1))])
    else:  # the widest end left (the spurs into a thick lumen are gone, whose ends had been the widest) that the
        # volume's border does not cut: a vessel leaving the field of view is an outflow (the aorta's, at a chest
        # CT's bottom), its root where it begins (the aortic valve)
        deg = np.array([np.count_nonzero(alive[linked[v]]) for v in members])
        ends = members[deg == 1]
        ijk = pos[ends] @ ijk_from_full[:3, :3].T + ijk_from_full[:3, 3]
        cut = np.any((ijk < CUT_MARGIN_VOXELS) | (ijk > full_shape - 1 - CUT_MARGIN_VOXELS), axis=1)
        cand = ends[~cut] if (~cut).any() else ends if len(ends) else members
        root = int(cand[np.argmax(rad[cand])])
    parent = _bfs(root, [nb[alive[nb]] for nb in linked], n)
    alive = parent > -2

    step = float(node_spacing_mm) if node_spacing_mm is not None else 2.0 * float(spacing.max())
    if not np.isfinite(step) or step <= 0:
        raise VesselInputError(f"node_spacing_mm must be > 0, got {node_spacing_mm!r}")
    tree = _simplify(parent, alive, pos, rad, step, root, spacing)
    tree.radii_mm = _section_radii(tree, fg, aff, 0.5 * float(spacing.min()))
    return tree


def _simplify(parent: np.ndarray, alive: np.ndarray, pos: np.ndarray, rad: np.ndarray, step: float, root: int,
              spacing: np.ndarray) -> VesselTree:
    """Resample the voxel tree to nodes every ~``step`` mm, one branch per chain."""
    ch = _children(parent, alive)
    out_pos: list[np.ndarray] = [pos[root]]
    out_rad: list[float] = [float(np.median(rad[[root] + ch[root][:1]]))]
    out_par: list[int] = [-1]
    out_bid: list[int] = [0]
    out_gen: list[int] = [0]
    n_branch = 0
    # queue of (start voxel, its output node index, generation of the chain)
    queue = deque((c, 0, 0) for c in ch[root])
    while queue:
        start, out_parent, gen = queue.popleft()
        chain = [start]
        v = start
        while len(ch[v]) == 1:
            v = ch[v][0]
            chain.append(v)
        bid = n_branch  # the root node carries branch 0, the first chain out of it
        n_branch += 1
        p_prev = pos[int(parent[start])]
        # the voxel staircase smoothed along the chain (sigma STAIRCASE_SIGMA_VOXELS, its junction end held): a
        # straight oblique tube's raw voxel path is 4-8 % longer than its axis and bends at voxel directions
        path = np.vstack([p_prev[None], pos[chain]])
        if len(chain) > 2:
            path = ndimage.gaussian_filter1d(path, STAIRCASE_SIGMA_VOXELS, axis=0, mode="nearest")
            path += (p_prev - path[0]) * np.exp(-np.arange(len(path)) / STAIRCASE_SIGMA_VOXELS)[:, None]
        chain_pos = path[1:]
        seg = np.linalg.norm(np.diff(path, axis=0), axis=1)
        cum = np.cumsum(seg)
        total = float(cum[-1])
        n_pieces = max(1, round(total / step))
        targets = total * np.arange(1, n_pieces + 1) / n_pieces
        picks = np.searchsorted(cum, targets - 1e-9)
        picks = np.unique(np.minimum(picks, len(chain) - 1))
        prev_out = out_parent
        lo = 0
        for pk in picks:
            hi = min(len(chain), pk + (pk - lo) + 1)
            window = chain[max(0, lo):hi]
            out_pos.append(chain_pos[pk])
            out_rad.append(float(np.median(rad[window])))
            out_par.append(prev_out)
            out_bid.append(bid)
            out_gen.append(gen)
            prev_out = len(out_pos) - 1
            lo = pk + 1
        end = chain[-1]
        kids = ch[end]
        for c in kids:
            queue.append((c, prev_out, gen + 1))
    if len(out_pos) < 2:
        raise VesselInputError("mask skeleton is a single point; no centreline could be built")
    return VesselTree(
        positions_mm=np.asarray(out_pos, dtype=np.float64),
        radii_mm=np.asarray(out_rad, dtype=np.float64),
        parents=np.asarray(out_par, dtype=np.int64),
        branch_ids=np.asarray(out_bid, dtype=np.int64),
        generations=np.asarray(out_gen, dtype=np.int64),
        metadata={
            "generator": "segmentation",
            "voxel_spacing_mm": [float(s) for s in spacing],
            "node_spacing_mm": float(step),
        },
    )
