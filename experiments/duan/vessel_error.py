"""Where a network's DSA error lies: per region, and on the vessels by how bright they are (docs/results.md, v26).

Over one split of a store, for each checkpoint and for the references of ``ddsa-sim evaluate``
(conventional DSA, known-anatomy subtraction), beside the mean whole-image PSNR (as ``evaluate``'s):

* **region shares**: the fraction of the summed squared error ``sum (P - T)^2`` on the vessel pixels ``V``,
  on the dilation margin ``D - V`` and on the background ``B`` (regions of
  :func:`ddsa_sim.training.vessel_metrics.vessel_regions`);
* **brightness bins**: on ``V``, with the pixels grouped by their target value ``T`` (-ln units, edges
  :data:`EDGES`), the mean target, the mean prediction, their difference (the bias), the RMS error and
  the bin's share of ``V``'s squared error. An image without error (known-anatomy subtraction up to its
  noise) has mean prediction = mean target in every bin; conventional DSA draws bright vessels fainter by
  scatter's share (the target is scatter-free); a network that hedges between vessel and anatomy draws faint
  vessels too bright and bright ones too faint;
* **calibration**: over all pixels, grouped by the prediction ``P`` (edges :data:`PRED_EDGES`), the mean
  prediction and the mean target, ``E[T | P]``. A network whose ``E[T | P]`` is ``P`` is calibrated: its
  output cannot be improved by any rescaling of it, and a bias by target brightness is then its uncertainty
  (regression to the mean), not a gain to correct;
* **anatomy bins**: on the vessel pixels with ``T > 0.1``, grouped by the anatomy the ray crosses besides the
  iodine (``contrast_clean - dsa_target``, -ln; edges :data:`ANATOMY_EDGES`), the mean prediction against the
  mean target: whether vessels are drawn fainter where more bone and tissue lie under them (docs/results.md, v27).

``--ensemble`` adds one more image, the mean of the checkpoints' images: how much of their error is theirs
alone (it averages out) and how much they share (docs/results.md, v27). ``--clean-input`` runs the networks on the
noise-free frames (``contrast_clean``) instead of the recorded ones: their error then is all anatomy (the
references stay those of the recorded frames).

    python experiments/duan/vessel_error.py CKPT [CKPT ...] --data STORE [--split test] [--max-samples 64]
        [--tta] [--stepped] [--ensemble] [--clean-input] [-o OUT.json] [--png OUT.png]

The JSON goes to stdout (or ``-o``), a table to stderr; ``--png`` plots mean prediction against mean target
per bin, one line per image.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ddsa_sim.files import atomic_output
from ddsa_sim.training.checkpoint import load_model
from ddsa_sim.training.data import ZarrDDSADataset
from ddsa_sim.training.evaluate import reference_images
from ddsa_sim.training.loop import target_data_range
from ddsa_sim.training.metrics import psnr
from ddsa_sim.training.pixel_grid import network_dsa_on_grid, network_grid
from ddsa_sim.training.vessel_metrics import vessel_regions
from ddsa_sim.viz.figures import save_figure

#: target-value bin edges on the vessel pixels, -ln units (about 10 mg/cm^2 of iodine per 0.1, docs/results.md)
EDGES = (0.0, 0.05, 0.1, 0.2, 0.4, 0.8, np.inf)
#: prediction bin edges over all pixels, -ln units
PRED_EDGES = (-np.inf, 0.025, 0.05, 0.1, 0.2, 0.4, 0.8, np.inf)
#: anatomy bin edges (-ln of the anatomy along the ray); the vessel pixels with a target above ANATOMY_MIN_TARGET
ANATOMY_EDGES = (0.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, np.inf)
ANATOMY_MIN_TARGET = 0.1
REFERENCES = ("conventional", "known_anatomy")
ENSEMBLE = "ensemble"


class ErrorBudget:
    """Squared-error sums per region and per target-brightness bin on the vessels, accumulated over images."""

    def __init__(self, edges: tuple[float, ...] = EDGES, pred_edges: tuple[float, ...] = PRED_EDGES,
                 anatomy_edges: tuple[float, ...] = ANATOMY_EDGES) -> None:
        self.edges = np.asarray(edges, np.float64)
        self.pred_edges = np.asarray(pred_edges, np.float64)
        self.anatomy_edges = np.asarray(anatomy_edges, np.float64)
        self.anat_count, self.anat_t, self.anat_p = (np.zeros(len(anatomy_edges) - 1) for _ in range(3))
        self.regions = {"V": 0.0, "D-V": 0.0, "B": 0.0}
        k = len(edges) - 1
        self.count, self.sum_t, self.sum_p, self.sum_sq = (np.zeros(k) for _ in range(4))
        self.cal_count, self.cal_p, self.cal_t = (np.zeros(len(pred_edges) - 1) for _ in range(3))

    def add(self, pred: np.ndarray, target: np.ndarray, vessel_mask: np.ndarray, anatomy: np.ndarray | None = None
            ) -> None:
        """Add one ``(H, W)`` prediction against its target (-ln units) and the store's vessel mask; ``anatomy``:
        the ray's anatomy besides the iodine (-ln, ``contrast_clean - dsa_target``), for the anatomy bins."""
        p, t = np.asarray(pred, np.float64), np.asarray(target, np.float64)
        v, d, b = vessel_regions(vessel_mask)
        sq = (p - t) ** 2
        for name, region in (("V", v), ("D-V", d & ~v), ("B", b)):
            self.regions[name] += float(sq[region].sum())
        _bin_sums(self.edges, t[v], (self.count, None), (self.sum_t, t[v]), (self.sum_p, p[v]), (self.sum_sq, sq[v]))
        _bin_sums(self.pred_edges, p.ravel(), (self.cal_count, None), (self.cal_p, p.ravel()), (self.cal_t, t.ravel()))
        if anatomy is not None:
            sel = v & (t > ANATOMY_MIN_TARGET)
            a = np.asarray(anatomy, np.float64)[sel]
            _bin_sums(self.anatomy_edges, a, (self.anat_count, None), (self.anat_t, t[sel]), (self.anat_p, p[sel]))

    def summary(self) -> dict:
        """``{"region_share": {V, D-V, B}, "bins": [{lo, hi, n, mean_target, mean_pred, bias, rms, share_of_V}],
        "calibration": [{lo, hi, n, mean_pred, mean_target}], "anatomy": [{lo, hi, n, mean_target, mean_pred}]}``
        (``anatomy`` empty where no image came with its anatomy)."""
        total = sum(self.regions.values())
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_t, mean_p = self.sum_t / self.count, self.sum_p / self.count
            rms = np.sqrt(self.sum_sq / self.count)
        bins = [{"lo": float(lo), "hi": float(hi), "n": int(n), "mean_target": float(mt), "mean_pred": float(mp),
                 "bias": float(mp - mt), "rms": float(r), "share_of_V": float(s / self.regions["V"])}
                for lo, hi, n, mt, mp, r, s in zip(self.edges[:-1], self.edges[1:], self.count, mean_t, mean_p, rms,
                                                    self.sum_sq) if n]
        calibration = [{"lo": float(lo), "hi": float(hi), "n": int(n), "mean_pred": float(sp / n),
                        "mean_target": float(st / n)}
                       for lo, hi, n, sp, st in zip(self.pred_edges[:-1], self.pred_edges[1:], self.cal_count,
                                                    self.cal_p, self.cal_t) if n]
        anatomy = [{"lo": float(lo), "hi": float(hi), "n": int(n), "mean_target": float(st / n), "mean_pred": float(sp / n)}
                   for lo, hi, n, st, sp in zip(self.anatomy_edges[:-1], self.anatomy_edges[1:], self.anat_count,
                                                self.anat_t, self.anat_p) if n]
        return {"region_share": {k: v / total for k, v in self.regions.items()}, "bins": bins, "calibration": calibration,
                "anatomy": anatomy}


def _bin_sums(edges: np.ndarray, key: np.ndarray, *sums: tuple[np.ndarray, np.ndarray | None]) -> None:
    """Add ``values`` (a count where None) into ``acc`` per bin of ``key`` (``edges``; outside: the end bins)."""
    n = len(edges) - 1
    k = np.clip(np.searchsorted(edges, key, side="right") - 1, 0, n - 1)
    for acc, values in sums:
        acc += np.bincount(k, values, minlength=n)


@torch.no_grad()
def budgets(checkpoints: list[Path], store: Path, split: str, max_samples: int | None, tta: bool,
            stepped: bool = False, ensemble: bool = False, clean_input: bool = False) -> dict[str, dict]:
    """:class:`ErrorBudget` summaries of each checkpoint (keyed by its path) and of :data:`REFERENCES`, each with
    ``psnr``, the mean whole-image PSNR (dB, the split's data range, as ``ddsa-sim evaluate``); ``stepped``: the
    optimiser's weights of weight-averaged runs (``ddsa-sim evaluate --stepped``); ``ensemble``: also of the mean
    of the checkpoints' images (:data:`ENSEMBLE`); ``clean_input``: the networks on ``contrast_clean``."""
    ds = ZarrDDSADataset(store, split, max_samples=max_samples)
    pixel_mm = ds.pixel_mm()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    nets = []
    for c in checkpoints:
        model, norm, _, ckpt = load_model(c, torch.device(device), stepped=stepped)
        grid = network_grid(ds.image_shape, None if pixel_mm is None else (pixel_mm, pixel_mm), ckpt.get("pixel_mm"),
                            False, str(store))
        nets.append((str(c), model, norm, grid))
    names = [n[0] for n in nets] + [ENSEMBLE] * ensemble + list(REFERENCES)
    acc, psnrs = {name: ErrorBudget() for name in names}, {name: [] for name in names}
    data_range = target_data_range(ds)
    for i in tqdm(range(len(ds)), desc=f"{store.name} {split}"):
        item = ds[i]
        target, vessel = item["dsa_target"][0].numpy(), ds.vessel_mask(i)
        images = reference_images(item)
        frame = item["contrast_clean" if clean_input else "contrast"][None].to(device)
        for name, model, norm, grid in nets:
            images[name] = network_dsa_on_grid(model, norm, frame, grid, tta)[0, 0].cpu().numpy()
        if ensemble:
            images[ENSEMBLE] = np.mean([images[n[0]] for n in nets], axis=0)
        anatomy = item["contrast_clean"][0].numpy() - target
        for name in names:
            acc[name].add(images[name], target, vessel, anatomy)
            psnrs[name].append(psnr(images[name], target, data_range))
    return {name: {"psnr": float(np.mean(psnrs[name]))} | acc[name].summary() for name in names}


def format_table(result: dict[str, dict]) -> str:
    lines = []
    for name, s in result.items():
        r = s["region_share"]
        lines.append(f"{name}: PSNR {s['psnr']:.2f} dB; squared error on V {r['V']:.3f}, D-V {r['D-V']:.3f}, B {r['B']:.3f}")
        lines += [f"  T {b['lo']:.2f}-{b['hi']:.2f} ({b['n']} px): mean T {b['mean_target']:.3f}, mean P "
                  f"{b['mean_pred']:.3f}, bias {b['bias']:+.4f}, rms {b['rms']:.4f}, share of V {b['share_of_V']:.3f}"
                  for b in s["bins"]]
        lines.append("  calibration, E[T | P]: " + ", ".join(f"P {c['lo']:.3g}-{c['hi']:.3g}: {c['mean_pred']:.3f} -> "
                                                         f"{c['mean_target']:.3f}" for c in s["calibration"]))
        lines.append(f"  by anatomy (T > {ANATOMY_MIN_TARGET}), mean P / mean T: " + ", ".join(
            f"A {a['lo']:.3g}-{a['hi']:.3g} ({a['n']} px): {a['mean_pred'] / a['mean_target']:.3f}" for a in s["anatomy"]))
    return "\n".join(lines)


def plot(result: dict[str, dict], out: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 4.4))
    top = max(b["mean_target"] for s in result.values() for b in s["bins"])
    ax.plot([0, top], [0, top], color="0.6", lw=1, ls="--", label="prediction = target")
    for name, s in result.items():
        label = "/".join(Path(name).parts[-2:])  # a checkpoint by its run folder; the references as they are
        ax.plot([b["mean_target"] for b in s["bins"]], [b["mean_pred"] for b in s["bins"]], marker="o", label=label)
    ax.set_xlabel("mean target on the vessel pixels of a bin (-ln)")
    ax.set_ylabel("mean prediction there (-ln)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", type=Path, nargs="+")
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--split", default="test")
    ap.add_argument("--max-samples", type=int)
    ap.add_argument("--tta", action="store_true")
    ap.add_argument("--stepped", action="store_true", help="the optimiser's weights of weight-averaged runs")
    ap.add_argument("--ensemble", action="store_true", help="also the mean of the checkpoints' images")
    ap.add_argument("--clean-input", action="store_true", help="the networks on the noise-free frames")
    ap.add_argument("-o", "--out", type=Path)
    ap.add_argument("--png", type=Path)
    a = ap.parse_args()
    torch.set_num_threads(1)
    result = budgets(a.checkpoints, a.data, a.split, a.max_samples, a.tta, a.stepped, a.ensemble, a.clean_input)
    print(format_table(result), file=sys.stderr)
    text = json.dumps(result, indent=1)
    if a.out is None:
        print(text)
    else:
        with atomic_output(a.out) as tmp:
            Path(tmp).write_text(text)
    if a.png is not None:
        title = f"{a.data.name} {a.split}{' TTA' if a.tta else ''}{', noise-free input' if a.clean_input else ''}"
        print(plot(result, a.png, title), file=sys.stderr)


if __name__ == "__main__":
    main()
