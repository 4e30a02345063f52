"""``deepdrr.Volume`` and tools (``Mesh``, ``KWire``): a density volume with materials, posed in a world.

A DeepDRR volume has two transforms: ``anatomical_from_IJK`` (voxel index -> the scanner's
anatomical frame: RAS for NIfTI, LPS for DICOM, as DeepDRR reads them) and ``world_from_anatomical``
(where the patient lies in the room; identity until ``orient_patient`` / ``place_center``). Voxels are
read by :mod:`ddsa_sim.volumes` (LPS) and turned into density and materials exactly as the native
:meth:`ddsa_sim.projector.ProjectorVolume.from_ct` does.

Tools (``Mesh.from_stl``, ``Mesh.from_vtp``, ``Mesh.from_mask``, ``KWire``) are volumes of one
material on their own voxel grid; unlike DeepDRR's, they displace the anatomy they occupy
(:meth:`ddsa_sim.projector.ProjectorVolume.tool`).

Not provided (DeepDRR 1.2.2 has them): ``Volume.from_nrrd``, ``from_meshes``, ``interpolate``,
``enabled`` / ``set_enabled``, ``align`` (a :class:`KWire` has its own), ``LPS_from_IJK`` / ``RAS_from_IJK``.
"""

from __future__ import annotations

import warnings
from enum import Enum
from pathlib import Path

import killeengeo as kg
import numpy as np

from ddsa_sim import InputError
from ddsa_sim.physics.attenuation import get_material
from ddsa_sim.projector import ProjectorVolume
from ddsa_sim.volumes import (
    check_ct,
    hu_to_density,
    material_labels,
    read_dicom_series,
    read_nifti,
    read_nrrd,
    read_volume,
    segment_by_threshold,
)
from ddsa_sim.volumes.readers import dicom_datasets

__all__ = ["KWire", "Mesh", "PatientPose", "Volume"]

#: orient_patient: RAS_from_world rotations (rows: R, A, S in world x, y, z) of DeepDRR 1.2, for
#: (head_first, supine). Head first + supine: right = +x, inferior = +y, anterior = +z.
_RAS_FROM_WORLD = {
    (True, True): [[1, 0, 0], [0, 0, 1], [0, -1, 0]],
    (True, False): [[-1, 0, 0], [0, 0, -1], [0, -1, 0]],
    (False, True): [[-1, 0, 0], [0, 0, 1], [0, 1, 0]],
    (False, False): [[1, 0, 0], [0, 0, -1], [0, 1, 0]],
}
_LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


class PatientPose(str, Enum):
    """DICOM patient positions (DeepDRR's ``deepdrr.PatientPose``; values are the names, e.g. ``"HFS"``).

    :meth:`Volume.position_patient` lays out ``HFS``, ``HFP``, ``FFS`` and ``FFP``.
    """

    HFP = "HFP"
    HFS = "HFS"
    HFDR = "HFDR"
    HFDL = "HFDL"
    FFDR = "FFDR"
    FFDL = "FFDL"
    FFP = "FFP"
    FFS = "FFS"
    LFP = "LFP"
    LFS = "LFS"
    RFP = "RFP"
    RFS = "RFS"
    AFDR = "AFDR"
    AFDL = "AFDL"
    PFDR = "PFDR"
    PFDL = "PFDL"


class Volume:
    """A volume of densities (g/cm^3) and material masks, placed in the world (DeepDRR ``Volume``).

    Parameters
    ----------
    data : float (I, J, K)
        Density, g/cm^3.
    materials : dict of str -> bool (I, J, K), or (dict of str -> int, int (I, J, K))
        Mutually exclusive masks covering every voxel, or DeepDRR's other form: names -> label and
        the label volume. Names of :mod:`ddsa_sim.physics.attenuation` (``"air"``, ``"soft tissue"``,
        ``"bone"``, ``"iodine"``, ``"iodinated blood:<mgI/ml>"``...).
    anatomical_from_IJK, world_from_anatomical : killeengeo.FrameTransform or 4x4 array
        Voxel index -> anatomical mm, anatomical -> world mm (default identity).
    anatomical_coordinate_system : {"RAS", "LPS", None}
    anatomical_from_ijk : killeengeo.FrameTransform or 4x4 array, optional
        DeepDRR's other spelling of ``anatomical_from_IJK`` (wins over it, as in DeepDRR).
    """

    def __init__(self, data: np.ndarray, materials: dict[str, np.ndarray] | tuple[dict[str, int], np.ndarray],
                 anatomical_from_IJK=None, world_from_anatomical=None, anatomical_coordinate_system: str | None = None,
                 anatomical_from_ijk=None) -> None:
        data = np.asarray(data, dtype=np.float32)
        if data.ndim != 3:
            raise InputError(f"Volume data must be 3D, got shape {data.shape}")
        if anatomical_coordinate_system not in ("RAS", "LPS", None):
            raise InputError(f"anatomical_coordinate_system must be 'RAS', 'LPS' or None, got {anatomical_coordinate_system!r}")
        self.data = data
        self.materials = _material_masks(materials, data.shape)
        self.anatomical_from_IJK = kg.frame_transform(anatomical_from_IJK if anatomical_from_ijk is None
                                                      else anatomical_from_ijk)
        self.world_from_anatomical = kg.frame_transform(world_from_anatomical)
        self.anatomical_coordinate_system = anatomical_coordinate_system
        material_labels(self.materials)  # masks must be exclusive and cover the grid

    @classmethod
    def from_parameters(cls, data: np.ndarray, materials, origin, spacing=(1.0, 1.0, 1.0),
                        anatomical_coordinate_system: str | None = None, world_from_anatomical=None) -> "Volume":
        """DeepDRR 1.2's ``from_parameters``: densities (g/cm^3) and materials on a grid given by its
        ``origin`` (anatomical mm, voxel (0, 0, 0)) and ``spacing`` (mm per i, j, k).

        As in DeepDRR only ``anatomical_coordinate_system="LPS"`` is defined (DeepDRR raises
        NotImplementedError for None and "RAS"; this raises InputError), with DeepDRR's axes: i along
        L, j along -S (inferior), k along P.
        """
        return cls(data, materials, _lps_from_ijk(origin, spacing, anatomical_coordinate_system),
                   world_from_anatomical, "LPS")

    # ------------------------------------------------------------------ readers
    @classmethod
    def from_hu(cls, hu: np.ndarray, *args, **kwargs) -> "Volume":
        """A volume from Hounsfield units, in either of two call shapes told apart by the second argument.

        * ``from_hu(hu, anatomical_from_IJK, world_from_anatomical=None, use_thresholding=True,
          materials=None, anatomical_coordinate_system=None)``: a 4x4 voxel -> anatomical affine (mm)
          (or ``killeengeo.FrameTransform``).
        * DeepDRR 1.2's ``from_hu(hu, origin, use_thresholding=True, spacing=(1, 1, 1),
          anatomical_coordinate_system=None, world_from_anatomical=None)``: a point (3 values, mm)
          or the keyword ``origin``. As in DeepDRR, only ``anatomical_coordinate_system="LPS"`` is
          defined (DeepDRR raises NotImplementedError for None and "RAS"; this raises InputError),
          with DeepDRR's axes: voxel index i along L, j along -S (inferior), k along P, steps
          ``spacing`` (mm, per i, j, k) from ``origin`` (LPS mm) at voxel (0, 0, 0).

        Densities (g/cm^3) from DeepDRR's HU -> density fit; materials by thresholds (air <= -800 HU <
        soft tissue <= 350 HU < bone) unless ``materials`` are given (first form only).
        """
        second = args[0] if args else kwargs.get("anatomical_from_IJK", kwargs.get("origin"))
        if isinstance(second, kg.FrameTransform) or np.shape(second) == (4, 4):
            return cls._from_hu_affine(hu, *args, **kwargs)
        if isinstance(second, kg.Point3D) or np.shape(second) == (3,):
            return cls._from_hu_origin(hu, *args, **kwargs)
        raise InputError("Volume.from_hu(hu, ...): give the voxel-to-anatomical 4x4 affine or, as DeepDRR 1.2, "
                         f"an origin (x, y, z) in mm; got {second!r}")

    @classmethod
    def _from_hu_affine(cls, hu: np.ndarray, anatomical_from_IJK, world_from_anatomical=None,
                        use_thresholding: bool = True, materials: dict[str, np.ndarray] | None = None,
                        anatomical_coordinate_system: str | None = None) -> "Volume":
        if not isinstance(use_thresholding, (bool, np.bool_)):
            raise InputError(f"Volume.from_hu: use_thresholding must be True or False, got {use_thresholding!r}")
        hu = np.asarray(hu, dtype=np.float32)
        if materials is None:
            if not use_thresholding:
                raise InputError("use_thresholding=False selects DeepDRR's segmentation network, which ddsa-sim "
                                 "does not ship; pass materials={name: mask} or use_thresholding=True")
            materials = segment_by_threshold(hu)
        return cls(hu_to_density(hu), materials, anatomical_from_IJK, world_from_anatomical,
                   anatomical_coordinate_system)

    @classmethod
    def _from_hu_origin(cls, hu: np.ndarray, origin, use_thresholding: bool = True, spacing=(1.0, 1.0, 1.0),
                        anatomical_coordinate_system: str | None = None, world_from_anatomical=None) -> "Volume":
        lps_from_ijk = _lps_from_ijk(origin, spacing, anatomical_coordinate_system)
        return cls._from_hu_affine(hu, lps_from_ijk, world_from_anatomical, use_thresholding, None, "LPS")

    @classmethod
    def from_nifti(cls, path: str | Path, world_from_anatomical=None, use_thresholding: bool = True,
                   use_cached: bool = True, save_cache: bool = False, cache_dir: str | Path | None = None,
                   materials: dict[str, np.ndarray] | None = None) -> "Volume":
        """A CT (HU) from a NIfTI file; the anatomical frame is the file's RAS, as in DeepDRR.

        Like DeepDRR it loads any array: one that does not look like a CT in HU (no air, say a
        tight crop) only warns. ``use_cached``, ``save_cache`` and ``cache_dir`` are accepted and
        unused: thresholding is computed on load in a fraction of a second, nothing is cached.
        """
        if str(path).startswith("builtin:"):
            ct = read_volume(path)
        else:
            path = Path(path)
            if not path.exists():
                raise InputError(f"{path}: no such file or folder")
            if path.is_dir():
                raise InputError(f"Volume.from_nifti: path {path} is a folder, not a NIfTI file (a DICOM series: "
                                 "Volume.from_dicom)")
            ct = read_nifti(path)
        try:
            check_ct(ct)
        except InputError as exc:  # DeepDRR loads any array; say what looks wrong, do not refuse it
            warnings.warn(str(exc), stacklevel=2)
        ras_from_ijk = np.linalg.inv(_LPS_FROM_RAS) @ ct.affine  # our readers give LPS
        return cls._from_hu_affine(ct.data, ras_from_ijk, world_from_anatomical, use_thresholding, materials, "RAS")

    @classmethod
    def from_dicom(cls, path: str | Path, use_thresholding: bool = True, world_from_anatomical=None,
                   use_cached: bool = True, cache_dir: str | Path | None = None,
                   materials: dict[str, np.ndarray] | None = None) -> "Volume":
        """A CT (HU) from a DICOM file or series folder, anatomical frame LPS.

        A multi-frame file (an enhanced CT, what DeepDRR 1.2 reads) is read alone, whatever else its
        folder holds. Beyond DeepDRR: a folder is read as one series, and a single-frame slice file
        names its folder's series. ``use_cached`` and ``cache_dir`` are unused.
        """
        path = Path(path)
        if not path.exists():  # not the parent folder's series
            raise InputError(f"{path}: no such file or folder")
        ct = read_dicom_series(path.parent if _is_single_frame(path) else path)
        return cls._from_hu_affine(ct.data, ct.affine, world_from_anatomical, use_thresholding, materials, "LPS")

    @classmethod
    def from_nrrd(cls, path: str | Path, world_from_anatomical=None, use_thresholding: bool = True,
                  use_cached: bool = True, cache_dir: str | Path | None = None,
                  materials: dict[str, np.ndarray] | None = None) -> "Volume":
        """A CT (HU) from a NRRD file (3D Slicer's), anatomical frame the file's ``space`` (RAS or LPS), as in
        DeepDRR; an oblique grid is placed by its ``space directions`` (DeepDRR takes their matrix transposed,
        which only an axis-aligned grid survives). ``use_cached`` and ``cache_dir`` are unused."""
        import nrrd

        path = Path(path)
        if not path.is_file():
            raise InputError(f"{path}: no such file")
        ct = read_nrrd(path)
        try:
            check_ct(ct)
        except InputError as exc:  # DeepDRR loads any array; say what looks wrong, do not refuse it
            warnings.warn(str(exc), stacklevel=2)
        space = str(nrrd.read_header(str(path)).get("space", "")).lower()
        if space in ("ras", "right-anterior-superior"):
            return cls._from_hu_affine(ct.data, _LPS_FROM_RAS @ ct.affine, world_from_anatomical, use_thresholding,
                                       materials, "RAS")
        return cls._from_hu_affine(ct.data, ct.affine, world_from_anatomical, use_thresholding, materials, "LPS")

    def interpolate(self, *x, method: str = "linear") -> float | np.ndarray:
        """The volume's data (density, g/cm^3) at world points ``x`` (mm), ``"linear"`` or ``"nearest"`` between
        voxel centres, 0 outside the grid, as DeepDRR's (scipy's ``RegularGridInterpolator``): a float for one point,
        an array for several."""
        from scipy.interpolate import RegularGridInterpolator

        points = np.array([_apply(self.ijk_from_world, np.asarray(p, dtype=np.float64)) for p in x])
        grid = RegularGridInterpolator(tuple(np.arange(n, dtype=np.float64) for n in self.shape), self.data,
                                       bounds_error=False, fill_value=0.0)
        out = grid(points, method=method)
        return float(out[0]) if len(out) == 1 else out

    # ------------------------------------------------------------------ frames
    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.data.shape)  # type: ignore[return-value]

    @property
    def spacing(self) -> kg.Vector3D:
        """Voxel edge lengths (mm)."""
        return kg.vector(np.linalg.norm(np.asarray(self.anatomical_from_IJK)[:3, :3], axis=0))

    @property
    def world_from_ijk(self) -> kg.FrameTransform:
        return self.world_from_anatomical @ self.anatomical_from_IJK

    world_from_IJK = world_from_ijk

    @property
    def ijk_from_world(self) -> kg.FrameTransform:
        return self.world_from_ijk.inverse()

    IJK_from_world = ijk_from_world

    @property
    def anatomical_from_world(self) -> kg.FrameTransform:
        """World mm -> anatomical mm (the inverse of ``world_from_anatomical``)."""
        return self.world_from_anatomical.inverse()

    @property
    def anatomical_from_ijk(self) -> kg.FrameTransform:
        """DeepDRR's other spelling of ``anatomical_from_IJK`` (settable)."""
        return self.anatomical_from_IJK

    @anatomical_from_ijk.setter
    def anatomical_from_ijk(self, value) -> None:
        self.anatomical_from_IJK = kg.frame_transform(value)

    @property
    def ijk_from_anatomical(self) -> kg.FrameTransform:
        return self.anatomical_from_IJK.inverse()

    IJK_from_anatomical = ijk_from_anatomical

    @property
    def origin(self) -> kg.Point3D:
        """Voxel (0, 0, 0)'s centre in anatomical mm (DeepDRR's ``origin``)."""
        return self.anatomical_from_IJK @ kg.point(0.0, 0.0, 0.0)

    origin_in_anatomical = origin

    @property
    def origin_in_world(self) -> kg.Point3D:
        """Voxel (0, 0, 0)'s centre in world mm."""
        return self.world_from_ijk @ kg.point(0.0, 0.0, 0.0)

    def get_bounding_box_in_world(self) -> tuple[kg.Point3D, kg.Point3D]:
        """The world box (min corner, max corner; mm) around the volume's 8 outer voxel corners, as DeepDRR
        (voxel centres at integer indices, so the grid spans -0.5 .. shape - 0.5 in index units)."""
        hi = np.array(self.shape, dtype=np.float64) - 0.5
        corners = np.array([[x, y, z, 1.0] for x in (-0.5, hi[0]) for y in (-0.5, hi[1]) for z in (-0.5, hi[2])])
        world = (np.asarray(self.world_from_ijk, dtype=np.float64) @ corners.T)[:3].T
        return kg.point(*world.min(axis=0)), kg.point(*world.max(axis=0))

    def get_center(self) -> kg.Point3D:
        """The centre in anatomical mm, as DeepDRR defines it: voxel index ``shape / 2`` (half a voxel
        past the middle voxel's centre ``(shape - 1) / 2``)."""
        return self.anatomical_from_IJK @ kg.point(np.array(self.shape, dtype=np.float64) / 2)

    @property
    def center_in_world(self) -> kg.Point3D:
        return self.world_from_anatomical @ self.get_center()

    def place(self, point_in_anatomical, desired_point_in_world) -> None:
        """Translate (keeping the rotation) so that an anatomical point lies at a world point (mm)."""
        p_anatomical = _xyz(point_in_anatomical, "Volume.place", "point_in_anatomical")
        p_world = _xyz(desired_point_in_world, "Volume.place", "desired_point_in_world")
        r = np.asarray(self.world_from_anatomical, dtype=np.float64)[:3, :3]
        self.world_from_anatomical = kg.FrameTransform.from_rt(rotation=r, translation=p_world - r @ p_anatomical)

    def place_center(self, x) -> None:
        """Translate the volume so that its centre (:meth:`get_center`) lies at world point ``x`` (mm)."""
        self.place(self.get_center(), _xyz(x, "Volume.place_center", "x"))

    translate_center_to = place_center

    def translate(self, t) -> "Volume":
        """Move the volume by world vector ``t`` (mm)."""
        shift = kg.FrameTransform.from_translation(_xyz(t, "Volume.translate", "t"))
        self.world_from_anatomical = shift @ self.world_from_anatomical
        return self

    def rotate(self, rotation, center=None) -> "Volume":
        """Rotate the volume in the world about ``center`` (DeepDRR 1.2's ``rotate``).

        Parameters
        ----------
        rotation : scipy Rotation, killeengeo.FrameTransform or vector (x, y, z)
            A world-frame rotation; a vector is a rotation vector (axis times angle in radians).
            A FrameTransform is applied as it is (its translation too), as in DeepDRR.
        center : point (x, y, z), optional
            Fixed point, world mm; default :attr:`center_in_world`.
        """
        from scipy.spatial.transform import Rotation

        if isinstance(rotation, kg.FrameTransform):
            turn = np.asarray(rotation, dtype=np.float64)
        else:
            rot = rotation if isinstance(rotation, Rotation) else Rotation.from_rotvec(np.asarray(kg.vector(rotation))[:3])
            turn = np.eye(4)
            turn[:3, :3] = rot.as_matrix().reshape(3, 3)
        c = _xyz(self.center_in_world if center is None else center, "Volume.rotate", "center")
        to_c, from_c = np.eye(4), np.eye(4)
        to_c[:3, 3], from_c[:3, 3] = c, -c
        self.world_from_anatomical = kg.FrameTransform(to_c @ turn @ from_c @ np.asarray(self.world_from_anatomical))
        return self

    def copy_pose(self, other: "Volume") -> None:
        """Give this volume ``other``'s ``world_from_anatomical`` (a copy: later moves of either do not
        move the other). Two volumes with the same voxels and ``anatomical_from_IJK`` then coincide."""
        self.world_from_anatomical = kg.FrameTransform(np.array(other.world_from_anatomical, dtype=np.float64))

    def orient_patient(self, head_first: bool = True, supine: bool = True, world_from_device=None) -> None:
        """Lie the patient on the table as DeepDRR 1.2 does (its Loop-X convention): head first and
        supine put the patient's right along world +x, inferior along +y, anterior along +z.

        Only ``world_from_anatomical`` changes: its rotation becomes DeepDRR's (its translation is
        kept); ``anatomical_from_IJK`` and the anatomical frame stay, so anatomical landmarks still
        :meth:`place` right. As in DeepDRR, the rotation assumes RAS anatomical coordinates and is
        applied to the volume's own: an LPS volume (``from_dicom``, ``from_hu``'s origin form) lies
        with its left along +x and posterior along +z, where DeepDRR puts it.
        """
        world_from_ras = np.array(_RAS_FROM_WORLD[(bool(head_first), bool(supine))], dtype=np.float64).T
        placed = kg.FrameTransform.from_rt(rotation=world_from_ras,
                                           translation=np.asarray(self.world_from_anatomical)[:3, 3])
        self.world_from_anatomical = placed if world_from_device is None else kg.frame_transform(world_from_device) @ placed

    def position_patient(self, pose: "PatientPose | str") -> None:
        """DeepDRR 1.2's ``position_patient``: :meth:`orient_patient` for a DICOM patient position.

        ``pose`` is a :class:`PatientPose` (or its name): ``HFS``, ``HFP``, ``FFS``, ``FFP`` (head or
        feet first, supine or prone). The other DICOM positions (decubitus...) raise InputError, as
        DeepDRR raises NotImplementedError for them.
        """
        name = pose.value if isinstance(pose, PatientPose) else str(pose)
        orientation = {"HFS": (True, True), "HFP": (True, False), "FFS": (False, True), "FFP": (False, False)}
        if name not in orientation:
            raise InputError(f"position_patient: {name!r} is not supported; give HFS, HFP, FFS or FFP")
        self.orient_patient(*orientation[name])

    def supine(self) -> None:
        """DeepDRR's ``supine``/``faceup``: anterior +z, inferior +x, left +y (rotation only)."""
        self._rotate_ras(_rotation_xz(90, -90))

    def prone(self) -> None:
        """DeepDRR's ``prone``/``facedown``: posterior +z, inferior +x, right +y (rotation only)."""
        self._rotate_ras(_rotation_xz(-90, 90))

    faceup = supine
    facedown = prone

    def _rotate_ras(self, world_from_ras: np.ndarray) -> None:
        if self.anatomical_coordinate_system != "RAS":
            raise InputError("supine()/prone() need an RAS volume (from_nifti); use orient_patient()")
        self.world_from_anatomical = kg.FrameTransform.from_rt(rotation=world_from_ras)

    # ------------------------------------------------------------------ projector
    def projector_volume(self, name: str) -> ProjectorVolume:
        """This volume for :class:`ddsa_sim.projector.Projector`, placed by ``world_from_ijk``."""
        labels, names = material_labels(self.materials)
        return ProjectorVolume(name, self.data, labels, names, np.asarray(self.world_from_ijk))


def _rotation_xz(x_deg: float, z_deg: float) -> np.ndarray:
    """3x3 rotation ``Rotation.from_euler("xz", [x, z], degrees=True)`` (DeepDRR's supine / prone)."""
    from scipy.spatial.transform import Rotation

    return Rotation.from_euler("xz", [x_deg, z_deg], degrees=True).as_matrix()


class Mesh(Volume):
    """A tool or implant of one material, voxelized on its own grid, that displaces the anatomy.

    Build with :meth:`from_stl`, :meth:`from_vtp` (closed surfaces, mm) or :meth:`from_mask` (a
    binary or fractional volume). The mesh's own coordinates are its anatomical frame; pose it with
    ``world_from_anatomical``, :meth:`place_center` or :meth:`translate`. Where it sits it pushes
    aside ``displaced_density`` g/cm^3 of ``displaced_material`` (0: lay it over the anatomy).
    ``tag`` is DeepDRR's material tag, kept as :attr:`tag` (DeepDRR's ``project_seg``, which reads it,
    is not provided).
    """

    def __init__(self, occupancy: np.ndarray, anatomical_from_IJK, material: str = "titanium",
                 density: float | None = None, displaced_material: str = "soft tissue",
                 displaced_density: float = 1.03, world_from_anatomical=None, tag: str | None = None) -> None:
        occupancy = np.asarray(occupancy, dtype=np.float32)
        super().__init__(occupancy, {material: np.ones(occupancy.shape, bool)}, anatomical_from_IJK,
                         world_from_anatomical)
        self.occupancy = occupancy
        self.material = material
        self.density = float(get_material(material).density_g_per_cc if density is None else density)
        self.displaced_material = displaced_material
        self.displaced_density = float(displaced_density)
        self.tag = tag
        self.data = self.projector_volume("tool").density_g_per_cc  # validates the tool's values now

    @classmethod
    def from_mask(cls, occupancy: np.ndarray, anatomical_from_IJK, **kwargs) -> "Mesh":
        """A tool from a voxel occupancy in [0, 1] (binary mask or partial volume); ``kwargs`` as the
        constructor's (``material``, ``density``, ``displaced_material``, ``displaced_density``)."""
        return cls(occupancy, anatomical_from_IJK, **kwargs)

    @classmethod
    def from_stl(cls, path: str | Path, material: str = "iron", convert_to_RAS: bool = False,
                 tag: str | None = None, density: float | None = None, spacing_mm: float = 0.1, **kwargs) -> "Mesh":
        """A tool from a closed STL surface (mm), voxelized at ``spacing_mm`` (DeepDRR 1.2's ``from_stl``).

        Parameters
        ----------
        path : str or Path
            One STL file (DeepDRR's list of files, one material each, is refused).
        material : str
            Material name; default ``"iron"``, DeepDRR's. ``density`` (g/cm^3) defaults to ours for it.
        convert_to_RAS : bool
            The file is in LPS: flip x and y into RAS, as DeepDRR does.
        tag : str, optional
            DeepDRR's material tag, kept as :attr:`tag`.
        spacing_mm : float
            Voxel edge, mm.
        **kwargs
            The constructor's (``world_from_anatomical``, ``displaced_material``, ``displaced_density``).
        """
        surface = _read_mesh(path, ".stl", convert_to_RAS)
        return cls.from_surface(surface, _material_name(material, "from_stl"), density, spacing_mm, tag=tag, **kwargs)

    @classmethod
    def from_vtp(cls, path: str | Path, material: str = "iron", convert_to_RAS: bool = False,
                 tag: str | None = None, density: float | None = None, spacing_mm: float = 0.1, **kwargs) -> "Mesh":
        """A tool from a closed VTK PolyData surface (.vtp, mm): arguments as :meth:`from_stl`'s."""
        surface = _read_mesh(path, ".vtp", convert_to_RAS)
        return cls.from_surface(surface, _material_name(material, "from_vtp"), density, spacing_mm, tag=tag, **kwargs)

    @classmethod
    def from_surface(cls, surface, material: str = "titanium", density: float | None = None,
                     spacing_mm: float = 0.1, supersample: int = 3, **kwargs) -> "Mesh":
        """A tool from a closed pyvista surface (mm): the fraction of each voxel inside it, from
        ``supersample^3`` points per voxel."""
        occupancy, affine = voxelize_surface(surface, spacing_mm, supersample)
        return cls(occupancy, affine, material, density, **kwargs)

    def projector_volume(self, name: str) -> ProjectorVolume:
        """The tool for :class:`ddsa_sim.projector.Projector` (:meth:`ProjectorVolume.tool`)."""
        return ProjectorVolume.tool(name, self.occupancy, np.asarray(self.world_from_ijk), self.material,
                                    self.density, self.displaced_material, self.displaced_density)


#: DeepDRR's example K-wire: 2 mm across, 200 mm from tip to base (``KWire.from_example`` scales both).
KWIRE_DIAMETER_MM = 2.0
KWIRE_LENGTH_MM = 200.0


class KWire(Mesh):
    """A Kirschner wire: an iron cylinder with a conical tip (DeepDRR's ``KWire``: iron, 7.5 g/cm^3).

    As DeepDRR's: the tip (the pointy end) at the anatomical origin, the base along anatomical +z
    (200 mm away for the default wire). Pose it with :meth:`align` or :meth:`orient` (or
    ``place_center``, ``world_from_anatomical``).

    Parameters
    ----------
    tip, base : point (x, y, z)
        Tip and base in anatomical mm; the other arguments are :class:`Mesh`'s.
    """

    def __init__(self, *args, tip=(0.0, 0.0, 0.0), base=(0.0, 0.0, KWIRE_LENGTH_MM), **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._tip = _xyz(tip, "KWire", "tip")
        self._base = _xyz(base, "KWire", "base")
        if np.allclose(self._tip, self._base):
            raise InputError(f"KWire: tip and base must differ, got {tip!r} and {base!r}")

    @classmethod
    def from_example(cls, diameter: float = KWIRE_DIAMETER_MM, density: float = 7.5, world_from_anatomical=None,
                     length: float | None = None, spacing_mm: float = 0.1, supersample: int = 3,
                     **kwargs) -> "KWire":
        """DeepDRR's example K-wire, made procedurally: iron at ``density`` g/cm^3, ``diameter`` mm across.

        ``length`` (mm, tip to base) defaults to DeepDRR's: its 2 mm x 200 mm wire scaled as a whole to
        ``diameter`` (200 mm at 2 mm). The tip is a 3 mm trocar-like cone. On a grid of ``spacing_mm``,
        each voxel's fraction inside the round wire comes from ``supersample^3`` points tested against
        the cylinder and cone themselves (no mesh: the default wire takes 0.1 s).
        """
        if length is None:
            length = KWIRE_LENGTH_MM * diameter / KWIRE_DIAMETER_MM
        if not (diameter > 0 and length > 3.0):
            raise InputError(f"K-wire: diameter must be > 0 and length > 3 mm, got {diameter}, {length}")
        if not spacing_mm > 0 or int(supersample) < 1:
            raise InputError(f"K-wire: spacing_mm must be > 0 and supersample >= 1, got {spacing_mm}, {supersample}")
        r, cone, ss = diameter / 2.0, 3.0, int(supersample)
        lo = np.array([-r, -r, 0.0]) - spacing_mm  # one voxel beyond the wire, as voxelize_surface
        shape = np.ceil((np.array([r, r, length]) + spacing_mm - lo) / spacing_mm).astype(int) + 1
        sub = (np.arange(ss) + 0.5) / ss - 0.5  # sub-point offsets within a voxel (voxel units)
        x, y, z = ((np.arange(n)[:, None] + sub[None, :]).ravel() * spacing_mm + lo[k] for k, n in enumerate(shape))
        radius = np.where(z >= cone, r, r * z / cone)  # the cone widens from the tip at z = 0
        radius = np.where((z >= 0.0) & (z <= length), radius, -1.0)
        inside = (x[:, None, None] ** 2 + y[None, :, None] ** 2) <= (radius**2 * np.sign(radius))[None, None, :]
        occupancy = inside.reshape(shape[0], ss, shape[1], ss, shape[2], ss).mean(axis=(1, 3, 5))
        affine = np.diag([spacing_mm, spacing_mm, spacing_mm, 1.0])
        affine[:3, 3] = lo
        return cls(occupancy, affine, "iron", density, world_from_anatomical=world_from_anatomical,
                   tip=(0.0, 0.0, 0.0), base=(0.0, 0.0, length), **kwargs)

    @property
    def tip_in_anatomical(self) -> kg.Point3D:
        """The tip (the pointy end), anatomical mm."""
        return kg.point(*self._tip)

    @property
    def base_in_anatomical(self) -> kg.Point3D:
        """The base, anatomical mm."""
        return kg.point(*self._base)

    @property
    def tip_in_world(self) -> kg.Point3D:
        """The tip (the pointy end), world mm."""
        return kg.point(*_apply(self.world_from_anatomical, self._tip))

    @property
    def base_in_world(self) -> kg.Point3D:
        """The base, world mm."""
        return kg.point(*_apply(self.world_from_anatomical, self._base))

    @property
    def length_in_world(self) -> float:
        """Tip to base, world mm."""
        return float(np.linalg.norm(_apply(self.world_from_anatomical, self._tip)
                                    - _apply(self.world_from_anatomical, self._base)))

    def align(self, startpoint_in_world, endpoint_in_world, progress: float = 1.0,
              distance: float | None = None) -> None:
        """Lay the wire along the line from ``startpoint_in_world`` to ``endpoint_in_world`` (world mm),
        tip towards the end point (DeepDRR's ``KWire.align``).

        The tip goes ``distance`` mm from the start point along the line (default ``progress`` times the
        start-to-end length: 0 puts the tip at the start point, 1 at the end point), the base
        :attr:`length_in_world` behind it. The wire is turned by the smallest rotation that does it.
        """
        from scipy.spatial.transform import Rotation

        start = _xyz(startpoint_in_world, "KWire.align", "startpoint_in_world")
        end = _xyz(endpoint_in_world, "KWire.align", "endpoint_in_world")
        span = float(np.linalg.norm(end - start))
        if not span > 0:
            raise InputError("KWire.align: startpoint_in_world and endpoint_in_world must differ")
        direction = (end - start) / span
        tip = start + (span * float(progress) if distance is None else float(distance)) * direction
        axis = self._tip - self._base
        turn = Rotation.align_vectors([direction], [axis])[0].as_matrix()  # the smallest turn (a half turn if opposed)
        self.world_from_anatomical = kg.FrameTransform.from_rt(rotation=turn, translation=tip - turn @ self._tip)

    def orient(self, startpoint, direction, distance: float = 0.0) -> None:
        """Point the wire along world vector ``direction`` with its tip ``distance`` mm past ``startpoint``
        (world mm) along it (DeepDRR's ``KWire.orient``)."""
        start = _xyz(startpoint, "KWire.orient", "startpoint")
        step = _xyz(direction, "KWire.orient", "direction")
        norm = float(np.linalg.norm(step))
        if not norm > 0:
            raise InputError("KWire.orient: direction must be a non-zero vector")
        self.align(start, start + step / norm, distance=distance)

    def advance(self, distance: float) -> None:
        """Push the wire ``distance`` mm forward along its axis (DeepDRR's ``KWire.advance``)."""
        tip, base = np.asarray(self.tip_in_world, np.float64), np.asarray(self.base_in_world, np.float64)
        self.align(tip, tip + (tip - base), distance=distance)

    def twist(self, angle: float, degrees: bool = True) -> None:
        """Turn the wire by ``angle`` about its axis (DeepDRR's ``KWire.twist``: about the anatomical
        base-to-tip direction through the anatomical origin, i.e. the tip)."""
        from scipy.spatial.transform import Rotation

        axis = (self._tip - self._base) / np.linalg.norm(self._tip - self._base)
        turn = np.eye(4)
        turn[:3, :3] = Rotation.from_rotvec(axis * (np.radians(angle) if degrees else angle)).as_matrix()
        self.world_from_anatomical = kg.FrameTransform(np.asarray(self.world_from_anatomical, np.float64) @ turn)


def _read_mesh(path: str | Path, suffix: str, convert_to_RAS: bool = False):
    import pyvista as pv

    if isinstance(path, (list, tuple)):
        raise InputError(f"Mesh: path must be one {suffix} file, got a list of {len(path)} (load each on its own)")
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such mesh file")
    if path.suffix.lower() != suffix:
        raise InputError(f"{path}: expected a {suffix} file")
    try:
        mesh = pv.read(path)
    except Exception as exc:  # VTK readers raise many types
        raise InputError(f"{path}: cannot read mesh ({exc.__class__.__name__}: {exc})") from None
    if mesh.n_cells == 0:
        raise InputError(f"{path}: the mesh has no faces")
    surface = mesh if isinstance(mesh, pv.PolyData) else mesh.extract_surface(algorithm="dataset_surface")
    surface = surface.triangulate()
    if convert_to_RAS:  # DeepDRR's RAS_from_LPS: x and y change sign (a half turn: faces keep their sides)
        surface = surface.copy()
        surface.points = np.asarray(surface.points) * np.array([-1.0, -1.0, 1.0], dtype=surface.points.dtype)
    return surface


def _material_name(material, method: str) -> str:
    """A material given by name (DeepDRR also takes a ``DRRMaterial`` object or a list of them)."""
    if not isinstance(material, str):
        raise InputError(f"Mesh.{method}: material must be a material name such as 'iron', got "
                         f"{type(material).__name__}")
    return material


#: Sub-points voxelized at once by :func:`voxelize_surface` (a slab of the grid): some 100 MB of work arrays.
VOXELIZE_CHUNK_POINTS = 2**22


def voxelize_surface(surface, spacing_mm: float, supersample: int = 3,
                     chunk_points: int = VOXELIZE_CHUNK_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """Fraction of each voxel inside a closed surface (mm) and the grid's voxel -> mesh-frame affine.

    The grid covers the surface's bounds plus one voxel; a voxel's fraction is the share of its
    ``supersample^3`` regularly spaced sub-points inside the surface, decided by VTK's scan conversion
    (pyvista's ``voxelize_binary_mask``, ``vtkPolyDataToImageStencil``: exact and deterministic) on the
    sub-point grid, in slabs along z of at most ``chunk_points`` sub-points, so memory stays some 100 MB
    whatever the grid (DeepDRR's 130 mm screw at 0.1 mm, 9 million voxels: seconds). (Before 2026-12-07:
    VTK's ``select_interior_points`` on every sub-point at once, 5 GiB for that screw, its answers at the
    surface depending on the batch of points.)
    """
    import pyvista as pv

    if not spacing_mm > 0 or int(supersample) < 1:
        raise InputError(f"voxelize: spacing_mm must be > 0 and supersample >= 1, got {spacing_mm}, {supersample}")
    b = np.asarray(surface.bounds, dtype=np.float64).reshape(3, 2)
    lo = b[:, 0] - spacing_mm
    shape = np.ceil((b[:, 1] + spacing_mm - lo) / spacing_mm).astype(int) + 1
    if np.prod(shape) > 5e7:
        raise InputError(f"voxelize: {tuple(shape)} voxels at {spacing_mm} mm; use a coarser spacing_mm")
    open_edges = surface.clean().n_open_edges  # after merging repeated points (an STL stores each face's own)
    if open_edges:
        raise InputError(f"voxelize: the surface is not closed ({open_edges} open edges); a tool mesh must be watertight")
    ss = int(supersample)
    first = lo + (0.5 / ss - 0.5) * spacing_mm  # the first voxel's first sub-point
    occupancy = np.empty(shape, dtype=np.float32)
    slab = max(1, int(chunk_points) // int(shape[0] * shape[1] * ss**3))  # voxel slices along z at once
    for k0 in range(0, shape[2], slab):
        k1 = min(shape[2], k0 + slab)
        grid = pv.ImageData(dimensions=(shape[0] * ss, shape[1] * ss, (k1 - k0) * ss), spacing=(spacing_mm / ss,) * 3,
                            origin=(first[0], first[1], first[2] + k0 * spacing_mm))
        inside = np.asarray(surface.voxelize_binary_mask(reference_volume=grid).point_data["mask"], dtype=np.uint8)
        inside = inside.reshape((k1 - k0) * ss, shape[1] * ss, shape[0] * ss).transpose(2, 1, 0)  # VTK's x fastest
        occupancy[:, :, k0:k1] = inside.reshape(shape[0], ss, shape[1], ss, k1 - k0, ss).mean(axis=(1, 3, 5))
    affine = np.diag([spacing_mm, spacing_mm, spacing_mm, 1.0])
    affine[:3, 3] = lo
    return occupancy, affine


def _xyz(value, where: str, name: str) -> np.ndarray:
    """A point or vector (x, y, z) as float64 mm, or a one-line InputError naming the argument."""
    try:
        xyz = np.asarray(value, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        xyz = np.empty(0)
    if xyz.shape != (3,) or not np.all(np.isfinite(xyz)):
        raise InputError(f"{where}: {name} must be a point (x, y, z) in mm, got {value!r}")
    return xyz


def _apply(transform, xyz: np.ndarray) -> np.ndarray:
    """A 4x4 transform applied to a point (x, y, z), float64."""
    m = np.asarray(transform, dtype=np.float64)
    return m[:3, :3] @ xyz + m[:3, 3]


def _material_masks(materials, shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    """Boolean masks by material name from DeepDRR's two forms ({name: mask}, or ({name: label}, labels))."""
    if (isinstance(materials, tuple) and len(materials) == 2 and isinstance(materials[0], dict)
            and np.ndim(materials[1]) == 3):
        labels = np.asarray(materials[1])
        materials = {name: labels == index for name, index in materials[0].items()}
    if not isinstance(materials, dict) or not materials:
        raise InputError("Volume: materials must be a dict {name: mask} or DeepDRR's ({name: label}, label volume), "
                         f"got {type(materials).__name__}")
    masks = {}
    for name, mask in materials.items():
        get_material(name)  # a one-line error for an unknown material name
        masks[name] = np.asarray(mask, dtype=bool)
        if masks[name].shape != tuple(shape):
            raise InputError(f"Volume: materials[{name!r}] has shape {masks[name].shape}, data {tuple(shape)}")
    return masks


def _lps_from_ijk(origin, spacing, anatomical_coordinate_system: str | None) -> np.ndarray:
    """DeepDRR 1.2's voxel -> LPS affine of ``from_parameters``: i along L, j along -S, k along P (mm)."""
    if anatomical_coordinate_system != "LPS":
        raise InputError("Volume.from_hu(hu, origin, ..., spacing) / from_parameters: DeepDRR 1.2 defines this form "
                         f"for anatomical_coordinate_system='LPS' only, got {anatomical_coordinate_system!r}; "
                         "or give the voxel-to-anatomical 4x4 affine")
    step = np.asarray(spacing, dtype=np.float64).ravel()
    if step.shape != (3,) or not np.all(np.isfinite(step) & (step > 0)):
        raise InputError(f"Volume.from_hu: spacing must be 3 positive lengths (mm), got {spacing!r}")
    lps_from_ijk = np.eye(4)
    lps_from_ijk[:3, :3] = 0.0
    lps_from_ijk[0, 0] = step[0]   # i -> L
    lps_from_ijk[2, 1] = -step[1]  # j -> inferior (-S)
    lps_from_ijk[1, 2] = step[2]   # k -> P
    lps_from_ijk[:3, 3] = _xyz(origin, "Volume.from_hu", "origin")
    return lps_from_ijk


def _is_single_frame(path: Path) -> bool:
    """Whether ``path`` is a DICOM file of one image plane (a slice of a series), read from its header."""
    if not path.is_file():
        return False
    for _, ds in dicom_datasets(path, pixels=False):
        return "PerFrameFunctionalGroupsSequence" not in ds and int(ds.get("NumberOfFrames") or 1) == 1
    return False
