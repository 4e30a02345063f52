"""Score trained vessel GANs against an untrained generator and the real-vs-real floor.

For each run folder: ``n`` volumes sampled from ``RUN/best.pt`` (the checkpoint the training selected),
from ``RUN/last.pt`` (its final weights) and ``n`` from an untrained generator of the same config (its
initial weights) are compared with a held-out reference draw of real volumes
(:func:`vessel_models.gan.quality.compare_sets`); a second held-out real draw gives the floor (what
real data scores against itself). Writes ``OUT/scores.json``, a markdown table ``OUT/scores.md`` and a
MIP figure per run (``IMG_DIR/gan_<kind>.png``: real, untrained, best, last rows); the training steps and
wall time come from ``RUN/train.log`` (the last line of ``gan-train``). The markdown also lists each
set's mean feature values (in their units: the standardised distances hide how far off, e.g., the
fraction in the largest component is).

Usage: python experiments/vessel_gan_score.py --reference DIR --floor DIR --runs RUN [RUN ...] -o OUT
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np

from vessel_models.gan.checkpoint import build_networks, load_checkpoint, load_generator
from vessel_models.gan.data import load_label_folder
from vessel_models.gan.quality import FEATURES, compare_sets, feature_matrix
from vessel_models.gan.sample import sample_labels

KEYS = ("w1_mean", "mmd2", "precision", "recall")


def mip_figure(rows: list[tuple[str, np.ndarray]], path: Path, title: str) -> None:
    """One row of maximum intensity projections (along axis 0) per volume set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = min(len(v) for _, v in rows)
    fig, axes = plt.subplots(len(rows), n, figsize=(1.3 * n, 1.45 * len(rows)), squeeze=False)
    for r, (name, vols) in enumerate(rows):
        for c in range(n):
            ax = axes[r, c]
            ax.imshow(np.asarray(vols[c], dtype=np.float32).max(axis=0), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(name, fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def train_log(path: Path) -> dict:
    """``steps`` and ``wall_s`` from the last line of ``ddsa-sim vessels gan-train`` (empty if absent)."""
    found = re.findall(r"(\d+) steps in (\d+) s", path.read_text()) if path.exists() else []
    return {"steps": int(found[-1][0]), "wall_s": float(found[-1][1])} if found else {}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reference", type=Path, required=True, help="held-out real label volumes (reference set)")
    ap.add_argument("--floor", type=Path, required=True, help="a second held-out real draw (the floor)")
    ap.add_argument("--runs", type=Path, nargs="+", required=True, help="run folders with best.pt")
    ap.add_argument("-n", type=int, default=64, help="generated volumes per set")
    ap.add_argument("--seed", type=int, default=123, help="sampling seed")
    ap.add_argument("--img-dir", type=Path, default=None,
                    help="folder of the gan_<kind>.png sample pictures (default: the -o folder; "
                         "experiments/vessel_gan_cpu_small.sh passes docs/img)")
    ap.add_argument("-o", "--out", type=Path, required=True)
    args = ap.parse_args()
    args.img_dir = args.img_dir or args.out

    out: dict = {"runs": {}}
    lines = ["| model | set | steps | train wall (min) | W1 mean | MMD^2 | precision | recall |",
             "|---|---|---|---|---|---|---|---|"]
    spacing = None
    means: dict = {}
    for run in args.runs:
        ckpt = load_checkpoint(run / "best.pt")
        trained, cfg = load_generator(run / "best.pt")
        spacing = cfg.data.spacing_mm
        reference = load_label_folder(args.reference, spacing)
        floor = load_label_folder(args.floor, spacing)
        ref_f = feature_matrix(reference, spacing)
        untrained, _ = build_networks(cfg)
        last, _ = load_generator(run / "last.pt")
        last_step = load_checkpoint(run / "last.pt")["step"]
        sets = {"untrained": sample_labels(untrained.eval(), args.n, args.seed),
                "trained": sample_labels(trained, args.n, args.seed),
                "last": sample_labels(last, args.n, args.seed)}
        feats = {name: feature_matrix(v, spacing) for name, v in sets.items()}
        feats["real floor"] = feature_matrix(floor, spacing)
        scores = {name: compare_sets(f, ref_f) for name, f in feats.items()}
        means[cfg.net.kind] = {name: f.mean(axis=0) for name, f in feats.items()}
        means["reference"] = {"real": ref_f.mean(axis=0)}
        meta = train_log(run / "train.log")
        out["runs"][cfg.net.kind] = {"best_step": ckpt["step"], "last_step": last_step, **meta, "scores": scores}
        for name in ("real floor", "untrained", "trained", "last"):
            s = scores[name]
            steps = {"trained": f"{meta.get('steps', '?')} (best.pt: {ckpt['step']})",
                     "last": f"last.pt: {last_step}"}.get(name, "")
            wall = f"{meta['wall_s'] / 60:.1f}" if name == "trained" and "wall_s" in meta else ""
            lines.append(f"| {cfg.net.kind} | {name} | {steps} | {wall} | {s['w1_mean']:.3f} | {s['mmd2']:.3f} | "
                         f"{s['precision']:.2f} | {s['recall']:.2f} |")
        mip_figure([("real", floor[:8]), ("untrained", sets["untrained"][:8]),
                    (f"best.pt ({ckpt['step']})", sets["trained"][:8]), (f"last.pt ({last_step})", sets["last"][:8])],
                   args.img_dir / f"gan_{cfg.net.kind}.png",
                   f"{cfg.net.kind}: MIPs of {tuple(cfg.data.shape)} label volumes at {spacing:g} mm")
    kinds = list(out["runs"])
    lines += ["", "Per feature (W1 / reference std):", "",
              "| feature | floor | " + " | ".join(f"{k} untrained | {k} best | {k} last" for k in kinds) + " |",
              "|---|---|" + "---|---|---|" * len(kinds)]
    for f in FEATURES:
        row = [out["runs"][kinds[0]]["scores"]["real floor"][f"w1_{f}"]]
        row += [out["runs"][k]["scores"][name][f"w1_{f}"] for k in kinds for name in ("untrained", "trained", "last")]
        lines.append(f"| {f} | " + " | ".join(f"{v:.2f}" for v in row) + " |")
    columns = [("reference", "real"), (kinds[0], "real floor")] + [
        (k, name) for k in kinds for name in ("untrained", "trained", "last")]
    lines += ["", "Mean feature values:", "",
              "| feature | " + " | ".join(f"{k} {name}" for k, name in columns) + " |",
              "|---|" + "---|" * len(columns)]
    for i, f in enumerate(FEATURES):
        lines.append(f"| {f} | " + " | ".join(f"{means[k][name][i]:.3f}" for k, name in columns) + " |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scores.json").write_text(json.dumps(out, indent=1))
    (args.out / "scores.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
