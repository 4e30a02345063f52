"""One vessel-tree representation shared by every generator, reader and renderer.

A :class:`VesselTree` is a rooted tree of centreline nodes. Node 0 is the root; every
other node ``i`` has a parent ``parents[i] < i`` (topological order), so a single pass
over the arrays visits parents before children. Each edge ``(parents[i], i)`` is a
tapered tube (a truncated cone) from the parent node to the child node whose radius is
linearly interpolated between the two node radii.

Positions are millimetres in whatever frame the producer chose (usually patient LPS,
like DeepDRR / DICOM); radii are lumen radii in millimetres.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field, fields, replace
from typing import Any, TypeVar

import numpy as np

__all__ = ["VesselInputError", "VesselTree", "TreeBuilder", "check_finite_params", "check_param_names",
           "with_overrides"]

P = TypeVar("P")


class VesselInputError(ValueError):
    """A vessel tree, parameter or file is invalid (one-line, user-facing message)."""


def check_param_names(params_type: Any, names: Any, generator: str) -> None:
    """Raise :class:`VesselInputError` naming the ``generator``, the unknown ``names`` and the valid ones, where any of
    ``names`` is not a field of the parameter dataclass (class or instance) ``params_type``."""
    valid = {f.name for f in fields(params_type)}
    unknown = sorted(set(names) - valid)
    if unknown:
        raise VesselInputError(f"unknown {generator} parameter(s) {', '.join(unknown)}; valid: {', '.join(sorted(valid))}")


def check_finite_params(params: Any, generator: str) -> None:
    """Raise :class:`VesselInputError` naming the first field of the parameter dataclass instance ``params`` that
    is, or holds, a NaN or infinite float: range checks such as ``> 0`` let infinity through (a tree of
    infinite size then fails deep inside the generator)."""
    for f in fields(params):
        value = getattr(params, f.name)
        items = value if isinstance(value, (tuple, list)) else (value,)
        if any(isinstance(x, float) and not math.isfinite(x) for x in items):
            raise VesselInputError(f"{generator} parameter {f.name}={value!r} must be finite")


def with_overrides(base: P, overrides: dict[str, Any], generator: str) -> P:
    """A generator's parameter dataclass ``base`` with the fields named in ``overrides`` replaced (not validated);
    unknown names raise (:func:`check_param_names`)."""
    check_param_names(base, overrides, generator)
    return replace(base, **overrides)


def _as_array(name: str, value: Any, dtype: type, ndim: int) -> np.ndarray:
    try:
        arr = np.asarray(value)
    except Exception as exc:  # pragma: no cover - exotic inputs
        raise VesselInputError(f"{name}: cannot convert to an array ({exc})") from None
    if arr.ndim != ndim:
        raise VesselInputError(f"{name}: expected a {ndim}-D array, got shape {arr.shape}")
    if dtype is np.int64:
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            if not np.issubdtype(arr.dtype, np.floating) or not np.all(np.isfinite(arr)) or not np.all(
                arr == np.round(arr)
            ):
                raise VesselInputError(f"{name}: expected integer values, got dtype {arr.dtype}")
        return np.ascontiguousarray(arr, dtype=np.int64)
    if arr.size and not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise VesselInputError(f"{name}: expected numbers, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.float64)


def nearest_labelled_branch(branch_ids: np.ndarray, parents: np.ndarray, labels: dict[int, str]) -> np.ndarray:
    """(N,) int: each node's branch where ``labels`` names it, else the nearest labelled branch up its path (a distal
    tree grown from a named artery: the artery's); -1 where none is. ``parents`` come before their children."""
    nearest = np.array([b if b in labels else -1 for b in np.asarray(branch_ids).tolist()], dtype=np.int64)
    for i in range(1, len(nearest)):
        if nearest[i] < 0:
            nearest[i] = nearest[parents[i]]
    return nearest


@dataclass
class VesselTree:
    """A rooted vessel tree of centreline nodes.

    Parameters
    ----------
    positions_mm : numpy.ndarray
        ``(N, 3)`` float64 node centreline positions, mm (any frame; usually patient LPS).
    radii_mm : numpy.ndarray
        ``(N,)`` float64 lumen radius at each node, mm, strictly positive.
    parents : numpy.ndarray
        ``(N,)`` int64 parent node index; ``-1`` for the root. Node 0 is the root and
        ``parents[i] < i`` for every other node.
    branch_ids : numpy.ndarray
        ``(N,)`` int64 id of the branch (vessel segment between bifurcations) each node
        belongs to. The root node carries the root branch's id.
    generations : numpy.ndarray
        ``(N,)`` int64 branching generation of each node's branch (root branch = 0).
    metadata : dict
        Free-form, JSON-serialisable information: ``"generator"``, ``"params"``, ``"seed"``,
        ``"labels"`` (``{branch_id: "ICA_L", ...}``), ...

    Raises
    ------
    VesselInputError
        On wrong shapes, non-finite values, non-positive radii, an empty tree, a root that
        is not node 0 or is not unique, or a parent index not smaller than its child
        (which also rules out cycles and disconnected nodes).
    """

    positions_mm: np.ndarray
    radii_mm: np.ndarray
    parents: np.ndarray
    branch_ids: np.ndarray
    generations: np.ndarray
    metadata: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.positions_mm = _as_array("positions_mm", self.positions_mm, np.float64, 2)
        self.radii_mm = _as_array("radii_mm", self.radii_mm, np.float64, 1)
        self.parents = _as_array("parents", self.parents, np.int64, 1)
        self.branch_ids = _as_array("branch_ids", self.branch_ids, np.int64, 1)
        self.generations = _as_array("generations", self.generations, np.int64, 1)
        if self.metadata is None:
            self.metadata = {}
        if not isinstance(self.metadata, dict):
            raise VesselInputError(f"metadata: expected a dict, got {type(self.metadata).__name__}")

        n = self.positions_mm.shape[0]
        if n == 0:
            raise VesselInputError("vessel tree is empty (0 nodes)")
        if self.positions_mm.shape[1] != 3:
            raise VesselInputError(f"positions_mm: expected shape (N, 3), got {self.positions_mm.shape}")
        for name in ("radii_mm", "parents", "branch_ids", "generations"):
            arr = getattr(self, name)
            if arr.shape != (n,):
                raise VesselInputError(f"{name}: expected shape ({n},) to match positions_mm, got {arr.shape}")
        if not np.all(np.isfinite(self.positions_mm)):
            raise VesselInputError("positions_mm: contains non-finite values")
        if not np.all(np.isfinite(self.radii_mm)):
            raise VesselInputError("radii_mm: contains non-finite values")
        if not np.all(self.radii_mm > 0):
            i = int(np.argmin(self.radii_mm))
            raise VesselInputError(f"radii_mm: must be > 0, node {i} has {float(self.radii_mm[i]):g}")
        if self.parents[0] != -1:
            raise VesselInputError(f"parents: node 0 must be the root (parent -1), got {int(self.parents[0])}")
        if n > 1:
            rest = self.parents[1:]
            idx = np.arange(1, n)
            roots = np.nonzero(rest == -1)[0]
            if roots.size:
                raise VesselInputError(
                    f"parents: tree is disconnected, node {int(roots[0]) + 1} is a second root (parent -1)"
                )
            bad = np.nonzero((rest < 0) | (rest >= idx))[0]
            if bad.size:
                i = int(bad[0]) + 1
                raise VesselInputError(
                    f"parents: node {i} has parent {int(self.parents[i])}; need 0 <= parent < node index "
                    "(tree must be connected and topologically ordered)"
                )
        if np.any(self.generations < 0):
            raise VesselInputError("generations: must be >= 0")

    # ------------------------------------------------------------------ basic queries
    @property
    def n_nodes(self) -> int:
        """Number of nodes ``N``."""
        return int(self.positions_mm.shape[0])

    @property
    def n_edges(self) -> int:
        """Number of edges ``N - 1``."""
        return self.n_nodes - 1

    def edges(self) -> np.ndarray:
        """Edges as ``(E, 2)`` int64 ``(parent, child)`` pairs, ``E = N - 1``, ordered by child."""
        child = np.arange(1, self.n_nodes, dtype=np.int64)
        return np.stack([self.parents[1:], child], axis=1)

    def segments(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Tapered-tube segments of every edge.

        Returns
        -------
        p0, p1 : numpy.ndarray
            ``(E, 3)`` start (parent) and end (child) positions, mm.
        r0, r1 : numpy.ndarray
            ``(E,)`` radii at start and end, mm.
        """
        e = self.edges()
        return (
            self.positions_mm[e[:, 0]].copy(),
            self.positions_mm[e[:, 1]].copy(),
            self.radii_mm[e[:, 0]].copy(),
            self.radii_mm[e[:, 1]].copy(),
        )

    def children_lists(self) -> list[list[int]]:
        """Children of every node, ``out[i]`` in increasing index order."""
        out: list[list[int]] = [[] for _ in range(self.n_nodes)]
        for c in range(1, self.n_nodes):
            out[int(self.parents[c])].append(c)
        return out

    def children(self, i: int) -> list[int]:
        """Indices of the children of node ``i``, increasing."""
        i = int(i)
        if not 0 <= i < self.n_nodes:
            raise VesselInputError(f"node index {i} out of range [0, {self.n_nodes})")
        return [int(c) for c in np.nonzero(self.parents == i)[0]]

    def root_direction(self, reach_mm: float) -> np.ndarray:
        """Unit vector of the flow leaving the root: towards the node ``reach_mm`` (mm of path) down the chain of
        widest children (the artery the root starts, not a side branch).

        Raises
        ------
        VesselInputError
            The tree has no extent at its root.
        """
        kids, node, length = self.children_lists(), 0, 0.0
        while kids[node] and length < reach_mm:
            nxt = max(kids[node], key=lambda k: self.radii_mm[k])
            length += float(np.linalg.norm(self.positions_mm[nxt] - self.positions_mm[node]))
            node = nxt
        d = self.positions_mm[node] - self.positions_mm[0]
        if np.linalg.norm(d) == 0:
            raise VesselInputError("the vessel tree has no extent at its root")
        return d / np.linalg.norm(d)

    def edge_lengths_mm(self) -> np.ndarray:
        """``(E,)`` Euclidean length of each edge, mm (ordered like :meth:`edges`)."""
        p0, p1, _, _ = self.segments()
        return np.linalg.norm(p1 - p0, axis=1)

    def path_length_from_root_mm(self) -> np.ndarray:
        """``(N,)`` centreline path length from the root to each node, mm (root = 0)."""
        out = np.zeros(self.n_nodes)
        if self.n_nodes > 1:
            lengths = self.edge_lengths_mm()
            for c in range(1, self.n_nodes):
                out[c] = out[self.parents[c]] + lengths[c - 1]
        return out

    def total_length_mm(self) -> float:
        """Sum of all edge lengths, mm."""
        return float(self.edge_lengths_mm().sum()) if self.n_nodes > 1 else 0.0

    def bounds_mm(self) -> tuple[np.ndarray, np.ndarray]:
        """Axis-aligned bounds of all tubes, mm, including radii.

        Returns
        -------
        lo, hi : numpy.ndarray
            ``(3,)`` each; ``positions - radius`` minimum and ``positions + radius`` maximum.
        """
        r = self.radii_mm[:, None]
        return (self.positions_mm - r).min(axis=0), (self.positions_mm + r).max(axis=0)

    def leaves(self) -> np.ndarray:
        """Indices of nodes without children (the root counts only if it is alone)."""
        has_child = np.zeros(self.n_nodes, dtype=bool)
        has_child[self.parents[1:]] = True
        return np.nonzero(~has_child)[0]

    @property
    def labels(self) -> dict[int, str]:
        """Anatomical labels ``{branch_id: name}`` from ``metadata["labels"]`` (int keys)."""
        raw = self.metadata.get("labels", {}) or {}
        return {int(k): str(v) for k, v in raw.items()}

    def node_labels(self) -> np.ndarray:
        """(N,) str: each node's label, that of its branch, or for a node of an unlabelled branch (a distal tree grown
        from a named artery) that of the nearest labelled branch up its path; ``""`` where none is."""
        labels = self.labels
        nearest = nearest_labelled_branch(self.branch_ids, self.parents, labels)
        return np.array([labels.get(b, "") for b in nearest.tolist()], dtype=str)

    def vessel_nodes(self) -> np.ndarray:
        """Bool mask of the nodes that are vessel: all but those of ``metadata["virtual_branches"]`` (a template's
        1 um connectors joining two arteries' trees, which no statistic or colour scale should count)."""
        return ~np.isin(self.branch_ids, self.metadata.get("virtual_branches", []))

    # ------------------------------------------------------------------ transforms
    def copy(self) -> "VesselTree":
        """Deep copy."""
        return VesselTree(
            self.positions_mm.copy(),
            self.radii_mm.copy(),
            self.parents.copy(),
            self.branch_ids.copy(),
            self.generations.copy(),
            copy.deepcopy(self.metadata),
        )

    def transformed(self, matrix: np.ndarray) -> "VesselTree":
        """Apply a 4x4 homogeneous affine to the positions.

        Parameters
        ----------
        matrix : numpy.ndarray
            ``(4, 4)`` affine, mm -> mm. The last row must be ``[0, 0, 0, 1]``.

        Returns
        -------
        VesselTree
            New tree; positions moved, radii scaled by ``|det(A)| ** (1/3)`` of the 3x3 part.
        """
        m = np.asarray(matrix, dtype=np.float64)
        if m.shape != (4, 4) or not np.all(np.isfinite(m)):
            raise VesselInputError(f"transform matrix must be a finite 4x4 array, got shape {m.shape}")
        if not np.allclose(m[3], [0.0, 0.0, 0.0, 1.0]):
            raise VesselInputError("transform matrix must be affine (last row [0, 0, 0, 1])")
        a = m[:3, :3]
        det = abs(float(np.linalg.det(a)))
        if det <= 0.0:
            raise VesselInputError("transform matrix is singular (det of 3x3 part is 0)")
        out = self.copy()
        out.positions_mm = self.positions_mm @ a.T + m[:3, 3]
        out.radii_mm = self.radii_mm * det ** (1.0 / 3.0)
        return out

    def subtree(self, node: int) -> "VesselTree":
        """The part of the tree downstream of ``node`` (it becomes the root), e.g. what a selective
        injection at that node fills.

        Parameters
        ----------
        node : int
            Node index.

        Returns
        -------
        VesselTree
            Nodes renumbered in their original order; ``metadata["labels"]`` keeps the branches that
            remain, ``["venous_inflow_nodes"]`` the nodes that remain; ``["subtree_of_node"]`` records ``node``.
        """
        node = int(node)
        if not 0 <= node < self.n_nodes:
            raise VesselInputError(f"node index {node} out of range [0, {self.n_nodes})")
        keep = np.zeros(self.n_nodes, dtype=bool)
        keep[node] = True
        for c in range(node + 1, self.n_nodes):  # parents[c] < c: one forward pass
            keep[c] = keep[self.parents[c]]
        idx = np.nonzero(keep)[0]
        new_index = np.full(self.n_nodes, -1, dtype=np.int64)
        new_index[idx] = np.arange(idx.size)
        parents = new_index[self.parents[idx]]
        parents[0] = -1
        meta = copy.deepcopy(self.metadata)
        branches = set(int(b) for b in np.unique(self.branch_ids[idx]))
        if "labels" in meta:
            meta["labels"] = {k: v for k, v in self.labels.items() if k in branches}
        if "venous_inflow_nodes" in meta:  # node indices (vessel_models.veins): renumbered with the nodes
            meta["venous_inflow_nodes"] = [int(new_index[i]) for i in meta["venous_inflow_nodes"] if keep[i]]
        meta["subtree_of_node"] = node
        return VesselTree(self.positions_mm[idx], self.radii_mm[idx], parents, self.branch_ids[idx],
                          self.generations[idx], meta)

    def translated(self, offset_mm: np.ndarray) -> "VesselTree":
        """Return a copy shifted by ``offset_mm`` (``(3,)``, mm)."""
        off = np.asarray(offset_mm, dtype=np.float64).reshape(-1)
        if off.shape != (3,) or not np.all(np.isfinite(off)):
            raise VesselInputError(f"offset_mm must be 3 finite numbers, got {offset_mm!r}")
        out = self.copy()
        out.positions_mm = self.positions_mm + off
        return out

    def __eq__(self, other: object) -> bool:  # exact equality (arrays and metadata)
        if not isinstance(other, VesselTree):
            return NotImplemented
        return (
            np.array_equal(self.positions_mm, other.positions_mm)
            and np.array_equal(self.radii_mm, other.radii_mm)
            and np.array_equal(self.parents, other.parents)
            and np.array_equal(self.branch_ids, other.branch_ids)
            and np.array_equal(self.generations, other.generations)
            and self.metadata == other.metadata
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        gen = self.metadata.get("generator", "?")
        return (
            f"VesselTree(n_nodes={self.n_nodes}, n_branches={len(np.unique(self.branch_ids))}, "
            f"generator={gen!r}, length_mm={self.total_length_mm():.1f})"
        )


class TreeBuilder:
    """Incremental builder used by the generators (nodes appended in topological order).

    Examples
    --------
    >>> b = TreeBuilder()
    >>> root = b.add_node([0, 0, 0], 1.5, parent=-1, branch_id=b.new_branch(generation=0))
    """

    def __init__(self) -> None:
        self._pos: list[tuple[float, float, float]] = []
        self._rad: list[float] = []
        self._par: list[int] = []
        self._bid: list[int] = []
        self._gen: list[int] = []
        self._branch_gen: list[int] = []
        self.labels: dict[int, str] = {}
        self.extra: dict[str, Any] = {}

    @property
    def n_nodes(self) -> int:
        """Nodes added so far."""
        return len(self._pos)

    def new_branch(self, generation: int, label: str | None = None) -> int:
        """Open a new branch id with the given generation (and optional anatomical label)."""
        bid = len(self._branch_gen)
        self._branch_gen.append(int(generation))
        if label is not None:
            self.labels[bid] = str(label)
        return bid

    def branch_generation(self, branch_id: int) -> int:
        """Generation of an opened branch."""
        return self._branch_gen[branch_id]

    def add_node(self, position_mm, radius_mm: float, parent: int, branch_id: int) -> int:
        """Append a node; returns its index. ``parent`` must be an existing node (or -1 first)."""
        idx = len(self._pos)
        if parent >= idx or (parent < 0 and idx != 0):
            raise VesselInputError(f"TreeBuilder: invalid parent {parent} for node {idx}")
        p = np.asarray(position_mm, dtype=np.float64).reshape(3)
        self._pos.append((float(p[0]), float(p[1]), float(p[2])))
        self._rad.append(float(radius_mm))
        self._par.append(int(parent))
        self._bid.append(int(branch_id))
        self._gen.append(self._branch_gen[branch_id])
        return idx

    def position(self, i: int) -> np.ndarray:
        """Position of node ``i`` (mm)."""
        return np.array(self._pos[i])

    def branch_of(self, i: int) -> int:
        """Branch id of node ``i``."""
        return self._bid[i]

    def parent(self, i: int) -> int:
        """Parent of node ``i`` (-1 for the root)."""
        return self._par[i]

    def radius(self, i: int) -> float:
        """Radius of node ``i`` (mm)."""
        return self._rad[i]

    def set_radius(self, i: int, radius_mm: float) -> None:
        """Overwrite the radius of node ``i`` (mm)."""
        self._rad[i] = float(radius_mm)

    def set_position(self, i: int, position_mm) -> None:
        """Overwrite the position of node ``i`` (mm), e.g. to lay a grown subtree on a surface."""
        p = np.asarray(position_mm, dtype=np.float64).reshape(3)
        self._pos[i] = (float(p[0]), float(p[1]), float(p[2]))

    def set_branch(self, i: int, branch_id: int) -> None:
        """Move node ``i`` to branch ``branch_id`` (and that branch's generation)."""
        self._bid[i] = int(branch_id)
        self._gen[i] = self._branch_gen[branch_id]

    def labelled_branches(self) -> np.ndarray:
        """(N,) int: each node's labelled branch (:func:`nearest_labelled_branch`), -1 where none is."""
        return nearest_labelled_branch(np.array(self._bid, dtype=np.int64), np.array(self._par, dtype=np.int64),
                                       self.labels)

    def build(self, metadata: dict | None = None) -> VesselTree:
        """Freeze into a :class:`VesselTree` (labels stored in ``metadata["labels"]``)."""
        meta = dict(metadata or {})
        if self.labels:
            meta["labels"] = {int(k): v for k, v in sorted(self.labels.items())}
        if not self._pos:
            raise VesselInputError("vessel tree is empty (0 nodes)")
        return VesselTree(
            np.array(self._pos, dtype=np.float64).reshape(-1, 3),
            np.array(self._rad, dtype=np.float64),
            np.array(self._par, dtype=np.int64),
            np.array(self._bid, dtype=np.int64),
            np.array(self._gen, dtype=np.int64),
            meta,
        )
