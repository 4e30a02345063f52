"""Does a trained network's recovery of a vessel depend on the direction the vessel runs in the image?

Two measurements, each averaged over a network's test-time augmentation (``--no-tta``: one pass):

**Straight tubes (a probe with a known answer).** A straight tube of iodinated blood, ``d`` pixels wide (its
projected profile ``a d sqrt(1 - (2 u / d)^2)``, ``u`` the distance to its axis, ``a = 0.04`` -ln units per
pixel of width), crossing the whole image at an angle ``theta`` to the image columns, :data:`OFFSET_PX` off
the centre, is added to the vessel-free part of real test frames (``contrast - dsa_target``: the anatomy and
the noise of each frame; every fourth sample of the store's test split; ``--background noise``: the frames'
noise alone on their mean level, ``contrast - contrast_clean + mean(contrast_clean)``; ``turned``: the vessel-free
frames turned by 45 degrees about their centre, bilinear, reflected at the border). The -ln domain is additive
(Beer-Lambert), so the exact DSA of the sum is the tube, and a network that recognises the tube adds it to
its output: the tube's **recovery** is the network's output with the tube minus its output without, summed
over the tube's pixels, over the tube's own sum (1: drawn in full; 0: left out), averaged over the frames.
``a`` is at the low end of the training data: 50-150 mg/ml of iodine in blood attenuates about 0.5-1.4 /cm
more than blood near 55 keV, and a detector pixel of 1.16 mm holds 0.6-0.8 mm at the vessel (source-to-
isocenter magnification 1.5-2), so a vessel's peak is 0.03-0.11 -ln units per pixel of width.

**The test set's own vessels, by direction.** On every image of the split, the local direction of the
target's vessels comes from its structure tensor (Gaussian window :data:`TENSOR_SIGMA_PX`); pixels of a
line-like neighbourhood (coherence above :data:`MIN_COHERENCE`) with a target above :data:`MIN_TARGET` are
binned by their direction's angle to the nearest image axis (0-45 deg), and each bin's iodine recovery is the
network's sum over the target's sum there. The bins' share of the target is printed with them.
``--by-amplitude`` bins every target pixel above :data:`MIN_TARGET` by the target's value instead
(:data:`AMPLITUDE_BINS`, -ln units): how recovery depends on how bright a vessel is (a wide vessel, one
seen end-on, overlapping vessels), the other property of a vessel that training data can leave out.
``--by-width`` bins them by the width of the vessel they belong to (:data:`WIDTH_BINS`, pixels): twice the
distance to the background (target at most :data:`MIN_TARGET`) at the nearest pixel of the target's medial
axis (overlapping vessels count as one wider one).

    python experiments/duan/direction_probe.py out/duan2 test_common --runs RUN_s0 RUN_s1 RUN_s2
    python experiments/duan/direction_probe.py out/duan2 test_ood_generator_cow_static --by-direction --runs ...
    python experiments/duan/direction_probe.py out/duan3 test_common --by-amplitude --runs ...
    python experiments/duan/direction_probe.py out/duan3 test_ood_generator_cow_static --by-width --runs ...
    python experiments/duan/direction_probe.py out/duan4 test_ood_anatomy_head_static --checkpoint last --runs ...
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import distance_transform_edt, rotate
from skimage.feature import structure_tensor, structure_tensor_eigenvalues
from skimage.morphology import medial_axis

from ddsa_sim.training.checkpoint import load_model
from ddsa_sim.training.data import ZarrDDSADataset
from ddsa_sim.training.predict import network_dsa
from ddsa_sim.training.vessel_metrics import iodine_recovery

__all__ = ["angle_to_axes", "figure", "recovery_by_amplitude", "recovery_by_direction", "recovery_by_width", "tube",
           "tube_added", "tube_backgrounds", "tube_recovery", "medial_width", "vessel_width", "main"]

#: peak -ln attenuation of the tube per pixel of its width (module docstring)
AMPLITUDE_PER_PX = 0.04
#: the tube's axis passes this many pixels from the image centre (not through the centre pixel)
OFFSET_PX = 10.0
#: structure-tensor window (pixels), coherence threshold and target threshold (-ln) of the direction bins
TENSOR_SIGMA_PX, MIN_COHERENCE, MIN_TARGET = 2.0, 0.5, 0.02
#: direction bins: angle to the nearest image axis, degrees
DIRECTION_BINS = ((0, 10), (10, 20), (20, 30), (30, 45))
#: amplitude bins: the target's value, -ln units (the last one open above)
AMPLITUDE_BINS = ((MIN_TARGET, 0.25), (0.25, 0.5), (0.5, 1.0), (1.0, 2.0), (2.0, np.inf))
#: width bins: the width of the vessel a target pixel belongs to, pixels (the last one open above)
WIDTH_BINS = ((0, 4), (4, 8), (8, 12), (12, 16), (16, np.inf))
#: what the tubes are added to (:func:`tube_backgrounds`)
BACKGROUNDS = ("anatomy", "noise", "turned")


def tube(shape: tuple[int, int], width_px: float, angle_deg: float) -> np.ndarray:
    """The -ln projection ``(H, W)`` of a straight tube of ``width_px`` crossing the image at ``angle_deg``
    to its columns (0: vertical), :data:`OFFSET_PX` from the centre."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(float)
    a = np.deg2rad(angle_deg)
    u = (xx - (w - 1) / 2) * np.cos(a) + (yy - (h - 1) / 2) * np.sin(a) - OFFSET_PX
    r = np.abs(u) / (width_px / 2)
    return np.where(r < 1, np.sqrt(np.clip(1 - r**2, 0, None)), 0.0) * AMPLITUDE_PER_PX * width_px


def tube_backgrounds(ds: ZarrDDSADataset, kind: str) -> torch.Tensor:
    """The frames ``(B, 1, H, W)`` the tubes are added to: every fourth test sample's vessel-free part, its noise
    alone, or the vessel-free part turned by 45 degrees (``kind`` in :data:`BACKGROUNDS`; module docstring)."""
    items = [ds[i] for i in range(0, len(ds), 4)]
    if kind == "noise":
        return torch.stack([it["contrast"] - it["contrast_clean"] + it["contrast_clean"].mean() for it in items])
    frames = torch.stack([it["contrast"] - it["dsa_target"] for it in items])
    if kind == "turned":
        frames = torch.from_numpy(rotate(frames.numpy(), 45, axes=(-1, -2), reshape=False, order=1, mode="reflect"))
    return frames


def tube_added(model: torch.nn.Module, norm, frames: torch.Tensor, t: torch.Tensor, without: torch.Tensor,
               tta: bool) -> np.ndarray:
    """What tube ``t`` ``(H, W)`` adds to the network's output ``without`` it over ``frames`` ``(B, 1, H, W)``:
    ``(B, H, W)``."""
    return (network_dsa(model, norm, frames + t, tta) - without)[:, 0].numpy()


def tube_recovery(checkpoint: Path, frames: torch.Tensor, widths: list[float], angles: list[float],
                  tta: bool) -> np.ndarray:
    """Recovery ``(len(widths), len(angles))`` of the tube by the network of ``checkpoint`` over vessel-free
    ``frames`` ``(B, 1, H, W)`` (module docstring)."""
    model, norm, *_ = load_model(checkpoint)
    without = network_dsa(model, norm, frames, tta)
    out = np.zeros((len(widths), len(angles)))
    for i, width in enumerate(widths):
        for j, angle in enumerate(angles):
            t = tube(tuple(frames.shape[-2:]), width, angle)
            added = tube_added(model, norm, frames, torch.from_numpy(t).to(frames.dtype), without, tta)
            out[i, j] = np.mean([iodine_recovery(a, t, t > 0) for a in added])
    return out


def figure(checkpoints: dict[str, Path], frame: torch.Tensor, width_px: float, angles: tuple[float, float],
           path: Path) -> None:
    """PNG: one row per network; per angle the frame with the tube and the network's output less its output
    without the tube (what the tube adds; the tube's own peak is white)."""
    import matplotlib.pyplot as plt

    tubes = [torch.from_numpy(tube(tuple(frame.shape[-2:]), width_px, a)).to(frame.dtype) for a in angles]
    peak = AMPLITUDE_PER_PX * width_px
    fig, axes = plt.subplots(len(checkpoints), 2 * len(angles), figsize=(2.2 * 2 * len(angles), 2.4 * len(checkpoints)),
                             squeeze=False)
    for row, (name, checkpoint) in zip(axes, checkpoints.items()):
        model, norm, *_ = load_model(checkpoint)
        without = network_dsa(model, norm, frame[None], True)
        for k, (angle, t) in enumerate(zip(angles, tubes)):
            added = tube_added(model, norm, frame[None], t, without, True)[0]
            row[2 * k].imshow((frame + t)[0], cmap="gray")
            row[2 * k].set_title(f"frame + {width_px:g} px tube, {angle:g} deg", fontsize=7)
            row[2 * k + 1].imshow(added, cmap="gray", vmin=0, vmax=peak)
            row[2 * k + 1].set_title(f"{name}: drawn", fontsize=7)
    for ax in axes.flat:
        ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def angle_to_axes(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel of ``image`` ``(H, W)``: the angle (deg, 0-45) between its local line direction and the
    nearest image axis, and the structure tensor's coherence (0: no direction, 1: a line)."""
    tensor = structure_tensor(image, sigma=TENSOR_SIGMA_PX, order="rc")
    arr, arc, acc = tensor
    # the gradient's angle; a line runs across its gradient, and both are the same distance from the axes
    angle = np.abs(0.5 * np.degrees(np.arctan2(2 * arc, acc - arr))) % 90
    big, small = structure_tensor_eigenvalues(tensor)
    return np.minimum(angle, 90 - angle), (big - small) / (big + small + 1e-12)


def _recovery_in_bins(predictions: np.ndarray, targets: np.ndarray,
                      bins: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Iodine recovery on each boolean pixel mask of ``bins`` and its share of the binned target."""
    share = np.array([targets[on].sum() for on in bins], dtype=np.float64)
    return np.array([iodine_recovery(predictions, targets, on) for on in bins]), share / share.sum()


def recovery_by_direction(predictions: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Iodine recovery and share of the target per :data:`DIRECTION_BINS` (module docstring; NaN for a bin
    without target), pooled over images ``(N, H, W)``."""
    angle, coherence = (np.stack(a) for a in zip(*map(angle_to_axes, targets)))
    line = (coherence > MIN_COHERENCE) & (targets > MIN_TARGET)
    bins = [line & (angle >= lo) & ((angle < hi) if hi < 45 else (angle <= hi)) for lo, hi in DIRECTION_BINS]
    return _recovery_in_bins(predictions, targets, bins)


def recovery_by_amplitude(predictions: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Iodine recovery and share of the target per :data:`AMPLITUDE_BINS` (a pixel in ``(lo, hi]``; NaN for a
    bin without target), pooled over images ``(N, H, W)``."""
    return _recovery_in_bins(predictions, targets, [(targets > lo) & (targets <= hi) for lo, hi in AMPLITUDE_BINS])


def medial_width(target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The medial axis ``(H, W)`` of ``target`` above :data:`MIN_TARGET` and, per pixel, twice the distance to the
    background (pixels): a vessel's width on its axis. The axis is seeded: skimage breaks ties between equally
    thin candidates at random, and an unseeded axis moves the measurements from run to run."""
    axis, distance = medial_axis(target > MIN_TARGET, return_distance=True, rng=0)
    return axis, 2 * distance


def vessel_width(target: np.ndarray) -> np.ndarray:
    """Per pixel of ``target`` ``(H, W)`` above :data:`MIN_TARGET`: the width (pixels) of the vessel it belongs to,
    twice the distance to the background at the nearest medial-axis pixel (module docstring); 0 elsewhere."""
    inside = target > MIN_TARGET
    if not inside.any():
        return np.zeros(target.shape)
    axis, width = medial_width(target)
    nearest = distance_transform_edt(~axis, return_distances=False, return_indices=True)
    return np.where(inside, width[tuple(nearest)], 0.0)


def recovery_by_width(predictions: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Iodine recovery and share of the target per :data:`WIDTH_BINS` (:func:`vessel_width` in ``[lo, hi)``; NaN
    for a bin without target), pooled over images ``(N, H, W)``."""
    width = np.stack([vessel_width(t) for t in targets])
    inside = targets > MIN_TARGET
    return _recovery_in_bins(predictions, targets, [inside & (width >= lo) & (width < hi) for lo, hi in WIDTH_BINS])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, help="output folder of experiments/duan_ablation.sh")
    ap.add_argument("store", help="test store stem, e.g. test_common")
    ap.add_argument("--runs", nargs="+", required=True, help="run folders under OUT/runs")
    ap.add_argument("--checkpoint", choices=("best", "last"), default="best", help="each run's best.pt or last.pt")
    binned = ap.add_mutually_exclusive_group()
    binned.add_argument("--by-direction", action="store_true",
                        help="the store's own vessels binned by direction instead of the straight tubes")
    binned.add_argument("--by-amplitude", action="store_true",
                        help="the store's own vessels binned by the target's value instead of the straight tubes")
    binned.add_argument("--by-width", action="store_true",
                        help="the store's own vessels binned by their width instead of the straight tubes")
    ap.add_argument("--widths", nargs="+", type=float, default=[4, 6, 8], help="tube widths, pixels")
    ap.add_argument("--angles", nargs="+", type=float, default=[0, 5, 10, 20, 30, 45], help="tube angles, deg")
    ap.add_argument("--background", choices=BACKGROUNDS, default="anatomy", help="what the tubes lie on")
    ap.add_argument("--no-tta", dest="tta", action="store_false", help="one network pass instead of 8")
    ap.add_argument("--figure", type=Path, help="also write a PNG: the first frame with a tube of the second "
                    "width along the columns and at 45 deg, and what each run draws of it (with TTA)")
    args = ap.parse_args()
    checkpoints = {run: args.out / "runs" / run / f"{args.checkpoint}.pt" for run in args.runs}
    ds = ZarrDDSADataset(args.out / "data" / f"{args.store}.zarr", split="test")
    if args.by_direction or args.by_amplitude or args.by_width:
        items = [ds[i] for i in range(len(ds))]
        frames = torch.stack([it["contrast"] for it in items])
        targets = np.stack([it["dsa_target"][0].numpy() for it in items])
        if args.by_direction:
            by, labels = recovery_by_direction, [f"{lo}-{hi} deg" for lo, hi in DIRECTION_BINS]
        elif args.by_amplitude:
            by, labels = recovery_by_amplitude, [f"{lo:g}-{hi:g}" for lo, hi in AMPLITUDE_BINS]
        else:
            by, labels = recovery_by_width, [f"{lo:g}-{hi:g} px" for lo, hi in WIDTH_BINS]
        print("| run | " + " | ".join(labels) + " |")
        print("|---|" + "---|" * len(labels))
        for run in args.runs:
            model, norm, *_ = load_model(checkpoints[run])
            pred = network_dsa(model, norm, frames, args.tta)[:, 0].numpy()
            recovery, share = by(pred, targets)
            print(f"| {run} | " + " | ".join(f"{x:.3f}" for x in recovery) + " |", flush=True)
        print("| share of the target | " + " | ".join(f"{x:.3f}" for x in share) + " |")
        return
    frames = tube_backgrounds(ds, args.background)
    if args.figure:
        figure(checkpoints, frames[0], args.widths[min(1, len(args.widths) - 1)], (0.0, 45.0), args.figure)
    print("| run | width (px) | " + " | ".join(f"{a:g} deg" for a in args.angles) + " |")
    print("|---|---|" + "---|" * len(args.angles))
    for run in args.runs:
        rec = tube_recovery(checkpoints[run], frames, args.widths, args.angles, args.tta)
        for width, row in zip(args.widths, rec):
            print(f"| {run} | {width:g} | " + " | ".join(f"{x:.2f}" for x in row) + " |", flush=True)


if __name__ == "__main__":
    main()
