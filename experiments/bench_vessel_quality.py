"""Vessel-GAN evaluation benchmark: seconds per volume of the quality measure's features.

Usage::

    python experiments/bench_vessel_quality.py                     # 128 procedural trees, as the CPU-small data
    python experiments/bench_vessel_quality.py --folder DIR -n 256  # label volumes of a folder

The vessel GAN trainer scores ``eval_samples`` generated volumes every ``eval_every`` steps by
:func:`vessel_models.gan.quality.feature_matrix` (skeleton, distance transform, components and branches of each
volume) and :func:`~vessel_models.gan.quality.compare_sets`; the features are most of that cost. The default
volumes are L-system trees of the CPU-small experiment (``experiments/vessel_gan_cpu_small.sh``: root diameter
8 mm, 32^3 voxels at 1 mm, seeds 30000..). Reports ms per volume (best of ``--repeat``), the seconds of one
evaluation of 32 and 128 volumes, and peak RSS. No peer: the published 3D vessel GANs score with feature
networks on GPUs, not with these statistics. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time

from machine import machine  # experiments/machine.py, beside this script


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folder", help="folder of NIfTI label volumes (default: procedural trees)")
    ap.add_argument("-n", type=int, default=128, help="volumes (default trees: generated)")
    ap.add_argument("--spacing-mm", type=float, default=1.0)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)

    import numpy as np

    from vessel_models.gan.data import load_label_folder, procedural_volumes
    from vessel_models.gan.quality import compare_sets, feature_matrix

    if args.folder:
        volumes = load_label_folder(args.folder, args.spacing_mm)[:args.n]
    else:
        params = {"root_diameter_mm": 8.0, "length_diameter_ratio": 3.0, "iterations": 5}
        volumes = procedural_volumes(args.n, (32, 32, 32), args.spacing_mm, 30000, "lsystem", params)
    best = np.inf
    for _ in range(args.repeat):
        start = time.perf_counter()
        features = feature_matrix(volumes, args.spacing_mm)
        best = min(best, time.perf_counter() - start)
    start = time.perf_counter()
    compare_sets(features[:32], features[32:64] if len(features) >= 64 else features)
    compare_s = time.perf_counter() - start
    per_volume = best / len(volumes)
    result = {"machine": machine(), "volumes": len(volumes), "shape": list(volumes[0].shape),
              "ms_per_volume": round(1000 * per_volume, 2), "compare_sets_ms": round(1000 * compare_s, 2),
              "eval_32_s": round(32 * per_volume + compare_s, 3), "eval_128_s": round(128 * per_volume + compare_s, 3),
              "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
