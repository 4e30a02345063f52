"""``deepdrr.MobileCArm``: a movable C-arm with DeepDRR 1.2's state and methods over our :class:`CArm`.

DeepDRR's C-arm is mutable (``move_to`` changes it in place, the projector reads it when called);
ours is an immutable view. :meth:`MobileCArm.view` gives the :class:`ddsa_sim.geometry.CArm` of the
current state: the same parameters, the same frame chain (device -> arm -> camera), so the same
projection matrix.
"""

from __future__ import annotations

import killeengeo as kg
import numpy as np

from ddsa_sim import InputError
from ddsa_sim.geometry.carm import CArm
from ddsa_sim.geometry.limits import ALPHA_LIMITS_DEG, BETA_LIMITS_DEG

__all__ = ["MobileCArm"]


def _radians(angle: float, degrees: bool) -> float:
    return float(np.radians(angle)) if degrees else float(angle)


class MobileCArm:
    """A C-arm with orbital (alpha), angular (beta) rotation and isocenter travel (DeepDRR ``MobileCArm``).

    Angles are kept in radians (``self.alpha``, ``self.beta``, ``self.gamma``), as DeepDRR does;
    ``degrees`` says how arguments are given. Lengths in mm. ``isocenter`` is in the DEVICE frame,
    ``world_from_device`` places the device in the world (identity by default).

    Differences from DeepDRR: a pose outside ``[min_alpha, max_alpha]`` / ``[min_beta, max_beta]``
    raises :class:`ddsa_sim.InputError` instead of being clipped silently; the visualisation-only
    arguments (``horizontal_movement``, ``vertical_travel``, ``immersion_depth``, ``free_space``) are
    stored and unused.
    """

    def __init__(self, world_from_device=None, isocenter=(0.0, 0.0, 0.0), alpha: float = 0.0, beta: float = 0.0,
                 gamma: float = 0.0, degrees: bool = True, horizontal_movement: float = 200.0,
                 vertical_travel: float = 430.0, min_alpha: float = ALPHA_LIMITS_DEG[0],
                 max_alpha: float = ALPHA_LIMITS_DEG[1], min_beta: float = BETA_LIMITS_DEG[0],
                 max_beta: float = BETA_LIMITS_DEG[1], source_to_detector_distance: float = 1020.0,
                 source_to_isocenter_vertical_distance: float = 530.0,
                 source_to_isocenter_horizontal_offset: float = 0.0, immersion_depth: float = 730.0,
                 free_space: float = 820.0, sensor_height: int = 1536, sensor_width: int = 1536,
                 pixel_size: float = 0.194, rotate_camera_left: bool = True,
                 enforce_isocenter_bounds: bool = False) -> None:
        self.world_from_device = kg.frame_transform(world_from_device)
        iso = np.asarray(isocenter, dtype=np.float64).ravel()
        if iso.size not in (3, 4) or not np.all(np.isfinite(iso[:3])):
            raise InputError(f"MobileCArm: isocenter must be a point (x, y, z) in mm, got {isocenter!r}")
        self.isocenter = kg.point(*iso[:3])
        self.alpha, self.beta, self.gamma = (_radians(a, degrees) for a in (alpha, beta, gamma))
        self.min_alpha, self.max_alpha = _radians(min_alpha, degrees), _radians(max_alpha, degrees)
        self.min_beta, self.max_beta = _radians(min_beta, degrees), _radians(max_beta, degrees)
        self.horizontal_movement, self.vertical_travel = horizontal_movement, vertical_travel
        self.immersion_depth, self.free_space = immersion_depth, free_space
        self.source_to_detector_distance = float(source_to_detector_distance)
        self.source_to_isocenter_vertical_distance = float(source_to_isocenter_vertical_distance)
        self.source_to_isocenter_horizontal_offset = float(source_to_isocenter_horizontal_offset)
        self.sensor_height, self.sensor_width = int(sensor_height), int(sensor_width)
        self.pixel_size = float(pixel_size)
        self.rotate_camera_left = bool(rotate_camera_left)
        if enforce_isocenter_bounds:
            raise InputError("MobileCArm: enforce_isocenter_bounds is not supported; pose the device with "
                             "world_from_device")
        self.view()  # a one-line error for a bad device or pose now

    # ------------------------------------------------------------------ state
    @property
    def isocenter_in_world(self) -> kg.Point3D:
        """The isocenter (centre of rotation) in world mm."""
        return self.world_from_device @ self.isocenter

    @property
    def device_from_world(self) -> kg.FrameTransform:
        return self.world_from_device.inverse()

    def move_to(self, isocenter=None, isocenter_in_world=None, alpha: float | None = None,
                beta: float | None = None, gamma: float | None = None, degrees: bool = True,
                interest_point_in_world=None, principle_ray_in_world=None) -> None:
        """Move to a pose (DeepDRR 1.2's ``MobileCArm.move_to``); arguments left out keep their value.

        Parameters
        ----------
        isocenter, isocenter_in_world : point (x, y, z), optional
            The new isocenter in device or world mm; ``isocenter_in_world`` wins over ``isocenter``.
        alpha, beta, gamma : float, optional
            The new angles, in degrees (``degrees=True``) or radians.
        interest_point_in_world : point (x, y, z), optional
            A world point (mm) to keep in view: the isocenter is moved so that the point's distance
            along the principal ray is kept and it lies on the new ray, as DeepDRR approximates it
            (exact when ``source_to_isocenter_horizontal_offset`` is 0). Wins over both isocenters.
        principle_ray_in_world : vector (x, y, z), optional
            Point the C-arm along this world direction (any length): sets alpha and beta (radians
            ``-asin(y)`` and ``atan2(x, z)`` of the unit ray in the device frame), overriding them.

        Raises InputError outside the C-arm's limits; a refused move leaves the C-arm where it was.
        """
        old = {k: getattr(self, k) for k in ("isocenter", "alpha", "beta", "gamma")}
        old_ray = np.asarray(self.principle_ray, dtype=np.float64)
        angles = {k: _radians(v, degrees) for k, v in (("alpha", alpha), ("beta", beta), ("gamma", gamma))
                  if v is not None}
        if principle_ray_in_world is not None:
            ray = np.asarray(self.device_from_world @ kg.vector(principle_ray_in_world), dtype=np.float64)
            norm = float(np.linalg.norm(ray))
            if not (np.isfinite(norm) and norm > 0):
                raise InputError(f"MobileCArm.move_to: principle_ray_in_world must be a non-zero vector, got "
                                 f"{principle_ray_in_world!r}")
            x, y, z = ray / norm  # device_from_arm @ (0, 0, 1) = (cos a sin b, -sin a, cos a cos b)
            angles["alpha"], angles["beta"] = float(np.arcsin(np.clip(-y, -1.0, 1.0))), float(np.arctan2(x, z))
        try:
            for k, v in angles.items():
                setattr(self, k, v)
            if interest_point_in_world is not None:
                p = np.asarray(self.device_from_world @ kg.point(interest_point_in_world), dtype=np.float64)
                depth = float(np.dot(p - np.asarray(old["isocenter"], dtype=np.float64), old_ray))
                isocenter = p - depth * np.asarray(self.principle_ray, dtype=np.float64)
            elif isocenter_in_world is not None:
                isocenter = self.device_from_world @ kg.point(isocenter_in_world)
            if isocenter is not None:
                self.isocenter = kg.point(*np.asarray(isocenter, dtype=np.float64)[:3])
            self.view()
        except Exception:
            for k, v in old.items():  # a refused move leaves the C-arm where it was
                setattr(self, k, v)
            raise

    def move_by(self, delta_isocenter=None, delta_alpha: float | None = None, delta_beta: float | None = None,
                delta_gamma: float | None = None, degrees: bool = True) -> None:
        """Move relative to the current pose (isocenter delta in device mm)."""
        iso = None if delta_isocenter is None else np.asarray(self.isocenter)[:3] + np.asarray(delta_isocenter)[:3]
        angles = {}
        for name, delta in (("alpha", delta_alpha), ("beta", delta_beta), ("gamma", delta_gamma)):
            if delta is not None:
                angles[name] = getattr(self, name) + _radians(delta, degrees)
        self.move_to(isocenter=iso, degrees=False, **angles)

    # ------------------------------------------------------------------ our view
    def view(self) -> CArm:
        """The :class:`ddsa_sim.geometry.CArm` of the current pose (isocenter given in world mm)."""
        def deg(radians: float) -> float:  # degrees back from radians, without the round-trip's 1e-14
            return round(float(np.degrees(radians)), 10)

        return CArm(isocenter_mm=tuple(float(x) for x in np.asarray(self.isocenter_in_world)[:3]),
                    alpha_deg=float(deg(self.alpha)), beta_deg=float(deg(self.beta)), gamma_deg=float(deg(self.gamma)),
                    source_to_detector_distance=self.source_to_detector_distance,
                    source_to_isocenter_vertical_distance=self.source_to_isocenter_vertical_distance,
                    source_to_isocenter_horizontal_offset=self.source_to_isocenter_horizontal_offset,
                    sensor_height=self.sensor_height, sensor_width=self.sensor_width, pixel_mm=self.pixel_size,
                    min_alpha_deg=float(deg(self.min_alpha)), max_alpha_deg=float(deg(self.max_alpha)),
                    min_beta_deg=float(deg(self.min_beta)), max_beta_deg=float(deg(self.max_beta)),
                    rotate_camera_left=self.rotate_camera_left, world_from_device=np.asarray(self.world_from_device))

    def get_camera_projection(self) -> kg.CameraProjection:
        """The current view as a killeengeo ``CameraProjection``."""
        return self.view().camera_projection()

    @property
    def index_from_world(self) -> kg.CameraProjection:
        """World mm -> pixel index (DeepDRR's name for :meth:`get_camera_projection`)."""
        return self.get_camera_projection()

    @property
    def device_from_arm(self) -> kg.FrameTransform:
        """Arm -> device frame (mm): the alpha (about x) then beta (about the fixed y) rotation, origin at
        the isocenter."""
        return kg.FrameTransform(self.view().device_from_arm)

    @property
    def world_from_camera3d(self) -> kg.FrameTransform:
        """Camera -> world (mm): the source at the camera origin, +z towards the detector."""
        return kg.FrameTransform(np.linalg.inv(self.view().camera3d_from_world))

    @property
    def camera3d_from_world(self) -> kg.FrameTransform:
        return kg.FrameTransform(self.view().camera3d_from_world)

    def get_camera3d_from_world(self) -> kg.FrameTransform:
        """:attr:`camera3d_from_world` (DeepDRR 1.2's method spelling)."""
        return self.camera3d_from_world

    @property
    def source_in_world(self) -> kg.Point3D:
        return kg.point(*self.view().source_mm)

    @property
    def principle_ray_in_world(self) -> kg.Vector3D:
        """Unit vector from the source towards the detector centre (DeepDRR's spelling)."""
        return kg.vector(*self.view().principal_ray)

    @property
    def principle_ray(self) -> kg.Vector3D:
        """Unit vector from the source towards the detector centre in the DEVICE frame (DeepDRR's
        spelling and frame; :attr:`principle_ray_in_world` is the world one). Unitless."""
        return kg.vector(*self.view().device_from_arm[:3, 2])

    @property
    def viewpoint_in_arm(self) -> kg.Point3D:
        """The point on the principal ray nearest the isocenter, in the ARM frame (mm):
        ``(0, source_to_isocenter_horizontal_offset, 0)``, where DeepDRR aims objects of interest."""
        return kg.point(0.0, self.source_to_isocenter_horizontal_offset, 0.0)

    @property
    def viewpoint(self) -> kg.Point3D:
        """:attr:`viewpoint_in_arm` in the DEVICE frame (mm): the point on the principal ray
        ``source_to_isocenter_vertical_distance`` from the source."""
        return kg.point(*(self.view().device_from_arm @ np.append(np.asarray(self.viewpoint_in_arm), 1.0))[:3])

    @property
    def viewpoint_in_world(self) -> kg.Point3D:
        """:attr:`viewpoint` in world mm (the isocenter itself when the horizontal offset is 0)."""
        return self.world_from_device @ self.viewpoint

    @property
    def camera_intrinsics(self) -> kg.CameraIntrinsicTransform:
        """The 3x3 intrinsic matrix K (pixels) of the current detector, as DeepDRR builds it:
        focal length ``source_to_detector_distance / pixel_size`` pixels on both axes, principal point
        at the sensor centre ``(sensor_width / 2, sensor_height / 2)`` (column, row).

        Read-only and computed from the current parameters (DeepDRR stores it once, in ``__init__``).
        """
        return kg.CameraIntrinsicTransform.from_sizes(sensor_size=(self.sensor_width, self.sensor_height),
                                                      pixel_size=self.pixel_size,
                                                      source_to_detector_distance=self.source_to_detector_distance)

    @property
    def detector_width(self) -> float:
        """Width of the detector in mm (``sensor_width * pixel_size``)."""
        return self.sensor_width * self.pixel_size

    @property
    def detector_height(self) -> float:
        """Height of the detector in mm (``sensor_height * pixel_size``)."""
        return self.sensor_height * self.pixel_size

    def reposition(self, viewpoint_in_world=None, device_in_world=None) -> None:
        """Reset the pose and move the whole device, as DeepDRR 1.2's ``reposition``.

        The isocenter goes to the device origin, alpha and beta to 0 (gamma is kept), and
        ``world_from_device`` becomes a pure translation: the device origin at ``device_in_world``
        (world mm), or, when only ``viewpoint_in_world`` (world mm) is given, placed so that
        :attr:`viewpoint_in_world` lands on it. Any rotation of ``world_from_device`` is dropped,
        as in DeepDRR. Raises InputError when neither point is given, or when 0 is outside the
        angle limits (the C-arm is then left as it was).
        """
        if device_in_world is None:
            if viewpoint_in_world is None:
                raise InputError("MobileCArm.reposition: give viewpoint_in_world or device_in_world (world mm)")
            device_in_world = np.asarray(kg.point(viewpoint_in_world))[:3] - np.asarray(self.viewpoint_in_arm)[:3]
        old = {k: getattr(self, k) for k in ("isocenter", "alpha", "beta", "world_from_device")}
        try:
            self.isocenter, self.alpha, self.beta = kg.point(0.0, 0.0, 0.0), 0.0, 0.0
            self.world_from_device = kg.FrameTransform.from_translation(np.asarray(kg.point(device_in_world))[:3])
            self.view()
        except Exception:
            for k, v in old.items():
                setattr(self, k, v)
            raise

    def __repr__(self) -> str:
        return (f"MobileCArm(isocenter={np.asarray(self.isocenter)[:3]}, alpha={np.degrees(self.alpha):g} deg, "
                f"beta={np.degrees(self.beta):g} deg, gamma={np.degrees(self.gamma):g} deg)")
