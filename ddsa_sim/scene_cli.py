"""The ``ddsa-sim dsa`` command: render DSA views (mask, contrast, targets) of a CT with vessels.

Registered on the main app by :func:`register` (``ddsa_sim.cli`` calls it). Bad input raises
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

GENERATOR_NAMES = ("lsystem", "cow", "coronary", "colonize")
#: Default CLI detector: Siemens Cios-like 1536^2 x 0.194 mm panel binned 3x3 -> 512^2 x 0.582 mm,
#: the full 298 mm field (a binning-2 crop of 512 px at 0.388 mm would see only 199 mm).
DEFAULT_DETECTOR = "512x512"
DEFAULT_PIXEL_MM = 0.582


def _floats(text: str, field: str) -> list[float]:
    try:
        vals = [float(x) for x in str(text).split(",") if x.strip()]
    except ValueError:
        raise InputError(f"--{field}: expected a number or a comma-separated list, got {text!r}") from None
    if not vals:
        raise InputError(f"--{field}: empty")
    return vals


def _read_structures(path: str | None, labels_source: str) -> dict[str, int]:
    """Structure name -> label id: builtin chest CT table, or a CSV with columns structure,id."""
    from ddsa_sim.imaging.sources import structure_table

    return structure_table(labels_source, path, field="--structures")


def _label_ids(names: list[str], structures: dict[str, int], source: str) -> list[int]:
    from ddsa_sim.imaging.sources import structure_ids

    return structure_ids(names, structures, source, field="--vessels")


def _default_labels(ct: str, labels: str | None) -> str:
    if labels is not None:
        return labels
    if ct == "builtin:chest-ct":
        return "builtin:chest-ct-labels"
    raise InputError("--vessels labels:... needs --labels LABELS_FILE (a label map on the CT grid)")


def _load_labels(ct_vol, labels_source: str):
    from ddsa_sim.volumes import read_volume

    lab = read_volume(labels_source)
    if lab.shape != ct_vol.shape or not np.allclose(lab.affine, ct_vol.affine, atol=1e-3):
        raise InputError(f"--labels: {labels_source} grid {lab.shape} differs from the CT grid {ct_vol.shape}")
    return lab


def _nifti_fraction(path: Path):
    from ddsa_sim.imaging.sources import nifti_fraction

    return nifti_fraction(path, field="--vessels")


def build_scene(ct: str, vessels: str, seed: int, labels: str | None = None, structures: str | None = None,
                region: str = "body", place: str = "auto", spacing_mm: float = 0.25, **scene_kwargs):
    """Build a :class:`~ddsa_sim.scene.Scene` from CLI-style strings (see docs/dsa.md §6)."""
    from ddsa_sim.imaging.placement import body_mask, label_region, place_in_region
    from ddsa_sim.imaging.sources import label_vessels
    from ddsa_sim.imaging.vessels import TreeVessels
    from ddsa_sim.scene import Scene
    from ddsa_sim.volumes import read_ct
    from ddsa_sim.volumes.materials import labels_in
    from vessel_models.tree import VesselInputError

    if place not in ("auto", "region", "as-is"):
        raise InputError(f"--place: use auto, region or as-is, got {place!r}")
    ct_vol = read_ct(ct)
    rng = np.random.default_rng(seed)
    spec = vessels.strip()
    try:
        if spec.startswith("labels:"):
            labels_source = _default_labels(ct, labels)
            lab = _load_labels(ct_vol, labels_source)
            classes = _read_structures(structures, labels_source)
            names = [n.strip() for n in spec[len("labels:"):].split(",") if n.strip()]
            if not names:
                raise InputError("--vessels labels: lists no structure")
            ids = _label_ids(names, classes, labels_source)
            if not labels_in(lab.data, ids).any():
                raise InputError(f"--vessels: structures {', '.join(names)} have no voxel in {labels_source}")
            vnc, lumen = label_vessels(ct_vol, lab.data, classes, ids, spec, field="--vessels")
            return Scene(vnc, [lumen], **scene_kwargs)

        path = Path(spec)
        if spec in GENERATOR_NAMES or path.suffix.lower() in (".vtp", ".json"):
            from vessel_models import generate, load_tree

            if spec in GENERATOR_NAMES:
                tree = generate(spec, seed)
                as_is = place == "as-is"
            else:
                if not path.is_file():
                    raise InputError(f"--vessels: {path}: no such file")
                tree = load_tree(path)
                as_is = place == "as-is"
            if region == "body":
                reg, reg_name = body_mask(ct_vol), "body"
            else:
                labels_source = _default_labels(ct, labels)
                lab = _load_labels(ct_vol, labels_source)
                classes = _read_structures(structures, labels_source)
                reg = label_region(lab.data, classes, [r.strip() for r in region.split(",")], labels_source)
                reg_name = region
            if place == "auto" and spec not in GENERATOR_NAMES:
                inv = np.linalg.inv(ct_vol.affine)
                ijk = np.rint(inv[:3, :3] @ tree.positions_mm[0] + inv[:3, 3]).astype(int)
                as_is = bool(np.all(ijk >= 0) and np.all(ijk < reg.shape) and reg[tuple(ijk)])
            if not as_is:
                tree = tree.transformed(place_in_region(tree.positions_mm, reg, ct_vol.affine, rng))
            return Scene(ct_vol, [TreeVessels(tree, spacing_mm=spacing_mm, name=f"{spec}@{reg_name}")],
                         **scene_kwargs)

        if path.name.lower().endswith((".nii", ".nii.gz")):
            return Scene(ct_vol, [_nifti_fraction(path)], **scene_kwargs)
        if path.exists():
            raise InputError(f"--vessels: {path}: unknown format (expected .vtp, .json, .nii or .nii.gz)")
        if path.suffix or os.sep in spec:
            raise InputError(f"--vessels: {path}: no such file")
        raise InputError(f"--vessels: '{spec}' is not a file, a labels: list or a generator "
                         f"({', '.join(GENERATOR_NAMES)})")
    except VesselInputError as exc:
        raise InputError(f"--vessels: {str(exc).splitlines()[0]}") from None


def vessel_center_mm(scene) -> np.ndarray:
    """Default isocenter: the centre of the vessel volumes' bounding boxes (world mm) when it lies
    inside the CT's box, else the CT centre."""
    corners = np.concatenate([v.corners_mm() for name, v in scene.projector.volumes.items() if name != "ct"])
    c = 0.5 * (corners.min(axis=0) + corners.max(axis=0))
    ijk = scene.ct.world_to_voxel(c)
    inside = np.all(ijk >= -0.5) and np.all(ijk <= np.array(scene.ct.shape) - 0.5)
    return c if inside else np.asarray(scene.ct.center_mm)


def save_strip(frames, path: Path, title: str = "") -> Path:
    """PNG strip: mask | contrast | conventional DSA | target, one row per contrast frame.

    Shown in the fluoroscopy convention (more attenuation = darker). Mask and contrast share one
    window; both DSA columns share one window from 0 to the 90th percentile of the target inside the vessel mask.
    """
    from ddsa_sim.viz.figures import display_window, image_grid

    w_ct = display_window([frames.mask, *frames.contrast])
    inside = frames.dsa_target[frames.vessel_mask > 0]
    hi = float(np.percentile(inside, 90.0)) if inside.size else 0.0
    hi = hi if hi > 0 else 1.0
    w_dsa = (-hi, 0.25 * hi)
    rows, titles = [], []
    for k in range(frames.contrast.shape[0]):
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
    arrays["photons_per_pixel"] = np.float64(frames.photons_per_pixel)
    arrays["pose_json"] = np.array(json.dumps(carm.to_dict()))
    arrays["scene_json"] = np.array(json.dumps({**scene.to_dict(), "motion_applied": frames.motion}))
    with atomic_output(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays)
    return path


def dsa(ct: str = typer.Option(..., "--ct", help="CT: NIfTI, DICOM folder or builtin:chest-ct."),
        vessels: str = typer.Option(..., "--vessels", help="Tree (.vtp/.json), NIfTI mask/fraction volume, "
                                    "labels:NAME,... (the CT's own labels, virtual non-contrast) or a generator "
                                    "(lsystem, cow, coronary, colonize)."),
        out: Path = typer.Option(..., "-o", "--out", help="Output folder."),
        seed: int = typer.Option(0, help="Seed of every random choice (tree, placement, motion, noise)."),
        alpha: str = typer.Option("0", help="Orbital angle(s) alpha, deg (comma list = several views)."),
        beta: str = typer.Option("0", help="Angular angle(s) beta, deg (comma list = several views)."),
        labels: str | None = typer.Option(None, help="Label map on the CT grid (default for builtin:chest-ct: "
                                             "builtin:chest-ct-labels)."),
        structures: str | None = typer.Option(None, help="CSV 'structure,id' naming the labels of --labels."),
        region: str = typer.Option("body", help="Where a tree is placed: body (CT > -300 HU) or organ name(s)."),
        place: str = typer.Option("auto", help="auto | region | as-is (tree files inside the region stay as-is)."),
        iodine: float = typer.Option(100.0, "--iodine", help="Iodine concentration in the lumen, mgI/ml."),
        photons: float | None = typer.Option(None, "--photons", help="Photons per pixel at the detector (N0); "
                                                "default DeepDRR's 1e4 per 0.194 mm pixel scaled to the pixel area."),
        mas: float | None = typer.Option(None, "--mas", help="Exposure in mAs per frame (overrides --photons)."),
        spectrum: str = typer.Option("90KV_AL40", help="Spectrum preset or spec (physics.spectra.get_spectrum)."),
        detector: str = typer.Option(DEFAULT_DETECTOR, "--detector", help="Detector ROWSxCOLS."),
        pixel_mm: float = typer.Option(DEFAULT_PIXEL_MM, "--pixel-mm", help="Detector pixel size, mm."),
        detector_mode: str = typer.Option("energy", help="energy (integrating) or photon (counting)."),
        bit_depth: int = typer.Option(16, help="Stored bit depth (0 = no quantisation); gain puts the flat "
                                      "field at 90% of full scale."),
        isocenter: str | None = typer.Option(None, help="X,Y,Z world mm; default: centre of the vessels."),
        no_noise: bool = typer.Option(False, "--no-noise", help="No quantum / electronic noise."),
        no_scatter: bool = typer.Option(False, "--no-scatter", help="No scatter."),
        no_grid: bool = typer.Option(False, "--no-grid", help="No anti-scatter grid."),
        motion: str = typer.Option("none", help="none | rigid | elastic patient motion before the contrast frame."),
        frames: int = typer.Option(1, help="Contrast frames over the bolus filling (1 = filled vessels)."),
        spacing_mm: float = typer.Option(0.25, help="Vessel voxel grid spacing around a tree, mm."),
        ) -> None:
    """Render DSA views: OUT/view_NNN.npz (mask, contrast, dsa_target, iodine, vessel_mask) + a PNG strip."""
    from ddsa_sim.cli.options import parse_detector as _parse_detector, parse_point as _parse_point
    from ddsa_sim.geometry import CArm
    from ddsa_sim.imaging.motion import MotionParams
    from ddsa_sim.imaging.recording import Exposure, ScatterSettings, gain_for_bit_depth
    from ddsa_sim.physics.detector import Detector
    from ddsa_sim.physics.scatter import AntiScatterGrid
    from ddsa_sim.scene import render_sequence

    alphas, betas = _floats(alpha, "alpha"), _floats(beta, "beta")
    if len(alphas) != len(betas) and 1 not in (len(alphas), len(betas)):
        raise InputError(f"--alpha and --beta lists differ in length ({len(alphas)} vs {len(betas)})")
    n_views = max(len(alphas), len(betas))
    alphas, betas = alphas * (n_views // len(alphas)), betas * (n_views // len(betas))
    if frames < 1:
        raise InputError(f"--frames must be >= 1, got {frames}")
    rows, cols = _parse_detector(detector)
    exposure = Exposure(photons_per_pixel=photons, mas=mas)
    if bit_depth < 0 or bit_depth > 32:
        raise InputError(f"--bit-depth must be 0 (none) or 1-32, got {bit_depth}")
    scene = build_scene(ct, vessels, seed, labels=labels, structures=structures, region=region, place=place,
                        spacing_mm=spacing_mm, spectrum=spectrum, exposure=exposure, iodine_mg_per_ml=iodine,
                        motion=MotionParams(kind=motion), noise=not no_noise,
                        scatter=ScatterSettings(enabled=not no_scatter, grid=None if no_grid else AntiScatterGrid()),
                        detector=Detector(mode=detector_mode))
    iso = _parse_point(isocenter, "isocenter") or tuple(float(x) for x in vessel_center_mm(scene))
    carm0 = CArm(isocenter_mm=iso, sensor_height=rows, sensor_width=cols, pixel_size=pixel_mm)
    if bit_depth:
        n0 = exposure.n0(scene.projector.spectrum, carm0)
        scene.detector = Detector(mode=detector_mode, bit_depth=bit_depth, gain=gain_for_bit_depth(bit_depth, n0))
    carms = [carm0.at(alpha=a, beta=b) for a, b in zip(alphas, betas)]  # validates every pose first
    out.mkdir(parents=True, exist_ok=True)
    for n, carm in enumerate(carms):
        result = render_sequence(scene, carm, np.random.default_rng([seed, n]), frames)
        npz = save_view(out / f"view_{n:03d}.npz", result, carm, scene)
        save_strip(result, out / f"view_{n:03d}.png",
                   f"{Path(ct).name} + {vessels if len(vessels) < 48 else vessels[:45] + '...'}  alpha={carm.alpha:g} beta={carm.beta:g}  motion={motion}  "
                   f"noise={'off' if no_noise else 'on'}  scatter={'off' if no_scatter else 'on'}")
        typer.echo(str(npz))


def register(app: typer.Typer) -> None:
    """Add the ``dsa`` command to the main ``ddsa-sim`` app."""
    app.command(name="dsa")(dsa)
