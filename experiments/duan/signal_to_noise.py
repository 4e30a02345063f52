"""How noisy each image's vessels are: the spread of ``ddsa-sim inspect``'s signal/noise over a split's images, as
stored and as a training config's lower-dose frames and fainter iodine make them.

An image's signal/noise (:func:`ddsa_sim.export.inspect.vessel_conspicuity`) is the median iodine line integral on
its vessel pixels over the standard deviation of its noise (``contrast - contrast_clean``); ``inspect`` prints its
median over a split. This prints the fractions of images below thresholds, which say whether a held-out set's
frames lie inside what the training frames cover. With ``--config``, the config's lower-dose augmentation
(:func:`ddsa_sim.training.augment.lower_dose`, the recorded noise times ``f^-1/2``, with the config's
probability, fraction range and dose floor) and its contrast scaling (the target alone) are drawn ``--draws`` times
per image, so the fractions are those of the frames the network trains on. ``--per-width`` adds how bright the
vessels are for their width: along the medial axis of each image's target (above ``direction_probe.MIN_TARGET``), the target
over the vessel's width there (twice the distance to the background; -ln units per pixel of width, which a
concentration, a spectrum or beam hardening scales), as percentiles; with ``--config``, times the factors its
augmentation scales the targets by (``multiply`` and ``contrast``). The last line is one JSON object.

    python experiments/duan/signal_to_noise.py out/duan4/data/train_l.zarr --split train \\
        --config experiments/duan/unet_dose_d4_p128_ema_w16.yaml
    python experiments/duan/signal_to_noise.py out/duan4/data/test_ood_exposure_static.zarr --per-width
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import zarr
from direction_probe import medial_width  # experiments/duan/direction_probe.py, beside this script

from ddsa_sim.export.format import exposed_field
from ddsa_sim.export.inspect import vessel_conspicuity
from ddsa_sim.export.store import completed
from ddsa_sim.training.augment import augment_pair, lower_dose
from ddsa_sim.training.config import AugmentConfig, load_config

__all__ = ["PERCENTILES", "THRESHOLDS", "augmented", "iodine_per_width", "main", "medial_iodine_per_width",
           "signal_to_noise", "split_samples", "target_gain"]

#: signal/noise thresholds of the printed fractions (below 1 a vessel pixel is fainter than the noise)
THRESHOLDS = (1.0, 0.75, 0.5)
#: percentiles printed of the iodine per pixel of width
PERCENTILES = (10, 50, 90)


def split_samples(root: zarr.Group, split: str) -> np.ndarray:
    """Indices of the complete samples of ``split`` in an open store."""
    splits = np.array([str(s) for s in root["meta"]["split"][:]])
    return np.flatnonzero(completed(root) & (splits == split))


def signal_to_noise(store: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """``(signal/noise, dose uGy)`` of every complete image of ``split`` that has vessel pixels (NaN dose where the
    store records none); signal/noise as :func:`~ddsa_sim.export.inspect.vessel_conspicuity` (and ``inspect``)."""
    root = zarr.open_group(str(store), mode="r")
    meta = root["meta"]
    dose = np.asarray(meta["detector_air_kerma_ugy"][:], np.float64) if "detector_air_kerma_ugy" in meta \
        else np.full(meta["split"].shape[0], np.nan)
    collimation = meta["collimation"] if "collimation" in meta else None
    ratios, doses = [], []
    for i in split_samples(root, split):
        arrays = [np.asarray(root[k][i]) for k in ("contrast", "contrast_clean", "dsa_target", "vessel_mask")]
        shape = arrays[0].shape[-2:]
        field = exposed_field(None if collimation is None else collimation[i], shape)
        for frame in zip(*(a.reshape(-1, *shape) for a in arrays)):  # a sequence: every frame
            if (r := vessel_conspicuity(*frame, field)) is not None:
                ratios.append(r[1])
                doses.append(dose[i])
    return np.array(ratios), np.array(doses)


def augmented(ratios: np.ndarray, dose_ugy: np.ndarray, augment: AugmentConfig, draws: int,
              seed: int = 0) -> np.ndarray:
    """``draws`` signal/noise values per image after :func:`~ddsa_sim.training.augment.lower_dose` and the contrast
    scaling: the noise of a frame at dose fraction ``f`` is its recorded noise times ``f^-1/2``, and ``contrast``
    scales the target alone by ``c``, so its signal/noise is times ``c f^1/2``."""
    g = torch.Generator().manual_seed(seed)
    r = torch.as_tensor(np.repeat(ratios, draws), dtype=torch.float64)
    dose = torch.as_tensor(np.repeat(dose_ugy, draws))
    # lower_dose on a zero base and unit noise returns f^-1/2 - 1 for each frame
    gain = lower_dose(torch.zeros(r.numel(), 1, 1, 1), torch.ones(r.numel(), 1, 1, 1), dose, augment, g).flatten() + 1
    contrast = target_gain(augment.model_copy(update={"p_multiply": 0.0}), r.numel(), seed + 1)  # multiply: noise too
    return (r * torch.from_numpy(contrast).double() / gain.double()).numpy()


def iodine_per_width(store: str | Path, split: str) -> np.ndarray:
    """Along the medial axes of the vessels (target above ``direction_probe.MIN_TARGET``) of every complete image
    of ``split`` (a sequence's first frame): the target over the vessel's width there, -ln units per pixel
    (:func:`medial_iodine_per_width`)."""
    root = zarr.open_group(str(store), mode="r")
    targets = (np.asarray(root["dsa_target"][i], np.float64) for i in split_samples(root, split))
    return np.concatenate([medial_iodine_per_width(t.reshape(-1, *t.shape[-2:])[0])[0] for t in targets]
                          or [np.zeros(0)])


def medial_iodine_per_width(target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(target / width, width)`` on the medial axis of one target image ``(H, W)``: the width in pixels is twice
    the distance to the background (overlapping vessels count as one wider one)."""
    axis, width = medial_width(target)
    return target[axis] / width[axis], width[axis]


def target_gain(augment: AugmentConfig, n: int, seed: int = 0) -> np.ndarray:
    """``n`` draws of the factor :func:`~ddsa_sim.training.augment.augment_pair` multiplies a frame's target by
    (``multiply`` and ``contrast``; the geometric transforms, which move iodine rather than scale it, left out)."""
    still = augment.model_copy(update={"p_hflip": 0.0, "p_vflip": 0.0, "p_affine": 0.0, "p_elastic": 0.0, "p_blur": 0.0})
    stack = torch.cat([torch.zeros(n, 1, 1, 1), torch.ones(n, 1, 1, 1)], dim=1)  # [base, target] of one pixel
    return augment_pair(stack, still, torch.Generator().manual_seed(seed))[:, 1].flatten().numpy()


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("store", type=Path)
    ap.add_argument("--split", default="test")
    ap.add_argument("--config", type=Path, help="a training config: apply its lower-dose augmentation")
    ap.add_argument("--draws", type=int, default=20, help="augmented frames per image (with --config)")
    ap.add_argument("--per-width", action="store_true", help="also the iodine per pixel of width along the vessels")
    args = ap.parse_args(argv)
    augment = load_config(args.config).data.augment if args.config is not None else AugmentConfig(enabled=False)
    ratios, dose = signal_to_noise(args.store, args.split)
    if augment.enabled:
        ratios = augmented(ratios, dose, augment, args.draws)
    result = {"store": str(args.store), "split": args.split, "config": None if args.config is None else str(args.config),
              "n": int(ratios.size), "median": round(float(np.median(ratios)), 3),
              "fraction_below": {str(t): round(float(np.mean(ratios < t)), 4) for t in THRESHOLDS}}
    if args.per_width:
        per_width = iodine_per_width(args.store, args.split)
        if augment.enabled:
            per_width = np.repeat(per_width, args.draws) * target_gain(augment, per_width.size * args.draws)
        result["iodine_per_width_percentiles"] = {
            str(q): round(float(v), 4) for q, v in zip(PERCENTILES, np.percentile(per_width, PERCENTILES))}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
