"""PSNR against the detector dose, from ``ddsa-sim evaluate`` results (their ``by_dose_ugy``; docs/results.md, v27).

One line per result's network, and the references of the first result (conventional DSA, known-anatomy
subtraction, the all-zero image; the same images in every result of one store): whether an image's error falls
with the dose (noise) or stays (anatomy).

    python experiments/duan/dose_curve.py EVAL.json [EVAL.json ...] -o docs/img/v27_dose_cow.png [--title T]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from ddsa_sim.viz.figures import save_figure

__all__ = ["dose_series", "main", "plot"]

REFERENCES = {"conventional": "conventional DSA", "known_anatomy": "known-anatomy subtraction", "zero": "all-zero image"}


def dose_series(result: dict[str, Any], method: str, metric: str = "psnr") -> tuple[np.ndarray, np.ndarray]:
    """Dose levels (uGy, ascending; ``"unknown"`` left out) and ``method``'s mean ``metric`` at each."""
    levels = [k for k in result["by_dose_ugy"] if k != "unknown"]
    return (np.array([float(k) for k in levels]),
            np.array([result["by_dose_ugy"][k][method][metric] for k in levels], dtype=np.float64))


def plot(results: list[dict[str, Any]], labels: list[str], out: Path, title: str) -> Path:
    """The networks' PSNR and the first result's references against the dose, log axis; returns the PNG's path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.6, 4.2))
    for result, label in zip(results, labels):
        ax.plot(*dose_series(result, "network"), marker="o", ms=3, lw=1, label=label)
    for (method, name), style in zip(REFERENCES.items(), ("--", "-.", ":")):
        ax.plot(*dose_series(results[0], method), color="0.3", ls=style, marker="s", ms=3, lw=1.2, label=name)
    ax.set_xscale("log")
    ax.set_xlabel("detector air kerma per frame (uGy, nearest 1-2-5 level)")
    ax.set_ylabel("PSNR (dB)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, out)


def main(argv: list[str] | None = None) -> None:
    """Command line (module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", type=Path, nargs="+", help="JSON of `ddsa-sim evaluate`")
    ap.add_argument("-o", "--png", type=Path, required=True)
    ap.add_argument("--title", default="")
    a = ap.parse_args(argv)
    results = [json.loads(p.read_text()) for p in a.results]
    missing = [str(p) for p, r in zip(a.results, results) if "by_dose_ugy" not in r]
    if missing:
        raise SystemExit(f"{missing[0]}: no by_dose_ugy (an evaluation before it existed); run `ddsa-sim evaluate` again")
    labels = ["/".join(Path(r["checkpoint"]).parts[-2:]) for r in results]  # a checkpoint by its run folder
    print(plot(results, labels, a.png, a.title))


if __name__ == "__main__":
    main()
