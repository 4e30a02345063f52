"""Geometry bridge to peer projectors: one :class:`CArm` view + one volume, rendered by a peer.

Two peers are supported, both as independent references for our line integrals (mono, one density
volume, g/cm^3 x length):

plastimatch (``plastimatch drr``, pip package ``plastimatch``)
    The volume is written as a MetaImage (``.mha``, float32, identity direction cosines, LPS
    world as ITK/DICOM use) and traced with ``--algorithm exact`` (Siddon). We pass
    ``--hu-conversion none`` so plastimatch integrates the voxel values as they are: its pixel value
    is ``sum(length_mm x value) / 10`` (drr.cxx: "Translate from mm pixels to cm*gm"), i.e. for a
    density volume in g/cm^3 exactly our area density in g/cm^2 (``Projector.march``). Its own HU
    mapping (``mu = 0.022/mm x (1 + HU/1000)``, 0 below -800 HU) is deliberately NOT used: it is a
    different quantity from our DeepDRR HU -> density conversion.

    Geometry (plastimatch proj_matrix.cxx / drr.cxx): the source sits at ``isocenter + sad x nrm``
    (``nrm`` points from the isocenter TO the source), the detector centre at ``source - sid x nrm``;
    pixel ``(r, c)`` lies at ``centre + (r - ic_r) x ps x pdn + (c - ic_c) x ps x prt`` with
    ``pdn = -vup`` and ``prt = vup x nrm``; the default image centre is ``(n - 1) / 2`` (pixel
    centres on integer indices). NOTE: although ``--help`` says ``-r``/``-z`` take "row col", the
    binary of the pip wheel (1.10.0) reads them as "cols rows" (x then y): with a 60x80 detector
    only ``-r "80 60" -z "<80 ps> <60 ps>"`` reproduces our image (checked on an asymmetric phantom,
    tests/test_projector_plastimatch.py), and its raw output is then (rows, cols) row-major.
    Our camera3d frame has +z along the principal ray, columns along
    +x and rows along +y (pixel ``[r, c]`` centre at ``(c + 0.5, r + 0.5)``, principal point at the
    sensor centre). Hence ``nrm = -z_cam``, ``vup = -y_cam`` (so ``pdn = y_cam`` and
    ``prt = (-y) x (-z) = x_cam``): rows and columns map one to one, no flip and no transpose. The
    raw output is float32, row-major (rows, cols).

    A one-voxel zero margin is added around the grid (:func:`write_plastimatch_volume`: works
    around plastimatch dropping boundary voxels of some rays). plastimatch's exact tracer works on
    axis-aligned grids, so the volume is written with identity
    direction cosines: axes whose direction points negative are flipped in the array (the world
    placement of each voxel is unchanged), and any rotation left (oblique or permuted grids) is
    applied to the camera instead (``R^T``, a rigid change of world frame that keeps the image).

DiffDRR 0.6.1 (``diffdrr``, torch)
    ``DRR.render`` integrates ``density x length`` between the source and each detector pixel in
    the subject's world frame (torchio, RAS mm): Siddon sums voxel value x exact chord length
    (``alpha`` fraction x ray length), Trilinear samples ``n_points`` points between the global
    entry/exit of all rays (rectangular rule). No normalisation: with our density volume as the
    subject's ``density`` its output is our line integral in g/cm^3 x mm (divide by 10 for g/cm^2).
    We build the subject with ``diffdrr.data.read(..., orientation=None, center_volume=False)`` on
    the RAS affine ``diag(-1, -1, 1) @ affine_LPS`` and replace its density by ours (DiffDRR's own
    HU -> density mapping differs from DeepDRR's). DiffDRR's detector: camera point of pixel
    ``[r, c]`` is ``(-(c + 0.5 - W/2) dx, -(r + 0.5 - H/2) dy, sdd)`` with ``reverse_x_axis=True``
    (the default), i.e. our camera frame rotated 180 degrees about z. The pose (camera -> world) is
    therefore ``F_ras @ world_from_camera3d @ diag(-1, -1, 1)``: a proper rotation, no reflection.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ddsa_sim import InputError
from ddsa_sim.geometry.carm import CArm

#: LPS <-> RAS (its own inverse).
RAS_FROM_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


# ------------------------------------------------------------------------------------------ volumes
def axis_aligned_grid(data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Express a voxel grid with positive spacings along rotated axes.

    Parameters
    ----------
    data : ndarray (I, J, K)
        Voxel values.
    affine : ndarray (4, 4)
        Voxel index -> world mm (LPS).

    Returns
    -------
    data : ndarray (I, J, K)
        ``data`` with some axes flipped (a view).
    origin : ndarray (3,)
        Centre of voxel (0, 0, 0) in the ROTATED frame ``p' = rotation.T @ p`` (mm).
    spacing : ndarray (3,)
        Voxel edge lengths (mm).
    rotation : ndarray (3, 3)
        Proper rotation whose columns are the grid axes in world; the identity for grids aligned
        with LPS with any axis signs.
    """
    data = np.asarray(data)
    affine = np.asarray(affine, dtype=np.float64)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    direction = affine[:3, :3] / spacing
    origin = affine[:3, 3].copy()
    sl = [slice(None)] * 3
    for k in range(3):
        dominant = int(np.argmax(np.abs(direction[:, k])))
        if direction[dominant, k] < 0:
            origin = origin + direction[:, k] * spacing[k] * (data.shape[k] - 1)
            direction[:, k] = -direction[:, k]
            sl[k] = slice(None, None, -1)
    if np.linalg.det(direction) < 0:  # odd permutation of axes left: flip the first axis again
        origin = origin + direction[:, 0] * spacing[0] * (data.shape[0] - 1)
        direction[:, 0] = -direction[:, 0]
        sl[0] = slice(None, None, -1) if sl[0] == slice(None) else slice(None)
    if not np.allclose(direction.T @ direction, np.eye(3), atol=1e-6):
        raise InputError("the volume's axes are not orthogonal (sheared affine); peers need an orthogonal grid")
    return data[tuple(sl)], direction.T @ origin, spacing, direction


def write_mha(path: str | os.PathLike, data: np.ndarray, origin: np.ndarray, spacing: np.ndarray) -> Path:
    """Write a float32 MetaImage with identity direction cosines (ITK: first index fastest).

    Parameters
    ----------
    path : path-like
        Output ``.mha`` file.
    data : ndarray (I, J, K)
        Voxel values; index ``i`` runs along world x.
    origin : ndarray (3,)
        Centre of voxel (0, 0, 0), mm.
    spacing : ndarray (3,)
        Voxel edge lengths, mm.
    """
    path = Path(path)
    arr = np.asarray(data, dtype="<f4")
    header = (
        "ObjectType = Image\nNDims = 3\nBinaryData = True\nBinaryDataByteOrderMSB = False\n"
        "CompressedData = False\nTransformMatrix = 1 0 0 0 1 0 0 0 1\n"
        f"Offset = {' '.join(repr(float(x)) for x in origin)}\nCenterOfRotation = 0 0 0\n"
        "AnatomicalOrientation = RAI\n"
        f"ElementSpacing = {' '.join(repr(float(x)) for x in spacing)}\n"
        f"DimSize = {arr.shape[0]} {arr.shape[1]} {arr.shape[2]}\n"
        "ElementType = MET_FLOAT\nElementDataFile = LOCAL\n"
    )
    with open(path, "wb") as fh:
        fh.write(header.encode("ascii"))
        fh.write(np.ascontiguousarray(arr.transpose(2, 1, 0)).tobytes())
    return path


# --------------------------------------------------------------------------------------- plastimatch
def plastimatch_executable() -> str | None:
    """Path of the ``plastimatch`` binary (the pip wheel's, else one on PATH), or None."""
    try:
        from importlib.metadata import distribution

        files = distribution("plastimatch").files or []
        for f in files:
            if str(f).replace("\\", "/").endswith("plastimatch/bin/plastimatch"):
                p = Path(f.locate()).resolve()
                if p.exists():
                    return str(p)
    except (ImportError, OSError, ValueError):  # package absent or metadata unreadable: fall back to PATH
        return shutil.which("plastimatch")
    return shutil.which("plastimatch")


@dataclass(frozen=True)
class PlastimatchGeometry:
    """``plastimatch drr`` geometry of one view, in the (possibly rotated) frame of the written volume."""

    isocenter_mm: np.ndarray
    nrm: np.ndarray
    vup: np.ndarray
    sad_mm: float
    sid_mm: float
    rows: int
    cols: int
    detector_size_mm: tuple[float, float]  # (rows x pixel, cols x pixel); passed to -z as "cols rows"

    def args(self) -> list[str]:
        """The geometry options of ``plastimatch drr``."""
        f = lambda v: " ".join(f"{float(x):.10g}" for x in v)
        return ["--nrm", f(self.nrm), "--vup", f(self.vup), "--sad", f"{self.sad_mm:.10g}",
                "--sid", f"{self.sid_mm:.10g}", "-r", f"{self.cols} {self.rows}",
                "-z", f(self.detector_size_mm[::-1]), "-o", f(self.isocenter_mm)]


def plastimatch_geometry(carm: CArm, rotation: np.ndarray | None = None) -> PlastimatchGeometry:
    """``plastimatch drr`` options reproducing ``carm`` (see the module docstring).

    Parameters
    ----------
    carm : CArm
        The view.
    rotation : ndarray (3, 3), optional
        Grid rotation from :func:`axis_aligned_grid`; the geometry is expressed in ``R^T`` world.
    """
    rot = np.eye(3) if rotation is None else np.asarray(rotation, dtype=np.float64)
    world_from_cam = np.linalg.inv(carm.camera3d_from_world)
    y_cam, z_cam = world_from_cam[:3, 1], world_from_cam[:3, 2]  # x_cam follows from vup and nrm
    src = carm.source_mm
    sad = float((np.asarray(carm.isocenter_mm, dtype=np.float64) - src) @ z_cam)
    if not 0 < sad < carm.source_to_detector_distance:
        sad = float(carm.source_to_isocenter_vertical_distance)
    iso = src + sad * z_cam  # on the principal ray: plastimatch puts the source at iso + sad * nrm
    return PlastimatchGeometry(
        isocenter_mm=rot.T @ iso, nrm=rot.T @ (-z_cam), vup=rot.T @ (-y_cam), sad_mm=sad,
        sid_mm=float(carm.source_to_detector_distance), rows=int(carm.sensor_height), cols=int(carm.sensor_width),
        detector_size_mm=(carm.sensor_height * carm.pixel_mm, carm.sensor_width * carm.pixel_mm),
    )


def write_plastimatch_volume(path: str | os.PathLike, density: np.ndarray, affine: np.ndarray,
                             pad_voxels: int = 1) -> np.ndarray:
    """Write a density volume for ``plastimatch drr``; returns the grid rotation to pass to the geometry.

    ``pad_voxels`` zero voxels are added around the grid (the line integrals are unchanged):
    plastimatch 1.10.0's exact tracer drops part of the first/last voxel of rays that enter or
    leave through some faces of the grid (up to 6% of a chest CT line integral at oblique views,
    for ~20% of the rays); with a zero margin it agrees with our Siddon, DiffDRR's Siddon and a
    brute-force 5 um sampling to ~1e-6.
    """
    data, origin, spacing, rot = axis_aligned_grid(density, affine)
    if pad_voxels:
        data = np.pad(data, int(pad_voxels))
        origin = origin - spacing * int(pad_voxels)
    write_mha(path, data, origin, spacing)
    return rot


def plastimatch_command(volume_path: str | os.PathLike, output_prefix: str | os.PathLike, geometry: PlastimatchGeometry,
                        executable: str | None = None, algorithm: str = "exact") -> list[str]:
    """The ``plastimatch drr`` command line (raw float32 output, no HU conversion, CPU)."""
    exe = executable or plastimatch_executable()
    if exe is None:
        raise InputError("plastimatch executable not found (pip install plastimatch)")
    return [exe, "drr", "-A", "cpu", "-i", algorithm, "-P", "none", "-t", "raw", *geometry.args(),
            "-O", str(output_prefix), "-I", str(volume_path)]


def read_plastimatch_raw(path: str | os.PathLike, rows: int, cols: int) -> np.ndarray:
    """Read a ``plastimatch drr -t raw`` image: little-endian float32, row-major (rows, cols)."""
    a = np.fromfile(path, dtype="<f4")
    if a.size != rows * cols:
        raise InputError(f"{path}: {a.size} values, expected {rows}x{cols}")
    return a.reshape(rows, cols)


def _find_output(prefix: Path) -> Path:
    cands = sorted(prefix.parent.glob(prefix.name + "*.raw"))
    if not cands:
        raise InputError(f"plastimatch wrote no image with prefix {prefix}")
    return cands[0]


def plastimatch_drr(carm: CArm, density_g_per_cc: np.ndarray, affine: np.ndarray, workdir: str | os.PathLike | None = None,
                    threads: int | None = None, algorithm: str = "exact",
                    volume_path: str | os.PathLike | None = None, rotation: np.ndarray | None = None) -> np.ndarray:
    """Area density (g/cm^2, (H, W) float32) of one view by ``plastimatch drr``.

    Parameters
    ----------
    carm : CArm
        The view.
    density_g_per_cc, affine : ndarray
        Density volume and its voxel -> world (LPS mm) affine. Ignored (may be None) when
        ``volume_path`` names a volume already written by :func:`write_plastimatch_volume`.
    workdir : path-like, optional
        Folder for the files (default: a temporary folder, removed afterwards).
    threads : int, optional
        ``OMP_NUM_THREADS`` for plastimatch (default: inherited).
    algorithm : {"exact", "uniform"}
    volume_path, rotation : optional
        A volume written before and its grid rotation (to render many views of one volume).
    """
    tmp = None
    if workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="ddsa_plm_")
        workdir = tmp.name
    work = Path(workdir)
    try:
        if volume_path is None:
            volume_path = work / "volume.mha"
            rotation = write_plastimatch_volume(volume_path, density_g_per_cc, affine)
        geo = plastimatch_geometry(carm, rotation)
        prefix = work / "drr_"
        for old in work.glob("drr_*"):
            old.unlink()
        env = dict(os.environ)
        if threads:
            env["OMP_NUM_THREADS"] = str(int(threads))
        cmd = plastimatch_command(volume_path, prefix, geo, algorithm=algorithm)
        res = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        if res.returncode != 0:
            raise InputError(f"plastimatch drr failed ({res.returncode}): {res.stderr.strip()[-500:]}")
        return read_plastimatch_raw(_find_output(prefix), geo.rows, geo.cols)
    finally:
        if tmp is not None:
            tmp.cleanup()


# ------------------------------------------------------------------------------------------- DiffDRR
def diffdrr_pose(carm: CArm) -> np.ndarray:
    """DiffDRR pose (camera -> world RAS, 4x4) of ``carm`` for a detector with ``reverse_x_axis=True``."""
    world_from_cam = np.linalg.inv(carm.camera3d_from_world)
    flip_xy = np.diag([-1.0, -1.0, 1.0, 1.0])
    return RAS_FROM_LPS @ world_from_cam @ flip_xy


def diffdrr_drr(carm: CArm, density_g_per_cc: np.ndarray, affine: np.ndarray, renderer: str = "siddon",
                **renderer_kwargs):
    """A ``diffdrr.drr.DRR`` module and the pose tensor rendering ``carm`` (see the module docstring).

    Parameters
    ----------
    carm : CArm
        The view (its detector: ``sensor_height`` x ``sensor_width`` pixels of ``pixel_mm`` mm).
    density_g_per_cc, affine : ndarray
        Density volume and its voxel -> world (LPS mm) affine.
    renderer : {"siddon", "trilinear"}
        DiffDRR renderer; e.g. ``n_points=500`` goes to ``forward`` for trilinear (see :func:`diffdrr_render`).

    Returns
    -------
    drr : diffdrr.drr.DRR
    pose : diffdrr.pose.RigidTransform
    """
    import torch
    from diffdrr.data import read
    from diffdrr.drr import DRR
    from diffdrr.pose import RigidTransform
    from torchio import ScalarImage

    dens = torch.as_tensor(np.ascontiguousarray(density_g_per_cc, dtype=np.float32))[None]
    aff_ras = RAS_FROM_LPS @ np.asarray(affine, dtype=np.float64)
    image = ScalarImage(tensor=dens, affine=aff_ras)
    subject = read(image, orientation=None, center_volume=False)
    subject.density.set_data(dens)  # our density, not DiffDRR's HU mapping (module docstring)
    drr = DRR(subject, sdd=float(carm.source_to_detector_distance), height=int(carm.sensor_height),
              delx=float(carm.pixel_mm), width=int(carm.sensor_width), dely=float(carm.pixel_mm),
              x0=0.0, y0=0.0, reverse_x_axis=True, renderer=renderer, **renderer_kwargs)
    pose = RigidTransform(torch.as_tensor(diffdrr_pose(carm), dtype=torch.float32)[None])
    return drr, pose


def diffdrr_render(drr, pose, **forward_kwargs) -> np.ndarray:
    """Render with DiffDRR: area density (g/cm^2, (H, W) float32) of the subject's density."""
    import torch

    with torch.no_grad():
        img = drr(pose, **forward_kwargs)
    return (img[0, 0].cpu().numpy() * 0.1).astype(np.float32)


def diffdrr_area_density(carm: CArm, density_g_per_cc: np.ndarray, affine: np.ndarray, renderer: str = "siddon",
                         n_points: int = 500) -> np.ndarray:
    """One view by DiffDRR 0.6.1 (g/cm^2); ``n_points`` samples per ray for the trilinear renderer."""
    drr, pose = diffdrr_drr(carm, density_g_per_cc, affine, renderer=renderer)
    kwargs = {"n_points": int(n_points)} if renderer == "trilinear" else {}
    return diffdrr_render(drr, pose, **kwargs)


# ------------------------------------------------------------------------------------------ compare
def line_integral_differences(ours: np.ndarray, peer: np.ndarray, min_g_per_cm2: float | None = None) -> dict[str, float]:
    """Max / median absolute and relative differences over pixels whose ray crosses the body.

    ``min_g_per_cm2`` (default: 10% of the larger maximum) selects the pixels compared: both images
    above it. Relative differences are ``|ours - peer| / peer``.
    """
    ours = np.asarray(ours, dtype=np.float64)
    peer = np.asarray(peer, dtype=np.float64)
    if ours.shape != peer.shape:
        raise InputError(f"image shapes differ: {ours.shape} vs {peer.shape}")
    thr = 0.1 * max(float(ours.max()), float(peer.max())) if min_g_per_cm2 is None else float(min_g_per_cm2)
    sel = (ours > thr) & (peer > thr)
    if not sel.any():
        return {"n_pixels": 0, "max_abs": float("nan"), "median_abs": float("nan"),
                "max_rel": float("nan"), "median_rel": float("nan")}
    d = np.abs(ours - peer)[sel]
    rel = d / peer[sel]
    return {"n_pixels": int(sel.sum()), "max_abs": float(d.max()), "median_abs": float(np.median(d)),
            "max_rel": float(rel.max()), "median_rel": float(np.median(rel))}
