"""Validation PSNR along training of paired runs, one panel per seed (the TensorBoard scalar ``val/psnr`` that
``ddsa-sim train`` writes at each check), with each run's kept check (``best.pt``) marked.

    python experiments/duan/val_curves.py out/duan3 -o docs/img/val_curves_v16.png \
        --runs unet_dose_d4_p128_fromm_l unet_dose_d4_p128_ema_fromm_l --seeds 0 1 2 3 4
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

from ddsa_sim.viz.figures import save_figure  # noqa: E402

__all__ = ["main", "val_history"]


def val_history(run_dir: str | Path, tag: str = "val/psnr") -> tuple[np.ndarray, np.ndarray]:
    """Steps and values of the scalar ``tag`` in a run folder's TensorBoard log (the last value of each step)."""
    events = EventAccumulator(str(Path(run_dir) / "tb"))
    events.Reload()
    by_step = {e.step: e.value for e in events.Scalars(tag)}
    steps = np.array(sorted(by_step))
    return steps, np.array([by_step[s] for s in steps])


def main(argv: list[str] | None = None) -> None:
    """Command line (module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="output folder of experiments/duan_ablation.sh")
    ap.add_argument("-o", "--png", type=Path, required=True)
    ap.add_argument("--runs", nargs="+", required=True, help="models, i.e. run names less _s<seed>")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    args = ap.parse_args(argv)
    fig, axes = plt.subplots(1, len(args.seeds), figsize=(3.2 * len(args.seeds), 2.8), sharey=True, squeeze=False)
    for ax, seed in zip(axes[0], args.seeds):
        for run in args.runs:
            steps, psnr = val_history(args.out / "runs" / f"{run}_s{seed}")
            (line,) = ax.plot(steps, psnr, lw=1, label=run)
            ax.plot(steps[np.argmax(psnr)], psnr.max(), "o", ms=4, color=line.get_color())
        ax.set_title(f"seed {seed}", fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0, 0].set_ylabel("validation PSNR (dB)", fontsize=8)
    axes[0, 0].legend(fontsize=6, loc="lower right")
    fig.tight_layout()
    save_figure(fig, args.png, dpi=110)
    print(args.png)


if __name__ == "__main__":
    main()
