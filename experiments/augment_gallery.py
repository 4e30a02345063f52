"""Picture of the training augmentation on exported samples (docs/results.md, "Training augmentation").

    python experiments/augment_gallery.py STORE.zarr -o docs/img/augment_gallery.png

Columns: the recorded input and target; the same pair after the augmentation of
``experiments/ddsa_gpu_paper.yaml`` (the published DDSA set); after that plus anatomy gain and -ln offset
(both with probability 1). Noise injection is left out so the geometry is easy to compare. All inputs
share one grey window (so gain and offset show as brightness), all targets another.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from ddsa_sim.training.augment import augment_pair, random_ln_offset
from ddsa_sim.training.config import load_config
from ddsa_sim.training.data import ZarrDDSADataset
from ddsa_sim.viz.figures import image_grid

PAPER_CONFIG = Path(__file__).with_name("ddsa_gpu_paper.yaml")
TITLES = ("input", "target", "published: input", "target", "+ gain, offset: input", "target")


def gallery(store: Path, out: Path, rows: int, seed: int) -> Path:
    """Write the gallery PNG of the first ``rows`` train samples of ``store``."""
    ds = ZarrDDSADataset(store, "train", max_samples=rows)
    target = torch.stack([ds[i]["dsa_target"] for i in range(len(ds))])
    inp = torch.stack([ds[i]["contrast_clean"] for i in range(len(ds))])
    stack = torch.cat([inp - target, target], dim=1)
    paper = load_config(PAPER_CONFIG).data.augment
    extra = paper.model_copy(update={"p_anatomy_gain": 1.0, "p_ln_offset": 1.0})
    columns = [inp, target]
    for cfg in (paper, extra):
        g = torch.Generator().manual_seed(seed)  # same geometry draws in both: only gain / offset differ
        aug = augment_pair(stack, cfg, g)
        columns += [random_ln_offset(aug[:, :1] + aug[:, 1:], cfg, g), aug[:, 1:]]
    imgs = [c[:, 0].numpy() for c in columns]
    in_lo, in_hi = np.percentile(np.concatenate([imgs[0], imgs[2], imgs[4]]), [0.5, 99.5])
    t_hi = float(np.percentile(imgs[1], 99.9))
    windows = [(in_lo, in_hi) if j % 2 == 0 else (0.0, t_hi) for j in range(len(imgs))]
    rows = [[col[i] for col in imgs] for i in range(len(ds))]
    return image_grid(rows, out, titles=[TITLES] + [()] * (len(rows) - 1), windows=windows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("store", type=Path)
    ap.add_argument("-o", "--out", type=Path, required=True)
    ap.add_argument("--rows", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    print(gallery(a.store, a.out, a.rows, a.seed))


if __name__ == "__main__":
    main()
