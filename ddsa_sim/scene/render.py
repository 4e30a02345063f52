"""Render DSA frames of a :class:`~ddsa_sim.scene.Scene` at one C-arm pose.

The mask frame (CT only), the contrast frame(s) (CT + iodine, blood displaced by the agent, patient
motion applied to the CT part) and the noise-free, motion-free targets. Exact definitions of every
output are in docs/dsa.md; the arrays match docs/store_format.md.

>>> out = render_triplet(scene, carm, np.random.default_rng(0))  # doctest: +SKIP

Several poses of one scene: :func:`render_views` (on the torch backend it marches every volume once
for a batch of views).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from skimage.measure import block_reduce
from tqdm import tqdm

from ddsa_sim import InputError
from ddsa_sim.geometry.carm import CArm
from ddsa_sim.physics.lag import lagged
from ddsa_sim.physics.spectra import air_kerma_ugy
from ddsa_sim.scene.motion import breathing_displacement_px, rigid_transform, warp_images
from ddsa_sim.scene.moving import (
    catheter_motion,
    is_physiological,
    march_moving_ct,
    march_moving_vessels,
    march_wall,
    physiological_state,
    vessel_motion,
)
from ddsa_sim.scene.recording import (
    aec_kerma_transmission,
    check_detector_range,
    detect,
    frame_quanta,
    mas_for,
    read_out,
    scatter_image,
    to_neglog,
)
from ddsa_sim.scene.scene import Scene

__all__ = ["TRIPLET_KEYS", "VESSEL_MASK_MIN_IODINE_MG_PER_CM2", "DSAFrames", "MarchedView", "bolus_times",
           "render_frames", "render_sequence", "render_triplet", "render_views", "view_bytes"]

#: A pixel is vessel (``vessel_mask``) where the projected iodine is at least this (mg/cm^2), in
#: single frames and sequences alike: 0.1 mg/cm^2 is 1 % of a 1 mm lumen at 100 mgI/ml, about
#: -ln contrast 0.002 at 90 kVp, far below visibility, but above the numerical tail of a bolus
#: front (iodine of 1e-6 mg/cm^2 is not a vessel).
VESSEL_MASK_MIN_IODINE_MG_PER_CM2 = 0.1

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
        With detector lag (``Detector.lag``) the contrast frames, recorded and expected, carry the lag of the frames
        before them (timed frames: the run's; a frame without a time: a steady state, as the mask); the
        targets and the iodine map are lag-free.
    vessel_mask : (T, H, W) uint8
    times_s : (T,) float64, NaN for a fully filled frame
    mask_time_s : float, time of the mask frame (s; the clock of the bolus and of cardiac and respiratory motion)
    mask_scatter : (H, W) float64, scatter of the mask frame relative to the flat field (0 if off)
    mask_primary : (H, W) float64, primary I/I0 of the mask frame (behind the collimator)
    photons_per_pixel : float, N0 used (photons per pixel incident on the detector, no patient)
    mas : float, tube current-time product per frame giving N0 (NaN without an absolute spectrum)
    air_kerma_ugy : float, air kerma per frame at the detector plane without the patient (uGy)
    detector_air_kerma_ugy : float, air kerma per frame at the detector plane behind the patient,
        mean over the exposure-control field (uGy; what automatic exposure sets)
    quanta_per_pixel : float, noise-equivalent quanta of the flat field behind the grid on the central ray
    quanta_image : (H, W) float64, each pixel's (``Scene.flat_field_quanta``: ``cos^3`` of its ray's angle off
        the central ray, and lower toward the anode with the heel effect)
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
    mask_time_s: float
    mask_scatter: np.ndarray
    mask_primary: np.ndarray
    photons_per_pixel: float
    mas: float
    air_kerma_ugy: float
    detector_air_kerma_ugy: float
    quanta_per_pixel: float
    quanta_image: np.ndarray
    motion: list[dict]

    def exposure_dict(self) -> dict[str, float]:
        """The exposure of every frame of this view (floats; ``mas`` NaN for a spectrum without absolute fluence)."""
        return {"photons_per_pixel": self.photons_per_pixel, "mas": self.mas, "air_kerma_ugy": self.air_kerma_ugy,
                "detector_air_kerma_ugy": self.detector_air_kerma_ugy, "quanta_per_pixel": self.quanta_per_pixel}

    def sequence(self) -> dict[str, np.ndarray]:
        """The arrays of :data:`TRIPLET_KEYS` with every contrast frame: ``mask`` (H, W), the others (T, H, W)."""
        return {"mask": self.mask, **{k: getattr(self, k) for k in TRIPLET_KEYS[1:]}}

    def frame(self, k: int = -1) -> dict[str, np.ndarray]:
        """The arrays of :data:`TRIPLET_KEYS` for contrast frame ``k``."""
        return {"mask": self.mask, "contrast": self.contrast[k], "contrast_clean": self.contrast_clean[k],
                "dsa_target": self.dsa_target[k], "iodine_mg_per_cm2": self.iodine_mg_per_cm2[k],
                "vessel_mask": self.vessel_mask[k], "conventional_dsa": self.conventional_dsa[k]}


@dataclass
class MarchedView:
    """Area densities (g/cm^2, (H, W, M) float64) of one view, marched ahead (in a batch of views).

    Attributes
    ----------
    ct : (H, W, M)
        The CT (unmoved).
    vessels : list of dict
        Per contrast frame (bolus time), every vessel volume's area densities by name.
    """

    ct: np.ndarray
    vessels: list[dict[str, np.ndarray]]


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
                  times_s: Sequence[float | None] = (None,), marched: MarchedView | None = None,
                  mask_time_s: float = 0.0, progress: bool = False) -> DSAFrames:
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
    marched : MarchedView, optional
        This view's area densities marched ahead (:func:`render_views`), on ``carm.subdivided(scene.supersample)``;
        default: marched here.
    mask_time_s : float
        Time of the mask frame (s) on the clock of ``times_s``: with cardiac or respiratory motion
        the mask is the CT as scanned at this time's breathing state, and each contrast frame's CT
        and trees move by their motion between it and the frame's time.

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
    clock = mask_state = None
    mask_catheter = scene.catheter
    if is_physiological(scene):  # where in the heart beat and the breath the run starts
        m = scene.motion
        clock = {"cardiac_start_s": rng_motion.uniform(0.0, 60.0 / m.heart_rate_bpm),
                 "breathing_start_s": rng_motion.uniform(0.0, m.breathing_period_s),
                 "full_fill_time_s": float(mask_time_s) + rng_motion.uniform(0.0, max(60.0 / m.heart_rate_bpm,
                                                                                      m.breathing_period_s))}
        mask_state = physiological_state(scene, clock, mask_time_s)
        mask_catheter = catheter_motion(scene, mask_state, mask_state, vessel_motion(scene, mask_state, mask_state))
    proj = scene.projector
    scene.check_view(carm)
    # rays: `supersample` x `supersample` per pixel, marched on the subdivided detector; their
    # intensities (and iodine) are averaged over each pixel before the detector's blur and noise
    k = scene.supersample
    rays = carm.subdivided(k)

    def pixel_mean(image: np.ndarray) -> np.ndarray:
        return image if k == 1 else block_reduce(image.astype(np.float64), (k, k), np.mean).astype(image.dtype)

    def detected(sharp: np.ndarray) -> np.ndarray:
        # the light spread on the rays' grid, then each pixel's mean: its aperture once (blurred after the mean, the
        # kernel's own pixel integral counted the aperture a second time: MTF -16 % at 2 cycles/mm, supersample 8)
        return pixel_mean(scene.detector_blur(rays, sharp)).astype(np.float32)

    # the CT (its heart and a catheter's wall at the mask's phase) focal-spot blurred at its depth
    def sharp_ct(state: dict[str, float] | None) -> np.ndarray:
        moved = march_moving_ct(scene, rays, state, mask_state) if state is not None else None
        if moved is not None:
            return moved
        return marched.ct if marched is not None else proj.march(rays, "ct")

    ct_sharp = sharp_ct(mask_state)
    a_ct = scene.march_ct(rays, ct_sharp, march_wall(scene, rays, mask_catheter))
    mask_area = proj.combine({"ct": a_ct}, ["ct"])
    mask_sharp, mask_q = scene.intensity(proj, rays, mask_area)
    # the detector's light spread blurs every primary, so the targets carry the blur of both frames
    # (float32 values like the spectrum's, so equal pixels of two frames give a target of exactly 0)
    mask_primary = detected(mask_sharp)
    collimation = scene.collimation(carm)
    field, exposed = collimation if collimation is not None else (None, None)
    kerma_t = aec_kerma_transmission(mask_area, proj.attenuation_cm2_per_g, proj.spectrum,
                                     None if exposed is None else np.kron(exposed, np.ones((k, k), dtype=bool)))
    n0 = scene.exposure.n0(proj.spectrum, carm, kerma_t if scene.exposure.automatic else None)
    quanta = scene.flat_field_quanta(proj, carm, n0)  # (H, W): fewer toward the anode and off the central ray
    check_detector_range(scene.detector, quanta)
    air_kerma = air_kerma_ugy(proj.spectrum, n0 / carm.pixel_mm**2)

    lag = scene.detector.lag
    # with lag: the charges (recorded, expected) of the run's latest frames, the latest first: the timed
    # contrast frames, the mask, and before the mask frames of the mask's own scene
    run: list[tuple[np.ndarray, np.ndarray]] = []

    def recorded(primary: np.ndarray, q: np.ndarray, seed: int, timed: bool) -> tuple[np.ndarray, np.ndarray,
                                                                                         np.ndarray]:
        p = primary.astype(np.float64)
        s = scatter_image(p, carm, proj.spectrum, proj.mode, scene.scatter, field)
        if field is not None:  # the collimator removes photons: P and its second moment alike
            p, q = p * field, q * field
        rng_frame = np.random.default_rng(int(seed))
        charge, clean = detect(p, q, s, quanta, rng_frame, scene.noise, scene.noise_correlation), p + s
        before = run
        if lag and (not timed or not run):  # a steady state: the frames before it saw this frame's scene
            before = [(detect(p, q, s, quanta, np.random.default_rng([int(seed), m]), scene.noise,
                              scene.noise_correlation), clean) for m in range(1, len(lag) + 1)]
        rec = read_out(lagged(charge, [c for c, _ in before], lag), quanta, scene.detector, rng_frame, scene.noise)
        clean_rec = lagged(clean, [e for _, e in before], lag) if before is run else clean
        if lag and timed:
            run[:] = [(charge, clean), *before][:len(lag)]
        return to_neglog(rec, quanta), to_neglog(clean_rec, quanta), s

    mask, mask_clean, mask_scatter = recorded(mask_primary, pixel_mean(mask_q), seeds[1], timed=True)
    mask_primary_nl = to_neglog(mask_primary)

    out: dict[str, list] = {name: [] for name in ("contrast", "contrast_clean", "dsa_target", "conventional_dsa",
                                                  "iodine_mg_per_cm2", "vessel_mask", "motion")}

    shown = progress and len(times) > 1  # no bar object otherwise: an export's workers make none
    for f, t in enumerate(tqdm(times, desc="frames", unit="frame", leave=False) if shown else times):
        proj_t = scene.projector_at(t)
        if clock is not None:  # the trees at this frame's own geometry
            state = physiological_state(scene, clock, t)
            moves = vessel_motion(scene, state, mask_state)
            catheter = catheter_motion(scene, state, mask_state, moves)
            sharp = march_moving_vessels(scene, rays, t, moves, catheter)
        else:
            sharp = marched.vessels[f] if marched is not None else scene.march_vessels(rays, t)
        iodine = pixel_mean(scene.iodine_mg_per_cm2(sharp))  # mg/cm^2, along each pixel's rays
        a_v = {n: scene.focal_spot_blur(rays, n, a) for n, a in sharp.items()}  # each at its own depth
        names = ["ct", *a_v]
        # only rays through a vessel volume change: the others keep the mask's intensity (one
        # spectrum pass over a few pixels instead of all; the target is exactly 0 beyond the blur's
        # reach of them)
        hit = np.zeros(a_ct.shape[:-1], dtype=bool)
        for a in a_v.values():
            hit |= np.any(a != 0, axis=-1)
        unmoved, unmoved_q = mask_sharp.copy(), mask_q.copy()
        unmoved[hit], unmoved_q[hit] = scene.intensity(proj_t, rays, proj_t.combine(
            {"ct": a_ct[hit], **{n: a[hit] for n, a in a_v.items()}}, names), hit)
        unmoved = detected(unmoved)
        unmoved_q = pixel_mean(unmoved_q)
        target = to_neglog(unmoved) - mask_primary_nl  # float32 arithmetic, exactly 0 beyond the blur's reach
        if clock is not None:
            offset = state["diaphragm_offset_mm"] - mask_state["diaphragm_offset_mm"]
            a_moved = a_ct
            ct_moves = offset != 0 or state["contraction"] != mask_state["contraction"]
            if ct_moves or catheter is not mask_catheter:  # the CT and the wall at this frame's phase
                a_moved = scene.march_ct(rays, sharp_ct(state) if ct_moves else ct_sharp,
                                         march_wall(scene, rays, catheter))
            info = {"kind": scene.motion.kind, **state, "ct_diaphragm_offset_mm": offset}
        else:
            a_moved, info = _moved_ct(scene, rays, a_ct, rng_motion)
        if a_moved is a_ct:  # the CT did not move: the frame is the target's
            primary, q = unmoved, unmoved_q
        else:
            moved_sharp, q = scene.intensity(proj_t, rays, proj_t.combine({"ct": a_moved, **a_v}, names))
            primary, q = detected(moved_sharp), pixel_mean(q)
        contrast, contrast_clean, _ = recorded(primary, q, seeds[2 + f], timed=t is not None)
        if exposed is not None:  # no primary beam, no DSA signal to recover: the targets are 0 there
            target, iodine = np.where(exposed, target, 0.0), np.where(exposed, iodine, 0.0)
        out["contrast"].append(contrast)
        out["contrast_clean"].append(contrast_clean)
        out["dsa_target"].append(target.astype(np.float32))
        out["conventional_dsa"].append(contrast - mask)
        out["iodine_mg_per_cm2"].append(iodine.astype(np.float32))
        out["vessel_mask"].append((iodine >= VESSEL_MASK_MIN_IODINE_MG_PER_CM2).astype(np.uint8))
        out["motion"].append(info)
    stacked = {k: np.stack(v) for k, v in out.items() if k != "motion"}
    return DSAFrames(mask=mask, mask_clean=mask_clean, times_s=np.array([np.nan if t is None else t for t in times]),
                     mask_time_s=float(mask_time_s),
                     mask_scatter=mask_scatter,
                     mask_primary=mask_primary.astype(np.float64) * (1.0 if field is None else field), photons_per_pixel=n0,
                     mas=mas_for(n0, proj.spectrum, carm), air_kerma_ugy=air_kerma,
                     detector_air_kerma_ugy=air_kerma * kerma_t,
                     quanta_per_pixel=frame_quanta(proj.spectrum, scene.detector, n0, scene.scatter),
                     quanta_image=quanta,
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


def _march_batch(scene: Scene, carms: Sequence[CArm], times: Sequence[float | None]) -> list[MarchedView]:
    """Every volume marched for all ``carms`` in one torch launch per volume and bolus time."""
    from ddsa_sim.projector.torch_projector import TorchProjector

    def batched(t: float | None, name: str) -> np.ndarray:
        return TorchProjector(scene.projector_at(t)).march(carms, name).cpu().numpy()

    ct = batched(None, "ct")
    vessels = [{name: batched(t, name) for name in scene.vessel_names} for t in times]
    return [MarchedView(ct[i], [{n: a[i] for n, a in v.items()} for v in vessels]) for i in range(len(carms))]


def render_views(scene: Scene, carms: Sequence[CArm], rngs: Sequence[np.random.Generator],
                 times_s: Sequence[float | None] = (None,), max_batch_bytes: int = 1 << 30,
                 progress: bool = False) -> Iterator[DSAFrames]:
    """:func:`render_frames` of several poses of one scene, yielded view by view in order.

    On the torch backend (``scene.device`` not ``"cpu"``, or ``backend="torch"``) the CT and each
    vessel volume at each bolus time are marched for a batch of views in one
    :class:`~ddsa_sim.projector.kernels_torch.TorchMarcher` call; the result equals
    ``render_frames(scene, carm, rng, times_s)`` per view within float32 round-off. On the numba
    backend the views are rendered one by one.

    Parameters
    ----------
    scene : Scene
    carms : sequence of CArm
        The views; batched views share one detector size.
    rngs : sequence of numpy.random.Generator
        One per view (its noise and motion, as in :func:`render_frames`).
    times_s : sequence of float or None
        Bolus time of each contrast frame (s); None = fully filled lumen.
    max_batch_bytes : int
        Bound on the host memory of one batch's area densities (views per batch follow from it).
    progress : bool
        Show a progress bar over each view's contrast frames (when there are several).
    """
    carms, rngs, times = list(carms), list(rngs), list(times_s)
    if len(rngs) != len(carms):
        raise InputError(f"render_views: one rng per view, got {len(rngs)} for {len(carms)} views")
    if not times:
        raise InputError("render: at least one contrast frame (times_s) is needed")
    if scene.projector.backend != "torch" or is_physiological(scene):  # moving trees: marched per view
        return (render_frames(scene, carm, rng, times, progress=progress) for carm, rng in zip(carms, rngs))
    for carm in carms:
        scene.check_view(carm)  # every pose, before a batch is marched
    rays = [carm.subdivided(scene.supersample) for carm in carms]  # as render_frames marches them
    per_view = max(_marched_bytes(scene, r, len(times)) for r in rays)
    size = max(1, int(max_batch_bytes) // per_view)
    return (render_frames(scene, carm, rng, times, marched, progress=progress)
            for b0 in range(0, len(carms), size)
            for carm, rng, marched in zip(carms[b0:b0 + size], rngs[b0:b0 + size],
                                          _march_batch(scene, rays[b0:b0 + size], times)))


def _marched_bytes(scene: Scene, rays: CArm, n_times: int) -> int:
    """Bytes of one view's area densities marched ahead on the torch backend: the CT once, each vessel per time."""
    return 8 * len(scene.projector.materials) * (1 + n_times * len(scene.vessel_names)) * rays.sensor_height * \
        rays.sensor_width


def view_bytes(scene: Scene, carm: CArm, n_frames: int) -> int:
    """Host memory (bytes) that :func:`render_views` holds at its peak for one view of ``n_frames`` contrast frames.

    Six (H, W) images per frame (five float32, one uint8) are kept and then stacked (twice that), and on
    the torch backend every frame's vessel densities are marched ahead. The per-frame working arrays
    do not grow with ``n_frames`` and are left out.
    """
    held = 2 * 21 * carm.sensor_height * carm.sensor_width * int(n_frames)
    if scene.projector.backend == "torch" and not is_physiological(scene):
        held += _marched_bytes(scene, carm.subdivided(scene.supersample), int(n_frames))
    return held


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
