"""What voxelizing a tool mesh costs: ``Mesh.from_stl``'s voxelizer (VTK's scan conversion, pyvista's
``voxelize_binary_mask``, in slabs; ``ddsa_sim/compat/deepdrr/vol.py``) against the one before it (VTK's
``select_interior_points`` on every sub-point at once), on DeepDRR's own 130 mm screw
(``data/6.5mmD_32mmThread_L130mm.STL`` of the DeepDRR repository; give its path) at several voxel sizes.

Each method runs in a fresh process per voxel size (peak resident memory, ``ru_maxrss``, counts VTK's own
arrays, which tracemalloc does not), both in the same run; the voxel volume is compared with the mesh's.

Run::

    python experiments/bench_mesh_voxelize.py SCREW.STL --spacings 0.3 0.2 0.1
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = r"""
import json, resource, sys, time
import numpy as np
import pyvista as pv
from ddsa_sim.compat.deepdrr.vol import _read_mesh, voxelize_surface

path, method, spacing = sys.argv[1], sys.argv[2], float(sys.argv[3])
surface = _read_mesh(path, ".stl")
t0 = time.perf_counter()
if method == "ours":
    occupancy, _ = voxelize_surface(surface, spacing)
else:  # the voxelizer before 2026-12-07, written out: every sub-point at once
    b = np.asarray(surface.bounds, dtype=np.float64).reshape(3, 2)
    lo = b[:, 0] - spacing
    shape = np.ceil((b[:, 1] + spacing - lo) / spacing).astype(int) + 1
    sub = (np.arange(3) + 0.5) / 3 - 0.5
    axes = [(np.arange(n)[:, None] + sub[None, :]).ravel() * spacing + lo[k] for k, n in enumerate(shape)]
    pts = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    inside = pv.PolyData(pts).select_interior_points(surface, method="cell_locator", check_surface=False)
    fine = np.asarray(inside["selected_points"]).reshape(shape[0] * 3, shape[1] * 3, shape[2] * 3)
    occupancy = fine.reshape(shape[0], 3, shape[1], 3, shape[2], 3).mean(axis=(1, 3, 5))
seconds = time.perf_counter() - t0
print(json.dumps({"method": method, "spacing_mm": spacing, "seconds": round(seconds, 2),
                  "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                  "volume_mm3": round(float(occupancy.sum()) * spacing**3, 1),
                  "mesh_volume_mm3": round(float(surface.volume), 1)}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stl", help="DeepDRR's data/6.5mmD_32mmThread_L130mm.STL (or any closed STL, mm)")
    parser.add_argument("--spacings", type=float, nargs="+", default=[0.3, 0.2, 0.1])
    parser.add_argument("--memory-limit-gb", type=float, default=8.0,
                        help="address-space limit of each run (the old voxelizer exceeds it at 0.1 mm)")
    args = parser.parse_args()
    limit = int(args.memory_limit_gb * 2**30)
    for spacing in args.spacings:
        for method in ("ours", "select_interior_points"):
            proc = subprocess.run([sys.executable, "-c", CHILD, args.stl, method, str(spacing)], capture_output=True,
                                  text=True, preexec_fn=lambda: __import__("resource").setrlimit(
                                      __import__("resource").RLIMIT_AS, (limit, limit)))
            if proc.returncode == 0:
                print(proc.stdout.strip())
            else:
                last = (proc.stderr.strip().splitlines() or ["?"])[-1]
                print(json.dumps({"method": method, "spacing_mm": spacing, "failed": last[:160]}))


if __name__ == "__main__":
    main()
