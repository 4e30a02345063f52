"""Which checkpoint of a vessel-GAN run each selection rule picks, and how good the pick is on a large judge set.

A run trained with ``keep_snapshots: true`` (and without ``--val-data``) keeps every evaluated network
(``RUN/snapshots/step_NNNNNN.pt``). Candidates are the snapshots at multiples of ``--every`` steps. For each,
``--n-select`` volumes sampled with the trainer's evaluation seed (the config's ``seed``) are scored by the median
per-feature W1 (:func:`vessel_models.gan.quality.compare_sets`) against

* ``own``: the run's held-out training volumes, from its first ``eval_samples`` samples: exactly the trainer's
  evaluation, the rule that picks ``best.pt`` (checked against the run's TensorBoard log), and
* ``select``: a separate held-out draw (``--select``), from all ``--n-select`` samples;

and ``--n-judge`` volumes of another seed are scored by the W1 mean against a large judge draw (``--judge``),
the measure the results tables report. Each rule picks its lowest-scoring candidate; ``last`` is the last
candidate and ``oracle`` the judge's own lowest. Writes ``OUT/selection.json``, ``OUT/selection.md`` and
``OUT/selection.png`` (the judge score along each run, the picks marked).

Usage: python experiments/vessel_gan_selection.py --train DIR --select DIR --judge DIR --runs RUN [RUN ...] -o OUT
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import re
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from bench_train import scalar_events  # beside this script
from tqdm import tqdm

from vessel_models.gan.checkpoint import load_generator
from vessel_models.gan.data import load_label_folder
from vessel_models.gan.quality import compare_sets, feature_matrix
from vessel_models.gan.sample import sample_labels
from vessel_models.gan.train import split_volumes

RULES = ("own", "select", "last", "oracle")


def candidates(run: Path, every: int) -> dict[int, Path]:
    """step -> snapshot path of the run's snapshots at multiples of ``every`` steps."""
    found = {int(m.group(1)): p for p in (run / "snapshots").glob("step_*.pt")
             if (m := re.fullmatch(r"step_(\d+)\.pt", p.name))}
    if not found:
        raise SystemExit(f"{run}/snapshots: no snapshots (train with keep_snapshots: true)")
    return {s: found[s] for s in sorted(found) if s % every == 0}


def snapshot_features(path: Path, n_select: int, n_judge: int, judge_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(features of ``n_select`` samples with the run's evaluation seed, of ``n_judge`` with ``judge_seed``)."""
    import torch

    torch.set_num_threads(1)
    generator, cfg = load_generator(path)
    spacing = cfg.data.spacing_mm
    return (feature_matrix(sample_labels(generator, n_select, cfg.seed), spacing),
            feature_matrix(sample_labels(generator, n_judge, judge_seed), spacing))


def picks(scores: dict[str, dict[int, float]]) -> dict[str, int]:
    """The step each rule picks: the lowest ``own`` / ``select`` / ``judge`` score (the first of ties), the last."""
    steps = sorted(scores["judge"])
    low = {rule: min(steps, key=lambda s: scores[key][s]) for rule, key in
           (("own", "own"), ("select", "select"), ("oracle", "judge"))}
    return {**low, "last": steps[-1]}


def score_run(run: Path, train: Path, select_f: np.ndarray, judge_f: np.ndarray, args) -> dict:
    """Every candidate's ``own``, ``select`` and ``judge`` scores and each rule's pick of one run."""
    cands = candidates(run, args.every)
    _, cfg = load_generator(next(iter(cands.values())))
    if cfg.data.mode != "crop":
        raise SystemExit(f"{run}: data.mode {cfg.data.mode}: the trainer's own rule is reproduced for crop mode only")
    _, held_out = split_volumes(load_label_folder(train, cfg.data.spacing_mm, list(cfg.data.labels) or None, "--train"),
                                cfg.data.val_fraction, cfg.seed)
    own_f = feature_matrix([v > 0.5 for v in held_out], cfg.data.spacing_mm)
    scores: dict[str, dict[int, float]] = {"own": {}, "select": {}, "judge": {}}
    features = functools.partial(snapshot_features, n_select=args.n_select, n_judge=args.n_judge,
                                 judge_seed=args.judge_seed)
    with ProcessPoolExecutor(args.workers) if args.workers > 1 else contextlib.nullcontext() as pool:
        done = (pool.map if pool else map)(features, cands.values())
        for s, (gen_select, gen_judge) in zip(cands, tqdm(done, total=len(cands), desc=run.name)):
            scores["own"][s] = compare_sets(gen_select[:cfg.eval_samples], own_f)["w1_median"]
            scores["select"][s] = compare_sets(gen_select, select_f)["w1_median"]
            scores["judge"][s] = compare_sets(gen_judge, judge_f)["w1_mean"]
    logged = {e.step: e.value for e in scalar_events(run / "tb", "quality/w1_median")}  # the trainer's own scores
    chosen = picks(scores)
    return {"kind": cfg.net.kind, "seed": cfg.seed, "scores": {k: {str(s): v for s, v in d.items()}
                                                               for k, d in scores.items()},
            "own_vs_logged_max_abs": max(abs(scores["own"][s] - logged[s]) for s in scores["own"] if s in logged),
            "picks": {rule: {"step": s, "judge": scores["judge"][s]} for rule, s in chosen.items()}}


def figure(results: dict[str, dict], path: Path) -> None:
    """Judge score along each run, each rule's pick marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(4, len(results))
    rows = -(-len(results) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.8 * rows), squeeze=False, sharey=True)
    marks = {"own": ("o", "C1"), "select": ("s", "C2"), "last": ("^", "C3"), "oracle": ("*", "k")}
    for ax in axes.flat[len(results):]:
        ax.set_visible(False)
    for ax, (name, r) in zip(axes.flat, results.items()):
        steps = sorted(int(s) for s in r["scores"]["judge"])
        ax.plot(steps, [r["scores"]["judge"][str(s)] for s in steps], color="0.5", lw=1)
        for rule, (m, c) in marks.items():
            p = r["picks"][rule]
            ax.plot(p["step"], p["judge"], m, color=c, ms=8 if rule != "oracle" else 11, mfc="none" if rule != "oracle"
                    else c, label=rule)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("generator step")
    axes[0, 0].set_ylabel("judge: W1 mean (lower is better)")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=Path, required=True, help="the runs' training folder (for their held-out split)")
    ap.add_argument("--select", type=Path, required=True, help="a separate held-out real draw (selection set)")
    ap.add_argument("--judge", type=Path, required=True, help="a large held-out real draw (judge set)")
    ap.add_argument("--runs", type=Path, nargs="+", required=True, help="run folders with snapshots/")
    ap.add_argument("--every", type=int, default=100, help="candidates: snapshots at multiples of this step")
    ap.add_argument("--n-select", type=int, default=128, help="samples per candidate for the selection rules")
    ap.add_argument("--n-judge", type=int, default=128, help="samples per candidate for the judge")
    ap.add_argument("--judge-seed", type=int, default=123, help="the judge's sampling seed")
    ap.add_argument("--workers", type=int, default=2, help="processes (1: in this one)")
    ap.add_argument("-o", "--out", type=Path, required=True)
    args = ap.parse_args(argv)

    spacing = load_generator(next(iter(candidates(args.runs[0], args.every).values())))[1].data.spacing_mm
    select_f = feature_matrix(load_label_folder(args.select, spacing, where="--select"), spacing)
    judge_f = feature_matrix(load_label_folder(args.judge, spacing, where="--judge"), spacing)
    results = {run.name: score_run(run, args.train, select_f, judge_f, args) for run in args.runs}
    lines = [f"| run | candidates | {' | '.join(f'{r}: step (judge)' for r in RULES)} | own - select |",
             "|---|---|" + "---|" * (len(RULES) + 1)]
    for name, r in results.items():
        p = r["picks"]
        cells = " | ".join(f"{p[rule]['step']} ({p[rule]['judge']:.3f})" for rule in RULES)
        lines.append(f"| {name} | {len(r['scores']['judge'])} | {cells} | {p['own']['judge'] - p['select']['judge']:+.3f} |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "selection.json").write_text(json.dumps(results, indent=1))
    (args.out / "selection.md").write_text("\n".join(lines) + "\n")
    figure(results, args.out / "selection.png")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
