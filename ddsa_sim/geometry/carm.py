"""A C-arm with DeepDRR ``MobileCArm``'s parameters, defaults and frame chain, on killeengeo types.

Frames (all mm):

* ``world``: patient LPS.
* ``device``: the C-arm base. For a supine, head-first patient (the default ``world_from_device``)
  device +x points to the patient's feet (LPS -z), +y to the patient's left (LPS +x) and +z up,
  anterior (LPS -y). Hence, as in DeepDRR, ``alpha > 0`` turns the detector towards the patient's
  right (RAO) and ``beta > 0`` towards the feet (CAU).
* ``arm``: rotates with the C: ``device_from_arm = [R_y(beta) R_x(alpha) | isocenter]``.
* ``camera3d``: origin at the X-ray source, +z along the principal ray (source -> detector); the
  source sits ``source_to_isocenter_vertical_distance`` below the isocenter (arm -z).
  ``rotate_camera_left`` turns the image 90 degrees and ``gamma`` rolls the detector, as DeepDRR.
* image index ``(u, v)`` = (column, row) in pixels; the centre of pixel ``[row, col]`` is at
  ``(col + 0.5, row + 0.5)`` (killeengeo ``from_sizes`` puts the principal point at the sensor centre).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

from ddsa_sim import InputError
from ddsa_sim.checks import check_positive
from ddsa_sim.geometry.limits import ALPHA_LIMITS_DEG, BETA_LIMITS_DEG

if TYPE_CHECKING:  # pragma: no cover - killeengeo (and scipy.spatial under it) loads in camera_projection only
    import killeengeo as kg

__all__ = ["SUPINE_WORLD_FROM_DEVICE", "CArm"]

#: world_from_device for a supine, head-first patient in LPS (columns: device x, y, z in world).
SUPINE_WORLD_FROM_DEVICE = np.array(
    [[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, -1.0, 0.0], [-1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
)


def _rotation(axis: int, angle_deg: float) -> np.ndarray:
    """3x3 right-handed rotation by ``angle_deg`` about axis 0 (x), 1 (y) or 2 (z).

    Written out rather than taken from ``scipy.spatial.transform``, whose import (0.15 s) was a tenth
    of ``ddsa-sim project``; the two agree to 5e-16.
    """
    c, s = np.cos(np.deg2rad(angle_deg)), np.sin(np.deg2rad(angle_deg))
    i, j = ((1, 2), (2, 0), (0, 1))[axis]
    m = np.eye(3)
    m[i, i] = m[j, j] = c
    m[i, j], m[j, i] = -s, s
    return m


def _rt(rotation: np.ndarray | None = None, translation=None) -> np.ndarray:
    m = np.eye(4)
    if rotation is not None:
        m[:3, :3] = rotation
    if translation is not None:
        m[:3, 3] = translation
    return m


@dataclass(frozen=True)
class CArm:
    """C-arm device (DeepDRR ``MobileCArm`` parameters and defaults; angles in degrees, lengths mm).

    ``isocenter_mm`` is given in WORLD coordinates (usually the centre of the CT or the region of
    interest); ``sensor_height``/``sensor_width`` are pixel counts after ``binning``.
    """

    isocenter_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    alpha_deg: float = 0.0
    beta_deg: float = 0.0
    gamma_deg: float = 0.0
    source_to_detector_distance: float = 1020.0
    source_to_isocenter_vertical_distance: float = 530.0
    source_to_isocenter_horizontal_offset: float = 0.0
    sensor_height: int = 1536
    sensor_width: int = 1536
    pixel_mm: float = 0.194
    min_alpha_deg: float = ALPHA_LIMITS_DEG[0]
    max_alpha_deg: float = ALPHA_LIMITS_DEG[1]
    min_beta_deg: float = BETA_LIMITS_DEG[0]
    max_beta_deg: float = BETA_LIMITS_DEG[1]
    rotate_camera_left: bool = True
    world_from_device: np.ndarray = field(default_factory=lambda: SUPINE_WORLD_FROM_DEVICE.copy(), compare=False)

    def __post_init__(self) -> None:
        if not self.min_alpha_deg <= self.alpha_deg <= self.max_alpha_deg:
            raise InputError(f"alpha={self.alpha_deg} deg is outside the C-arm limits "
                             f"[{self.min_alpha_deg}, {self.max_alpha_deg}]")
        if not self.min_beta_deg <= self.beta_deg <= self.max_beta_deg:
            raise InputError(f"beta={self.beta_deg} deg is outside the C-arm limits [{self.min_beta_deg}, {self.max_beta_deg}]")
        if not np.isfinite(self.gamma_deg):  # any roll is a pose, but not a NaN or infinite one
            raise InputError(f"gamma={self.gamma_deg} deg (detector roll) must be finite")
        for name in ("source_to_detector_distance", "source_to_isocenter_vertical_distance", "pixel_mm"):
            check_positive(name, getattr(self, name))
        if self.source_to_isocenter_vertical_distance >= self.source_to_detector_distance:
            raise InputError("source_to_isocenter_vertical_distance must be smaller than source_to_detector_distance")
        if int(self.sensor_height) < 1 or int(self.sensor_width) < 1:
            raise InputError(f"detector size must be at least 1x1, got {self.sensor_height}x{self.sensor_width}")
        if not np.all(np.isfinite(self.isocenter_mm)):
            raise InputError(f"isocenter_mm must be finite, got {self.isocenter_mm}")

    # ---------------------------------------------------------------- frames
    def at(self, **pose) -> "CArm":
        """The same device at another pose (``alpha_deg``, ``beta_deg``, ``gamma_deg``, ``isocenter_mm``)."""
        return replace(self, **pose)

    def binned(self, factor: int) -> "CArm":
        """Detector binning: ``factor`` x ``factor`` pixels read as one (size / factor, pixel * factor); the rays a
        scene casts per binned pixel are its ``supersample``."""
        if factor < 1:
            raise InputError(f"binning factor must be >= 1, got {factor}")
        return replace(self, sensor_height=self.sensor_height // factor, sensor_width=self.sensor_width // factor,
                       pixel_mm=self.pixel_mm * factor)

    def subdivided(self, factor: int) -> "CArm":
        """Each pixel split into ``factor`` x ``factor`` sub-pixels (size * factor, pixel / factor): the
        same detector, sub-pixels ``factor * i ... factor * i + factor - 1`` inside pixel ``i``."""
        if factor < 1:
            raise InputError(f"subdivision factor must be >= 1, got {factor}")
        return replace(self, sensor_height=self.sensor_height * factor, sensor_width=self.sensor_width * factor,
                       pixel_mm=self.pixel_mm / factor)

    @property
    def device_from_world(self) -> np.ndarray:
        return np.linalg.inv(self.world_from_device)

    @property
    def device_from_arm(self) -> np.ndarray:
        rot = _rotation(1, self.beta_deg) @ _rotation(0, self.alpha_deg)  # about x, then the fixed y
        iso_device = (self.device_from_world @ np.append(self.isocenter_mm, 1.0))[:3]
        return _rt(rot, iso_device)

    @cached_property
    def camera3d_from_world(self) -> np.ndarray:
        """4x4 world mm -> camera mm (source at the origin, +z towards the detector); computed once
        per view (the projector asks for it on every call) and read-only."""
        camera3d_from_arm = _rt(translation=[0.0, -self.source_to_isocenter_horizontal_offset,
                                             self.source_to_isocenter_vertical_distance])
        if self.rotate_camera_left:
            camera3d_from_arm = _rt(_rotation(2, 90.0)) @ camera3d_from_arm
        gamma = _rt(_rotation(2, self.gamma_deg))
        m = gamma @ camera3d_from_arm @ np.linalg.inv(self.device_from_arm) @ self.device_from_world
        m.setflags(write=False)
        return m

    @property
    def intrinsic(self) -> np.ndarray:
        """3x3 camera matrix K (pixels)."""
        f = self.source_to_detector_distance / self.pixel_mm
        return np.array([[f, 0.0, self.sensor_width / 2.0], [0.0, f, self.sensor_height / 2.0], [0.0, 0.0, 1.0]])

    @property
    def projection_matrix(self) -> np.ndarray:
        """3x4 matrix P: homogeneous world point (mm, LPS) -> homogeneous image index (u=col, v=row)."""
        return self.intrinsic @ self.camera3d_from_world[:3, :]

    # ----------------------------------------------------------- killeengeo
    def camera_projection(self) -> kg.CameraProjection:
        """This view as a killeengeo ``CameraProjection`` (the type DeepDRR's projector consumes)."""
        import killeengeo as kg

        intrinsic = kg.CameraIntrinsicTransform.from_sizes(
            sensor_size=(self.sensor_width, self.sensor_height), pixel_size=self.pixel_mm,
            source_to_detector_distance=self.source_to_detector_distance)
        return kg.CameraProjection(intrinsic, kg.FrameTransform(self.camera3d_from_world))

    # --------------------------------------------------------- positions
    @property
    def source_mm(self) -> np.ndarray:
        """X-ray focal spot in world mm."""
        return np.linalg.inv(self.camera3d_from_world)[:3, 3]

    @property
    def principal_ray(self) -> np.ndarray:
        """Unit vector (world) from the source towards the detector centre."""
        return np.linalg.inv(self.camera3d_from_world)[:3, 2]

    @property
    def detector_center_mm(self) -> np.ndarray:
        return self.source_mm + self.source_to_detector_distance * self.principal_ray

    def detector_corners_mm(self) -> np.ndarray:
        """World positions (mm) of the detector corners at pixel index (0,0), (W,0), (W,H), (0,H)."""
        uv = np.array([[0, 0], [self.sensor_width, 0], [self.sensor_width, self.sensor_height],
                       [0, self.sensor_height]], dtype=np.float64)
        return self.pixel_to_world(uv)

    def pixel_to_world(self, uv: np.ndarray) -> np.ndarray:
        """World positions (mm) on the detector plane of continuous image indices ``(u, v)``, shape (N, 2)."""
        uv = np.atleast_2d(np.asarray(uv, dtype=np.float64))
        rays_cam = np.column_stack([uv, np.ones(len(uv))]) @ np.linalg.inv(self.intrinsic).T
        pts_cam = rays_cam * self.source_to_detector_distance  # z = SDD in camera3d
        world_from_cam = np.linalg.inv(self.camera3d_from_world)
        return pts_cam @ world_from_cam[:3, :3].T + world_from_cam[:3, 3]

    def project(self, points_mm: np.ndarray) -> np.ndarray:
        """Image index (u, v) (pixels) of world points (mm), shape (N, 2)."""
        pts = np.atleast_2d(np.asarray(points_mm, dtype=np.float64))
        h = np.column_stack([pts, np.ones(len(pts))]) @ self.projection_matrix.T
        return h[:, :2] / h[:, 2:3]

    def clinical_angles(self) -> tuple[float, float]:
        """The clinical primary and secondary angles (deg) of this view: ``(primary, secondary)``, primary > 0 RAO
        (< 0 LAO), secondary > 0 CAU (< 0 CRA), named by where the detector lies from the isocenter in the world
        (patient LPS) frame, as a console shows them.

        ``alpha_deg`` / ``beta_deg`` are DeepDRR's mechanical angles (``beta`` turns the ``alpha`` arc): each alone
        is the clinical angle, together they are not (alpha 30, beta 20 is RAO 31.6 / CAU 17.2).
        """
        d = self.principal_ray  # source -> detector: where the detector lies from the isocenter
        return float(np.degrees(np.arctan2(-d[0], -d[1]))), float(np.degrees(np.arcsin(np.clip(-d[2], -1.0, 1.0))))

    def patient_directions(self) -> tuple[str, str]:
        """The patient directions (LPS letters: L / R, P / A, H / F) of the image's right (+u) and downward (+v),
        as a viewer's orientation labels: the dominant one first, a second where its share is over half of it
        (e.g. ``"RA"`` in an oblique view)."""
        cam_to_world = np.linalg.inv(self.camera3d_from_world)[:3, :3]
        labels = []
        for axis in (0, 1):  # image u runs along the camera's x, v along its y (times the focal length's sign)
            d = cam_to_world[:, axis] * np.sign(self.intrinsic[axis, axis])
            order = np.argsort(-np.abs(d))
            letters = [("RL", "AP", "FH")[k][int(d[k] > 0)] for k in order[:2] if abs(d[k]) > 0.5 * abs(d[order[0]])]
            labels.append("".join(letters))
        return labels[0], labels[1]

    def ray_directions(self) -> np.ndarray:
        """Unit ray directions (world) from the source through every pixel centre, shape (H, W, 3).

        The direction through pixel (u, v) is ``u * a + v * b + c`` normalised, with ``[a b c]`` =
        (world rotation) K^-1: element-wise, so no BLAS call whose idle threads would then compete
        with the projector's threads on a small machine.
        """
        m = np.linalg.inv(self.camera3d_from_world)[:3, :3] @ np.linalg.inv(self.intrinsic)
        u = np.arange(self.sensor_width, dtype=np.float64)[None, :, None] + 0.5
        v = np.arange(self.sensor_height, dtype=np.float64)[:, None, None] + 0.5
        d = u * m[:, 0] + v * m[:, 1] + m[:, 2]
        d /= np.sqrt(np.einsum("hwk,hwk->hw", d, d))[..., None]
        return d

    def to_dict(self) -> dict:
        """JSON-safe description of this view (pose, device, projection matrix, positions)."""
        return {
            "alpha_deg": float(self.alpha_deg), "beta_deg": float(self.beta_deg), "gamma_deg": float(self.gamma_deg),
            "isocenter_mm": [float(x) for x in self.isocenter_mm],
            "source_to_detector_distance_mm": float(self.source_to_detector_distance),
            "source_to_isocenter_mm": float(self.source_to_isocenter_vertical_distance),
            "detector_rows": int(self.sensor_height), "detector_cols": int(self.sensor_width),
            "pixel_mm": float(self.pixel_mm),
            "source_mm": self.source_mm.tolist(), "detector_center_mm": self.detector_center_mm.tolist(),
            "projection_matrix": self.projection_matrix.tolist(),
        }
