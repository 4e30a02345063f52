"""The CT's heart beating with the coronary tree on the builtin chest CT (docs/dsa.md §4.1): its volume
change over the beat, the smallest Jacobian, the added cost per frame and a figure.

    python experiments/beating_heart.py [--seed 1] [--size 256] [--out docs/img/cardiac_motion_ct.png]

Builds the coronary template on the builtin chest CT with its label map (as ``ddsa-sim dsa --ct
builtin:chest-ct --labels builtin:chest-ct-labels --vessels coronary --motion cardiac``), then prints

* the tree's heart frame and the labelled heart's end-diastolic and end-systolic volume (the Jacobian
  of the displacement integrated over the label on the 2 mm weight grid), split at the base plane into
  the part apex-side of it (the ventricles) and beyond it (the atria), and the smallest Jacobian over
  the grid, at the export's smallest, default and largest amplitudes;
* the time per frame of the moved CT (resampling, marching) next to the time of a whole frame without
  it, at ``size``^2 pixels (run it on a quiet machine; the load average is printed);

and draws mask, contrast, conventional DSA and target of a frame at end-systole with the mask at
end-diastole (render seed 43: contraction 0 in the mask, 0.998 in the frame).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np

from ddsa_sim.cli.dsa import scene_spec, vessel_center_mm
from ddsa_sim.geometry.carm import CArm
from ddsa_sim.scene import EffectsSpec, build_scene, render_frames
from ddsa_sim.scene.beating_heart import beating_ct, heart_field
from ddsa_sim.scene.motion import MotionParams
from ddsa_sim.scene.moving import heart_motion, march_moving_ct
from ddsa_sim.viz.figures import image_grid

#: (longitudinal, radial) end-systolic amplitudes (mm): the export's smallest, the default, the largest,
#: and the radial contraction of 5 mm the model had before the CT's heart beat with it
AMPLITUDES = ((8.0, 0.5), (12.0, 1.0), (15.0, 1.5), (12.0, 5.0))


def volume_change(scene, longitudinal_mm: float, radial_mm: float) -> dict[str, float]:
    """ED and ES volumes (ml) of the labelled heart and its parts, and the smallest Jacobian."""
    base = heart_motion(scene)
    field = heart_field(base.frame, scene.vessels[0].tree.positions_mm, longitudinal_mm, radial_mm, scene.heart,
                        scene.ct.affine)
    shape, h = field.weight.shape, field.spacing_mm
    grid = np.indices(shape).transpose(1, 2, 3, 0) * h + field.origin_mm
    d = field.displacement_mm(grid.reshape(-1, 3), 1.0).reshape(grid.shape)
    det = np.linalg.det(np.stack([np.stack(np.gradient(d[..., i], h), axis=-1) for i in range(3)], axis=-2)
                        + np.eye(3))
    inv = np.linalg.inv(scene.ct.affine)
    ijk = np.rint(grid @ inv[:3, :3].T + inv[:3, 3]).astype(int)
    inside = np.all((ijk >= 0) & (ijk < scene.heart.shape), axis=-1)
    label = np.zeros(shape, bool)
    label[inside] = scene.heart[tuple(ijk[inside].T)]
    beyond = -((grid - field.frame.apex_mm) @ field.frame.axis) > field.frame.length_mm
    ml = h**3 / 1000.0
    out = {"min_jacobian": float(det.min())}
    for name, part in (("heart", label), ("ventricles", label & ~beyond), ("atria", label & beyond)):
        out[f"{name}_ed_ml"] = float(part.sum() * ml)
        out[f"{name}_es_ml"] = float(det[part].sum() * ml)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--pixel-mm", type=float, default=1.0)
    ap.add_argument("--out", type=Path, default=Path("docs/img/cardiac_motion_ct.png"))
    args = ap.parse_args()
    spec = scene_spec("builtin:chest-ct", "coronary", args.seed, labels="builtin:chest-ct-labels", catheter=False,
                      effects=EffectsSpec(motion=MotionParams("cardiac")))
    scene = build_scene(spec)
    field = heart_motion(scene)
    f = field.frame
    print(f"heart frame: L = {f.length_mm:.1f} mm, R = {f.radius_mm:.1f} mm; atria beyond the base "
          f"{field.atrial_length_mm:.1f} mm; weight grid {field.weight.shape} at {field.spacing_mm} mm")
    print("long_mm rad_mm  heart_ED heart_ES change  vent_ED vent_ES change  atria_ED atria_ES change  min_det")
    for lon, rad in AMPLITUDES:
        v = volume_change(scene, lon, rad)
        cells = []
        for part in ("heart", "ventricles", "atria"):
            ed, es = v[f"{part}_ed_ml"], v[f"{part}_es_ml"]
            cells.append(f"{ed:8.0f} {es:8.0f} {100 * (ed - es) / ed:5.1f}%")
        print(f"{lon:7.1f} {rad:6.1f}  " + "  ".join(cells) + f"  {v['min_jacobian']:.2f}")

    carm = CArm(isocenter_mm=tuple(vessel_center_mm(scene)), sensor_height=args.size, sensor_width=args.size,
                pixel_mm=args.pixel_mm)
    ct = scene.projector.volumes["ct"]
    print(f"load average before timing: {open('/proc/loadavg').read().split()[:3]}")
    render_frames(scene, carm, np.random.default_rng(43), times_s=[0.5])  # warm: compile, caches
    systole = {"contraction": 1.0, "diaphragm_offset_mm": 0.0}
    t0 = time.perf_counter()
    beating_ct(ct, field, 1.0)
    t1 = time.perf_counter()
    march_moving_ct(scene, carm, systole, systole)
    t2 = time.perf_counter()
    still_scene = build_scene(dataclasses.replace(spec, effects=EffectsSpec()))
    render_frames(still_scene, carm, np.random.default_rng(43), times_s=[0.5])
    t3 = time.perf_counter()
    render_frames(still_scene, carm, np.random.default_rng(43), times_s=[0.5])
    t4 = time.perf_counter()
    frames = render_frames(scene, carm, np.random.default_rng(43), times_s=[0.5])
    t5 = time.perf_counter()
    print(f"{args.size}^2 px: the CT at end-systole {t2 - t1:.2f} s (resampling the heart {t1 - t0:.2f} s of it, "
          f"then marching); one frame without motion {t4 - t3:.2f} s, with cardiac motion {t5 - t4:.2f} s "
          f"(its tree re-voxelized and the CT at its phase)")
    print(f"load average after timing: {open('/proc/loadavg').read().split()[:3]}")
    fr = frames.frame(0)
    mask_win = tuple(np.percentile(fr["mask"], [1, 99]))

    def symmetric(image: np.ndarray) -> tuple[float, float]:
        top = float(np.percentile(np.abs(image), 99.5))
        return -top, top

    image_grid([[fr["mask"], fr["contrast"], fr["conventional_dsa"], fr["dsa_target"]]], args.out,
               titles=[["mask (end-diastole)", f"contrast (contraction {frames.motion[0]['contraction']:.2f})",
                        "conventional DSA", "target"]],
               windows=[mask_win, mask_win, symmetric(fr["conventional_dsa"]), symmetric(fr["dsa_target"])],
               cell_inches=3.0,
               suptitle="coronary template on builtin:chest-ct, cardiac motion: the CT's heart beats with the tree")
    print(args.out)


if __name__ == "__main__":
    main()
