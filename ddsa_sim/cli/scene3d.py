"""The ``ddsa-sim scene`` command: a 3D picture of a setup (CT, vessels, source, detector, frustum).

Registered on the main app by :func:`register` (``ddsa_sim.cli`` calls it); needs pyvista.
"""

from __future__ import annotations

from pathlib import Path

import typer

from ddsa_sim import InputError
from ddsa_sim.cli.options import parse_detector, parse_point

__all__ = ["register", "scene"]


def _ct_and_tree(ct: str, vessels: str | None, seed: int):
    """The CT and the tree to draw: from a file (.vtp / .json, kept as-is) or a generator name, placed as
    ``ddsa-sim dsa`` places it (templates registered to the anatomy, generic trees in the body;
    :func:`ddsa_sim.scene.place_vessels`), the CT read once."""
    from ddsa_sim.volumes import read_ct
    from vessel_models import GENERATORS, load_tree

    if vessels in GENERATORS:
        from ddsa_sim.cli.dsa import scene_spec
        from ddsa_sim.scene import load_patient, place_vessels

        spec = scene_spec(ct, vessels, seed)
        patient = load_patient(spec.ct)
        return patient.ct, place_vessels(spec, patient)[0].tree
    if vessels is None:
        return read_ct(ct), None
    path = Path(vessels)
    if not path.is_file():
        raise InputError(f"--vessels: {path}: no such file (or a generator: {', '.join(GENERATORS)})")
    return read_ct(ct), load_tree(path)


def scene(ct: str = typer.Argument(..., help="CT: NIfTI file, DICOM series folder, or builtin:chest-ct."),
          png: Path = typer.Option(..., "--png", help="Output PNG of the 3D scene."),
          vessels: str | None = typer.Option(
              None, "--vessels", help="Vessel tree (.vtp/.json, world mm) or a generator name (lsystem, cow, "
              "coronary, colonize; placed as `dsa` places it)."),
          seed: int = typer.Option(0, help="Seed of a generated tree."),
          alpha: float = typer.Option(0.0, help="Orbital angle alpha (deg, >0 = RAO)."),
          beta: float = typer.Option(0.0, help="Angular angle beta (deg, >0 = CAU)."),
          gamma: float = typer.Option(0.0, help="Detector roll (deg)."),
          detector: str = typer.Option("256x256", "--detector", help="Detector size ROWSxCOLS (pixels)."),
          pixel_mm: float = typer.Option(1.164, "--pixel-mm", help="Detector pixel size (mm)."),
          isocenter: str | None = typer.Option(None, "--isocenter", help="X,Y,Z world mm; default: CT centre."),
          drr: bool = typer.Option(True, "--drr/--no-drr", help="Render the DRR and show it on the detector."),
          iso_level: float = typer.Option(300.0, "--iso-level", help="CT iso-surface level (HU)."),
          downsample: float = typer.Option(2.5, "--downsample", help="CT voxel size for the surface (mm)."),
          ct_mode: str = typer.Option("surface", "--ct-mode", help="surface | volume | none."),
          size: str = typer.Option("1000x750", "--size", help="Picture WIDTHxHEIGHT (pixels)."),
          overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing PNG."),
          ) -> None:
    """Write a 3D picture of the imaging setup (CT, vessels, source, detector with the DRR, frustum)."""
    import pyvista as pv

    from ddsa_sim.geometry import CArm
    from ddsa_sim.viz.scene3d import save_scene_png

    try:
        width, height = (int(x) for x in size.lower().split("x"))
    except ValueError:
        raise InputError(f"--size: expected WIDTHxHEIGHT, e.g. 1000x750, got {size!r}") from None
    if not (16 <= width <= 8192 and 16 <= height <= 8192):
        raise InputError(f"--size: sizes must be within 16..8192, got {size!r}")
    if png.suffix.lower() != ".png":
        raise InputError(f"--png: must end in .png, got {png}")
    if png.exists() and not overwrite:
        raise InputError(f"{png}: exists; choose another --png, or --overwrite to replace it")
    rows, cols = parse_detector(detector)
    ct_vol, tree = _ct_and_tree(ct, vessels, seed)
    iso = parse_point(isocenter, "isocenter") or tuple(float(x) for x in ct_vol.center_mm)
    carm = CArm(isocenter_mm=iso, alpha_deg=alpha, beta_deg=beta, gamma_deg=gamma, sensor_height=rows, sensor_width=cols,
                pixel_mm=pixel_mm)
    image = None
    if drr:
        from ddsa_sim.cli.drr import ct_projector

        image = ct_projector(ct_vol).render(carm).neglog["image"]
    pv.OFF_SCREEN = True
    save_scene_png(ct_vol, carm, png, image=image, tree=tree, iso_level_hu=iso_level, downsample=downsample,
                   ct_mode=ct_mode, window_size=(width, height))
    typer.echo(str(png))


def register(app: typer.Typer) -> None:
    """Add the ``scene`` command to the main ``ddsa-sim`` app."""
    app.command(name="scene")(scene)
