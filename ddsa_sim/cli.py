"""The ``ddsa-sim`` command line (typer). Bad input ends with one ``error:`` line and exit code 2."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import numpy as np
import typer

from ddsa_sim import InputError

app = typer.Typer(help="ddsa-sim: physics-based X-ray / DSA simulation and DDSA training.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)


def _parse_detector(text: str) -> tuple[int, int]:
    try:
        rows, cols = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise InputError(f"--detector: expected ROWSxCOLS, e.g. 512x512, got {text!r}") from None
    if rows < 1 or cols < 1:
        raise InputError(f"--detector: sizes must be positive, got {text!r}")
    return rows, cols


def _parse_point(text: str | None, field: str) -> tuple[float, float, float] | None:
    if text is None:
        return None
    try:
        x, y, z = (float(v) for v in text.split(","))
    except ValueError:
        raise InputError(f"--{field}: expected X,Y,Z in mm, got {text!r}") from None
    return (x, y, z)


def _spectrum(kvp: Optional[float], filter_al: Optional[float], spectrum: str) -> str | dict:
    if kvp is None and filter_al is None:
        return spectrum
    return {"kvp": kvp if kvp is not None else 90.0, "filter_al_mm": filter_al if filter_al is not None else 4.0}


def _carm(ct, detector: str, pixel_mm: float, isocenter: Optional[str]):
    from ddsa_sim.geometry import CArm

    rows, cols = _parse_detector(detector)
    iso = _parse_point(isocenter, "isocenter") or tuple(float(x) for x in ct.center_mm)
    return CArm(isocenter_mm=iso, sensor_height=rows, sensor_width=cols, pixel_size=pixel_mm)


CT_ARG = typer.Argument(..., help="CT: NIfTI file, DICOM series folder, or a builtin name (builtin:chest-ct).")
DETECTOR = typer.Option("1536x1536", "--detector", help="Detector size ROWSxCOLS (pixels).")
PIXEL = typer.Option(0.194, "--pixel-mm", help="Detector pixel size (mm).")
KVP = typer.Option(None, "--kvp", help="Tube voltage (kVp) for a SpekPy spectrum.")
FILTER_AL = typer.Option(None, "--filter-al", help="Aluminium filtration (mm) for a SpekPy spectrum.")
SPECTRUM = typer.Option("90KV_AL40", "--spectrum", help="Spectrum preset (60KV_AL35, 90KV_AL40, 120KV_AL43).")
ISO = typer.Option(None, "--isocenter", help="Isocenter X,Y,Z in world mm (LPS); default: the CT centre.")
METHOD = typer.Option("trilinear", "--method", help="trilinear (DeepDRR-style) or siddon (exact voxel traversal).")
DEVICE = typer.Option("cpu", "--device", help="cpu (numba kernels) or cuda / cuda:N (torch backend, trilinear).")


@app.command()
def project(ct: str = CT_ARG, out: Path = typer.Option(..., "-o", "--out", help="Output folder."),
            alpha: float = typer.Option(0.0, help="Orbital angle alpha (deg, >0 = RAO)."),
            beta: float = typer.Option(0.0, help="Angular angle beta (deg, >0 = CAU)."),
            gamma: float = typer.Option(0.0, help="Detector roll (deg)."),
            detector: str = DETECTOR, pixel_mm: float = PIXEL, kvp: Optional[float] = KVP,
            filter_al: Optional[float] = FILTER_AL, spectrum: str = SPECTRUM, isocenter: Optional[str] = ISO,
            method: str = METHOD, device: str = DEVICE) -> None:
    """Render one view of a CT: OUT/view_000.npz (neglog, intensity, density_<material>, projection_matrix) + PNG."""
    from ddsa_sim.drr import run_sweep
    from ddsa_sim.geometry import Pose
    from ddsa_sim.volumes import read_ct

    ct_vol = read_ct(ct)
    carm = _carm(ct_vol, detector, pixel_mm, isocenter)
    pose = Pose(alpha, beta, gamma, carm.isocenter_mm)
    pose.apply(carm)  # validates the pose before any work
    paths = run_sweep(ct_vol, carm, [pose], out, _spectrum(kvp, filter_al, spectrum), progress=False, method=method,
                      device=device)
    typer.echo(str(paths[0]))


@app.command()
def sweep(ct: str = CT_ARG, out: Path = typer.Option(..., "-o", "--out", help="Output folder."),
          alpha: str = typer.Option("0", help="Alpha START:STOP:STEP or one value (deg)."),
          beta: str = typer.Option("0", help="Beta START:STOP:STEP or one value (deg)."),
          random: int = typer.Option(0, help="Instead of a grid, draw this many poses uniformly in the alpha/beta ranges."),
          seed: int = typer.Option(0, help="Seed for --random draws."),
          jitter_mm: float = typer.Option(0.0, help="Isocenter jitter (mm, uniform cube) for --random draws."),
          detector: str = DETECTOR, pixel_mm: float = PIXEL, kvp: Optional[float] = KVP,
          filter_al: Optional[float] = FILTER_AL, spectrum: str = SPECTRUM, isocenter: Optional[str] = ISO,
          method: str = METHOD, device: str = DEVICE) -> None:
    """Render a pose sweep: view_NNN.npz + PNG per view, contact_sheet.png and poses.json."""
    from ddsa_sim.drr import run_sweep
    from ddsa_sim.geometry import grid_poses, parse_range, random_poses
    from ddsa_sim.volumes import read_ct

    alphas, betas = parse_range(alpha, "alpha"), parse_range(beta, "beta")
    ct_vol = read_ct(ct)
    carm = _carm(ct_vol, detector, pixel_mm, isocenter)
    if random:
        poses = random_poses(np.random.default_rng(seed), random, (alphas.min(), alphas.max()),
                             (betas.min(), betas.max()), carm.isocenter_mm, jitter_mm)
    else:
        poses = grid_poses(alphas, betas, carm.isocenter_mm)
    for p in poses:
        p.apply(carm)  # refuse out-of-limit poses before rendering anything
    paths = run_sweep(ct_vol, carm, poses, out, _spectrum(kvp, filter_al, spectrum), method=method,
                      device=device)
    typer.echo(f"{len(paths)} views, contact sheet: {Path(out) / 'contact_sheet.png'}")


def _mount_optional() -> None:
    """Sub-commands living in other packages (each registers itself)."""
    try:
        from vessel_models.cli import app as vessels_app
        app.add_typer(vessels_app, name="vessels", help="Vessel trees: generate, voxelize, stats.")
    except ImportError:
        pass
    for module in ("ddsa_sim.export.cli", "ddsa_sim.training.cli", "ddsa_sim.scene_cli", "ddsa_sim.scene3d_cli"):
        try:
            mod = __import__(module, fromlist=["register"])
        except ImportError:
            continue
        mod.register(app)


_mount_optional()


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the app, turning bad input into one ``error:`` line (exit 2)."""
    known: tuple[type[BaseException], ...] = (InputError, FileNotFoundError, IsADirectoryError, PermissionError)
    try:
        from vessel_models import VesselInputError
        known = known + (VesselInputError,)
    except ImportError:
        pass
    try:
        app(args=argv, prog_name="ddsa-sim")
    except known as exc:
        msg = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        print(f"error: {msg}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
