"""Does a network trained at one pixel scale work on images of another, and does resampling them fix it?

The same 32 scenes of ``test_common`` (anatomy, tree, pose, exposure) rendered on the detector grid the
networks were trained on (128 x 128 pixels of 0.60 mm at the isocenter) and on a 3x finer one
(``test_common_fine``: 384 x 384 of 0.20 mm, the scale of a clinical run), scored with
:func:`ddsa_sim.training.evaluate.evaluate_checkpoint` (``ddsa-sim evaluate``) three ways: on the training
grid, on the fine grid as given (``--native-grid``), and on the fine grid resampled to the training scale
and back (what ``ddsa-sim evaluate`` and ``ddsa-sim infer`` do by default, :mod:`ddsa_sim.training.pixel_grid`).

Checkpoints written before the training scale was recorded lack it; the script scores a copy of each
with the spacing of its training store (:meth:`~ddsa_sim.training.data.ZarrDDSADataset.pixel_mm`, as
``ddsa-sim train`` now records it) added.

    python experiments/duan/pixel_scale.py out/duan3 --runs unet_dose_d4_p128_ema_fromm_l_s0 ... [--figure PNG]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from ddsa_sim.training.checkpoint import load_checkpoint, load_model
from ddsa_sim.training.data import ZarrDDSADataset
from ddsa_sim.training.evaluate import evaluate_checkpoint
from ddsa_sim.training.pixel_grid import network_dsa_on_grid, network_shape

__all__ = ["CASES", "METRICS", "main", "stamped_copy"]

#: (label, store stem, native_grid)
CASES = (("training grid (128 px, 0.60 mm)", "test_common", False),
         ("fine grid as given (384 px, 0.20 mm)", "test_common_fine", True),
         ("fine grid resampled to 0.60 mm and back", "test_common_fine", False))
#: metrics of the table (``ddsa-sim evaluate``'s network block) and their decimals
METRICS = {"psnr": 2, "vessel_psnr": 2, "iodine_recovery": 3, "bg_fp_fraction": 4}


def stamped_copy(checkpoint: Path, train_store: Path, folder: Path) -> Path:
    """``checkpoint`` itself if it records its training scale, else a copy in ``folder`` with the scale of
    ``train_store``'s training split added."""
    ckpt = load_checkpoint(checkpoint)
    if ckpt.get("pixel_mm") is not None:
        return checkpoint
    ckpt["pixel_mm"] = ZarrDDSADataset(train_store, "train").pixel_mm()
    path = folder / f"{checkpoint.parent.name}.pt"
    torch.save(ckpt, path)
    return path


def _figure(checkpoint: Path, out: Path, index: int | None, path: Path) -> None:
    """One scene: the fine frame, its target, and what the network draws of it as given and resampled."""
    import matplotlib.pyplot as plt

    model, norm, _, ckpt = load_model(checkpoint)
    fine = ZarrDDSADataset(out / "data" / "test_common_fine.zarr", "test")
    if index is None:  # the scene with the most iodine
        index = int(np.argmax([fine.dsa_target(i).sum() for i in range(len(fine))]))
    item = fine[index]
    x = item["contrast"][None]
    grid = network_shape(fine.image_shape, (fine.pixel_mm(),) * 2, ckpt["pixel_mm"])
    target = item["dsa_target"][0].numpy()
    panels = {"contrast frame (384 px, 0.20 mm)": item["contrast"][0].numpy(), "target": target,
              "network on the 384 px grid": network_dsa_on_grid(model, norm, x, None, True)[0, 0].numpy(),
              "network at 0.60 mm, resampled back": network_dsa_on_grid(model, norm, x, grid, True)[0, 0].numpy()}
    peak = float(np.percentile(target[target > 0.02], 99)) if (target > 0.02).any() else 1.0
    fig, axes = plt.subplots(1, 4, figsize=(13, 3.6))
    for ax, (title, image) in zip(axes, panels.items()):
        ax.imshow(image, cmap="gray", **({} if title.startswith("contrast") else {"vmin": 0, "vmax": peak}))
        ax.set_title(title, fontsize=8)
        ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, help="output folder of experiments/duan_ablation.sh")
    ap.add_argument("--runs", nargs="+", required=True, help="run folders under OUT/runs (their best.pt)")
    ap.add_argument("--train-store", default="train_l", help="store stem of the runs' training data")
    ap.add_argument("--no-tta", dest="tta", action="store_false", help="one network pass instead of 8")
    ap.add_argument("--figure", type=Path, help="also write a PNG of one scene for the first run")
    ap.add_argument("--figure-index", type=int, help="its test image (default: the one with the most iodine)")
    args = ap.parse_args()
    results: dict[str, list[dict]] = {label: [] for label, _, _ in CASES}
    with tempfile.TemporaryDirectory() as tmp:
        for run in args.runs:
            ckpt = stamped_copy(args.out / "runs" / run / "best.pt", args.out / "data" / f"{args.train_store}.zarr",
                                Path(tmp))
            for label, stem, native in CASES:
                res = evaluate_checkpoint(ckpt, args.out / "data" / f"{stem}.zarr", tta=args.tta, native_grid=native,
                                          progress=False)
                results[label].append(res)
                print(json.dumps({"run": run, "case": label, "network_grid": res["network_grid"]}
                                 | {m: round(res["network"][m], 4) for m in METRICS}), flush=True)
            if args.figure and run == args.runs[0]:
                _figure(ckpt, args.out, args.figure_index, args.figure)
    print("\n| images | " + " | ".join(METRICS) + " |\n|---|" + "---|" * len(METRICS))
    for label, rows in results.items():
        cells = [f"{np.mean([r['network'][m] for r in rows]):.{d}f} ± {np.std([r['network'][m] for r in rows]):.{d}f}"
                 for m, d in METRICS.items()]
        print(f"| network, {label} | " + " | ".join(cells) + " |")
    for label, stem, _ in CASES[:2]:
        for reference in ("zero", "conventional"):
            row = results[label][0][reference]
            print(f"| {reference}, {stem} | " + " | ".join(f"{row[m]:.{d}f}" for m, d in METRICS.items()) + " |")


if __name__ == "__main__":
    main()
