"""What the catheter's way in through the labelled arteries costs: the coronary catheter of the builtin chest CT
with the way in (``ddsa_sim/scene/catheter_route.py``, through the aorta and its labelled branches) against the same
catheter coming straight in (no way in).

Times, per stage, the lumen's voxel graph (``ArteryRoutes``: once per CT) against scikit-image's minimum costs on
the lumen's bounding box (the implementation before it, in the same run), one way in (per tree; the first computes
the costs from the lumen's lowest exit),
the centreline and the voxelized tube (``build_catheter``: per tree, and per contrast frame under motion), with
peak traced memory (tracemalloc) of each; both catheters in the same run, best of ``--repeats``.

Run::

    python experiments/bench_catheter_route.py --seeds 0 1 2 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import time
import tracemalloc

import numpy as np


def timed(fn, repeats: int):
    """(result, best seconds of 1 + ``repeats`` calls, peak traced MB of the first call, traced) of ``fn()``."""
    tracemalloc.start()
    t0 = time.perf_counter()
    out = fn()
    times = [time.perf_counter() - t0]
    peak = tracemalloc.get_traced_memory()[1] / 1e6
    tracemalloc.stop()
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return out, min(times), peak


def box_minimum_costs(lumen: np.ndarray, affine: np.ndarray):
    """The costs from the lumen's lowest exit as scikit-image computes them on the lumen's bounding box (what
    ``ArteryRoutes`` did before its voxel graph): the distance map and ``MCP_Geometric.find_costs``."""
    from scipy import ndimage
    from skimage.graph import MCP_Geometric

    from ddsa_sim.scene.catheter_route import WALL_CLEARANCE_MM

    idx = np.argwhere(lumen)
    lo, hi = np.maximum(idx.min(axis=0) - 1, 0), np.minimum(idx.max(axis=0) + 2, lumen.shape)
    box = lumen[tuple(slice(a, b) for a, b in zip(lo, hi))]
    spacing = tuple(np.linalg.norm(affine[:3, :3], axis=0))
    cost = np.where(box, 1.0 / (WALL_CLEARANCE_MM + ndimage.distance_transform_edt(box, sampling=spacing)) ** 2,
                    np.inf)
    mcp = MCP_Geometric(cost, sampling=spacing)
    low = idx[idx[:, 2] == idx[:, 2].min()] - lo
    mcp.find_costs([tuple(e) for e in low])
    return mcp


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="coronary template seeds")
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats after the first call")
    args = ap.parse_args(argv)

    from ddsa_sim.cli.dsa import scene_spec
    from ddsa_sim.scene import build_scene
    from ddsa_sim.scene.builder import _feeding_lumen, load_patient
    from ddsa_sim.scene.catheter import CatheterSpec, build_catheter, catheter_centerline
    from ddsa_sim.scene.catheter_route import ArteryRoutes
    from ddsa_sim.scene.placement import body_outline_mask

    spec = scene_spec("builtin:chest-ct", "coronary", 0, labels="builtin:chest-ct-labels", catheter=False)
    patient = load_patient(spec.ct)
    outline = body_outline_mask(patient.ct)
    lumen = _feeding_lumen(patient)  # the aorta and its labelled branches
    routes, t_routes, mb_routes = timed(lambda: ArteryRoutes(lumen, patient.ct.affine), 1)
    rows = [{"stage": "ArteryRoutes (once per CT)", "s": t_routes, "peak_mb": mb_routes, "voxels": int(lumen.sum())}]
    _, t_mcp, mb_mcp = timed(lambda: box_minimum_costs(lumen, patient.ct.affine), 0)
    rows.append({"stage": "reference: scikit-image MCP_Geometric on the lumen's box (distance map, costs from the "
                          "lowest exit)", "s": t_mcp, "peak_mb": mb_mcp})
    for seed in args.seeds:
        tree = build_scene(scene_spec("builtin:chest-ct", "coronary", seed, labels="builtin:chest-ct-labels",
                                      catheter=False), patient).vessels[0].tree
        feeding = np.vstack([np.asarray(tree.metadata["feeding_path_mm"]), tree.positions_mm[:1]])
        fresh = ArteryRoutes(lumen, patient.ct.affine)
        t0 = time.perf_counter()
        fresh.route(feeding[0], feeding[1] - feeding[0])  # the first way in of a CT: the costs from its exit
        first = time.perf_counter() - t0
        way, t_way, mb_way = timed(lambda: routes.route(feeding[0], feeding[1] - feeding[0]), args.repeats)
        for name, route in (("straight in", None), ("way in through the labelled arteries", way)):
            line = catheter_centerline(tree, outline, patient.ct.affine, route=route)
            cath, t_build, mb_build = timed(lambda line=line: build_catheter(line, CatheterSpec()), args.repeats)
            rows.append({"stage": f"seed {seed}: {name}", "centreline_mm": float(np.sum(np.linalg.norm(
                np.diff(line, axis=0), axis=1))), "grid_mm": float(np.linalg.norm(cath.affine[:3, 0])),
                "build_catheter_s": t_build, "build_peak_mb": mb_build,
                **({"first_route_s": first, "route_s": t_way, "route_peak_mb": mb_way} if route is not None else {})})
    for r in rows:
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
