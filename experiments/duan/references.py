"""Can the issue-17 targets be met at all? Estimators that know each test sample's anatomy, per test set.

A single-frame network sees ``contrast = anatomy + target + noise`` (-ln domain). Two things stand
between it and the target: removing the anatomy and suppressing the frame's noise. These references
take the first away by knowing the anatomy exactly (``anatomy = contrast_clean - dsa_target``: all of the
noise-free frame that is not the target, scatter's share of the vessel signal included) and measure what
the noise alone costs, with three oracles of increasing power:

* ``known anatomy``: ``contrast - anatomy`` = target + the contrast frame's noise (also in ``ddsa-sim
  evaluate``, ``known_anatomy``);
* ``known anatomy, Gaussian``: the same, smoothed by a Gaussian whose sigma (pixels, from
  :data:`SIGMAS_PX`) is chosen per set for the best mean PSNR against the targets (an oracle choice);
* ``known anatomy, Wiener``: per image, the linear filter ``|T|^2 / (|T|^2 + N)`` with ``|T|^2`` the true
  target's power spectrum and ``N`` the noise periodogram smoothed over 9 x 9 frequencies (an oracle
  that knows the target's spectrum; a bound for linear shift-invariant filters, not for every
  estimator).

Each set's threshold is what the issue asks of a network there: ``max(zero + 3 dB, conventional DSA
without motion + 2 dB)``. A set whose oracles fall short of it asks for more than knowing the anatomy
exactly gives; a set where they pass it is limited by what the network does with the anatomy. PSNR uses
each set's data range and the background false-positive fraction is that of
:mod:`ddsa_sim.training.vessel_metrics`, as in ``ddsa-sim evaluate``. Results: docs/results.md (v5).

    python experiments/duan/references.py out/duan [-o out/duan/references.png] > out/duan/references.md
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from figure import target_top  # experiments/duan/figure.py and table.py, beside this script
from scipy import ndimage
from table import set_label

from ddsa_sim.training.data import ZarrDDSADataset
from ddsa_sim.training.evaluate import reference_images
from ddsa_sim.training.loop import target_data_range
from ddsa_sim.training.metrics import psnr
from ddsa_sim.training.vessel_metrics import vessel_metrics
from ddsa_sim.viz.figures import image_grid

__all__ = ["SIGMAS_PX", "main", "set_references", "wiener_oracle"]

#: Gaussian sigmas (binned pixels) the smoothed known-anatomy subtraction chooses from
SIGMAS_PX = (0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0)
#: width (frequencies) of the box that smooths the noise periodogram of the Wiener oracle
_PERIODOGRAM_BOX = 9


def wiener_oracle(noisy: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``noisy`` (target + noise) filtered by ``|T|^2 / (|T|^2 + N)``: ``T`` the target's spectrum, ``N``
    the noise periodogram (``noisy - target``) smoothed over a 9 x 9 box of frequencies (periodic)."""
    t2 = np.abs(np.fft.fft2(target)) ** 2
    n2 = ndimage.uniform_filter(np.abs(np.fft.fft2(noisy - target)) ** 2, _PERIODOGRAM_BOX, mode="wrap")
    return np.real(np.fft.ifft2(t2 / np.maximum(t2 + n2, 1e-300) * np.fft.fft2(noisy)))


def set_references(store: Path) -> dict:
    """Means over the test split of ``store``: ``{"psnr": {name: dB}, "fp": {name: fraction}, "sigma_px":
    float, "rows": [images of the first sample]}``, names ``zero``, ``conventional``, ``known``,
    ``gaussian``, ``wiener``."""
    ds = ZarrDDSADataset(store, "test")
    dr = target_data_range(ds)
    scores: dict[str, list[tuple[float, float]]] = {}
    first: dict[str, np.ndarray] = {}
    for i in range(len(ds)):
        sample = ds[i]
        refs = {k: v.astype(np.float64) for k, v in reference_images(sample).items()}  # float64 for the filters
        target, vessel = sample["dsa_target"][0].numpy().astype(np.float64), ds.vessel_mask(i)
        known = refs["known_anatomy"]
        images = {"zero": refs["zero"], "conventional": refs["conventional"], "known": known,
                  "wiener": wiener_oracle(known, target)}
        images |= {f"gaussian {s}": ndimage.gaussian_filter(known, s) for s in SIGMAS_PX}
        for name, image in images.items():
            fp = vessel_metrics(image, target, vessel, dr)["bg_fp_fraction"]
            scores.setdefault(name, []).append((psnr(image, target, dr), fp))
        if i == 0:
            first = images | {"target": target}
    mean = {name: np.nanmean(np.asarray(v), axis=0) for name, v in scores.items()}
    sigma = max(SIGMAS_PX, key=lambda s: mean[f"gaussian {s}"][0])
    mean["gaussian"] = mean[f"gaussian {sigma}"]
    first["gaussian"] = first[f"gaussian {sigma}"]
    names = ("zero", "conventional", "known", "gaussian", "wiener")
    return {"psnr": {n: float(mean[n][0]) for n in names}, "fp": {n: float(mean[n][1]) for n in names},
            "sigma_px": sigma, "rows": [first[n] for n in ("target", "conventional", "known", "gaussian")]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="output folder of experiments/duan_ablation.sh")
    ap.add_argument("-o", "--png", type=Path, help="picture: the first sample of every set")
    args = ap.parse_args()
    # a _motion set holds the _static set's trees, poses and exposures: the same references
    stores = sorted((p for p in (args.out / "data").glob("test_*.zarr")
                     if Path(f"{p}.done").exists() and not p.stem.endswith("_motion")),
                    key=lambda p: (p.stem != "test_common", p.stem))
    refs = {s.stem: set_references(s) for s in stores}
    print("| set | needed (dB) | all-zero | conventional | known anatomy | known anatomy, Gaussian (sigma px) "
          "| known anatomy, Wiener | FP fraction: conventional / known / Gaussian / Wiener |")
    print("|---|---|---|---|---|---|---|---|")
    for stem, r in refs.items():
        p, fp = r["psnr"], r["fp"]
        needed = max(p["zero"] + 3, p["conventional"] + 2) if "ood_" in stem else None
        mark = lambda v: f"**{v:.2f}**" if needed is not None and v >= needed else f"{v:.2f}"  # noqa: E731
        cells = [set_label(stem), "-" if needed is None else f"{needed:.2f}", f"{p['zero']:.2f}", f"{p['conventional']:.2f}",
                 mark(p["known"]), f"{mark(p['gaussian'])} ({r['sigma_px']:g})", mark(p["wiener"]),
                 " / ".join(f"{fp[n]:.3f}" for n in ("conventional", "known", "gaussian", "wiener"))]
        print("| " + " | ".join(cells) + " |")
    if args.png:
        rows = []
        for stem in refs:
            images = refs[stem]["rows"]
            top = target_top(images[0])
            rows.append([im / top for im in images])
        titles = [[f"{set_label(s)}: target", "conventional DSA", "known anatomy",
                   f"known anatomy, Gaussian {refs[s]['sigma_px']:g} px"] for s in refs]
        image_grid(rows, args.png, titles, windows=[(0.0, 1.0)] * 4, cell_inches=2.0)
        print(f"\n(picture: {args.png})")


if __name__ == "__main__":
    main()
