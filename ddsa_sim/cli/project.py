"""``ddsa-sim project`` and ``ddsa-sim sweep``: plain DRR views of a CT (render-and-save: :mod:`ddsa_sim.cli.drr`)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ddsa_sim import InputError
from ddsa_sim.cli.options import (
    CT_ARG,
    DETECTOR,
    DEVICE,
    FILTER_AL,
    ISOCENTER,
    KVP,
    METHOD,
    OUT_DIR,
    OVERWRITE,
    PIXEL_MM,
    SPECTRUM,
    file_of,
    parse_angle_range,
    parse_detector,
    parse_point,
    spectrum_from_options,
)

__all__ = ["project", "register", "sweep"]


def _carm(ct, detector: str, pixel_mm: float, isocenter: Optional[str]):
    """The C-arm of the command's options, isocenter at the CT centre unless ``--isocenter``."""
    from ddsa_sim.geometry import CArm

    rows, cols = parse_detector(detector)
    iso = parse_point(isocenter, "isocenter") or tuple(float(x) for x in ct.center_mm)
    return CArm(isocenter_mm=iso, sensor_height=rows, sensor_width=cols, pixel_mm=pixel_mm)


def project(ct: str = CT_ARG, out: Path = OUT_DIR,
            alpha: float = typer.Option(0.0, help="Orbital angle alpha (deg, >0 = RAO)."),
            beta: float = typer.Option(0.0, help="Angular angle beta (deg, >0 = CAU)."),
            gamma: float = typer.Option(0.0, help="Detector roll (deg)."),
            detector: str = DETECTOR, pixel_mm: float = PIXEL_MM, kvp: Optional[float] = KVP,
            filter_al: Optional[float] = FILTER_AL, spectrum: Optional[str] = SPECTRUM, isocenter: Optional[str] = ISOCENTER,
            method: str = METHOD, device: str = DEVICE, overwrite: bool = OVERWRITE) -> None:
    """Render one view of a CT: OUT/view_000.npz (neglog, intensity, density_<material>, projection_matrix) + PNG
    of -ln(I/I0) (more attenuation brighter, as a radiograph; `dsa` shows frames in the fluoroscopy convention).
    A DRR: DeepDRR's ideal energy-integrating detector (every photon absorbed), no noise, scatter or blur; `dsa`
    records with the CsI panel and all of these."""
    from ddsa_sim.cli.drr import run_sweep
    from ddsa_sim.files import claim_output
    from ddsa_sim.geometry import Pose
    from ddsa_sim.volumes import read_ct

    claim_output(out, overwrite, inputs=[ct, file_of(spectrum)])
    spec = spectrum_from_options(kvp, filter_al, spectrum)
    parse_detector(detector)
    ct_vol = read_ct(ct)
    carm = _carm(ct_vol, detector, pixel_mm, isocenter)
    pose = Pose(alpha, beta, gamma, carm.isocenter_mm)
    paths = run_sweep(ct_vol, carm, [pose], out, spec, progress=False, method=method, device=device,
                      overwrite=overwrite)
    typer.echo(str(paths[0]))


def sweep(ct: str = CT_ARG, out: Path = OUT_DIR,
          alpha: str = typer.Option("0", help="Alpha START:STOP:STEP or one value (deg); for --random START:STOP."),
          beta: str = typer.Option("0", help="Beta START:STOP:STEP or one value (deg); for --random START:STOP."),
          random: int = typer.Option(0, help="Instead of a grid, draw this many poses uniformly in the alpha/beta ranges."),
          seed: int = typer.Option(0, help="Seed for --random draws."),
          jitter_mm: float = typer.Option(0.0, help="Isocenter jitter (mm, uniform cube) for --random draws."),
          detector: str = DETECTOR, pixel_mm: float = PIXEL_MM, kvp: Optional[float] = KVP,
          filter_al: Optional[float] = FILTER_AL, spectrum: Optional[str] = SPECTRUM, isocenter: Optional[str] = ISOCENTER,
          method: str = METHOD, device: str = DEVICE, overwrite: bool = OVERWRITE,
          gif: bool = typer.Option(False, "--gif", help="Also write OUT/sweep.gif (the views as an animation)."),
          mp4: bool = typer.Option(False, "--mp4", help="Also write OUT/sweep.mp4 (needs imageio-ffmpeg)."),
          ) -> None:
    """Render a pose sweep: view_NNN.npz + PNG per view, contact_sheet.png, poses.json (+ sweep.gif/.mp4); DRRs as
    `project` renders them (ideal detector, no noise, scatter or blur)."""
    import numpy as np

    from ddsa_sim.cli.drr import run_sweep
    from ddsa_sim.files import claim_output
    from ddsa_sim.geometry import grid_poses, parse_span, random_poses
    from ddsa_sim.volumes import read_ct

    if seed < 0:
        raise InputError(f"--seed: must be >= 0, got {seed}")
    if not 0.0 <= jitter_mm < float("inf"):  # NaN fails too
        raise InputError(f"--jitter-mm: must be a finite length >= 0 mm, got {jitter_mm:g}")
    claim_output(out, overwrite, inputs=[ct, file_of(spectrum)])
    if random:  # uniform over START..STOP, not over the grid points a STEP would make
        spans = parse_span(alpha, "alpha"), parse_span(beta, "beta")
    elif jitter_mm:
        raise InputError("--jitter-mm: moves the isocenter of --random draws; a grid sweep takes none")
    else:
        grid = parse_angle_range(alpha, "alpha"), parse_angle_range(beta, "beta")
    spec = spectrum_from_options(kvp, filter_al, spectrum)
    parse_detector(detector)
    ct_vol = read_ct(ct)
    carm = _carm(ct_vol, detector, pixel_mm, isocenter)
    if random:
        poses = random_poses(np.random.default_rng(seed), random, *spans, carm.isocenter_mm, jitter_mm)
    else:
        poses = grid_poses(*grid, carm.isocenter_mm)
    animations = [s for s, on in ((".gif", gif), (".mp4", mp4)) if on]
    paths = run_sweep(ct_vol, carm, poses, out, spec, method=method, device=device, animations=animations,
                      overwrite=overwrite)
    typer.echo(f"{len(paths)} views, contact sheet: {Path(out) / 'contact_sheet.png'}" if len(paths) > 1
               else f"1 view: {paths[0]}")


def register(app: typer.Typer) -> None:
    """Add ``project`` and ``sweep`` to the main ``ddsa-sim`` app."""
    app.command("project")(project)
    app.command("sweep")(sweep)
