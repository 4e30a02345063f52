"""What a rendered view costs at 1 and 2 x 2 rays per pixel: ``render_frames`` of ``builtin:chest-ct`` with its labels
(blood among its materials: the lumen's displacement path) and an L-system tree, 256 x 256 pixels of 1.164 mm, this
checkout against another (e.g. the code before a change: ``git archive <commit> | tar -x -C /tmp/base``), each in a
fresh process, in one run.

Reports the best of 3 renders per supersampling (after a warm-up render) and the process's peak resident memory.

Run::

    python experiments/bench_render_supersample.py --other /tmp/base
"""

from __future__ import annotations

from checkouts import compare_checkouts

CHILD = r"""
import numpy as np
from ddsa_sim.cli.dsa import scene_spec, vessel_center_mm
from ddsa_sim.geometry import CArm
from ddsa_sim.scene import build_scene, render_frames

scene = build_scene(scene_spec("builtin:chest-ct", "lsystem", 3, labels="builtin:chest-ct-labels"))
carm = CArm(isocenter_mm=tuple(float(x) for x in vessel_center_mm(scene)), sensor_height=256, sensor_width=256,
            pixel_mm=1.164)
out = {}
for k in (1, 2):
    scene.supersample = k
    render_frames(scene, carm, np.random.default_rng(0))
    out[f"supersample {k}"] = round(best_of(lambda: render_frames(scene, carm, np.random.default_rng(0)))[0], 3)
report(out)
"""


def main() -> None:
    compare_checkouts(CHILD, __doc__.splitlines()[0])


if __name__ == "__main__":
    main()
