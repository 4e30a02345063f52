"""Compile-time benchmark: the first call of each numba kernel on an empty cache, and its warm speed.

Usage::

    python experiments/bench_compile.py                  # this checkout
    python experiments/bench_compile.py --ref 94b7ece    # and a git revision, in the same run

numba compiles a kernel at its first call and caches the machine code on disk (``cache=True``), so a
user pays the compile once per install and a fresh clone's test suite pays it in full. Each kernel is
timed in its own fresh process with an empty ``NUMBA_CACHE_DIR``:

* ``compile_s``: the first call on a tiny input (compilation and one small run);
* ``warm_s``: the median of 7 calls on a realistic input, after one warm-up call: the trilinear and
  Siddon marchers on a 256^3 float32 sphere with speckle (empty-space skipping on) -> 256 x 256 rays,
  one material; the voxelizer on the Circle of Willis template (seed 1) at 0.5 mm (322 x 397 x 488).
  ``checksum`` is the sum of the output, which must agree between revisions.

``--ref REV`` runs the same in a detached ``git worktree`` of REV (put first on ``PYTHONPATH``) and
reports each kernel's ratio. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from machine import machine  # experiments/machine.py, beside this script

ROOT = Path(__file__).resolve().parent.parent
KERNELS = ("trilinear", "siddon", "voxelize")


def _marcher_inputs(n: int, pixels: int):
    import numpy as np

    from ddsa_sim.projector.kernels_cpu import brick_occupancy

    x = np.linspace(-1, 1, n)
    xx, yy, zz = np.meshgrid(x, x, x, indexing="ij")
    dens = np.where(xx**2 + yy**2 + zz**2 < 0.8, 1.0, 0.0).astype(np.float32)
    dens += (np.random.default_rng(0).random(dens.shape) < 0.3) * 0.2 * (dens > 0)
    vfw = np.eye(4)[:3].copy()
    vfw[:, 3] = n / 2
    u = np.linspace(-0.6 * n, 0.6 * n, pixels)
    uu, vv = np.meshgrid(u, u, indexing="ij")
    dirs = np.stack([uu.ravel(), vv.ravel(), np.full(uu.size, 4.0 * n)], 1)
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    bricks, shift = brick_occupancy(dens)
    return (dens.view(np.uint32), 0, np.zeros(1, np.int64), vfw, np.array([0.0, 0.0, -2.8 * n]), dirs,
            np.full(len(dirs), 1e30), np.arange(len(dirs)), np.zeros((len(dirs), 1)), bricks, shift)


def _call(kernel: str, size: str):
    """A zero-argument function running ``kernel`` on the ``"tiny"`` or ``"real"`` input, and its output."""
    import numpy as np

    if kernel == "voxelize":
        from vessel_models.generators import generate
        from vessel_models.voxelize import voxelize_tree

        tree = generate("cow", seed=1)
        if size == "tiny":
            affine = np.eye(4)
            affine[:3, 3] = tree.positions_mm[0] - 2
            return lambda: voxelize_tree(tree, affine, (4, 4, 4))
        lo = tree.positions_mm.min(0) - 5
        shape = tuple(int(s) for s in np.ceil((tree.positions_mm.max(0) + 5 - lo) / 0.5))
        affine = np.diag([0.5, 0.5, 0.5, 1.0])
        affine[:3, 3] = lo
        return lambda: voxelize_tree(tree, affine, shape)
    from ddsa_sim.projector.kernels_cpu import siddon_area_density, trilinear_area_density

    args = _marcher_inputs(*((16, 4) if size == "tiny" else (256, 256)))
    out = args[8]

    def render():
        out.fill(0.0)  # the kernels accumulate into ``out``: each call renders one image
        if kernel == "trilinear":
            trilinear_area_density(*args[:8], 0.0, *args[8:])
        else:
            siddon_area_density(*args)
        return out

    return render


def worker(kernel: str) -> dict:
    import time

    import numpy as np

    t0 = time.perf_counter()
    _call(kernel, "tiny")()
    compile_s = time.perf_counter() - t0
    run = _call(kernel, "real")
    run()
    times = []
    for _ in range(7):
        t0 = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - t0)
    import ddsa_sim

    return {"compile_s": compile_s, "warm_s": float(np.median(times)),
            "checksum": float(np.asarray(result, np.float64).sum()), "code": str(Path(ddsa_sim.__file__).parent.parent)}


def measure(root: Path) -> dict:
    """Every kernel of the code at ``root``, each in a fresh process with an empty numba cache."""
    out = {}
    for kernel in KERNELS:
        with tempfile.TemporaryDirectory() as cache:
            env = dict(os.environ, NUMBA_CACHE_DIR=cache, PYTHONPATH=f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
            line = subprocess.run([sys.executable, __file__, "--worker", kernel], env=env, check=True,
                                  capture_output=True, text=True).stdout.strip().splitlines()[-1]
        out[kernel] = json.loads(line)
        print(f"{root.name}: {kernel}: {out[kernel]}", file=sys.stderr)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ref", help="a git revision to measure beside this checkout (its own worktree)")
    ap.add_argument("--worker", choices=KERNELS, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker)))
        return
    result = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="minutes"),
              "machine": machine(),
              "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                       text=True).stdout.strip(),
              "ours": measure(ROOT)}
    if args.ref:
        with tempfile.TemporaryDirectory() as tmp:
            tree = Path(tmp) / "ref"
            subprocess.run(["git", "worktree", "add", "--detach", "-q", str(tree), args.ref], cwd=ROOT, check=True)
            try:
                result["ref"] = {"revision": args.ref, **measure(tree)}
            finally:
                subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=True)
        result["compile_ratio"] = {k: result["ours"][k]["compile_s"] / result["ref"][k]["compile_s"] for k in KERNELS}
        result["warm_ratio"] = {k: result["ours"][k]["warm_s"] / result["ref"][k]["warm_s"] for k in KERNELS}
        result["same_checksum"] = {k: result["ours"][k]["checksum"] == result["ref"][k]["checksum"] for k in KERNELS}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
