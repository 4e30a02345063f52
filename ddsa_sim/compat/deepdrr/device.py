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
                beta: float | None = None, gamma: float | None = None, degrees: bool = True) -> None:
        """Move to a pose: isocenter in device (``isocenter``) or world (``isocenter_in_world``,
        which wins) mm, and any of the angles. Raises InputError outside the C-arm's limits."""
        if isocenter_in_world is not None:
            isocenter = self.device_from_world @ kg.point(isocenter_in_world)
        new = {"isocenter": None if isocenter is None else kg.point(*np.asarray(isocenter, dtype=np.float64)[:3])}
        for name, value in (("alpha", alpha), ("beta", beta), ("gamma", gamma)):
            new[name] = None if value is None else _radians(value, degrees)
        old = {k: getattr(self, k) for k in new}
        for k, v in new.items():
            if v is not None:
                setattr(self, k, v)
        try:
            self.view()
        except InputError:
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

    def __repr__(self) -> str:
        return (f"MobileCArm(isocenter={np.asarray(self.isocenter)[:3]}, alpha={np.degrees(self.alpha):g} deg, "
                f"beta={np.degrees(self.beta):g} deg, gamma={np.degrees(self.gamma):g} deg)")
