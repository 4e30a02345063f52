"""Picture of the evaluation regions and background false positives (docs/results.md, "Evaluation metrics").

    python experiments/eval_regions_figure.py STORE.zarr -o docs/img/eval_regions.png [--split test]

One row per sample: target | conventional DSA (contrast - mask) | regions: vessel ``V`` red, the dilation
margin ``D - V`` yellow, background pixels where conventional DSA exceeds the false-positive threshold
cyan, the rest of the background grey. The two DSA images share the target's window.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ddsa_sim.training.data import ZarrDDSADataset
from ddsa_sim.training.vessel_metrics import BG_THRESHOLD, vessel_regions
from ddsa_sim.viz.figures import image_grid, to_uint8

TITLES = ("target", "contrast - mask", f"V / D-V / B above {BG_THRESHOLD}")


def _grey(x: np.ndarray, hi: float) -> np.ndarray:
    return np.repeat(to_uint8(x, (0.0, hi))[..., None], 3, axis=-1)


def figure(store: Path, out: Path, split: str, rows: int) -> Path:
    """Write the regions figure for the first ``rows`` samples of ``split``."""
    ds = ZarrDDSADataset(store, split, max_samples=rows)
    tiles = []
    for i in range(len(ds)):
        item = ds[i]
        target = item["dsa_target"][0].numpy()
        conv = item["contrast"][0].numpy() - item["mask"][0].numpy()
        v, d, b = vessel_regions(ds.vessel_mask(i))
        regions = np.full(target.shape + (3,), 90, np.uint8)
        regions[d & ~v] = (230, 200, 0)
        regions[v] = (220, 30, 30)
        regions[b & (conv > BG_THRESHOLD)] = (0, 220, 230)
        hi = float(target.max())
        tiles.append([_grey(target, hi), _grey(conv, hi), regions])
    return image_grid(tiles, out, titles=[TITLES] + [()] * (len(tiles) - 1))  # RGB tiles: shown as they are


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("store", type=Path)
    ap.add_argument("-o", "--out", type=Path, required=True)
    ap.add_argument("--split", default="test")
    ap.add_argument("--rows", type=int, default=2)
    a = ap.parse_args()
    print(figure(a.store, a.out, a.split, a.rows))


if __name__ == "__main__":
    main()
