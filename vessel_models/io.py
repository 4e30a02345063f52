"""Read and write :class:`~vessel_models.tree.VesselTree` as VTK PolyData (``.vtp``) or JSON.

VTP layout (readable by pyvista / VTK / VMTK-style tools): one point per node (mm), polyline
cells along each unbranched run of the tree, point data ``radius_mm`` (float64) plus
``parent``, ``branch_id`` and ``generation`` (int64) so a round trip is exact, and the
metadata as a JSON string in field data ``metadata_json``. A ``.vtp`` without ``parent``
point data (e.g. a VMTK centreline) is rebuilt from its line connectivity.

JSON layout: ``{"format": "vessel_models.tree", "version": 1, "positions_mm": [[x, y, z], ...],
"radii_mm": [...], "parents": [...], "branch_ids": [...], "generations": [...], "metadata": {...}}``.
Floats are written with Python's shortest round-trip repr, so loading gives identical bits.

All writers are atomic: they write a temporary file in the destination folder, then
``os.replace`` it onto the target.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable

import numpy as np

from vessel_models.tree import VesselInputError, VesselTree

__all__ = ["atomic_output", "claim_folder", "clear_folder", "json_safe", "save_nifti",
           "save_vtp", "load_vtp", "save_json", "load_json", "load_tree", "save_tree",
           "tree_to_dict", "tree_from_dict"]

JSON_FORMAT = "vessel_models.tree"
JSON_VERSION = 1


# ---------------------------------------------------------------------- helpers
def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()


@contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, else it is removed.

    Readers never see a half-written file, and an interrupted write leaves any older ``path`` intact.
    The temporary path keeps the full suffix (``.nii.gz``), so format-by-suffix writers work, and
    the result gets the usual file permissions (not mkstemp's private 0600).
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise VesselInputError(f"output folder does not exist: {folder}")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix="".join(path.suffixes), dir=folder)
    except OSError as exc:  # name the file asked for, not our temporary one
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, _FILE_MODE)
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def claim_folder(path: str | os.PathLike, overwrite: bool = False, keep: bool = False,
                 inputs: Sequence[str | os.PathLike | None] = ()) -> Path:
    """Make sure a command may write into the folder ``path``; returns it (it may not exist yet). Deletes nothing:
    a command given ``overwrite`` calls :func:`clear_folder` once its inputs are read, before it writes.

    A missing or empty folder is fine. A folder holding files is refused, unless ``keep`` (the command
    continues what is there, e.g. ``--resume``) or ``overwrite`` (its contents will be deleted, so no stale
    file of an older run survives); ``overwrite`` is refused where the folder holds the working directory or
    one of the command's ``inputs`` (paths; None and names that are not files, e.g. ``builtin:chest-ct``,
    are skipped).

    Raises
    ------
    VesselInputError
        ``path`` or its nearest existing parent is a file, ``path`` holds files (without ``overwrite`` /
        ``keep``), or ``overwrite`` would delete an input or the working directory.
    """
    path = Path(path)
    for folder in (path, *path.parents):  # the nearest existing one must be a folder
        if folder.exists():
            if not folder.is_dir():
                raise VesselInputError(f"{folder}: is a file, not a folder; choose another output")
            break
    if keep or not path.is_dir() or not any(path.iterdir()):
        return path
    if not overwrite:
        raise VesselInputError(f"{path}: output folder exists and is not empty; choose another, or --overwrite to "
                               "delete its contents first")
    folder = path.resolve()
    if Path.cwd().resolve().is_relative_to(folder):
        raise VesselInputError(f"{path}: --overwrite would delete the working directory; choose another output")
    for given in inputs:
        if given is not None and Path(given).exists() and Path(given).resolve().is_relative_to(folder):
            raise VesselInputError(f"{path}: --overwrite would delete the input {given}, which lies in it; move it "
                                   "or choose another output")
    return path


def clear_folder(path: str | os.PathLike) -> None:
    """Delete what the folder ``path`` holds (nothing if it does not exist): the ``--overwrite`` of a folder
    :func:`claim_folder` accepted. The folder itself stays (a link or mount point given as output is kept)."""
    path = Path(path)
    if not path.is_dir():
        return
    for child in path.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def json_safe(obj: Any) -> Any:
    """JSON-safe copy of ``obj`` (dicts, lists, numbers): NaN and infinities -> None (``null``: NaN and Infinity
    are not JSON, jq and JavaScript refuse them), numpy scalars -> Python numbers, keys -> str."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return v if np.isfinite(v) else None
    return obj


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    with atomic_output(path) as tmp:
        write(tmp)


def _jsonable(obj: Any) -> Any:
    """Convert numpy scalars/arrays and tuples into plain JSON types (recursively)."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise VesselInputError(f"metadata value of type {type(obj).__name__} is not JSON-serialisable")


def _restore_metadata(meta: dict) -> dict:
    """Undo JSON's string keys for the ``labels`` map (branch ids are ints in memory)."""
    meta = dict(meta)
    labels = meta.get("labels")
    if isinstance(labels, dict):
        try:
            meta["labels"] = {int(k): v for k, v in labels.items()}
        except (TypeError, ValueError):
            raise VesselInputError("metadata.labels: keys must be integer branch ids") from None
    return meta


def normalized_metadata(meta: dict) -> dict:
    """Metadata as it reads back from disk (JSON types, ``labels`` keyed by int).

    Parameters
    ----------
    meta : dict
        Tree metadata.

    Returns
    -------
    dict
        The canonical form; generators store metadata in this form so that saving and
        loading a tree gives an equal tree.
    """
    return _restore_metadata(json.loads(json.dumps(_jsonable(meta), sort_keys=True)))


def tree_to_dict(tree: VesselTree) -> dict:
    """Plain-JSON dict of a tree (see module docstring for the layout)."""
    return {
        "format": JSON_FORMAT,
        "version": JSON_VERSION,
        "n_nodes": tree.n_nodes,
        "positions_mm": tree.positions_mm.tolist(),
        "radii_mm": tree.radii_mm.tolist(),
        "parents": tree.parents.tolist(),
        "branch_ids": tree.branch_ids.tolist(),
        "generations": tree.generations.tolist(),
        "metadata": _jsonable(tree.metadata),
    }


def tree_from_dict(data: dict) -> VesselTree:
    """Inverse of :func:`tree_to_dict`; raises :class:`VesselInputError` on a bad layout."""
    if not isinstance(data, dict):
        raise VesselInputError("vessel tree JSON: top level must be an object")
    if data.get("format", JSON_FORMAT) != JSON_FORMAT:
        raise VesselInputError(f"vessel tree JSON: unknown format {data.get('format')!r}")
    if data.get("version", JSON_VERSION) != JSON_VERSION:  # a newer layout would be misread, not refused
        raise VesselInputError(f"vessel tree JSON: unsupported version {data.get('version')!r} (this reader knows "
                               f"version {JSON_VERSION})")
    missing = [k for k in ("positions_mm", "radii_mm", "parents") if k not in data]
    if missing:
        raise VesselInputError(f"vessel tree JSON: missing key(s) {', '.join(missing)}")
    pos = np.asarray(data["positions_mm"], dtype=np.float64)
    if pos.size == 0:
        pos = pos.reshape(0, 3)
    n = pos.shape[0]
    branch_ids = data.get("branch_ids", np.zeros(n, dtype=np.int64))
    generations = data.get("generations", np.zeros(n, dtype=np.int64))
    return VesselTree(
        positions_mm=pos,
        radii_mm=np.asarray(data["radii_mm"], dtype=np.float64),
        parents=np.asarray(data["parents"]),
        branch_ids=np.asarray(branch_ids),
        generations=np.asarray(generations),
        metadata=_restore_metadata(data.get("metadata") or {}),
    )


def tree_to_json_string(tree: VesselTree) -> str:
    """Deterministic JSON text of a tree (sorted keys, shortest round-trip floats)."""
    return json.dumps(tree_to_dict(tree), sort_keys=True, separators=(",", ":")) + "\n"


# ---------------------------------------------------------------------- JSON
def save_json(tree: VesselTree, path: str | os.PathLike) -> Path:
    """Write ``tree`` as a JSON graph (atomic). Same tree -> byte-identical file.

    Parameters
    ----------
    tree : VesselTree
        Tree to write.
    path : str or os.PathLike
        Destination, usually ``*.json``.

    Returns
    -------
    pathlib.Path
        The written path.
    """
    path = Path(path)
    text = tree_to_json_string(tree)
    _atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))
    return path


def load_json(path: str | os.PathLike) -> VesselTree:
    """Read a tree written by :func:`save_json`."""
    path = Path(path)
    if not path.is_file():
        raise VesselInputError(f"vessel tree file not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise VesselInputError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except UnicodeDecodeError:
        raise VesselInputError(f"{path}: not valid JSON (not UTF-8 text: a binary file?)") from None
    try:
        return tree_from_dict(data)
    except VesselInputError as exc:
        raise VesselInputError(f"{path}: {exc}") from None


# ---------------------------------------------------------------------- VTP
def _polylines(tree: VesselTree) -> list[list[int]]:
    """Split the tree into unbranched runs of node indices (each run starts at its parent)."""
    kids = tree.children_lists()
    lines: list[list[int]] = []
    starts: deque[tuple[int, int]] = deque()  # (from_node, first_child)
    for c in kids[0]:
        starts.append((0, c))
    while starts:
        p, c = starts.popleft()
        run = [p, c]
        cur = c
        while len(kids[cur]) == 1 and tree.branch_ids[kids[cur][0]] == tree.branch_ids[cur]:
            cur = kids[cur][0]
            run.append(cur)
        for k in kids[cur]:
            starts.append((cur, k))
        lines.append(run)
    return lines


def tree_to_polydata(tree: VesselTree) -> "Any":
    """Build a ``pyvista.PolyData`` of the centrelines (see module docstring)."""
    import pyvista as pv

    poly = pv.PolyData()
    poly.points = np.ascontiguousarray(tree.positions_mm, dtype=np.float64)
    lines = _polylines(tree)
    if lines:
        cells = np.concatenate([np.r_[len(run), run] for run in lines]).astype(np.int64)
        poly.lines = cells
    else:
        poly.verts = np.array([1, 0], dtype=np.int64)
    poly.point_data["radius_mm"] = tree.radii_mm.astype(np.float64)
    poly.point_data["parent"] = tree.parents.astype(np.int64)
    poly.point_data["branch_id"] = tree.branch_ids.astype(np.int64)
    poly.point_data["generation"] = tree.generations.astype(np.int64)
    poly.field_data["metadata_json"] = np.array([json.dumps(_jsonable(tree.metadata), sort_keys=True)])
    return poly


def save_vtp(tree: VesselTree, path: str | os.PathLike) -> Path:
    """Write ``tree`` as VTK XML PolyData centrelines (atomic, binary, float64 points).

    Parameters
    ----------
    tree : VesselTree
        Tree to write.
    path : str or os.PathLike
        Destination; must end in ``.vtp``.

    Returns
    -------
    pathlib.Path
        The written path.
    """
    path = Path(path)
    if path.suffix.lower() != ".vtp":
        raise VesselInputError(f"save_vtp: path must end in .vtp, got {path.name}")
    poly = tree_to_polydata(tree)
    _atomic_write(path, lambda p: poly.save(str(p), binary=True))
    return path


def _tree_from_lines(points: np.ndarray, radii: np.ndarray, cells: np.ndarray) -> VesselTree:
    """Rebuild a tree from line connectivity (foreign centreline files)."""
    n_pts = points.shape[0]
    # merge coincident points (VMTK centrelines repeat shared points)
    _, inverse = np.unique(np.round(points, 9), axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    adj: dict[int, set[int]] = {}
    i = 0
    while i < len(cells):
        k = int(cells[i])
        ids = inverse[cells[i + 1 : i + 1 + k]]
        for a, b in zip(ids[:-1], ids[1:]):
            if a != b:
                adj.setdefault(int(a), set()).add(int(b))
                adj.setdefault(int(b), set()).add(int(a))
        i += k + 1
    if not adj:
        raise VesselInputError("vtp: no line segments to build a vessel tree from")
    rep = np.full(inverse.max() + 1, -1)
    for p in range(n_pts - 1, -1, -1):
        rep[inverse[p]] = p
    # root: the endpoint (degree 1) with the largest radius
    ends = [u for u, nb in adj.items() if len(nb) == 1] or list(adj)
    root = max(ends, key=lambda u: (radii[rep[u]], -u))
    order, parent_of = [root], {root: -1}
    q = deque([root])
    while q:
        u = q.popleft()
        for v in sorted(adj[u]):
            if v not in parent_of:
                parent_of[v] = u
                order.append(v)
                q.append(v)
    if len(order) != len(adj):
        raise VesselInputError(f"vtp: centrelines are disconnected ({len(adj) - len(order)} points unreachable from root)")
    n_edges = sum(len(nb) for nb in adj.values()) // 2
    if n_edges > len(adj) - 1:  # a spanning tree would drop a segment without a word
        raise VesselInputError(f"vtp: centrelines form {n_edges - len(adj) + 1} closed loop(s) (cycle); a vessel "
                               "tree has none: open each loop in the file")
    new_index = {u: j for j, u in enumerate(order)}
    parents = np.array([-1 if parent_of[u] < 0 else new_index[parent_of[u]] for u in order], dtype=np.int64)
    pos = points[[rep[u] for u in order]]
    rad = radii[[rep[u] for u in order]]
    from vessel_models.morphometrics import branch_structure

    branch_ids, generations = branch_structure(parents)
    return VesselTree(pos, rad, parents, branch_ids, generations, {"source": "vtp-lines"})


def load_vtp(path: str | os.PathLike) -> VesselTree:
    """Read a ``.vtp`` centreline file.

    Files written by :func:`save_vtp` round-trip exactly. Other files need line cells and a
    radius point array (``radius_mm``, or VMTK's ``MaximumInscribedSphereRadius``); the tree
    is rebuilt from connectivity, rooted at the widest end point.
    """
    import pyvista as pv
    from vtkmodules.vtkCommonCore import vtkObject
    from vtkmodules.vtkIOXML import vtkXMLPolyDataReader

    path = Path(path)
    if not path.is_file():
        raise VesselInputError(f"vessel tree file not found: {path}")
    reader = vtkXMLPolyDataReader()
    shown = vtkObject.GetGlobalWarningDisplay()
    vtkObject.GlobalWarningDisplayOff()  # a broken file is one line of ours, not VTK's dump of its parser state
    try:
        reader.SetFileName(str(path))
        reader.Update()
    finally:
        vtkObject.SetGlobalWarningDisplay(shown)
    poly = pv.wrap(reader.GetOutput())
    if reader.GetErrorCode() or poly.n_points == 0:
        raise VesselInputError(f"{path}: no points read: not a readable VTK XML PolyData file (truncated?)")
    pd = poly.point_data
    radius_key = next((k for k in ("radius_mm", "MaximumInscribedSphereRadius", "Radius", "radius") if k in pd), None)
    if radius_key is None:
        raise VesselInputError(f"{path}: no radius point data (expected 'radius_mm')")
    points = np.asarray(poly.points, dtype=np.float64)
    radii = np.asarray(pd[radius_key], dtype=np.float64).reshape(-1)
    meta: dict = {}
    if "metadata_json" in poly.field_data:
        raw = poly.field_data["metadata_json"]
        text = raw[0] if np.ndim(raw) else raw
        try:
            meta = _restore_metadata(json.loads(str(text)))
        except json.JSONDecodeError:
            raise VesselInputError(f"{path}: field data 'metadata_json' is not valid JSON") from None
    if "parent" in pd:
        n = points.shape[0]
        bid = pd["branch_id"] if "branch_id" in pd else np.zeros(n, dtype=np.int64)
        gen = pd["generation"] if "generation" in pd else np.zeros(n, dtype=np.int64)
        return VesselTree(points, radii, np.asarray(pd["parent"]), np.asarray(bid), np.asarray(gen), meta)
    try:
        tree = _tree_from_lines(points, radii, np.asarray(poly.lines))
    except VesselInputError as exc:
        raise VesselInputError(f"{path}: {exc}") from None
    if meta:
        tree.metadata = meta
    return tree


# ---------------------------------------------------------------------- dispatch
def load_tree(path: str | os.PathLike) -> VesselTree:
    """Load a tree from ``.vtp`` or ``.json`` by file suffix."""
    suffix = Path(path).suffix.lower()
    if suffix == ".vtp":
        return load_vtp(path)
    if suffix == ".json":
        return load_json(path)
    raise VesselInputError(f"unsupported vessel tree file type {suffix!r} (use .vtp or .json): {path}")


def save_tree(tree: VesselTree, path: str | os.PathLike) -> Path:
    """Save a tree to ``.vtp`` or ``.json`` by file suffix."""
    suffix = Path(path).suffix.lower()
    if suffix == ".vtp":
        return save_vtp(tree, path)
    if suffix == ".json":
        return save_json(tree, path)
    raise VesselInputError(f"unsupported vessel tree file type {suffix!r} (use .vtp or .json): {path}")


def save_nifti(volume: np.ndarray, affine_lps: np.ndarray, path: str | os.PathLike,
               dtype: type = np.float32) -> Path:
    """Write a volume as NIfTI atomically; the LPS affine is stored as RAS.

    Parameters
    ----------
    volume : numpy.ndarray
        ``(I, J, K)`` array.
    affine_lps : numpy.ndarray
        ``(4, 4)`` voxel -> LPS mm.
    path : str or PathLike
        ``.nii`` or ``.nii.gz`` file.
    dtype : type
        Stored data type (float32 for fractions, uint8 for label volumes).

    Returns
    -------
    pathlib.Path
    """
    import nibabel as nib

    p = Path(path)
    name = p.name.lower()
    if not name.endswith((".nii", ".nii.gz")):
        raise VesselInputError(f"output must be a .nii or .nii.gz file, got {p.name}")
    lps_to_ras = np.diag([-1.0, -1.0, 1.0, 1.0])  # its own inverse
    affine_ras = lps_to_ras @ np.asarray(affine_lps, dtype=np.float64)
    img = nib.Nifti1Image(np.asarray(volume, dtype=dtype), affine_ras)
    img.header.set_xyzt_units("mm")
    p.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(p) as tmp:
        nib.save(img, str(tmp))
    return p
