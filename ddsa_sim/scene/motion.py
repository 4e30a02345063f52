"""Patient motion between the mask and the contrast frame.

Two models of a random displacement between mask and contrast frame (docs/dsa.md §4), and two
physiological models driven by each frame's time (:mod:`ddsa_sim.scene.cardiorespiratory`):

* ``"rigid"``: a small rigid transform of the CT in the world, a rotation about the C-arm isocenter
  (uniform in ``[-max_rotation_deg, max_rotation_deg]`` about each world axis, xyz Euler) followed by
  a translation (uniform in ``[-max_translation_mm, max_translation_mm]`` per axis). The contrast
  frame's CT is re-marched at the moved placement (exact, parallax included).
* ``"elastic"``: a smooth, breathing-like 2D displacement field on the detector, applied to the
  CT's per-material area-density maps of the contrast frame (``scipy.ndimage.map_coordinates``,
  linear). The field is mostly along the projected cranio-caudal (world z) direction,
  ``u(x) = a * (0.6 + 0.4 w(x)) * e_cc + 0.3 a * w2(x) * e_perp``, with ``w, w2`` Gaussian-smoothed
  white noise (sigma = ``smoothness`` x image size) scaled to max |w| = 1 and ``a`` uniform in
  ``[0.5, 1] * amplitude_mm`` times the magnification at the isocenter, in pixels. A 2D warp is
  cheap and exactly the identity at zero amplitude; its limit: no depth-dependent (parallax)
  motion, which a 3D warp of the CT would give at the cost of resampling the whole CT per frame.

* ``"cardiac"``: the vessel trees deform with the cardiac phase (longitudinal and radial contraction
  about the apex); ``"respiratory"``: CT and vessels shift with breathing (superior-inferior, small
  anterior-posterior, fading with distance from the diaphragm); ``"cardiorespiratory"``: both.

With ``rigid`` and ``elastic`` the iodine volumes never move: the contrast frame is defined at the
(unmoved) pose of the target. With the physiological kinds the iodine is at each contrast frame's own
geometry, in the frame and in its target alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import ndimage
from scipy.spatial.transform import Rotation

from ddsa_sim import InputError
from ddsa_sim.geometry.carm import CArm

MotionKind = Literal["none", "rigid", "elastic", "cardiac", "respiratory", "cardiorespiratory"]
MOTION_KINDS = ("none", "rigid", "elastic", "cardiac", "respiratory", "cardiorespiratory")
#: kinds whose motion is a function of each frame's time (:mod:`ddsa_sim.scene.cardiorespiratory`)
CARDIAC_KINDS = ("cardiac", "cardiorespiratory")
RESPIRATORY_KINDS = ("respiratory", "cardiorespiratory")


@dataclass(frozen=True)
class MotionParams:
    """Patient motion between mask and contrast frames.

    Attributes
    ----------
    kind : {"none", "rigid", "elastic"}
    max_translation_mm : float
        Rigid: largest translation per world axis (mm).
    max_rotation_deg : float
        Rigid: largest rotation about each world axis through the isocenter (deg).
    amplitude_mm : float
        Elastic: largest breathing displacement at the isocenter plane (mm).
    smoothness : float
        Elastic: Gaussian smoothing sigma of the random field, as a fraction of the image size.
    heart_rate_bpm : float
        Cardiac: heart rate (beats per minute); phase = time x rate / 60 plus a random start phase.
    cardiac_longitudinal_mm : float
        Cardiac: end-systolic displacement of the base of the tree (the atrioventricular groove)
        towards the apex along the heart's long axis (mm).
    cardiac_radial_mm : float
        Cardiac: end-systolic inward displacement of the tree's outermost points (95th percentile of
        the distance from the long axis) towards the axis (mm).
    breathing_period_s : float
        Respiratory: period of one breath (s).
    diaphragm_amplitude_mm : float
        Respiratory: inferior excursion of the diaphragm from end-expiration to end-inspiration (mm).
    diaphragm_z_mm : float, optional
        Respiratory: world z (LPS, mm) of the diaphragm dome; default: found in the CT (lowest slice
        with lung, :func:`~ddsa_sim.scene.cardiorespiratory.diaphragm_level_mm`).
    """

    kind: MotionKind = "none"
    max_translation_mm: float = 1.5
    max_rotation_deg: float = 1.0
    amplitude_mm: float = 3.0
    smoothness: float = 0.2
    heart_rate_bpm: float = 70.0
    cardiac_longitudinal_mm: float = 12.0
    cardiac_radial_mm: float = 1.0
    breathing_period_s: float = 4.0
    diaphragm_amplitude_mm: float = 15.0
    diaphragm_z_mm: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in MOTION_KINDS:
            raise InputError(f"motion: unknown kind {self.kind!r}; use one of {', '.join(MOTION_KINDS)}")
        for name in ("heart_rate_bpm", "breathing_period_s"):
            v = getattr(self, name)
            if not np.isfinite(v) or v <= 0:
                raise InputError(f"motion {name} must be > 0, got {v!r}")
        if self.diaphragm_z_mm is not None and not np.isfinite(self.diaphragm_z_mm):
            raise InputError(f"motion diaphragm_z_mm must be a number, got {self.diaphragm_z_mm!r}")
        for name in ("max_translation_mm", "max_rotation_deg", "amplitude_mm", "cardiac_longitudinal_mm",
                     "cardiac_radial_mm", "diaphragm_amplitude_mm"):
            v = getattr(self, name)
            if not np.isfinite(v) or v < 0:
                raise InputError(f"motion {name} must be >= 0, got {v!r}")
        if not np.isfinite(self.smoothness) or self.smoothness <= 0:
            raise InputError(f"motion smoothness must be > 0, got {self.smoothness!r}")


def rigid_transform(rng: np.random.Generator, max_translation_mm: float, max_rotation_deg: float,
                    center_mm: np.ndarray) -> np.ndarray:
    """Random 4x4 world -> world rigid transform: rotation about ``center_mm`` then translation (mm).

    With both maxima 0 the result is exactly the identity.
    """
    angles = rng.uniform(-1.0, 1.0, size=3) * float(max_rotation_deg)
    shift = rng.uniform(-1.0, 1.0, size=3) * float(max_translation_mm)
    c = np.asarray(center_mm, dtype=np.float64)
    m = np.eye(4)
    if np.any(angles != 0):
        r = Rotation.from_euler("xyz", angles, degrees=True).as_matrix()
        m[:3, :3] = r
        m[:3, 3] = c - r @ c
    m[:3, 3] += shift
    return m


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int], sigma_px: float) -> np.ndarray:
    w = ndimage.gaussian_filter(rng.standard_normal(shape), sigma_px, mode="wrap")
    peak = float(np.abs(w).max())
    return w / peak if peak > 0 else w


def cranio_caudal_direction(carm: CArm) -> np.ndarray:
    """Unit image direction (du, dv) in which a world +z (superior) shift at the isocenter projects."""
    iso = np.asarray(carm.isocenter_mm, dtype=np.float64)
    d = carm.project(np.stack([iso + [0.0, 0.0, 10.0], iso]))
    v = d[0] - d[1]
    n = float(np.linalg.norm(v))
    return v / n if n > 1e-6 else np.array([0.0, 1.0])


def breathing_displacement_px(rng: np.random.Generator, carm: CArm, amplitude_mm: float,
                              smoothness: float = 0.2) -> np.ndarray:
    """Smooth breathing-like displacement field, shape (2, H, W) = (d_row, d_col) in pixels.

    See the module docstring for the model. ``amplitude_mm == 0`` gives exactly zero.
    """
    h, w = carm.sensor_height, carm.sensor_width
    if amplitude_mm == 0:
        return np.zeros((2, h, w))
    mag = carm.source_to_detector_distance / carm.source_to_isocenter_vertical_distance
    a_px = rng.uniform(0.5, 1.0) * float(amplitude_mm) * mag / carm.pixel_mm
    sigma = float(smoothness) * max(h, w)
    w1 = _smooth_field(rng, (h, w), sigma)
    w2 = _smooth_field(rng, (h, w), sigma)
    e_cc = cranio_caudal_direction(carm)  # (du, dv)
    e_perp = np.array([-e_cc[1], e_cc[0]])
    mag1 = a_px * (0.6 + 0.4 * w1)
    mag2 = 0.3 * a_px * w2
    d_col = mag1 * e_cc[0] + mag2 * e_perp[0]
    d_row = mag1 * e_cc[1] + mag2 * e_perp[1]
    return np.stack([d_row, d_col])


def warp_images(images: np.ndarray, displacement_px: np.ndarray) -> np.ndarray:
    """Warp (H, W, C) images so that content moves by ``displacement_px`` (2, H, W) (rows, cols).

    Output(x) = input(x - u(x)) (backward mapping, linear interpolation, edges extended).
    """
    img = np.asarray(images, dtype=np.float64)
    u = np.asarray(displacement_px, dtype=np.float64)
    if not np.any(u):
        return img.copy()
    h, w = img.shape[:2]
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float64)
    coords = np.stack([rows - u[0], cols - u[1]])
    out = np.empty_like(img)
    for c in range(img.shape[2]):
        out[..., c] = ndimage.map_coordinates(img[..., c], coords, order=1, mode="nearest")
    return out
