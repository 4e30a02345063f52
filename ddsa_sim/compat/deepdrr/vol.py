"""``deepdrr.Volume`` and tools (``Mesh``, ``KWire``): a density volume with materials, posed in a world.

A DeepDRR volume has two transforms: ``anatomical_from_IJK`` (voxel index -> the scanner's
anatomical frame: RAS for NIfTI, LPS for DICOM, as DeepDRR reads them) and ``world_from_anatomical``
(where the patient lies in the room; identity until ``orient_patient`` / ``place_center``). Voxels are
read by :mod:`ddsa_sim.volumes` (LPS) and turned into density and materials exactly as the native
:meth:`ddsa_sim.projector.ProjectorVolume.from_ct` does.

Tools (``Mesh.from_stl``, ``Mesh.from_vtp``, ``Mesh.from_mask``, ``KWire``) are volumes of one
material on their own voxel grid; unlike DeepDRR's, they displace the anatomy they occupy
(:meth:`ddsa_sim.projector.ProjectorVolume.tool`).
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import killeengeo as kg
import numpy as np

from ddsa_sim import InputError
from ddsa_sim.physics.attenuation import get_material
from ddsa_sim.projector import ProjectorVolume
from ddsa_sim.volumes import hu_to_density, material_labels, read_ct, read_dicom_series, segment_by_threshold

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
    materials : dict of str -> bool (I, J, K)
        Mutually exclusive masks covering every voxel; names of :mod:`ddsa_sim.physics.attenuation`
        (``"air"``, ``"soft tissue"``, ``"bone"``, ``"iodine"``, ``"iodinated blood:<mgI/ml>"``...).
    anatomical_from_IJK, world_from_anatomical : killeengeo.FrameTransform or 4x4 array
        Voxel index -> anatomical mm, anatomical -> world mm (default identity).
    anatomical_coordinate_system : {"RAS", "LPS", None}
    """

    def __init__(self, data: np.ndarray, materials: dict[str, np.ndarray], anatomical_from_IJK=None,
                 world_from_anatomical=None, anatomical_coordinate_system: str | None = None) -> None:
        data = np.asarray(data, dtype=np.float32)
        if data.ndim != 3:
            raise InputError(f"Volume data must be 3D, got shape {data.shape}")
        if anatomical_coordinate_system not in ("RAS", "LPS", None):
            raise InputError(f"anatomical_coordinate_system must be 'RAS', 'LPS' or None, got {anatomical_coordinate_system!r}")
        for name in materials:
            get_material(name)  # a one-line error for an unknown material name
        self.data = data
        self.materials = {k: np.asarray(v, dtype=bool) for k, v in materials.items()}
        self.anatomical_from_IJK = kg.frame_transform(anatomical_from_IJK)
        self.world_from_anatomical = kg.frame_transform(world_from_anatomical)
        self.anatomical_coordinate_system = anatomical_coordinate_system
        material_labels(self.materials)  # masks must be exclusive and cover the grid

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
        if anatomical_coordinate_system != "LPS":
            raise InputError("Volume.from_hu(hu, origin, ..., spacing): DeepDRR 1.2 defines this form for "
                             f"anatomical_coordinate_system='LPS' only, got {anatomical_coordinate_system!r}; "
                             "or give the voxel-to-anatomical 4x4 affine")
        step = np.asarray(spacing, dtype=np.float64).ravel()
        if step.shape != (3,) or not np.all(np.isfinite(step) & (step > 0)):
            raise InputError(f"Volume.from_hu: spacing must be 3 positive lengths (mm), got {spacing!r}")
        lps_from_ijk = np.eye(4)
        lps_from_ijk[:3, :3] = 0.0
        lps_from_ijk[0, 0] = step[0]   # i -> L
        lps_from_ijk[2, 1] = -step[1]  # j -> inferior (-S)
        lps_from_ijk[1, 2] = step[2]   # k -> P
        lps_from_ijk[:3, 3] = np.asarray(kg.point(origin))[:3]
        return cls._from_hu_affine(hu, lps_from_ijk, world_from_anatomical, use_thresholding, None, "LPS")

    @classmethod
    def from_nifti(cls, path: str | Path, world_from_anatomical=None, use_thresholding: bool = True,
                   use_cached: bool = True, save_cache: bool = False, cache_dir: str | Path | None = None,
                   materials: dict[str, np.ndarray] | None = None) -> "Volume":
        """A CT (HU) from a NIfTI file; the anatomical frame is the file's RAS, as in DeepDRR.

        ``use_cached``, ``save_cache`` and ``cache_dir`` are accepted and unused: thresholding is
        computed on load in a fraction of a second, nothing is cached.
        """
        ct = read_ct(path)
        ras_from_ijk = np.linalg.inv(_LPS_FROM_RAS) @ ct.affine  # read_ct gives LPS
        return cls._from_hu_affine(ct.data, ras_from_ijk, world_from_anatomical, use_thresholding, materials, "RAS")

    @classmethod
    def from_dicom(cls, path: str | Path, use_thresholding: bool = True, world_from_anatomical=None,
                   use_cached: bool = True, cache_dir: str | Path | None = None,
                   materials: dict[str, np.ndarray] | None = None) -> "Volume":
        """A CT (HU) from a DICOM series (a folder, or a file of one), anatomical frame LPS.

        DeepDRR 1.2 reads one multi-frame file; this reads any single-series folder (or the folder
        of the file given). ``use_cached`` and ``cache_dir`` are unused.
        """
        path = Path(path)
        if not path.exists():  # not the parent folder's series
            raise InputError(f"{path}: no such file or folder")
        ct = read_dicom_series(path if path.is_dir() else path.parent)
        return cls._from_hu_affine(ct.data, ct.affine, world_from_anatomical, use_thresholding, materials, "LPS")

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

    def get_center(self) -> kg.Point3D:
        """The centre in anatomical mm, as DeepDRR defines it: voxel index ``shape / 2`` (half a voxel
        past the middle voxel's centre ``(shape - 1) / 2``)."""
        return self.anatomical_from_IJK @ kg.point(np.array(self.shape, dtype=np.float64) / 2)

    @property
    def center_in_world(self) -> kg.Point3D:
        return self.world_from_anatomical @ self.get_center()

    def place(self, point_in_anatomical, desired_point_in_world) -> None:
        """Translate (keeping the rotation) so that an anatomical point lies at a world point."""
        r = np.asarray(self.world_from_anatomical)[:3, :3]
        t = np.asarray(kg.point(desired_point_in_world))[:3] - r @ np.asarray(kg.point(point_in_anatomical))[:3]
        self.world_from_anatomical = kg.FrameTransform.from_rt(rotation=r, translation=t)

    def place_center(self, x) -> None:
        """Translate the volume so that its centre (:meth:`get_center`) lies at world point ``x``."""
        self.place(self.get_center(), x)

    translate_center_to = place_center

    def translate(self, t) -> "Volume":
        """Move the volume by world vector ``t`` (mm)."""
        self.world_from_anatomical = kg.FrameTransform.from_translation(kg.vector(t)) @ self.world_from_anatomical
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
        c = np.asarray(self.center_in_world if center is None else kg.point(center), dtype=np.float64)[:3]
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

        Only the rotation changes (the translation is kept). Needs an RAS anatomical frame (NIfTI);
        a DICOM (LPS) volume is converted first.
        """
        if self.anatomical_coordinate_system == "LPS":
            self.anatomical_from_IJK = kg.FrameTransform(np.linalg.inv(_LPS_FROM_RAS) @ np.asarray(self.anatomical_from_IJK))
            self.anatomical_coordinate_system = "RAS"
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
    """

    def __init__(self, occupancy: np.ndarray, anatomical_from_IJK, material: str = "titanium",
                 density: float | None = None, displaced_material: str = "soft tissue",
                 displaced_density: float = 1.03, world_from_anatomical=None) -> None:
        occupancy = np.asarray(occupancy, dtype=np.float32)
        super().__init__(occupancy, {material: np.ones(occupancy.shape, bool)}, anatomical_from_IJK,
                         world_from_anatomical)
        self.occupancy = occupancy
        self.material = material
        self.density = float(get_material(material).density_g_per_cc if density is None else density)
        self.displaced_material = displaced_material
        self.displaced_density = float(displaced_density)
        self.data = self.projector_volume("tool").density_g_per_cc  # validates the tool's values now

    @classmethod
    def from_mask(cls, occupancy: np.ndarray, anatomical_from_IJK, **kwargs) -> "Mesh":
        """A tool from a voxel occupancy in [0, 1] (binary mask or partial volume); ``kwargs`` as the
        constructor's (``material``, ``density``, ``displaced_material``, ``displaced_density``)."""
        return cls(occupancy, anatomical_from_IJK, **kwargs)

    @classmethod
    def from_stl(cls, path: str | Path, material: str = "titanium", density: float | None = None,
                 spacing_mm: float = 0.1, **kwargs) -> "Mesh":
        """A tool from a closed STL surface (mm), voxelized at ``spacing_mm``."""
        return cls.from_surface(_read_mesh(path, ".stl"), material, density, spacing_mm, **kwargs)

    @classmethod
    def from_vtp(cls, path: str | Path, material: str = "titanium", density: float | None = None,
                 spacing_mm: float = 0.1, **kwargs) -> "Mesh":
        """A tool from a closed VTK PolyData surface (.vtp, mm), voxelized at ``spacing_mm``."""
        return cls.from_surface(_read_mesh(path, ".vtp"), material, density, spacing_mm, **kwargs)

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


class KWire(Mesh):
    """A Kirschner wire: a steel cylinder with a conical tip (DeepDRR's ``KWire``: steel, 7.5 g/cm^3).

    Along its own +z from the base (z = 0) to the tip (z = length); place it with ``place_center``
    or ``world_from_anatomical``.
    """

    @classmethod
    def from_example(cls, diameter: float = 2.0, length: float = 150.0, density: float = 7.5,
                     spacing_mm: float = 0.1, supersample: int = 3, **kwargs) -> "KWire":
        """A K-wire of ``diameter`` and ``length`` (mm) with a 3 mm trocar-like cone at the tip,
        made of iron at ``density`` g/cm^3 (DeepDRR's material and density for its K-wire), on a grid
        of ``spacing_mm``: each voxel's fraction inside the round wire from ``supersample^3`` points,
        tested against the cylinder and cone themselves (no mesh: the default wire takes 0.1 s)."""
        if not (diameter > 0 and length > 3.0):
            raise InputError(f"K-wire: diameter must be > 0 and length > 3 mm, got {diameter}, {length}")
        if not spacing_mm > 0 or int(supersample) < 1:
            raise InputError(f"K-wire: spacing_mm must be > 0 and supersample >= 1, got {spacing_mm}, {supersample}")
        r, tip, ss = diameter / 2.0, 3.0, int(supersample)
        lo = np.array([-r, -r, 0.0]) - spacing_mm  # one voxel beyond the wire, as voxelize_surface
        shape = np.ceil((np.array([r, r, length]) + spacing_mm - lo) / spacing_mm).astype(int) + 1
        sub = (np.arange(ss) + 0.5) / ss - 0.5  # sub-point offsets within a voxel (voxel units)
        x, y, z = ((np.arange(n)[:, None] + sub[None, :]).ravel() * spacing_mm + lo[k] for k, n in enumerate(shape))
        radius = np.where(z <= length - tip, r, r * (length - z) / tip)  # the cone narrows to the tip
        radius = np.where((z >= 0.0) & (z <= length), radius, -1.0)
        inside = (x[:, None, None] ** 2 + y[None, :, None] ** 2) <= (radius**2 * np.sign(radius))[None, None, :]
        occupancy = inside.reshape(shape[0], ss, shape[1], ss, shape[2], ss).mean(axis=(1, 3, 5))
        affine = np.diag([spacing_mm, spacing_mm, spacing_mm, 1.0])
        affine[:3, 3] = lo
        return cls(occupancy, affine, "iron", density, **kwargs)


def _read_mesh(path: str | Path, suffix: str):
    import pyvista as pv

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
    return surface.triangulate()


def voxelize_surface(surface, spacing_mm: float, supersample: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Fraction of each voxel inside a closed surface (mm) and the grid's voxel -> mesh-frame affine.

    The grid covers the surface's bounds plus one voxel; a voxel's fraction is the share of its
    ``supersample^3`` regularly spaced sub-points inside the surface (pyvista ``select_interior_points``).
    """
    import pyvista as pv

    if not spacing_mm > 0 or int(supersample) < 1:
        raise InputError(f"voxelize: spacing_mm must be > 0 and supersample >= 1, got {spacing_mm}, {supersample}")
    b = np.asarray(surface.bounds, dtype=np.float64).reshape(3, 2)
    lo = b[:, 0] - spacing_mm
    shape = np.ceil((b[:, 1] + spacing_mm - lo) / spacing_mm).astype(int) + 1
    if np.prod(shape) > 5e7:
        raise InputError(f"voxelize: {tuple(shape)} voxels at {spacing_mm} mm; use a coarser spacing_mm")
    ss = int(supersample)
    sub = (np.arange(ss) + 0.5) / ss - 0.5  # sub-point offsets within a voxel (voxel units)
    axes = [(np.arange(n)[:, None] + sub[None, :]).ravel() * spacing_mm + lo[k] for k, n in enumerate(shape)]
    pts = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    inside = pv.PolyData(pts).select_interior_points(surface, method="cell_locator", check_surface=False)["selected_points"]
    fine = inside.reshape(shape[0] * ss, shape[1] * ss, shape[2] * ss).astype(np.float32)
    occupancy = fine.reshape(shape[0], ss, shape[1], ss, shape[2], ss).mean(axis=(1, 3, 5))
    affine = np.diag([spacing_mm, spacing_mm, spacing_mm, 1.0])
    affine[:3, 3] = lo
    return occupancy, affine
