"""CT readers: NIfTI, NRRD, DICOM series, numpy arrays and builtin names, all into LPS world mm.

A builtin name may end in a voxel box, ``builtin:chest-ct[0:252,43:454,0:43]`` (``i0:i1,j0:j1,k0:k1``
in the file's voxel indices, ends excluded): the sub-volume, kept at its world position. Disjoint
boxes of one scan make "pseudo-patients" for split-by-CT datasets without writing files.
"""

from __future__ import annotations

import re
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ddsa_sim import InputError
from ddsa_sim.volumes.builtin import head_phantom_seed, resolve_builtin
from ddsa_sim.volumes.tigre_head import TIGRE_HEAD, is_tarball, read_tigre_head, tigre_tarball
from ddsa_sim.volumes.volume import Volume

LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _import_nibabel():
    """nibabel, imported without pydicom when pydicom is not loaded yet.

    nibabel imports pydicom eagerly (about 0.12 s, most of nibabel's import) only to decode DICOM
    headers embedded in NIfTI extensions, which we never read; hiding it during the import keeps
    ``ddsa-sim project`` fast. Our DICOM series reader imports pydicom itself, which works as usual.
    """
    if "nibabel" in sys.modules:
        return sys.modules["nibabel"]
    hide = "pydicom" not in sys.modules
    if hide:
        sys.modules["pydicom"] = None  # type: ignore[assignment]  # makes `import pydicom` fail at once
    try:
        import nibabel
    finally:
        if hide:
            del sys.modules["pydicom"]
    return nibabel


def _first_line(exc: BaseException) -> str:
    """A library's message, cut to its first line: ours is one line, and its closing parenthesis must stay."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else ""


def from_array(data: np.ndarray, affine: np.ndarray, name: str = "<array>") -> Volume:
    """Wrap an array and a voxel -> world (mm, LPS) affine as a :class:`Volume`."""
    return Volume(np.asarray(data), np.asarray(affine, dtype=np.float64), name=name)


def read_nifti(path: str | Path) -> Volume:
    """Read a NIfTI (.nii / .nii.gz) volume; the RAS affine of the file is converted to LPS."""
    path = Path(path)
    try:
        img = _import_nibabel().load(str(path))
        data = np.asarray(img.dataobj, dtype=np.float32)
    except Exception as exc:  # nibabel raises many types for a bad file
        raise InputError(f"{path}: cannot read NIfTI ({exc.__class__.__name__}: {_first_line(exc)})") from None
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise InputError(f"{path}: expected a 3D volume, got shape {data.shape}")
    zooms = np.asarray(img.header.get_zooms()[:3], dtype=np.float64)
    if not np.all(np.isfinite(zooms)) or np.any(zooms <= 0):
        raise InputError(f"{path}: voxel spacing (pixdim) must be positive and finite, got {zooms.tolist()}")
    if "sform_code" in img.header and not (int(img.header["sform_code"]) or int(img.header["qform_code"])):
        # NIfTI's "method 1": nibabel's fallback affine, voxel sizes along axes whose directions nobody recorded
        warnings.warn(f"{path}: neither sform nor qform gives the orientation (both codes 0); read with the voxel "
                      "sizes alone, axes as stored: check that its left, right, front and back are where you expect",
                      stacklevel=2)
    return Volume(data, LPS_FROM_RAS @ img.affine, name=str(path))


#: NRRD ``space`` values whose axes are anatomical, and the sign of each axis against LPS.
NRRD_SPACES = {"left-posterior-superior": (1, 1, 1), "right-anterior-superior": (-1, -1, 1),
               "left-anterior-superior": (1, -1, 1)}
_NRRD_SPACE_ALIASES = {"lps": "left-posterior-superior", "ras": "right-anterior-superior",
                       "las": "left-anterior-superior"}


def read_nrrd(path: str | Path) -> Volume:
    """Read a NRRD volume (``.nrrd``, or a detached ``.nhdr`` header; 3D Slicer's format) into LPS world mm.

    The voxel -> world affine comes from ``space directions`` and ``space origin`` in the header's
    ``space`` (LPS, RAS or LAS; converted to LPS). A header without an anatomical space (``scanner-xyz``,
    ``3D-right-handed``, only ``spacings``) is read with its axes taken as LPS, and a warning says so.
    """
    import nrrd

    path = Path(path)
    try:
        data, header = nrrd.read(str(path))  # index order "F": data[i, j, k], i the header's first (fastest) axis
    except Exception as exc:  # pynrrd raises NRRDError, OSError, ValueError... for a bad file
        raise InputError(f"{path}: cannot read NRRD ({exc.__class__.__name__}: {_first_line(exc)})") from None
    data = np.asarray(data, dtype=np.float32)
    if data.ndim == 4 and 1 in data.shape:  # e.g. a one-component "list" axis
        data = np.squeeze(data, axis=data.shape.index(1))
    if data.ndim != 3:
        raise InputError(f"{path}: expected a 3D volume, got shape {data.shape}")
    space = str(header.get("space", "")).lower()
    space = _NRRD_SPACE_ALIASES.get(space, space)
    directions = np.asarray(header.get("space directions", np.full((3, 3), np.nan)), dtype=np.float64)
    directions = directions[np.all(np.isfinite(directions), axis=1)] if directions.ndim == 2 else directions
    if directions.shape != (3, 3):
        spacings = np.asarray(header.get("spacings", [1.0, 1.0, 1.0]), dtype=np.float64)[-3:]
        directions = np.diag(np.where(np.isfinite(spacings), spacings, 1.0))
        space = ""
    affine = np.eye(4)
    affine[:3, :3] = directions.T  # column j: the world step of voxel axis j
    affine[:3, 3] = np.asarray(header.get("space origin", np.zeros(3)), dtype=np.float64)
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise InputError(f"{path}: space directions / origin give no valid voxel grid ({affine[:3].tolist()})")
    if space in NRRD_SPACES:
        affine = np.diag([*NRRD_SPACES[space], 1.0]) @ affine
    else:
        warnings.warn(f"{path}: its space {header.get('space', '(none)')!r} is not anatomical (LPS, RAS or LAS); read "
                      "with its axes taken as LPS: check that left, right, front and back are where you expect",
                      stacklevel=2)
    return Volume(data, affine, name=str(path))


def read_dicom_series(folder: str | Path) -> Volume:
    """Read a folder holding one DICOM CT series, or one file (a slice, or an enhanced multi-frame CT).

    The image planes (single-frame files, or the frames of an enhanced multi-frame image, whose per-frame and
    shared functional groups give each frame's position, orientation, pixel spacing and rescale) are sorted by
    ImagePositionPatient along the slice normal, RescaleSlope/Intercept are applied (values in HU), and the
    affine is built from ImageOrientationPatient and PixelSpacing. DICOM patient coordinates are LPS already.
    A series with mixed orientation or pixel spacing, missing slices or uneven slice spacing is refused, and
    so is a multi-frame image without plane positions per frame (an RT dose grid, an ultrasound clip).
    """
    folder = Path(folder)
    datasets = [(f, ds) for f, ds in dicom_datasets(folder, pixels=True) if "PixelData" in ds]
    if not datasets:
        raise InputError(f"{folder}: no DICOM image found")
    uids = {str(ds.get("SeriesInstanceUID", "")) for _, ds in datasets}
    if len(uids) > 1:
        raise InputError(f"{folder}: holds {len(uids)} series; point to a folder with one series")
    planes = [plane for f, ds in datasets for plane in _image_planes(f, ds)]

    iop = [p.orientation for p in planes]
    if any(not np.allclose(o, iop[0], atol=1e-4) for o in iop):
        raise InputError(f"{folder}: ImageOrientationPatient differs between slices (mixed orientation)")
    row_dir, col_dir = iop[0][:3], iop[0][3:]
    normal = np.cross(row_dir, col_dir)
    planes.sort(key=lambda p: float(p.position @ normal))
    pos = np.array([p.position for p in planes])
    ps = planes[0].spacing
    if np.any(ps <= 0) or not np.all(np.isfinite(ps)):
        raise InputError(f"{planes[0].source}: PixelSpacing must be positive, got {ps.tolist()}")
    for p in planes:
        if not np.allclose(p.spacing, ps, rtol=1e-4):
            raise InputError(f"{folder}: PixelSpacing differs between slices ({ps.tolist()} in {planes[0].source}, "
                             f"{p.spacing.tolist()} in {p.source})")

    if len(planes) > 1:
        gaps = np.diff(pos @ normal)
        if np.any(gaps <= 1e-6):
            raise InputError(f"{folder}: two slices share the same position (several stacks or phases in one series, "
                             "a 4D CT? give one)")
        step = np.median(gaps)
        if np.any(gaps > 1.5 * step):
            i = int(np.argmax(gaps))
            raise InputError(f"{folder}: missing slice(s) after {planes[i].source} (gap {gaps[i]:.3g} mm, "
                             f"spacing {step:.3g} mm)")
        if np.any(np.abs(gaps - step) > max(0.01 * step, 1e-3)):
            raise InputError(f"{folder}: uneven slice spacing ({gaps.min():.4g}..{gaps.max():.4g} mm)")
        slice_vec = (pos[-1] - pos[0]) / (len(planes) - 1)
    else:
        slice_vec = normal * planes[0].thickness

    images = [p.pixels() * p.slope + p.intercept for p in planes]
    if any(im.shape != images[0].shape for im in images):
        raise InputError(f"{folder}: slices have different sizes")
    # pixel_array is (rows, columns); our i runs along a row (row_dir), j down the columns (col_dir)
    data = np.stack([im.T for im in images], axis=2)
    affine = np.eye(4)
    affine[:3, 0] = row_dir * ps[1]
    affine[:3, 1] = col_dir * ps[0]
    affine[:3, 2] = slice_vec
    affine[:3, 3] = pos[0]
    return Volume(data, affine, name=str(folder))


@dataclass
class _Plane:
    """One image plane of a DICOM series: a single-frame file, or one frame of an enhanced multi-frame image.

    ``source`` names it in errors; ``position`` (ImagePositionPatient, mm), ``orientation`` (the 6 direction
    cosines of ImageOrientationPatient), ``spacing`` (PixelSpacing: row, column spacing in mm), ``thickness`` (mm,
    the slab of a lone plane), ``slope`` and ``intercept`` (stored value -> HU); ``pixels()`` decodes its stored
    values (rows, columns) as float32."""

    source: str
    position: np.ndarray
    orientation: np.ndarray
    spacing: np.ndarray
    thickness: float
    slope: float
    intercept: float
    pixels: Callable[[], np.ndarray]


def _decoded(source: object, ds) -> np.ndarray:
    """The stored values of a dataset's pixel data, float32 (frames first for a multi-frame image)."""
    try:
        return ds.pixel_array.astype(np.float32)
    except Exception as exc:
        raise InputError(f"{source}: cannot decode pixel data ({_first_line(exc)})") from None


def _image_planes(path: Path, ds) -> list[_Plane]:
    """The image planes of one DICOM file (:class:`_Plane`)."""

    def numbers(item, name: str, source: object) -> np.ndarray:
        if item is None or item.get(name) in (None, ""):
            raise InputError(f"{source}: DICOM field {name} is missing")
        return np.asarray(item.get(name), dtype=np.float64).reshape(-1)

    def number(item, name: str, default: float) -> float:  # an empty optional field reads as absent
        value = item.get(name) if item is not None else None
        return default if value in (None, "") else float(value)

    if int(ds.get("SamplesPerPixel") or 1) != 1:
        raise InputError(f"{path}: colour pixels ({ds.get('PhotometricInterpretation', 'colour')}) are no CT's")
    frames = int(ds.get("NumberOfFrames") or 1)
    if "PerFrameFunctionalGroupsSequence" not in ds:
        if frames > 1:
            kind = getattr(ds.get("SOPClassUID"), "name", "unknown kind")
            raise InputError(f"{path}: a multi-frame DICOM image ({frames} frames, {kind}) without a plane "
                             "position per frame is no CT series; give a CT series or an enhanced CT image")
        thickness = number(ds, "SpacingBetweenSlices", number(ds, "SliceThickness", 1.0))
        return [_Plane(str(path), numbers(ds, "ImagePositionPatient", path), numbers(ds, "ImageOrientationPatient", path),
                       numbers(ds, "PixelSpacing", path), thickness, number(ds, "RescaleSlope", 1.0),
                       number(ds, "RescaleIntercept", 0.0), lambda: _decoded(path, ds))]
    # an enhanced multi-frame image: each functional group macro is in the frame's own group or in the shared one
    shared = ds.get("SharedFunctionalGroupsSequence")
    shared = shared[0] if shared else None
    per_frame = ds.PerFrameFunctionalGroupsSequence
    if len(per_frame) != frames:
        raise InputError(f"{path}: {len(per_frame)} per-frame functional groups for {frames} frames")
    stack: list[np.ndarray] = []

    def frame_pixels(k: int) -> np.ndarray:
        if not stack:  # decoded once for all frames
            stack.append(_decoded(path, ds).reshape(frames, int(ds.Rows), int(ds.Columns)))
        return stack[0][k]

    def macro(group, name: str):
        for g in (group, shared):
            if g is not None and g.get(name):
                return g.get(name)[0]
        return None

    planes = []
    for k, group in enumerate(per_frame):
        source = f"{path} frame {k + 1}"
        measures = macro(group, "PixelMeasuresSequence")
        rescale = macro(group, "PixelValueTransformationSequence")
        planes.append(_Plane(
            source, numbers(macro(group, "PlanePositionSequence"), "ImagePositionPatient", source),
            numbers(macro(group, "PlaneOrientationSequence"), "ImageOrientationPatient", source),
            numbers(measures, "PixelSpacing", source),
            number(measures, "SpacingBetweenSlices", number(measures, "SliceThickness", 1.0)),
            number(rescale, "RescaleSlope", 1.0), number(rescale, "RescaleIntercept", 0.0),
            lambda k=k: frame_pixels(k)))
    return planes


def dicom_datasets(path: Path, pixels: bool):
    """``(file, dataset)`` of every DICOM file of a folder (sorted by name) or of one file.

    Files pydicom cannot read (DICOMDIR notes, text files...) are skipped, as a series reader must.
    ``pixels=False`` stops before the pixel data (headers only).
    """
    import pydicom

    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    for f in files:
        try:
            yield f, pydicom.dcmread(f, stop_before_pixels=not pixels)
        except Exception:
            continue  # not a DICOM file: ignore it


_BOX = re.compile(r"^(builtin:[^\[\]]+)\[\s*(\d+)\s*:\s*(\d+)\s*,\s*(\d+)\s*:\s*(\d+)\s*,\s*(\d+)\s*:\s*(\d+)\s*\]$")


def split_voxel_box(source: str | Path) -> tuple[str, tuple[tuple[int, int, int], tuple[int, int, int]] | None]:
    """``"builtin:NAME[i0:i1,j0:j1,k0:k1]"`` -> ``("builtin:NAME", ((i0, j0, k0), (i1, j1, k1)))``;
    any other source -> ``(source, None)``."""
    m = _BOX.match(str(source))
    if m is None:
        return str(source), None
    v = [int(x) for x in m.groups()[1:]]
    return m.group(1), ((v[0], v[2], v[4]), (v[1], v[3], v[5]))


def source_path(source: str | Path) -> Path:
    """The file or folder of a volume source: a path, or the installed file of a ``builtin:`` name."""
    source_str = split_voxel_box(source)[0]
    if source_str == TIGRE_HEAD:
        return tigre_tarball()
    return resolve_builtin(source_str) if source_str.startswith("builtin:") else Path(source_str)


def peek_voxels(source: str | Path) -> int | None:
    """Voxel count of a volume from its headers only (NIfTI, NRRD, DICOM), or None when that needs a full read."""
    name, box = split_voxel_box(source)
    if box is not None:
        return int(np.prod(np.subtract(box[1], box[0]).clip(0)))
    if head_phantom_seed(name) is not None:
        from ddsa_sim.volumes.head_phantom import SHAPE  # scipy-heavy: imported only when used

        return int(np.prod(SHAPE))
    path = source_path(source)
    if not path.exists():
        raise InputError(f"{source}: no such file or folder")
    if path.is_file() and path.name.lower().endswith((".nii", ".nii.gz")):
        try:
            return int(np.prod(_import_nibabel().load(str(path)).shape[:3]))
        except Exception as exc:
            raise InputError(f"{path}: cannot read NIfTI header ({exc.__class__.__name__}: {_first_line(exc)})") from None
    if path.is_file() and path.suffix.lower() in (".nrrd", ".nhdr"):
        import nrrd

        try:
            return int(np.prod(nrrd.read_header(str(path))["sizes"]))
        except Exception as exc:
            raise InputError(f"{path}: cannot read NRRD header ({exc.__class__.__name__}: {_first_line(exc)})") from None
    if path.is_dir() or path.suffix.lower() in (".dcm", ".ima"):
        total = sum(int(ds.Rows) * int(ds.Columns) * int(ds.get("NumberOfFrames", 1) or 1)
                    for _, ds in dicom_datasets(path, pixels=False) if "Rows" in ds and "Columns" in ds)
        return total or None
    return None


def _refuse_huge(source: str, n_voxels: int, max_voxels: int) -> None:
    if n_voxels > max_voxels:
        gib = n_voxels * 5 / 2**30
        raise InputError(f"{source}: CT has {n_voxels:,} voxels (about {gib:.1f} GiB as float32 + labels), above "
                         f"max_ct_voxels={max_voxels:,}; crop or resample it, or raise max_ct_voxels")


def read_ct_with_labels(ct_source: str, labels_source: str | None = None, max_voxels: int | None = None,
                        labels_field: str = "labels") -> tuple[Volume, Volume | None]:
    """Read a CT (HU, float32) and its label map (uint8, or uint16 above 255 labels) on the CT grid.

    Parameters
    ----------
    ct_source, labels_source : str
        Paths (NIfTI, DICOM) or ``builtin:`` names.
    max_voxels : int, optional
        Refuse larger CTs, from the header before the voxels are read where the format allows.
    labels_field : str
        Option / config field of the label map, named in error messages.

    Raises
    ------
    InputError
        Unreadable file, not a CT, label map on another grid (shape or affine), too many voxels.
    """
    if max_voxels is not None:
        n = peek_voxels(ct_source)
        if n is not None:
            _refuse_huge(ct_source, n, max_voxels)
    ct = read_ct(ct_source)
    if max_voxels is not None:
        _refuse_huge(ct_source, int(ct.data.size), max_voxels)
    if ct.data.dtype != np.float32:
        ct = ct.with_data(ct.data.astype(np.float32))
    if labels_source is None:
        return ct, None
    labels = read_volume(labels_source)
    if labels.shape != ct.shape or not np.allclose(labels.affine, ct.affine, atol=1e-3):
        raise InputError(f"{labels_field}: {labels_source} grid {labels.shape} differs from the CT grid {ct.shape}")
    top = float(labels.data.max()) if labels.data.size else 0.0
    return ct, labels.with_data(np.rint(labels.data).astype(np.uint8 if top <= 255 else np.uint16))


def _read_file(path: Path) -> Volume:
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.is_dir() or path.suffix.lower() in (".dcm", ".ima") or _is_dicom(path):
        return read_dicom_series(path)
    if path.name.lower().endswith((".nii", ".nii.gz")):
        return read_nifti(path)
    if path.suffix.lower() in (".nrrd", ".nhdr"):
        return read_nrrd(path)
    if is_tarball(path):
        return read_tigre_head(path)
    raise InputError(f"{path}: unknown volume format (expected .nii, .nii.gz, .nrrd, .nhdr, a DICOM file or "
                     "folder, or a pytigre source tarball)")


def read_volume(source: str | Path) -> Volume:
    """Read a volume from a path (NIfTI or NRRD file, DICOM file or folder, a pytigre source tarball: its head
    phantom, :mod:`ddsa_sim.volumes.tigre_head`) or a ``builtin:`` name (``builtin:head-phantom-<seed>``
    is built, :mod:`ddsa_sim.volumes.head_phantom`)."""
    source_str = str(source)
    name, box = split_voxel_box(source_str)
    seed = head_phantom_seed(name)
    if seed is not None:
        from ddsa_sim.volumes.head_phantom import head_phantom  # scipy-heavy: imported only when used

        vol = head_phantom(seed)
    else:
        vol = _read_file(source_path(source_str))
    if box is not None:
        lo, hi = box
        if any(a >= b for a, b in zip(lo, hi)) or any(b > n for b, n in zip(hi, vol.shape)):
            raise InputError(f"{source_str}: voxel box {list(lo)}..{list(hi)} is empty or outside the volume's "
                             f"shape {tuple(vol.shape)}")
        vol = vol.crop(lo, hi)
    vol.name = source_str
    return vol


def read_ct(source: str | Path) -> Volume:
    """Read a CT in Hounsfield units and check that it looks like one.

    Raises
    ------
    InputError
        If the file is missing or unreadable, is one slice, has NaN voxels, or its values are not plausibly HU
        (e.g. an MRI: nothing near air at -1000 HU).
    """
    vol = read_volume(source)
    check_ct(vol)
    return vol


def check_ct(vol: Volume) -> None:
    """Refuse volumes that cannot be a CT in HU (one slice, NaN voxels, no air-like voxel, absurd range)."""
    data = vol.data
    if min(data.shape) < 2:
        raise InputError(f"{vol.name}: one slice ({'x'.join(map(str, data.shape))} voxels) is an image, not a CT "
                         "volume; give the whole series")
    if not np.all(np.isfinite(data)):
        n = int(np.size(data) - np.count_nonzero(np.isfinite(data)))
        raise InputError(f"{vol.name}: {n} voxel(s) are NaN or infinite")
    lo, hi = float(data.min()), float(data.max())
    frac_air = float(np.mean(data < -200.0))
    if frac_air < 1e-4 or lo < -10000 or hi > 40000:
        raise InputError(f"{vol.name}: does not look like a CT in Hounsfield units (range {lo:.0f}..{hi:.0f}, "
                         f"{100 * frac_air:.3f}% of voxels below -200 HU); is it an MRI or a density map?")
    if hi - lo < 100:
        warnings.warn(f"{vol.name}: nearly constant CT (range {lo:.0f}..{hi:.0f} HU)", stacklevel=2)


def _is_dicom(path: Path) -> bool:
    if not path.is_file():
        return False
    with open(path, "rb") as fh:
        head = fh.read(132)
    return len(head) == 132 and head[128:132] == b"DICM"
