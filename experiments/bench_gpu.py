"""GPU benchmark: views/s and DSA pairs/s, ours (torch CUDA) vs DeepDRR 1.2.2 vs DiffDRR 0.6.1, and the
main job's throughput: DSA pairs/s through a ``Scene`` and export samples/s, numba vs torch-CPU vs CUDA.

Usage::

    python experiments/bench_gpu.py --size 512 --detector 512
    python experiments/bench_gpu.py --size 512 --detector 1024
    python experiments/bench_gpu.py --size 512 --detector 512 --systems ours     # ours only
    python experiments/bench_gpu.py --systems scene,export --ct-mm 2 --scene-detector 256   # the main job

Without a GPU the CUDA figures are skipped with a message (stderr) and the script exits 0 after the
CPU figures of ``scene`` and ``export``.

``--ct`` (default ``builtin:chest-ct``) names the CT of every system.

Main job (``scene``, ``export``): the CT (resampled to ``--ct-mm``
isotropic voxels, written to a temporary NIfTI) with an ``lsystem`` tree (0.5 mm grid), noise on,
scatter off, 70 kVp..100 kVp as the export's defaults, ``--scene-detector`` pixels of 298 mm / N.

* ``scene_pairs``: ``render_views`` of ``--pairs`` poses of one scene (mask + contrast + DSA target
  per pose, recorded with noise), after one warm-up view (numba compilation, volume upload); on the
  torch backends all poses are marched in one batch per volume.
* ``export_samples``: ``run_export`` of ``--export-count`` samples (2 trees, in-process worker, store
  written, no preview) after a 1-sample warm-up export with another seed that loads the CT into the
  worker's cache: steady-state samples/s including tree voxelization and the store writes.

Both for ``numba`` (siddon, the CPU default; and trilinear), ``torch-cpu`` (``backend: torch``) and
``cuda`` when present.

Scene: the CT resampled linearly to N^3 over its full extent,
DeepDRR HU -> density, air / soft tissue / bone by thresholds; an iodine volume (10 mgI/ml in the
150..350 HU voxels) on the same grid. Views: ``--views`` poses alpha in [-40, 40], beta in [-20, 20],
M x M pixels covering 560 mm at the detector; step 0.1 mm for DeepDRR (its default) and for ours
both 0.1 mm and one voxel (our default step) are reported.

* ``ours_views``: ``TorchProjector.march`` of the CT, all views in one batch (``--batch``),
  volumes uploaded once; time per view = wall time / views, after one warm-up batch,
  ``torch.cuda.synchronize()`` before the clock stops.
* ``ours_dsa_pairs``: ``TorchProjector.render`` of mask (CT), contrast (CT + iodine) and the DSA
  target (iodine) per view: one pair = one view's mask + contrast (+ target, free).
* ``deepdrr_views``: ``deepdrr.Projector.project()`` per view (its API is one view per call).
* ``diffdrr_views``: DiffDRR 0.6.1 trilinear (``n_points`` = samples per ray matching our step).
Peak GPU memory: ``torch.cuda.max_memory_allocated`` (ours, DiffDRR) and CuPy's pool
``used_bytes`` high-water mark for DeepDRR, reset per system. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
from machine import machine  # experiments/machine.py, beside this script


def _scene(ct_path: str, size: int):
    from scipy import ndimage

    from ddsa_sim.projector import ProjectorVolume
    from ddsa_sim.volumes import (
        hu_to_density,
        material_labels,
        read_ct,
        segment_by_threshold,
    )

    ct = read_ct(ct_path)
    zoom = [size / s for s in ct.data.shape]
    hu = ndimage.zoom(ct.data.astype(np.float32), zoom, order=1)
    aff = ct.affine.copy()
    aff[:3, :3] = aff[:3, :3] @ np.diag([1 / z for z in zoom])
    aff[:3, 3] = (ct.affine @ np.append(-0.5 + 0.5 / np.array(zoom), 1.0))[:3]
    labels, names = material_labels(segment_by_threshold(hu))
    vol = ProjectorVolume("ct", hu_to_density(hu), labels, names, aff)
    iod = ProjectorVolume.single_material("iodine", ((hu >= 150) & (hu <= 350)) * 0.010, aff, "iodine",
                                          {"blood": 3.03})
    return ct, vol, iod


def _carms(ct, detector: int, views: int):
    from ddsa_sim.geometry import CArm

    rng = np.random.default_rng(0)
    base = CArm(isocenter_mm=tuple(ct.center_mm), sensor_height=detector, sensor_width=detector,
                pixel_mm=560.0 / detector)
    return [base.at(alpha_deg=float(a), beta_deg=float(b))
            for a, b in zip(rng.uniform(-40, 40, views), rng.uniform(-20, 20, views))]


def bench_ours(vol, iod, carms, batch: int, step: float | None) -> dict:
    import torch

    from ddsa_sim.projector import Projector
    from ddsa_sim.projector.torch_projector import TorchProjector

    proj = Projector([vol, iod], "90KV_AL40", step_mm=step, device="cuda")
    tp = TorchProjector(proj)
    images = {"mask": ["ct"], "contrast": ["ct", "iodine"], "dsa": ["iodine"]}
    torch.cuda.reset_peak_memory_stats()
    tp.march(carms[:batch], "ct")  # warm-up + upload
    torch.cuda.synchronize()
    t = time.perf_counter()
    for i in range(0, len(carms), batch):
        tp.march(carms[i:i + batch], "ct")
    torch.cuda.synchronize()
    views_s = len(carms) / (time.perf_counter() - t)
    tp.render(carms[:batch], images)
    torch.cuda.synchronize()
    t = time.perf_counter()
    for i in range(0, len(carms), batch):
        out = tp.render(carms[i:i + batch], images)
        _ = {k: v["intensity"].cpu() for k, v in out.items()}  # outputs back to the host
    torch.cuda.synchronize()
    pairs_s = len(carms) / (time.perf_counter() - t)
    return {"step_mm": step, "views_per_s": views_s, "dsa_pairs_per_s": pairs_s,
            "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20}


def bench_deepdrr(vol, carms) -> dict:
    import cupy

    from ddsa_sim.projector.deepdrr_adapter import deepdrr_scene_spec, import_deepdrr

    deepdrr = import_deepdrr()
    spec = deepdrr_scene_spec(vol, None, carms[0])
    volume = deepdrr.Volume(spec["density"], spec["materials"], spec["anatomical_from_ijk"],
                            spec["world_from_anatomical"], anatomical_coordinate_system="LPS")
    carm = deepdrr.MobileCArm(**spec["carm"])
    pool = cupy.get_default_memory_pool()
    peak = 0
    with deepdrr.Projector(volume, device=carm, step=0.1, spectrum="90KV_AL40", neglog=False) as projector:
        projector.project()
        t = time.perf_counter()
        for c in carms:
            carm.move_to(alpha=c.alpha_deg, beta=c.beta_deg, degrees=True)
            projector.project()
            peak = max(peak, pool.used_bytes())
        views_s = len(carms) / (time.perf_counter() - t)
    return {"views_per_s": views_s, "peak_gpu_mb_cupy_pool": peak / 2**20}


def bench_diffdrr(vol, carms, n_points: int) -> dict:
    import torch

    from ddsa_sim.projector.peers import diffdrr_drr

    drr, _ = diffdrr_drr(carms[0], vol.density_g_per_cc, vol.world_from_voxel, renderer="trilinear")
    drr = drr.cuda()
    from diffdrr.pose import RigidTransform

    from ddsa_sim.projector.peers import diffdrr_pose

    poses = [RigidTransform(torch.as_tensor(diffdrr_pose(c), dtype=torch.float32)[None].cuda()) for c in carms]
    torch.cuda.reset_peak_memory_stats()
    with torch.no_grad():
        drr(poses[0], n_points=n_points)
        torch.cuda.synchronize()
        t = time.perf_counter()
        for p in poses:
            drr(p, n_points=n_points)
        torch.cuda.synchronize()
    return {"n_points": n_points, "views_per_s": len(carms) / (time.perf_counter() - t),
            "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20}


def _ct_file(folder, ct_path: str, ct_mm: float) -> str:
    """The CT ``ct_path`` resampled to ``ct_mm`` (0: as is) as a NIfTI in ``folder``."""
    import nibabel as nib

    from ddsa_sim.volumes import read_ct
    from ddsa_sim.volumes.readers import LPS_FROM_RAS

    ct = read_ct(ct_path)
    if ct_mm > 0:
        ct = ct.resampled(ct_mm)
    path = f"{folder}/ct_{ct_mm:g}mm.nii.gz"
    nib.save(nib.Nifti1Image(ct.data.astype(np.float32), np.linalg.inv(LPS_FROM_RAS) @ ct.affine), path)
    return path


#: main-job variants: name -> (device, backend, method)
MAIN_JOB_VARIANTS = {"numba-siddon": ("cpu", "numba", "siddon"), "numba-trilinear": ("cpu", "numba", "trilinear"),
                     "torch-cpu": ("cpu", "torch", "trilinear"), "cuda": ("cuda", "torch", "trilinear")}


def bench_scene(ct_path: str, variant: str, detector: int, n_pairs: int) -> dict:
    from ddsa_sim.cli.dsa import vessel_center_mm
    from ddsa_sim.geometry import CArm
    from ddsa_sim.scene import (
        CTSpec,
        EffectsSpec,
        PlacementSpec,
        ScatterSettings,
        SceneSpec,
        VesselSpec,
        build_scene,
        render_views,
    )

    device, backend, method = MAIN_JOB_VARIANTS[variant]
    spec = SceneSpec(CTSpec(ct_path), VesselSpec("generator", "lsystem", seed=0, spacing_mm=0.5),
                     PlacementSpec("region", ("body",), seed=0),
                     effects=EffectsSpec(noise=True, scatter=ScatterSettings(enabled=False), method=method,
                                         device=device, backend=backend))
    scene = build_scene(spec)
    base = CArm(isocenter_mm=tuple(float(x) for x in vessel_center_mm(scene)), sensor_height=detector,
                sensor_width=detector, pixel_mm=1536 * 0.194 / detector)
    rng = np.random.default_rng(1)
    carms = [base.at(alpha_deg=float(a), beta_deg=float(b))
             for a, b in zip(rng.uniform(-30, 30, n_pairs), rng.uniform(-20, 20, n_pairs))]
    list(render_views(scene, carms[:1], [np.random.default_rng(0)]))  # warm-up: compile, upload, voxelize
    _sync(device)
    t = time.perf_counter()
    views = list(render_views(scene, carms, [np.random.default_rng([0, n]) for n in range(n_pairs)]))
    _sync(device)
    dt = time.perf_counter() - t
    assert all(v.dsa_target.max() > 0 for v in views), "the tree must be in view"
    return {"pairs": n_pairs, "seconds": round(dt, 2), "pairs_per_s": round(n_pairs / dt, 3)}


def bench_export(ct_path: str, variant: str, detector: int, count: int, folder) -> dict:
    from ddsa_sim.export.config import config_from_dict
    from ddsa_sim.export.runner import run_export

    device, backend, method = MAIN_JOB_VARIANTS[variant]

    def config(n: int, seed: int):
        return config_from_dict({
            "cts": [{"path": ct_path}], "vessels": {"per_ct": 2, "sources": [{"generator": "lsystem"}]},
            "detector": {"rows": detector, "cols": detector, "pixel_mm": 1536 * 0.194 / detector, "binning": 1},
            "effects": {"noise": True, "scatter": False}, "count": n, "seed": seed, "device": device,
            "renderer_options": {"vessel_spacing_mm": 0.5, "method": method, "backend": backend}})

    run_export(config(1, 1), f"{folder}/warm_{variant}.zarr", progress=False, preview=False)  # CT into the cache
    _sync(device)
    t = time.perf_counter()
    run_export(config(count, 2), f"{folder}/bench_{variant}.zarr", progress=False, preview=False)
    _sync(device)
    dt = time.perf_counter() - t
    return {"samples": count, "seconds": round(dt, 2), "samples_per_s": round(count / dt, 3)}


def _sync(device: str) -> None:
    if device != "cpu":
        import torch

        torch.cuda.synchronize()


def bench_main_job(args, variants: list[str], result: dict) -> None:
    """``scene`` and ``export`` figures of ``variants`` into ``result`` (printed after each)."""
    import tempfile

    systems = set(args.systems.split(","))
    with tempfile.TemporaryDirectory() as folder:
        ct_path = _ct_file(folder, args.ct, args.ct_mm)
        for variant in variants:
            if "scene" in systems:
                result.setdefault("scene_pairs", {})[variant] = bench_scene(ct_path, variant, args.scene_detector,
                                                                            args.pairs)
            if "export" in systems:
                result.setdefault("export_samples", {})[variant] = bench_export(
                    ct_path, variant, args.scene_detector, args.export_count, folder)
            print(json.dumps(result), flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--detector", type=int, default=512)
    ap.add_argument("--views", type=int, default=64)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--systems", default="scene,export,ours,deepdrr,diffdrr")
    ap.add_argument("--ct", default="builtin:chest-ct", help="the CT (a path or builtin name) of every system")
    ap.add_argument("--ct-mm", type=float, default=2.0, help="scene/export: CT voxel size (0: the file's)")
    ap.add_argument("--scene-detector", type=int, default=256, help="scene/export: detector pixels per side")
    ap.add_argument("--pairs", type=int, default=8, help="scene: poses rendered")
    ap.add_argument("--export-count", type=int, default=8, help="export: samples written")
    ap.add_argument("--cpu-variants", default="numba-siddon,numba-trilinear,torch-cpu")
    args = ap.parse_args(argv)
    import torch

    systems = set(args.systems.split(","))
    result = {"machine": machine(),
              "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "ct": args.ct, "ct_mm": args.ct_mm,
              "scene_detector": args.scene_detector}
    if systems & {"scene", "export"}:
        bench_main_job(args, [v for v in args.cpu_variants.split(",") if v], result)
    if not torch.cuda.is_available():
        print("bench_gpu: no CUDA GPU visible to PyTorch (torch.cuda.is_available() is False): CPU figures only; "
              "run it on a machine with an NVIDIA GPU for the CUDA figures", file=sys.stderr)
        return 0
    result.update(device=torch.cuda.get_device_name(), size=args.size, detector=args.detector, views=args.views,
                  batch=args.batch)
    if systems & {"scene", "export"}:
        bench_main_job(args, ["cuda"], result)
    ct, vol, iod = _scene(args.ct, args.size)
    carms = _carms(ct, args.detector, args.views)
    if "ours" in systems:
        result["ours_step_0.1mm"] = bench_ours(vol, iod, carms, args.batch, 0.1)
        result["ours_step_one_voxel"] = bench_ours(vol, iod, carms, args.batch, None)
        print(json.dumps(result))
    if "deepdrr" in systems:
        try:
            result["deepdrr"] = bench_deepdrr(vol, carms[: min(16, len(carms))])
        except Exception as exc:  # noqa: BLE001  (report it, keep the other figures)
            result["deepdrr"] = {"error": f"{type(exc).__name__}: {exc}"}
    if "diffdrr" in systems:
        length_mm = float(np.linalg.norm(np.array(vol.shape) * np.linalg.norm(vol.world_from_voxel[:3, :3], axis=0)))
        try:
            result["diffdrr"] = bench_diffdrr(vol, carms[: min(16, len(carms))], int(length_mm / 0.5))
        except Exception as exc:  # noqa: BLE001  (report it, keep the other figures)
            result["diffdrr"] = {"error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
