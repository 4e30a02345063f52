"""Pixel aperture: how many rays per pixel a thin vessel needs, on an analytic tube and a real sample.

    python experiments/pixel_aperture.py [--config experiments/export_small.yaml] [--sample 170]
                                         [--out docs/img/pixel_aperture.png]

1. A straight 1 mm lumen (100 mgI/ml) 4 deg off the detector's rows behind 10 cm of water, 64 x 64 pixels of 2 mm
   (1.04 mm at the isocenter), noise, scatter and blur off: each row's iodine (sum of mg/cm^2 x the pixel width at
   the tube) against ``pi r^2 c / cos(4 deg)``, the tube's own; k x k rays per pixel for k = 1, 2, 3, 4, 6, 8.
2. One sample of ``--config`` (noise off) rendered with ``renderer_options.supersample`` k = 1, 2, 4 and the
   reference k = the config's binning (one ray per physical pixel): the DSA target's error against the reference
   (RMS over the reference's vessel pixels, relative to its RMS there) and the render time. Writes crops of the
   targets side by side to ``--out``.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from ddsa_sim.export.config import load_config
from ddsa_sim.export.plan import plan_dataset
from ddsa_sim.export.sample import CTCache, render_sample
from ddsa_sim.scene import render_frames
from ddsa_sim.scene.vessels import TreeVessels

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from scene_helpers import make_scene, slab_ct, small_carm  # noqa: E402
from test_scene_pixel_aperture import thin_tube  # noqa: E402


def tube_table() -> None:
    r_mm, tilt = 0.5, 4.0
    carm = small_carm(64, 2.0)
    width_cm = carm.pixel_mm * carm.source_to_isocenter_vertical_distance / carm.source_to_detector_distance / 10
    print("| rays per pixel | row iodine / pi r^2 c: max error | std | render (s) |")
    print("|---|---|---|---|")
    for k in (1, 2, 3, 4, 6, 8):
        scene = make_scene(slab_ct(100.0), supersample=k)
        scene.vessels = [TreeVessels(thin_tube(r_mm, tilt), spacing_mm=0.1)]
        render_frames(scene, carm, np.random.default_rng(0))  # voxelize and compile outside the timing
        t0 = time.perf_counter()
        frames = render_frames(scene, carm, np.random.default_rng(0))
        seconds = time.perf_counter() - t0
        per_row = frames.iodine_mg_per_cm2[0][16:48].sum(axis=1) * width_cm
        ratio = per_row / (np.pi * (r_mm / 10) ** 2 * scene.iodine_mg_per_ml / np.cos(np.deg2rad(tilt)))
        print(f"| {k} x {k} | {np.abs(ratio - 1).max():.1%} | {np.std(ratio):.1%} | {seconds:.2f} |")


def sample_table(config_path: str, index: int, out: str) -> None:
    config = load_config(config_path)
    spec = plan_dataset(config)[index]
    binning = spec.binning
    cache, targets, seconds = CTCache(1), {}, {}
    for k in (1, 2, 4, binning):
        s = replace(spec, noise=False, renderer_options={**spec.renderer_options, "supersample": k})
        render_sample(s, cache)  # the CT read and the tree voxelized outside the timing
        t0 = time.perf_counter()
        targets[k] = render_sample(s, cache)["dsa_target"].astype(np.float64)
        seconds[k] = time.perf_counter() - t0
    ref = targets[binning]
    vessel = ref > 0.01
    scale = np.sqrt(np.mean(ref[vessel] ** 2))
    print(f"\nsample {index} of {config_path} ({spec.vessel_id}, {spec.image_shape[0]} x {spec.image_shape[1]}, "
          f"binning {binning}, {spec.pixel_mm * binning:.3f} mm pixels); reference {binning} x {binning} rays")
    print("| rays per pixel | target error on vessel pixels (RMS / RMS of target) | max abs error | render (s) |")
    print("|---|---|---|---|")
    for k in (1, 2, 4):
        err = targets[k] - ref
        print(f"| {k} x {k} | {np.sqrt(np.mean(err[vessel] ** 2)) / scale:.1%} | {np.abs(err).max():.3f} | "
              f"{seconds[k]:.2f} |")
    print(f"| {binning} x {binning} | (reference) | | {seconds[binning]:.2f} |")
    rows, cols = np.nonzero(vessel)
    r0 = int(np.clip(np.median(rows) - 48, 0, ref.shape[0] - 96))
    c0 = int(np.clip(np.median(cols) - 48, 0, ref.shape[1] - 96))
    fig, axes = plt.subplots(1, 4, figsize=(12, 3.4))
    top = float(np.percentile(ref[vessel], 99))
    for ax, k in zip(axes, (1, 2, 4, binning)):
        ax.imshow(targets[k][r0:r0 + 96, c0:c0 + 96], cmap="gray_r", vmin=0, vmax=top)
        ax.set_title(f"{k} x {k} rays per pixel" + (" (reference)" if k == binning else ""), fontsize=9)
        ax.axis("off")
    fig.suptitle(f"DSA target, {spec.vessel_id}: 96 x 96 crop of {spec.pixel_mm * binning:.2f} mm pixels", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="experiments/export_small.yaml")
    parser.add_argument("--sample", type=int, default=170)  # a left coronary run and its catheter
    parser.add_argument("--out", default="docs/img/pixel_aperture.png")
    args = parser.parse_args()
    tube_table()
    sample_table(args.config, args.sample, args.out)


if __name__ == "__main__":
    main()
