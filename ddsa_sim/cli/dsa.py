"""The ``ddsa-sim dsa`` command: render DSA views (mask, contrast, targets) of a CT with vessels.

Registered on the main app by :func:`register` (:mod:`ddsa_sim.cli` calls it). Bad input raises
:class:`ddsa_sim.InputError` with a one-line message; the main CLI prints ``error: ...`` and exits 2.
See docs/dsa.md §6.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import typer

from ddsa_sim import InputError
from ddsa_sim.cli.options import METHOD, OVERWRITE

#: Default CLI detector: Siemens Cios-like 1536^2 x 0.194 mm panel binned 3x3 -> 512^2 x 0.582 mm,
#: the full 298 mm field (a binning-2 crop of 512 px at 0.388 mm would see only 199 mm).
DEFAULT_DETECTOR = "512x512"
DEFAULT_PIXEL_MM = 0.582
#: Default --bit-depth (flat-panel A/D converters are 14-16 bit); 0 under --detector-dose (see its check).
DEFAULT_BIT_DEPTH = 16


def vessel_spec(vessels: str, seed: int, region: str, spacing_mm: float, params: dict | None = None):
    """The :class:`~ddsa_sim.scene.VesselSpec` of a ``--vessels`` value: ``labels:NAME,...``, a generator
    name (with its ``--param`` values ``params``), a tree file (.vtp / .json), a NIfTI lumen fraction / mask
    or ``model:CHECKPOINT`` (a label volume sampled from a vessel GAN with ``seed``)."""
    from ddsa_sim.scene import VesselSpec
    from vessel_models.generators import GENERATORS

    spec = vessels.strip()
    if params and spec not in GENERATORS:
        raise InputError(f"--param: only a generator ({', '.join(GENERATORS)}) takes parameters, not {spec!r}")
    if spec.startswith("model:"):
        checkpoint = spec[len("model:"):].strip()
        if not checkpoint:
            raise InputError("--vessels model: names no checkpoint")
        return VesselSpec("model", checkpoint, seed=seed, fill="static", display_name=f"{spec}@{region}",
                          field="--vessels")
    if spec.startswith("labels:"):
        names = tuple(n.strip() for n in spec[len("labels:"):].split(",") if n.strip())
        if not names:
            raise InputError("--vessels labels: lists no structure")
        return VesselSpec("labels", structures=names, display_name=spec, field="--vessels")
    if spec in GENERATORS:
        return VesselSpec("generator", spec, params=dict(params or {}), seed=seed, spacing_mm=spacing_mm,
                          display_name=f"{spec}@{region}", field="--vessels", params_field="--param")
    path = Path(spec)
    if path.suffix.lower() in (".vtp", ".json") or path.name.lower().endswith((".nii", ".nii.gz")):
        return VesselSpec("file", spec, spacing_mm=spacing_mm, display_name=f"{spec}@{region}", field="--vessels")
    if path.exists():
        raise InputError(f"--vessels: {path}: unknown format (expected .vtp, .json, .nii or .nii.gz)")
    if path.suffix or os.sep in spec:
        raise InputError(f"--vessels: {path}: no such file")
    raise InputError(f"--vessels: '{spec}' is not a file, a labels: list, a model: checkpoint or a generator "
                     f"({', '.join(GENERATORS)})")


def scene_spec(ct: str, vessels: str, seed: int, labels: str | None = None, structures: str | None = None,
               region: str = "body", place: str = "auto", spacing_mm: float = 0.25, params: dict | None = None,
               catheter: bool | None = None, catheter_french: float = 5.0, feeding=None, **parts):
    """The :class:`~ddsa_sim.scene.SceneSpec` of the ``dsa`` options (see docs/dsa.md §6).

    ``catheter``: True / False, or None for a catheter with template trees (``cow``, ``coronary``) only
    (docs/vessels.md §5b); ``feeding``: a :class:`~ddsa_sim.scene.Feeding` of generic trees. ``parts``
    are the spec's ``exposure`` (:class:`~ddsa_sim.scene.ExposureSpec`) and ``effects``
    (:class:`~ddsa_sim.scene.EffectsSpec`).
    """
    from ddsa_sim.scene import CatheterSpec, CTSpec, PlacementSpec, SceneSpec
    from ddsa_sim.scene.builder import TEMPLATES

    if place not in ("auto", "anatomical", "region", "as-is"):
        raise InputError(f"--place: use auto, anatomical, region or as-is, got {place!r}")
    vs = vessel_spec(vessels, seed, region, spacing_mm, params)
    regions = tuple(r.strip() for r in region.split(","))
    template = vs.kind == "generator" and vs.name in TEMPLATES
    if place == "anatomical" and not template:
        raise InputError(f"--place anatomical: needs a template generator ({', '.join(TEMPLATES)}), got {vessels!r}")
    needs_labels = vs.kind == "labels" or regions != ("body",)
    refused = labels is not None and labels.strip().lower() == "none"
    labels = None if refused else labels
    if labels is None and not refused and (needs_labels or template) and ct == "builtin:chest-ct":
        labels = "builtin:chest-ct-labels"  # its own labels: a template on its heart and aorta, the catheter through
    if labels is None and needs_labels:
        raise InputError("--labels: --vessels labels:... and organ regions need a label map on the CT grid")
    if labels is None and structures is not None:  # it would be read by nothing, a mistyped path unnoticed
        raise InputError(f"--structures {structures}: it names the labels of a label map, and none is in use; give "
                         "--labels too, or leave --structures out")
    if catheter is None:
        catheter = template
    return SceneSpec(CTSpec(ct, labels, structures, labels_field="--labels", structures_field="--structures"),
                     vs, PlacementSpec(place, regions, seed=seed, feeding=feeding, field="--region"),
                     catheter=CatheterSpec(catheter_french, field="--catheter").validate() if catheter else None,
                     **parts)


def vessel_center_mm(scene) -> np.ndarray:
    """Default isocenter: the brain's centre for the cerebral template (a cerebral run frames the head: the centre of
    its vessels, the jugular veins and common carotids down the neck included, left the vertex out of a 155 mm field),
    else the centre of the vessel volumes' bounding boxes (world mm); the CT centre where it lies outside the CT's box."""
    brains = [v.tree.metadata["brain_centre_mm"] for v in scene.vessels
              if getattr(v, "tree", None) is not None and "brain_centre_mm" in v.tree.metadata]
    if brains:
        c = np.asarray(brains[0], dtype=np.float64)
    else:
        vols = scene.projector.volumes  # the vessel sources' volumes, not a catheter's
        corners = np.concatenate([vols[name].corners_mm() for name in scene.vessel_names[:len(scene.vessels)]])
        c = 0.5 * (corners.min(axis=0) + corners.max(axis=0))
    ijk = scene.ct.world_to_voxel(c)
    inside = np.all(ijk >= -0.5) and np.all(ijk <= np.array(scene.ct.shape) - 0.5)
    return c if inside else np.asarray(scene.ct.center_mm)


#: Most contrast frames a view's PNG strip shows (evenly spaced, the first and last among them); the npz keeps all.
STRIP_MAX_FRAMES = 8


def save_strip(frames, path: Path, title: str = "") -> Path:
    """PNG strip: mask | contrast | conventional DSA | target, one row per contrast frame.

    Of more than :data:`STRIP_MAX_FRAMES` frames, that many evenly spaced ones are shown.

    Shown in the fluoroscopy convention (more attenuation = darker). Mask and contrast share one
    window; both DSA columns share one window from -1/4 of the 90th percentile of the target inside the vessel mask
    to that percentile (the zero background light grey, so that noise and subtraction errors below zero show).
    """
    from ddsa_sim.viz.figures import display_window, image_grid

    w_ct = display_window([frames.mask, *frames.contrast])
    inside = frames.dsa_target[frames.vessel_mask > 0]
    hi = float(np.percentile(inside, 90.0)) if inside.size else 0.0
    hi = hi if hi > 0 else 1.0
    w_dsa = (-hi, 0.25 * hi)
    rows, titles = [], []
    n = frames.contrast.shape[0]
    shown = np.unique(np.round(np.linspace(0, n - 1, min(n, STRIP_MAX_FRAMES))).astype(int))
    if len(shown) < n:
        title = f"{title}\n(frames {', '.join(str(k + 1) for k in shown)} of {n} shown)"
    for k in shown:
        t = frames.times_s[k]
        tag = "" if np.isnan(t) else f" t={t:.2f}s"
        rows.append([-frames.mask, -frames.contrast[k], -frames.conventional_dsa[k], -frames.dsa_target[k]])
        titles.append(["mask -ln(I/I0)", f"contrast{tag}", "conventional DSA", "target -ln(Ic/Im)"])
    return image_grid(rows, path, titles, windows=[(-w_ct[1], -w_ct[0])] * 2 + [w_dsa] * 2, suptitle=title,
                      cell_inches=2.6)


def save_view(path: Path, frames, carm, scene) -> Path:
    """Write ``view_NNN.npz`` (docs/dsa.md §6)."""
    from ddsa_sim.files import atomic_output

    arrays = dict(frames.frame(-1))
    arrays["mask_clean"] = frames.mask_clean
    if frames.contrast.shape[0] > 1:
        for key in ("contrast", "contrast_clean", "dsa_target", "conventional_dsa", "iodine_mg_per_cm2",
                    "vessel_mask"):
            arrays[f"{key}_frames"] = getattr(frames, key)
        arrays["frame_times_s"] = frames.times_s
    arrays["projection_matrix"] = carm.projection_matrix
    for key, value in frames.exposure_dict().items():  # photons_per_pixel, mas, air kerma (uGy), quanta
        arrays[key] = np.float64(value)
    arrays["pose_json"] = np.array(json.dumps(carm.to_dict()))
    arrays["scene_json"] = np.array(json.dumps({**scene.to_dict(), "motion_applied": frames.motion}))
    with atomic_output(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays)
    return path


def dsa(ct: str = typer.Option(..., "--ct", help="CT: NIfTI, DICOM folder or builtin:chest-ct."),
        vessels: str = typer.Option(..., "--vessels", help="Tree (.vtp/.json), NIfTI mask/fraction volume, "
                                    "labels:NAME,... (the CT's own labels, virtual non-contrast), a generator "
                                    "(lsystem, cow, coronary, colonize) or model:CHECKPOINT (a vessel GAN sample)."),
        out: Path = typer.Option(..., "-o", "--out", help="Output folder."),
        seed: int = typer.Option(0, help="Seed of every random choice (tree, placement, motion, noise)."),
        alpha: str = typer.Option("0", help="Orbital angle(s) alpha, deg, >0 = RAO (comma list = several views)."),
        beta: str = typer.Option("0", help="Angular angle(s) beta, deg, >0 = CAU (comma list = several views)."),
        labels: str | None = typer.Option(None, help="Label map on the CT grid (for builtin:chest-ct, "
                                             "builtin:chest-ct-labels is taken when labels:... vessels, an organ "
                                             "--region or a template need one; 'none': no label map). With a heart "
                                             "label the coronary template is placed on it (and fitted to a labelled "
                                             "aorta); with labelled arteries the catheter comes up the aorta (and into "
                                             "an arch branch)."),
        structures: str | None = typer.Option(None, help="CSV 'structure,id' naming the labels of --labels."),
        region: str = typer.Option("body", help="Where a tree is placed: body (CT > -300 HU) or organ name(s)."),
        place: str = typer.Option("auto", help="auto | anatomical | region | as-is. auto: templates (cow, "
                                  "coronary) registered to the anatomy (skull / heart), other trees in the region, "
                                  "tree files inside the region as-is."),
        catheter: bool | None = typer.Option(None, "--catheter/--no-catheter", help="A contrast-filled catheter "
                                             "along the feeding artery up to the tree's root (default: with cow and "
                                             "coronary only; docs/vessels.md)."),
        catheter_french: float = typer.Option(5.0, "--catheter-french", help="Catheter outer diameter, French "
                                              "(1 F = 1/3 mm)."),
        feed_direction: str | None = typer.Option(None, "--feed-direction", help="X,Y,Z (patient LPS): a generic "
                                                  "tree's root-to-centroid direction (default: uniform random)."),
        feed_cone: float = typer.Option(0.0, "--feed-cone", help="Half-angle (deg) of the cone around "
                                        "--feed-direction."),
        feed_roll: str = typer.Option("0,360", "--feed-roll", help="LO,HI: range (deg) of the tree's turn about "
                                      "--feed-direction."),
        iodine: float = typer.Option(100.0, "--iodine", help="Iodine concentration in the lumen, mgI/ml."),
        photons: float | None = typer.Option(None, "--photons", help="Photons per pixel at the detector (N0); "
                                                "default DeepDRR's 1e4 per 0.194 mm pixel scaled to the pixel area."),
        mas: float | None = typer.Option(None, "--mas", help="Exposure in mAs per frame (overrides --photons)."),
        detector_dose: float | None = typer.Option(
            None, "--detector-dose", help="Automatic exposure: air kerma per frame behind the patient at the "
            "detector, uGy (centre of the field; overrides --mas and --photons; unquantised: see --bit-depth)."),
        electronic_noise: float = typer.Option(0.0, "--electronic-noise", help="Electronic noise std per pixel, "
                                               "in noise-equivalent quanta."),
        scintillator_mm: float = typer.Option(0.6, "--scintillator-mm", help="CsI:Tl thickness, mm (0 = ideal "
                                              "detector that absorbs every photon, DeepDRR's model)."),
        threshold_kev: float = typer.Option(0.0, "--threshold-kev", help="Photon counting: energy threshold, keV."),
        lag: str | None = typer.Option(None, "--lag", help="Detector lag L1,L2,...: fractions of a frame's charge "
                                       "read out 1, 2, ... frames later, e.g. 0.03,0.007,0.004,0.003 for an a-Si:H "
                                       "panel (docs/physics.md); default: none."),
        spectrum: str = typer.Option("90KV_AL40", help="Spectrum preset or spec (physics.spectra.get_spectrum), "
                                     "e.g. spekpy:kvp=80,al=4 or mono:40."),
        detector: str = typer.Option(DEFAULT_DETECTOR, "--detector", help="Detector ROWSxCOLS."),
        pixel_mm: float = typer.Option(DEFAULT_PIXEL_MM, "--pixel-mm", help="Detector pixel size, mm."),
        detector_mode: str = typer.Option("energy", help="energy (integrating) or photon (counting)."),
        bit_depth: int | None = typer.Option(None, help="Stored bit depth (0 = no quantisation); gain puts the "
                                             "flat field at 90% of full scale. Default 16, or 0 with "
                                             "--detector-dose: the gain is set from the flat field before the views "
                                             "render, and that exposure is found only while each view renders."),
        isocenter: str | None = typer.Option(None, help="X,Y,Z world mm (LPS); default: centre of the vessels "
                                             "(of the brain, for the cerebral template)."),
        no_noise: bool = typer.Option(False, "--no-noise", help="No quantum / electronic noise."),
        no_scatter: bool = typer.Option(False, "--no-scatter", help="No scatter."),
        no_grid: bool = typer.Option(False, "--no-grid", help="No anti-scatter grid."),
        collimation: str | None = typer.Option(None, "--collimation", help="L,R,T,B[,IRIS]: fraction of the "
                                               "detector side each blade covers (left, right columns; top, bottom "
                                               "rows; each < 0.5) and an iris diameter (fraction of the smaller "
                                               "side; 0 = no iris); default: the whole detector exposed "
                                               "(docs/physics.md)."),
        motion: str = typer.Option("none", help="none | rigid | elastic patient motion before the contrast frame; "
                                   "cardiac | respiratory | cardiorespiratory: driven by the frame times "
                                   "(docs/dsa.md §4)."),
        heart_rate_bpm: float = typer.Option(70.0, "--heart-rate-bpm", help="Cardiac motion: beats per minute."),
        breathing_period_s: float = typer.Option(4.0, "--breathing-period-s", help="Respiratory motion: s per breath."),
        diaphragm_mm: float = typer.Option(15.0, "--diaphragm-mm", help="Respiratory motion: diaphragm excursion, mm."),
        diaphragm_z_mm: float | None = typer.Option(None, "--diaphragm-z-mm", help="Respiratory motion: world z of "
                                                    "the diaphragm dome, mm (default: found from the CT's lungs)."),
        frames: int = typer.Option(1, help="Contrast frames over the bolus (1 = a still frame: "
                                    "filled arteries; veins and blush of a venous template empty)."),
        fps: float | None = typer.Option(None, "--fps", help="Frame rate, 1/s: contrast frame k at START + k / FPS "
                                            "s after the injection (an export's sequence.fps), instead of --frames "
                                            "spread over the arterial filling; times a motion sequence of vessels "
                                            "without bolus timing (a volume, a label map)."),
        start_s: float = typer.Option(0.0, "--start-s", help="With --fps: the first contrast frame's time, s after "
                                      "the injection."),
        param: list[str] = typer.Option([], "--param", "-p", help="Generator parameter KEY=VALUE (repeatable), "
                                        "e.g. -p injection=ICA_L, -p veins=false (cow: arteries only, no venous phase)."),
        spacing_mm: float = typer.Option(0.25, help="Vessel voxel grid spacing around a tree, mm."),
        method: str = METHOD,
        supersample: int = typer.Option(1, "--supersample", help="Rays per pixel side: each pixel records the mean "
                                        "intensity of N x N rays over its area, as a detector integrates (thin "
                                        "vessels and catheters do not alias into dashes); costs N^2."),
        device: str = typer.Option("cpu", "--device", help="cpu (numba kernels) or cuda / cuda:N (torch GPU "
                                   "backend; marches trilinear, all views of --alpha/--beta in one batch)."),
        gif: bool = typer.Option(False, "--gif", help="Also write OUT/view_NNN.gif: the DSA target over the frames."),
        mp4: bool = typer.Option(False, "--mp4", help="Also write OUT/view_NNN.mp4 (needs imageio-ffmpeg)."),
        overwrite: bool = OVERWRITE,
        ) -> None:
    """Render DSA views: OUT/view_NNN.npz (mask, contrast, dsa_target, iodine, vessel_mask) + a PNG strip."""
    from ddsa_sim.checks import check_memory
    from ddsa_sim.cli.options import file_of, parse_collimator, parse_detector, parse_float_list, parse_point
    from ddsa_sim.files import all_or_nothing, claim_output, clear_output
    from ddsa_sim.geometry import CArm
    from ddsa_sim.physics.detector import Detector
    from ddsa_sim.physics.lag import check_lag
    from ddsa_sim.physics.scatter import AntiScatterGrid
    from ddsa_sim.scene import (
        EffectsSpec,
        Exposure,
        ExposureSpec,
        Feeding,
        MotionParams,
        ScatterSettings,
        bolus_times,
        build_scene,
        render_views,
        view_bytes,
    )
    from ddsa_sim.scene.recording import gain_for_bit_depth
    from ddsa_sim.viz.animation import save_animation
    from vessel_models.generators import parse_params
    from vessel_models.tree import VesselInputError

    claim_output(out, overwrite, inputs=[ct, file_of(vessels), labels, structures, file_of(spectrum)])
    positive = {"--spacing-mm": spacing_mm, "--pixel-mm": pixel_mm, "--iodine": iodine, "--photons": photons,
                "--mas": mas, "--detector-dose": detector_dose, "--catheter-french": catheter_french,
                "--heart-rate-bpm": heart_rate_bpm, "--breathing-period-s": breathing_period_s}
    not_negative = {"--scintillator-mm": scintillator_mm, "--electronic-noise": electronic_noise,
                    "--threshold-kev": threshold_kev, "--diaphragm-mm": diaphragm_mm}
    for flags, bound, ok in ((positive, "> 0", lambda v: v > 0), (not_negative, ">= 0", lambda v: v >= 0)):
        for flag, value in flags.items():
            if value is not None and not (ok(value) and np.isfinite(value)):  # NaN too
                raise InputError(f"{flag}: must be finite and {bound}, got {value:g}")
    if diaphragm_z_mm is not None and not np.isfinite(diaphragm_z_mm):
        raise InputError(f"--diaphragm-z-mm: must be a finite height (mm), got {diaphragm_z_mm:g}")
    if threshold_kev and detector_mode != "photon":
        raise InputError(f"--threshold-kev {threshold_kev:g}: an energy threshold is a photon-counting detector's; "
                         "give --detector-mode photon too")
    alphas, betas = parse_float_list(alpha, "alpha"), parse_float_list(beta, "beta")
    if len(alphas) != len(betas) and 1 not in (len(alphas), len(betas)):
        raise InputError(f"--alpha and --beta lists differ in length ({len(alphas)} vs {len(betas)})")
    n_views = max(len(alphas), len(betas))
    alphas, betas = alphas * (n_views // len(alphas)), betas * (n_views // len(betas))
    if frames < 1:
        raise InputError(f"--frames must be >= 1, got {frames}")
    if seed < 0:
        raise InputError(f"--seed must be >= 0, got {seed}")
    if fps is not None and not (np.isfinite(fps) and fps > 0):
        raise InputError(f"--fps must be a finite rate > 0, got {fps:g}")
    if not (np.isfinite(start_s) and start_s >= 0):
        raise InputError(f"--start-s must be a finite time >= 0, got {start_s:g}")
    if supersample < 1:
        raise InputError(f"--supersample must be >= 1, got {supersample}")
    if method not in ("trilinear", "siddon"):
        raise InputError(f"--method: use trilinear or siddon, got {method!r}")
    if device != "cpu" and method != "trilinear":
        raise InputError(f"--method: the GPU backend (--device {device}) marches trilinear only")
    rows, cols = parse_detector(detector)
    collimator = parse_collimator(collimation)
    exposure = Exposure(photons_per_pixel=photons, mas=mas, target_detector_air_kerma_ugy=detector_dose)
    if bit_depth is None:  # the gain needs the flat field before rendering: unknown under --detector-dose
        bit_depth = 0 if detector_dose is not None else DEFAULT_BIT_DEPTH
    if bit_depth < 0 or bit_depth > 32:
        raise InputError(f"--bit-depth must be 0 (none) or 1-32, got {bit_depth}")
    if detector_dose is not None and bit_depth:
        raise InputError(f"--bit-depth {bit_depth}: --detector-dose finds the exposure only while each view renders, "
                         "after the gain of a quantised detector is set; leave --bit-depth out (or 0), or give "
                         "--photons or --mas")

    frame_lags = () if lag is None else check_lag(parse_float_list(lag, "lag"), "--lag")

    def make_detector(**kw) -> Detector:
        return Detector(mode=detector_mode, scintillator_mm=scintillator_mm or None, threshold_kev=threshold_kev,
                        electronic_noise_std=electronic_noise, lag=frame_lags, **kw)

    try:
        params = parse_params(param)
    except VesselInputError as exc:
        raise InputError(f"--param: {exc}") from None
    feeding = None
    roll = parse_float_list(feed_roll, "feed-roll")
    if len(roll) != 2 or not roll[0] <= roll[1]:
        raise InputError(f"--feed-roll: expected LO,HI in degrees with LO <= HI, got {feed_roll!r}")
    if feed_direction is None and (feed_cone != 0.0 or roll != [0.0, 360.0]):
        raise InputError("--feed-cone and --feed-roll turn a tree about its --feed-direction; give that too")
    if feed_direction is not None:
        if not 0.0 <= feed_cone <= 180.0:
            raise InputError(f"--feed-cone: must be within 0-180 deg, got {feed_cone:g}")
        feeding = Feeding(parse_point(feed_direction, "feed-direction"), feed_cone, (roll[0], roll[1]))
        feeding.validate("--feed-direction")
    spec = scene_spec(ct, vessels, seed, labels=labels, structures=structures, region=region, place=place,
                      spacing_mm=spacing_mm, params=params, catheter=catheter, catheter_french=catheter_french,
                      feeding=feeding,
                      exposure=ExposureSpec(spectrum, exposure, make_detector(), iodine),
                      effects=EffectsSpec(noise=not no_noise, method=method,
                                          motion=MotionParams(kind=motion, heart_rate_bpm=heart_rate_bpm,
                                                              breathing_period_s=breathing_period_s,
                                                              diaphragm_amplitude_mm=diaphragm_mm,
                                                              diaphragm_z_mm=diaphragm_z_mm),
                                          scatter=ScatterSettings(enabled=not no_scatter,
                                                                  grid=None if no_grid else AntiScatterGrid()),
                                          collimator=collimator, device=device, supersample=supersample))
    scene = build_scene(spec)
    if frames > 1 and fps is None and not scene.end_time_s() > 0:
        raise InputError(f"--frames {frames}: these vessels ({vessels}) have no bolus timing (a volume or a label map "
                         "is filled in every frame) to spread the frames over; give --fps (e.g. a motion sequence) "
                         "or use --frames 1")
    times = bolus_times(scene, frames) if fps is None else [start_s + k / fps for k in range(frames)]
    iso = parse_point(isocenter, "isocenter") or tuple(float(x) for x in vessel_center_mm(scene))
    carm0 = CArm(isocenter_mm=iso, sensor_height=rows, sensor_width=cols, pixel_mm=pixel_mm)
    if bit_depth:
        quanta = scene.flat_field_quanta(scene.projector, carm0, exposure.n0(scene.projector.spectrum, carm0))
        scene.detector = make_detector(bit_depth=bit_depth, gain=gain_for_bit_depth(bit_depth, quanta))
    carms = [carm0.at(alpha_deg=a, beta_deg=b) for a, b in zip(alphas, betas)]  # validates every pose first
    for carm in carms:
        scene.check_view(carm)  # every view sees the CT, before anything is written
    check_memory(f"--frames {frames}", view_bytes(scene, carm0, frames),
                 "use fewer --frames or a smaller --detector")
    if overwrite:
        clear_output(out)
    animations = [s for s, on in ((".gif", gif), (".mp4", mp4)) if on]
    rngs = [np.random.default_rng([seed, n]) for n in range(len(carms))]
    with all_or_nothing(out) as written:  # a failed run leaves nothing of its own behind: no half set of views
        for n, (carm, result) in enumerate(zip(carms, render_views(scene, carms, rngs, times, progress=True))):
            stem = out / f"view_{n:03d}"
            written += [stem.with_suffix(s) for s in (".npz", ".png", *animations)]
            npz = save_view(stem.with_suffix(".npz"), result, carm, scene)
            label = vessels if len(vessels) < 48 else vessels[:45] + "..."
            right, down = carm.patient_directions()
            save_strip(result, stem.with_suffix(".png"),
                       f"{Path(ct).name} + {label}  alpha={carm.alpha_deg:g} beta={carm.beta_deg:g}  motion={motion}  "
                       f"noise={'off' if no_noise else 'on'}  scatter={'off' if no_scatter else 'on'}  "
                       + (f"lag={','.join(f'{v:g}' for v in frame_lags)}  " if frame_lags else "")
                       + f"(image right: {right}, down: {down})")
            for suffix in animations:
                save_animation(list(result.dsa_target), stem.with_suffix(suffix), invert=True)
            typer.echo(str(npz))


def register(app: typer.Typer) -> None:
    """Add the ``dsa`` command to the main ``ddsa-sim`` app."""
    app.command(name="dsa")(dsa)
