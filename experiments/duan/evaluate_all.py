"""Evaluate every trained model of experiments/duan_ablation.sh on every test store, in one process.

Runs :func:`ddsa_sim.training.evaluate.evaluate_checkpoint` (what ``ddsa-sim evaluate CKPT --data STORE
--split test`` runs) for every ``OUT/runs/<net>_<row>_s<seed>/best.pt`` and every ``OUT/data/<test>.zarr``
and writes ``OUT/eval/<run>/<test>.json`` (the JSON ``ddsa-sim evaluate`` prints); a JSON already there
is kept (resume). One process instead of ~200 CLI start-ups (a few seconds each on this machine).
``--checkpoint last`` evaluates every run's ``last.pt`` instead (the same number of steps for every run,
no checkpoint selection) into ``OUT/eval_last``; ``--tta`` averages each network over the image symmetries
(``ddsa-sim evaluate --tta``) into ``OUT/eval_tta`` (``OUT/eval_last_tta``). ``--fit`` scores every run on
:data:`FIT_SAMPLES` images of its own training split instead (``OUT/data/train_<row>.zarr``, the row the last
part of the run name; without augmentation; a run whose store is not there is skipped), into
``OUT/eval_fit`` (``OUT/eval_fit_tta``): how well the network fits the images it was trained on, beside
how it carries to the test sets.

    python experiments/duan/evaluate_all.py out/duan [--tests test_common test_ood_exposure_static ...]
    python experiments/duan/evaluate_all.py out/duan --checkpoint last --runs unet_f unet_i
    python experiments/duan/evaluate_all.py out/duan --tta
    python experiments/duan/evaluate_all.py out/duan --fit --tta --runs unet_e unet_dose_k
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from table import RUN, eval_dir  # experiments/duan/table.py, beside this script
from tqdm import tqdm

from ddsa_sim.files import atomic_output
from ddsa_sim.training.evaluate import evaluate_checkpoint

__all__ = ["FIT_SAMPLES", "evaluate_all", "main", "training_store"]

#: training images per run of the ``--fit`` evaluation, evenly spaced over the training split
FIT_SAMPLES = 64


def training_store(out: Path, run: str) -> Path:
    """``out/data/train_<row>.zarr``: the store run ``run`` trained on (its row is the last part of its model name)."""
    return out / "data" / f"train_{RUN.match(run)['model'].rsplit('_', 1)[1]}.zarr"


def evaluate_all(out: Path, tests: list[str] | None = None, checkpoint: str = "best",
                 models: list[str] | None = None, tta: bool = False, fit: bool = False) -> list[Path]:
    """Write ``out/<eval dir>/<run>/<test>.json`` for every finished run (of ``models``: run names less
    ``_s<seed>``) and test store (``fit``: the run's own training store, split ``train``); returns the paths
    written."""
    runs = sorted(p.parent for p in (out / "runs").glob(f"*/{checkpoint}.pt")
                  if (out / "runs" / f"{p.parent.name}.done").exists())
    if models:
        runs = [r for r in runs if (m := RUN.match(r.name)) and m["model"] in models]
    stores = sorted(p for p in (out / "data").glob("test_*.zarr") if Path(f"{p}.done").exists())
    if tests:
        stores = [s for s in stores if s.stem in tests]
    split, n = ("train", FIT_SAMPLES) if fit else ("test", None)
    written = []
    for run in tqdm(runs, desc="models"):
        for store in [training_store(out, run.name)] if fit else stores:
            path = out / eval_dir(checkpoint, tta, fit) / run.name / f"{store.stem}.json"
            if path.exists():
                continue
            if not store.exists():  # --fit on a run of an earlier version whose training store is gone
                tqdm.write(f"{run.name}: skipped, no {store}")
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            res = evaluate_checkpoint(run / f"{checkpoint}.pt", store, split, device="cpu", progress=False, tta=tta,
                                      max_samples=n)
            with atomic_output(path) as tmp:
                Path(tmp).write_text(json.dumps(res))
            written.append(path)
    return written


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="output folder of experiments/duan_ablation.sh")
    ap.add_argument("--tests", nargs="*", help="test-store stems (default: all; not with --fit)")
    ap.add_argument("--checkpoint", choices=("best", "last"), default="best")
    ap.add_argument("--runs", nargs="*", help="models, i.e. run names less _s<seed> (default: all)")
    ap.add_argument("--tta", action="store_true", help="average each network over the image symmetries")
    ap.add_argument("--fit", action="store_true", help=f"score each run on {FIT_SAMPLES} images of its own training split")
    args = ap.parse_args()
    if args.fit and args.tests:
        ap.error("--tests: not with --fit, which scores each run on its own training store")
    torch.set_num_threads(1)
    n = len(evaluate_all(args.out, args.tests, args.checkpoint, args.runs, args.tta, args.fit))
    print(f"{n} evaluations written to {args.out / eval_dir(args.checkpoint, args.tta, args.fit)}")


if __name__ == "__main__":
    main()
