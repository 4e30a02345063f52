"""Vessels of one test set over the anatomy of another: is a held-out set missed for its vessels or for the
anatomy around them?

For sample ``i`` of sets A and B, the network sees ``(contrast_A - dsa_target_A) + dsa_target_B``: A's
anatomy with A's recorded noise, and B's vessels (iodine adds in the -ln domain, Beer-Lambert; both sets
share detector and image size). Reported per run: iodine recovery (network / target summed over B's vessel
pixels) on B's own frames and on A's anatomy, and the same with A and B swapped. Networks with test-time
augmentation (``--tta`` of ``ddsa-sim evaluate``). First, each set's vessel calibre: the diameter along the
centrelines of its targets (pixels).

    python experiments/duan/swap_anatomy.py out/duan2 test_common test_ood_generator_cow_static \
        --runs unet_sup4k_i_s0 unet_sup4k_i_s1 unet_sup4k_i_s2
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from ddsa_sim.training.checkpoint import load_model
from ddsa_sim.training.data import ZarrDDSADataset
from ddsa_sim.training.predict import network_dsa

__all__ = ["centreline_diameters_px", "main", "recovery_on"]


def centreline_diameters_px(ds: ZarrDDSADataset) -> np.ndarray:
    """Vessel diameters (px) on the centrelines of every target of ``ds``: twice the distance to the nearest
    pixel outside the vessel (target below 5 % of its maximum), on the ridge of that distance."""
    out = []
    for i in range(len(ds)):
        target = ds[i]["dsa_target"][0].numpy()
        distance = ndimage.distance_transform_edt(target > 0.05 * max(float(target.max()), 1e-6))
        ridge = (distance == ndimage.maximum_filter(distance, 3)) & (distance > 0)
        out.append(2 * distance[ridge])
    return np.concatenate(out)


def recovery_on(model, norm, vessels: ZarrDDSADataset, anatomy: ZarrDDSADataset) -> tuple[float, float]:
    """Mean iodine recovery of ``vessels``' targets ``(on their own frames, over anatomy's anatomy)``; the
    sets are paired sample by sample (the shorter one sets the count)."""
    own, swapped = [], []
    for i in range(min(len(vessels), len(anatomy))):
        v, a = vessels[i], anatomy[i]
        mask = vessels.vessel_mask(i)
        target = v["dsa_target"][0].numpy()
        if not mask.any():
            continue
        total = target[mask].sum()
        for frame, out in ((v["contrast"], own), (a["contrast"] - a["dsa_target"] + v["dsa_target"], swapped)):
            pred = network_dsa(model, norm, frame[None], tta=True)[0, 0].numpy()
            out.append(pred[mask].sum() / total)
    return float(np.mean(own)), float(np.mean(swapped))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="output folder of experiments/duan_ablation.sh")
    ap.add_argument("set_a", help="test-set stem, e.g. test_common")
    ap.add_argument("set_b", help="test-set stem, e.g. test_ood_generator_cow_static")
    ap.add_argument("--runs", nargs="+", required=True, help="run names under OUT/runs")
    args = ap.parse_args()
    torch.set_num_threads(1)
    # in memory: each sample is read once, though every run scores it as vessels and as anatomy
    a, b = (ZarrDDSADataset(args.out / "data" / f"{s}.zarr", "test", in_memory=True) for s in (args.set_a, args.set_b))
    print("| set | centreline diameter (px): median | 90th percentile | 99th percentile |\n|---|---|---|---|")
    for name, ds in ((args.set_a, a), (args.set_b, b)):
        print(f"| {name} | " + " | ".join(f"{v:.1f}" for v in np.percentile(centreline_diameters_px(ds), [50, 90, 99])) + " |")
    print()
    print(f"| run | {args.set_b} vessels: own frames | on {args.set_a} anatomy | "
          f"{args.set_a} vessels: own frames | on {args.set_b} anatomy |\n|---|---|---|---|---|")
    for run in args.runs:
        model, norm, _, _ = load_model(args.out / "runs" / run / "best.pt", torch.device("cpu"))
        cells = [*recovery_on(model, norm, b, a), *recovery_on(model, norm, a, b)]
        print(f"| {run} | " + " | ".join(f"{c:.3f}" for c in cells) + " |")


if __name__ == "__main__":
    main()
