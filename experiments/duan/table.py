"""Tables of experiments/duan_ablation.sh: mean +- std over seeds of every metric, per model row and test set.

Reads ``OUT/eval/<net>_<row>_s<seed>/<test>.json`` (experiments/duan/evaluate_all.py; ``--checkpoint last``:
``OUT/eval_last``, the runs' ``last.pt``; ``--tta``: ``OUT/eval_tta``, the network averaged over the image
symmetries) and prints Markdown:
one table per metric (rows: models and the references; columns: test sets), then the issue-17 targets
per model and out-of-distribution set, then every run's PSNR and false-positive fraction. A model's
number on a test set is the mean over that set's samples; the table gives the mean and population std
of it over the seeds. The baselines do not depend
on the model (the same store), so they have no seed spread.

Targets (issue 17), on every out-of-distribution set X (``X_motion`` and ``X_static``):
PSNR(network) >= PSNR(all-zero) + 3 dB, PSNR(network) >= PSNR(conventional DSA on X_static) + 2 dB,
and bg_fp_fraction(network) < bg_fp_fraction(conventional DSA on the same set). Beside them, not a
target: the network's PSNR against known-anatomy subtraction (negative: it leaves anatomy in or loses
iodine; positive: it also denoises).

    python experiments/duan/table.py out/duan > out/duan/table.md
    python experiments/duan/table.py out/duan --tta > out/duan/table_tta.md
    python experiments/duan/table.py out/duan --fit --tta > out/duan/table_fit_tta.md   # training images
"""

from __future__ import annotations

import argparse
import json
import re
from collections import defaultdict
from pathlib import Path

import numpy as np

__all__ = ["REFERENCES", "RUN", "eval_dir", "load", "main", "metric_table", "per_seed", "set_label", "targets"]

METRICS = (("psnr", "PSNR (dB)", "{:.2f}"), ("vessel_psnr", "vessel PSNR (dB)", "{:.2f}"),
           ("bg_fp_fraction", "background FP fraction (P > 0.05 off the vessels)", "{:.4f}"),
           ("iodine_recovery", "iodine recovery", "{:.3f}"))
#: references scored beside every network (ddsa_sim.training.evaluate.METHODS) -> row label
REFERENCES = {"conventional": "conventional DSA", "known_anatomy": "known-anatomy subtraction", "zero": "all-zero image"}
RUN = re.compile(r"(?P<model>.+)_s(?P<seed>\d+)$")
#: model (run name less its seed) -> row label, in table order; other models follow, sorted by name
LABELS = {
    "unet_a": "U-Net a", "unet_b": "U-Net b", "unet_c": "U-Net c", "unet_d": "U-Net d", "unet_e": "U-Net e",
    "unet_f3": "U-Net f (v3 heads)", "unet_f": "U-Net f (v4 heads)", "unet_g": "U-Net g", "unet_h": "U-Net h",
    "unet_i": "U-Net i", "unet_sup_f": "U-Net f + superposition", "unet_sup_i": "U-Net i + superposition",
    "unet_sup_cos_i": "U-Net i + superposition + cosine lr", "unet_sup4k_i": "U-Net i + superposition, 4000 steps",
    "unet_vsup_i": "U-Net i + superposition + vessel superposition, 4000 steps",
    "unet_dose_i": "U-Net i + superposition + lower-dose frames, 4000 steps",
    "unet_dose8k_i": "U-Net i + superposition + lower-dose frames, 8000 steps",
    "unet_sup4k_j": "U-Net j + superposition, 4000 steps",
    "unet_sup4k_k": "U-Net k + superposition, 4000 steps",
    "unet_dose_k": "U-Net k + superposition + lower-dose frames, 4000 steps",
    "unet_dose_norm_k": "U-Net k + superposition + lower-dose frames, loss per image",
    "unet_dose_vw_k": "U-Net k + superposition + lower-dose frames, vessel pixels x 4",
    "unet_flips4k_k": "U-Net k, flips only, 4000 steps",
    "unet_d4_e": "U-Net e, 4 levels", "unet_dose_d4_k": "U-Net k + superposition + lower-dose frames, 4 levels",
    "unet_w16_e": "U-Net e, 2x wider", "unet_dose_w16_k": "U-Net k + superposition + lower-dose frames, 2x wider",
    "unet_dose8k_w16_k": "U-Net k + superposition + lower-dose frames, 2x wider, 8000 steps",
    "unet_cont_e": "control: U-Net e + 2000 steps on e",
    "unet_wgan_e": "U-Net-WGAN e (v2, w = 10)", "unet_wgan_f3": "U-Net-WGAN f (v3 heads, w = 1000)",
    "unet_wgan_f": "U-Net-WGAN f (w = 1000)",
    "unet_dose_wgan_k": "U-Net-WGAN k + superposition + lower-dose frames (300 GAN steps)",
    "unet_dose_wgan1k_k": "U-Net-WGAN k + superposition + lower-dose frames, 1000 GAN steps",
    "unet_dose_w16_wgan_k": "U-Net-WGAN k + superposition + lower-dose frames, 2x wider (300 GAN steps)",
    "unet_w16_wgan_e": "U-Net-WGAN e, 2x wider (300 GAN steps)",
}


def eval_dir(checkpoint: str, tta: bool = False, fit: bool = False) -> str:
    """Folder under OUT of the evaluations of ``best.pt`` (``eval``) or ``last.pt`` (``eval_last``), with
    ``_fit`` where the runs were scored on their own training images (``evaluate_all.py --fit``) and ``_tta``
    where the network was averaged over the image symmetries (``ddsa-sim evaluate --tta``)."""
    return ("eval" if checkpoint == "best" else f"eval_{checkpoint}") + ("_fit" if fit else "") + ("_tta" if tta else "")


def load(out: Path, folder: str = "eval") -> tuple[dict, dict, list[str], dict]:
    """``(models, baselines, tests, runs)``, each evaluation JSON read once: ``models[model][test][metric]`` =
    list over seeds of the set mean; ``baselines[method][test][metric]`` = the set mean (:data:`REFERENCES`;
    ``known_anatomy`` only where the evaluation has it); ``runs[run][test]`` = the network's metrics. A store of
    several source CTs (``by_source_ct`` of the evaluation) adds a test ``"<test>: <source CT>"`` per CT."""
    models: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    baselines: dict = defaultdict(dict)
    runs: dict = defaultdict(dict)
    tests = set()
    for path in sorted((out / folder).glob("*/*.json")):
        m = RUN.match(path.parent.name)
        if not m:
            continue
        res = json.loads(path.read_text())
        test = path.stem.removeprefix("test_")  # a training store (--fit) keeps its name: train_<row>
        # a store of several source CTs also gets a column per source CT ("train_k: head-phantom-0")
        sources = res.get("by_source_ct", {})
        columns = [(test, res)] + ([(f"{test}: {src}", block) for src, block in sources.items()] if len(sources) > 1 else [])
        for column, blocks in columns:
            tests.add(column)
            runs[path.parent.name][column] = blocks["network"]
            for key, *_ in METRICS:
                models[m["model"]][column][key].append(blocks["network"][key])
            for method in REFERENCES:
                if method in blocks:
                    baselines[method][column] = blocks[method]
    order = sorted(tests, key=lambda t: (t != "common", t))
    return models, baselines, order, runs


def _cell(values: list[float], fmt: str, seeds: int) -> str:
    """Mean ± population std; the number of seeds only where it is not the usual ``seeds``."""
    v = np.asarray(values, float)
    n = "" if v.size == seeds else f" (n={v.size})"
    return (f"{fmt.format(v.mean())} ± {fmt.format(v.std())}" if v.size > 1 else fmt.format(v.mean())) + n


def _order(models) -> list[str]:
    return [m for m in LABELS if m in models] + sorted(m for m in models if m not in LABELS)


def set_label(test: str) -> str:
    """Short column name of a test set: ``ood_anatomy_head_motion`` (or ``test_ood_...``) -> ``head mot.``"""
    name = re.sub(r"^(test_)?(ood_(anatomy|generator)_|ood_)?", "", test)
    return name.replace("_motion", " mot.").replace("_static", " static")


def metric_table(models: dict, baselines: dict, tests: list[str], key: str, fmt: str) -> str:
    """One Markdown table of metric ``key``."""
    lines = ["| model | " + " | ".join(map(set_label, tests)) + " |", "|---" * (len(tests) + 1) + "|"]
    seeds = max(len(models[m][t][key]) for m in models for t in tests)
    for model in _order(models):
        cells = [_cell(models[model][t][key], fmt, seeds) if models[model][t][key] else "-" for t in tests]
        lines.append(f"| {LABELS.get(model, model)} | " + " | ".join(cells) + " |")
    for method, label in REFERENCES.items():
        if not baselines[method]:
            continue
        cells = [fmt.format(baselines[method][t][key]) if t in baselines[method] else "-" for t in tests]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def targets(models: dict, baselines: dict, tests: list[str]) -> str:
    """Per model and out-of-distribution set: the three issue-17 targets, met or not, with the numbers."""
    ood = [t for t in tests if t.startswith("ood_") and ": " not in t]
    lines = ["| model | set | net - zero (>= 3 dB) | net - conventional static (>= 2 dB) "
             "| FP fraction net < conventional | all met | net - known anatomy (dB) |",
             "|---|---|---|---|---|---|---|"]
    for model in _order(models):
        for t in ood:
            psnr = np.mean(models[model][t]["psnr"]) if models[model][t]["psnr"] else None
            static = re.sub(r"_motion$", "_static", t)
            if psnr is None or static not in baselines["conventional"]:
                continue
            d_zero = psnr - baselines["zero"][t]["psnr"]
            d_conv = psnr - baselines["conventional"][static]["psnr"]
            fp, fp_conv = np.mean(models[model][t]["bg_fp_fraction"]), baselines["conventional"][t]["bg_fp_fraction"]
            ok = (d_zero >= 3, d_conv >= 2, fp < fp_conv)
            mark = lambda b: "met" if b else "**not met**"  # noqa: E731
            lines.append(f"| {LABELS.get(model, model)} | {set_label(t)} | {d_zero:+.2f} {mark(ok[0])} | "
                         f"{d_conv:+.2f} {mark(ok[1])} | {fp:.4f} vs {fp_conv:.4f} {mark(ok[2])} | "
                         f"{'yes' if all(ok) else 'no'} | {_versus(psnr, baselines['known_anatomy'].get(t))} |")
    return "\n".join(lines)


def _versus(psnr: float, reference: dict | None) -> str:
    """``psnr`` minus a reference's PSNR, or ``-`` where an older evaluation lacks the reference."""
    return "-" if reference is None else f"{psnr - reference['psnr']:+.2f}"


def per_seed(out: Path, runs: dict, tests: list[str], checkpoint: str = "best") -> str:
    """One row per run (``runs`` of :func:`load`): its checkpoint's step and, per test set, PSNR (dB) /
    background FP fraction."""
    lines = ["| run | step | " + " | ".join(map(set_label, tests)) + " |", "|---" * (len(tests) + 2) + "|"]
    for run in sorted(runs):
        nets = [runs[run].get(t) for t in tests]
        cells = [f"{net['psnr']:.1f} / {net['bg_fp_fraction']:.3f}" if net else "-" for net in nets]
        ckpt = out / "runs" / run / f"{checkpoint}.pt"
        step = _step(ckpt) if ckpt.exists() else "-"
        lines.append(f"| {run} | {step} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _step(ckpt: Path) -> int:
    from ddsa_sim.training.checkpoint import load_checkpoint

    return int(load_checkpoint(ckpt)["step"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="output folder of experiments/duan_ablation.sh")
    ap.add_argument("--checkpoint", choices=("best", "last"), default="best",
                    help="tables of the best.pt (OUT/eval) or last.pt (OUT/eval_last) evaluations")
    ap.add_argument("--tta", action="store_true", help="of the evaluations with test-time augmentation (OUT/eval*_tta)")
    ap.add_argument("--fit", action="store_true", help="of the evaluations on the runs' training images (OUT/eval*_fit*)")
    args = ap.parse_args()
    out, ckpt, folder = args.out, args.checkpoint, eval_dir(args.checkpoint, args.tta, args.fit)
    models, baselines, tests, runs = load(out, folder)
    for key, label, fmt in METRICS:
        print(f"### {label}\n\n{metric_table(models, baselines, tests, key, fmt)}\n")
    if not args.fit:
        print(f"### Targets on the out-of-distribution sets\n\n{targets(models, baselines, tests)}\n")
    print(f"### Per run (PSNR dB / background FP fraction; step of {ckpt}.pt)\n\n{per_seed(out, runs, tests, ckpt)}")


if __name__ == "__main__":
    main()
