"""How far the catheter's tip is from the injection site (the tree's root) under cardiac and respiratory
motion, still versus moved with the tree (docs/dsa.md §4.1).

    python experiments/catheter_motion.py [--seed 1]

Builds the coronary template on the builtin chest CT (as ``ddsa-sim dsa --vessels coronary --labels none``) and
prints, per motion state, the distance (mm) from the tip to the root moved by the tree's own map:
with the catheter left still and with :func:`ddsa_sim.scene.moving.catheter_motion`.
"""

from __future__ import annotations

import argparse

import numpy as np

from ddsa_sim.cli.dsa import scene_spec
from ddsa_sim.scene import EffectsSpec, build_scene
from ddsa_sim.scene.cardiorespiratory import diaphragm_level_mm
from ddsa_sim.scene.motion import MotionParams
from ddsa_sim.scene.moving import catheter_motion, vessel_motion


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    scene = build_scene(scene_spec("builtin:chest-ct", "coronary", args.seed, labels="none",  # as documented: the
                                   effects=EffectsSpec(motion=MotionParams("cardiorespiratory"))))  # lung heuristic
    name, root = scene.vessel_names[0], scene.vessels[0].tree.positions_mm[0]
    tip = scene.catheter.centerline_mm[-1]
    print(f"dome z = {diaphragm_level_mm(scene.ct):.1f} mm; tip-root distance at rest {np.linalg.norm(tip - root):.2f} mm")
    mask = {"contraction": 0.0, "diaphragm_offset_mm": -15.0}  # mask at inspiration
    print("contraction  diaphragm_mm  still_mm  moved_mm  entry_moved_mm")
    for f in (0.0, 0.5, 1.0):
        for off in (-15.0, 0.0):
            state = {"contraction": f, "diaphragm_offset_mm": off}
            moves = vessel_motion(scene, state, mask)
            t = moves[name]
            root_moved = t[:3, :3] @ root + t[:3, 3]
            cath = catheter_motion(scene, state, mask, moves)
            print(f"{f:11.1f}  {off - mask['diaphragm_offset_mm']:12.1f}  {np.linalg.norm(tip - root_moved):8.2f}  "
                  f"{np.linalg.norm(cath.centerline_mm[-1] - root_moved):8.2f}  "
                  f"{np.linalg.norm(cath.centerline_mm[0] - scene.catheter.centerline_mm[0]):14.2f}")


if __name__ == "__main__":
    main()
