"""Picture of experiments/duan_ablation.sh: one row per test set (the common set and every
out-of-distribution set), columns input (contrast frame) | target | network | conventional DSA.

The sample shown is the first of each test split (not chosen), the network one model (default
``unet_e_s0``, else the first trained run). Input: its own 1-99 % window per row; the three DSA columns share the row target's
window ``[0, p99]``, p99 the 99th percentile of the target on its vessel pixels (target > 0.01; negative
values clipped to black).

``--fit``: the run's own training images instead, one row per source CT (its first training sample with
vessels), columns input | input less its Gaussian blur (the structure at the vessels' scale, sigma as
``ddsa-sim inspect``'s signal/clutter; its own 1-99 % window), titled with the image's signal/clutter |
target | network.

    python experiments/duan/figure.py out/duan -o out/duan/ood_grid.png [--run unet_sup_i_s0] [--tta]
    python experiments/duan/figure.py out/duan -o out/duan/ood_grid_gan.png --run unet_wgan_f_s0 --checkpoint last
    python experiments/duan/figure.py out/duan -o out/duan/fit_grid.png --run unet_dose_k_s0 --fit --tta
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from evaluate_all import training_store  # experiments/duan/evaluate_all.py, beside this script
from scipy.ndimage import gaussian_filter

from ddsa_sim.export.format import source_ct_id
from ddsa_sim.export.inspect import CLUTTER_SIGMA_PX, vessel_conspicuity
from ddsa_sim.training.checkpoint import load_model
from ddsa_sim.training.data import ZarrDDSADataset
from ddsa_sim.training.predict import network_dsa
from ddsa_sim.viz.figures import display_window, image_grid

__all__ = ["fit_rows", "main", "row_images", "target_top"]


def target_top(target: np.ndarray) -> float:
    """Top of a DSA display window ``[0, top]``: the 99th percentile of the target on its vessel pixels
    (target > 0.01), or its maximum where it has none."""
    vessel = target[target > 0.01]
    return float(np.percentile(vessel, 99)) if vessel.size else max(float(target.max()), 1e-6)


def row_images(model, norm, store: Path, index: int = 0, tta: bool = False) -> list[np.ndarray]:
    """``[input, target, network, conventional]`` of sample ``index`` of the store's test split, the input
    scaled to its own window and the DSA images to the target's ``[0, p99]`` (both onto 0..1); ``tta``: the
    network averaged over the image symmetries."""
    ds = ZarrDDSADataset(store, "test")
    item = ds[index]
    x = item["contrast"][None]
    pred = network_dsa(model, norm, x, tta)[0, 0].numpy()
    contrast, target = item["contrast"][0].numpy(), item["dsa_target"][0].numpy()
    lo, hi = display_window([contrast], 1, 99)
    top = target_top(target)
    return [(contrast - lo) / (hi - lo), target / top, pred / top, (contrast - item["mask"][0].numpy()) / top]


def fit_rows(model, norm, store: Path, tta: bool = False,
             network: str = "network") -> tuple[list[list[np.ndarray]], list[list[str]]]:
    """Rows and titles of ``--fit``: the first training sample with vessels of each source CT of ``store``
    (``network``: the title of the network's column)."""
    ds = ZarrDDSADataset(store, "train")
    first: dict[str, int] = {}
    for i in range(len(ds)):
        if ds.vessel_mask(i).any():
            first.setdefault(source_ct_id(ds.meta(i)["ct_id"]), i)
    rows, titles = [], []
    for ct, i in sorted(first.items()):
        item = ds[i]
        images = {k: item[k][0].numpy() for k in ("contrast", "contrast_clean", "dsa_target")}
        ratios = vessel_conspicuity(*images.values(), ds.vessel_mask(i))
        fine = images["contrast"] - gaussian_filter(images["contrast"], CLUTTER_SIGMA_PX)
        pred = network_dsa(model, norm, item["contrast"][None], tta)[0, 0].numpy()
        (lo, hi), (flo, fhi) = display_window([images["contrast"]], 1, 99), display_window([fine], 1, 99)
        top = target_top(images["dsa_target"])
        rows.append([(images["contrast"] - lo) / (hi - lo), (fine - flo) / (fhi - flo),
                     images["dsa_target"] / top, pred / top])
        titles.append([f"{ct} #{i}: input", f"input less its blur: s/c {ratios[0]:.2f}", "target", network])
    return rows, titles


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="output folder of experiments/duan_ablation.sh")
    ap.add_argument("-o", "--png", type=Path, required=True)
    ap.add_argument("--run", help="model run name under OUT/runs (default: unet_e_s0, else the first run)")
    ap.add_argument("--checkpoint", choices=("best", "last"), default="best",
                    help="the run's best.pt or last.pt (a U-Net-WGAN's best.pt can be the U-Net it started from)")
    ap.add_argument("--tta", action="store_true", help="the network averaged over the image symmetries")
    ap.add_argument("--fit", action="store_true", help="the run's own training images, one per source CT")
    args = ap.parse_args()
    if args.run is None:
        runs = sorted(p.parent.name for p in (args.out / "runs").glob("*/best.pt"))
        if not runs:
            raise SystemExit(f"error: no trained run under {args.out / 'runs'}")
        args.run = "unet_e_s0" if "unet_e_s0" in runs else runs[0]
    model, norm, _, _ = load_model(args.out / "runs" / args.run / f"{args.checkpoint}.pt", torch.device("cpu"))
    net = f"network ({args.run}{', last.pt' if args.checkpoint == 'last' else ''}{', TTA' if args.tta else ''})"
    if args.fit:
        rows, titles = fit_rows(model, norm, training_store(args.out, args.run), args.tta, net)
    else:
        stores = sorted((args.out / "data").glob("test_*.zarr"), key=lambda p: (p.stem != "test_common", p.stem))
        stores = [s for s in stores if Path(f"{s}.done").exists()]
        rows = [row_images(model, norm, s, tta=args.tta) for s in stores]
        titles = [[f"{s.stem.removeprefix('test_')}: input", "target", net, "conventional DSA"] for s in stores]
    image_grid(rows, args.png, titles, windows=[(0.0, 1.0)] * 4, cell_inches=2.0)
    print(f"wrote {args.png}")


if __name__ == "__main__":
    main()
