"""Render DSA frames of a :class:`~ddsa_sim.scene.Scene` at one C-arm pose.

The mask frame (CT only), the contrast frame(s) (CT + iodine, blood displaced by the agent, patient
motion applied to the CT part) and the noise-free, motion-free targets. Exact definitions of every
output are in docs/dsa.md; the arrays match docs/store_format.md.

>>> out = render_triplet(scene, carm, np.random.default_rng(0))  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ddsa_sim import InputError
from ddsa_sim.geometry.carm import CArm
from ddsa_sim.scene.motion import breathing_displacement_px, rigid_transform, warp_images
from ddsa_sim.scene.recording import check_detector_range, record, scatter_image, to_neglog
from ddsa_sim.scene.scene import Scene

__all__ = ["TRIPLET_KEYS", "DSAFrames", "bolus_times", "render_frames", "render_sequence", "render_triplet"]

#: Arrays of docs/store_format.md, plus ``conventional_dsa``.
TRIPLET_KEYS = ("mask", "contrast", "contrast_clean", "dsa_target", "iodine_mg_per_cm2", "vessel_mask",
                "conventional_dsa")


@dataclass
class DSAFrames:
    """One view: the mask frame and T contrast frames (all float32 unless noted).

    Attributes
    ----------
    mask, mask_clean : (H, W)
        Recorded and expected (noise-free, scatter included) -ln(I/I0) of the CT-only frame.
    contrast, contrast_clean, dsa_target, conventional_dsa, iodine_mg_per_cm2 : (T, H, W)
    vessel_mask : (T, H, W) uint8
    times_s : (T,) float64, NaN for a fully filled frame
    mask_scatter : (H, W) float64, scatter of the mask frame relative to the flat field (0 if off)
    mask_primary : (H, W) float64, primary I/I0 of the mask frame
    photons_per_pixel : float, N0 used
    motion : list of dict, per frame the motion applied (kind and parameters)
    """

    mask: np.ndarray
    mask_clean: np.ndarray
    contrast: np.ndarray
    contrast_clean: np.ndarray
    dsa_target: np.ndarray
    conventional_dsa: np.ndarray
    iodine_mg_per_cm2: np.ndarray
    vessel_mask: np.ndarray
    times_s: np.ndarray
    mask_scatter: np.ndarray
    mask_primary: np.ndarray
    photons_per_pixel: float
    motion: list[dict]

    def frame(self, k: int = -1) -> dict[str, np.ndarray]:
        """The arrays of :data:`TRIPLET_KEYS` for contrast frame ``k``."""
        return {"mask": self.mask, "contrast": self.contrast[k], "contrast_clean": self.contrast_clean[k],
                "dsa_target": self.dsa_target[k], "iodine_mg_per_cm2": self.iodine_mg_per_cm2[k],
                "vessel_mask": self.vessel_mask[k], "conventional_dsa": self.conventional_dsa[k]}


def _moved_ct(scene: Scene, carm: CArm, a_ct: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    m = scene.motion
    if m.kind == "none":
        return a_ct, {"kind": "none"}
    if m.kind == "rigid":
        t = rigid_transform(rng, m.max_translation_mm, m.max_rotation_deg, np.asarray(carm.isocenter_mm))
        return scene.march_ct_moved(carm, t), {"kind": "rigid", "world_from_world": t.tolist()}
    u = breathing_displacement_px(rng, carm, m.amplitude_mm, m.smoothness)
    return warp_images(a_ct, u), {"kind": "elastic", "max_displacement_px": float(np.abs(u).max())}


def render_frames(scene: Scene, carm: CArm, rng: np.random.Generator,
                  times_s: Sequence[float | None] = (None,)) -> DSAFrames:
    """Render the mask and one contrast frame per fill time at one C-arm pose.

    Parameters
    ----------
    scene : Scene
    carm : CArm
        The view (pose, detector size and pixel).
    rng : numpy.random.Generator
        Source of every random choice; seeds for the motion, the mask noise and each contrast
        frame's noise are drawn from it first, so switching motion on or off does not change the
        noise realisations.
    times_s : sequence of float or None
        Bolus time of each contrast frame (s); None = fully filled lumen.

    Returns
    -------
    DSAFrames
    """
    if not isinstance(rng, np.random.Generator):
        raise InputError("rng must be a numpy.random.Generator")
    times = list(times_s)
    if not times:
        raise InputError("render: at least one contrast frame (times_s) is needed")
    seeds = rng.integers(0, 2**63 - 1, size=2 + len(times))
    rng_motion = np.random.default_rng(int(seeds[0]))
    proj = scene.projector
    scene.check_view(carm)
    n0 = scene.exposure.n0(proj.spectrum, carm)
    check_detector_range(scene.detector, n0)
    i_iodine = proj.materials.index("iodine")

    def recorded(primary: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        s = scatter_image(primary, carm, proj.spectrum, proj.mode, scene.scatter)
        total = primary + s
        rec = record(total, n0, scene.detector, np.random.default_rng(int(seed)), scene.noise,
                     scene.noise_correlation)
        return to_neglog(rec), to_neglog(total), s

    a_ct = scene.march_ct(carm)  # focal-spot blurred at the CT's depth
    # the detector's light spread blurs every primary, so the targets carry the blur of both frames
    # (float32 values like the spectrum's, so equal pixels of two frames give a target of exactly 0)
    mask_sharp = scene.intensity(proj, carm, proj.combine({"ct": a_ct}, ["ct"]))
    mask_primary = scene.detector_blur(carm, mask_sharp).astype(np.float32).astype(np.float64)
    mask, mask_clean, mask_scatter = recorded(mask_primary, seeds[1])
    mask_primary_nl = to_neglog(mask_primary)

    out: dict[str, list] = {k: [] for k in ("contrast", "contrast_clean", "dsa_target", "conventional_dsa",
                                            "iodine_mg_per_cm2", "vessel_mask", "motion")}
    for k, t in enumerate(times):
        proj_t = scene.projector_at(t)
        sharp = scene.march_vessels(carm, t)
        iodine = sum(a[..., i_iodine] for a in sharp.values()) * 1000.0  # mg/cm^2, along each pixel's ray
        a_v = {n: scene.focal_spot_blur(carm, n, a) for n, a in sharp.items()}  # each at its own depth
        names = ["ct", *a_v]
        # only rays through a vessel volume change: the others keep the mask's intensity (one
        # spectrum pass over a few pixels instead of all; the target is exactly 0 beyond the blur's
        # reach of them)
        hit = np.zeros(a_ct.shape[:-1], dtype=bool)
        for a in a_v.values():
            hit |= np.any(a != 0, axis=-1)
        unmoved = mask_sharp.copy()
        unmoved[hit] = scene.intensity(proj_t, carm, proj_t.combine(
            {"ct": a_ct[hit], **{n: a[hit] for n, a in a_v.items()}}, names), hit)
        unmoved = scene.detector_blur(carm, unmoved).astype(np.float32)
        target = to_neglog(unmoved) - mask_primary_nl  # float32 arithmetic
        a_moved, info = _moved_ct(scene, carm, a_ct, rng_motion)
        primary = unmoved if info["kind"] == "none" else scene.detector_blur(
            carm, scene.intensity(proj_t, carm, proj_t.combine({"ct": a_moved, **a_v}, names))).astype(np.float32)
        contrast, contrast_clean, _ = recorded(primary.astype(np.float64), seeds[2 + k])
        out["contrast"].append(contrast)
        out["contrast_clean"].append(contrast_clean)
        out["dsa_target"].append(target.astype(np.float32))
        out["conventional_dsa"].append(contrast - mask)
        out["iodine_mg_per_cm2"].append(iodine.astype(np.float32))
        out["vessel_mask"].append((iodine > 0).astype(np.uint8))
        out["motion"].append(info)
    stacked = {k: np.stack(v) for k, v in out.items() if k != "motion"}
    return DSAFrames(mask=mask, mask_clean=mask_clean, times_s=np.array([np.nan if t is None else t for t in times]),
                     mask_scatter=mask_scatter, mask_primary=mask_primary, photons_per_pixel=n0,
                     motion=out["motion"], **stacked)


def render_triplet(scene: Scene, carm: CArm, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The arrays of one dataset sample (docs/store_format.md) plus ``conventional_dsa``.

    Returns
    -------
    dict
        ``mask``, ``contrast``, ``contrast_clean``, ``dsa_target``, ``iodine_mg_per_cm2`` (float32,
        (H, W)), ``vessel_mask`` (uint8, (H, W)) and ``conventional_dsa`` (float32, contrast - mask);
        fully filled vessels.
    """
    return render_frames(scene, carm, rng).frame(0)


def bolus_times(scene: Scene, n_frames: int) -> list[float | None]:
    """``n_frames`` bolus times ending when every tree is filled: ``t_k = t_end (k + 1) / n``.

    One frame means fully filled (None).
    """
    if n_frames < 1:
        raise InputError(f"frames must be >= 1, got {n_frames}")
    if n_frames == 1:
        return [None]
    t_end = scene.end_time_s()
    return [t_end * (k + 1) / n_frames for k in range(n_frames)]


def render_sequence(scene: Scene, carm: CArm, rng: np.random.Generator, n_frames: int) -> DSAFrames:
    """A bolus sequence: the mask and ``n_frames`` contrast frames over the arterial filling."""
    return render_frames(scene, carm, rng, bolus_times(scene, n_frames))
