"""A blinded reader study of network vs conventional DSA: one self-contained HTML page, a key, a score.

:func:`make_study` takes ``ddsa-sim infer`` output folders of XA runs (:mod:`ddsa_sim.angio.outputs`)
and writes, into one folder:

* ``reader_study.html``: every case's two GIF animations embedded (base64), labelled A and B, made from
  the run's PNG frames without the mask frame (the conventional DSA's mask frame is exactly blank and
  would tell the method) at the run's frame times. Cases are
  numbered 1..N in a random order and the network's side is drawn per case (``random.Random(seed)``).
  The page holds no identifier: no patient, study, file or folder name, no method name, no DICOM (the
  GIFs carry pixels only). A scoring form (criteria :data:`CRITERIA`, 1-5) keeps its state in the
  browser's local storage and saves a CSV: ``study_id, reader, case, image, <criteria...>``.
* ``reader_study_key.json``: case -> run folder and which image is which method. Keep it away from
  the readers.

:func:`score_study` reads the readers' CSV files with the key, writes ``<csv>_unblinded.csv`` beside
each and returns a summary per criterion: mean and standard deviation per method, the paired
differences network - conventional (pairs = the same reader and case, both images scored) and a
two-sided Wilcoxon signed-rank test of them (``scipy.stats.wilcoxon``, zero differences dropped).
"""

from __future__ import annotations

import base64
import csv
import json
import random
import secrets
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from scipy import stats

from ddsa_sim import InputError
from ddsa_sim.angio.media import gif_bytes
from ddsa_sim.angio.outputs import METHODS, read_manifest
from ddsa_sim.files import atomic_output

__all__ = ["CRITERIA", "KEY_FORMAT", "KEY_NAME", "PAGE_NAME", "make_study", "score_study"]

#: (CSV column, label, what 1 and 5 mean); higher is better for every criterion.
CRITERIA = (
    ("vessel_visibility", "Vessel visibility", "1 = vessels not seen, 5 = all vessels sharp down to small branches"),
    ("artefacts", "Artefacts", "1 = severe (residual anatomy, motion, noise), 5 = none"),
    ("overall", "Overall image quality", "1 = not diagnostic, 5 = excellent"),
)
PAGE_NAME = "reader_study.html"
KEY_NAME = "reader_study_key.json"
KEY_FORMAT = "ddsa-sim-reader-study-key"
_IMAGES = ("A", "B")


def _gif(run: Path, method: str) -> bytes:
    """The run's animation of one method for the page: every frame but the mask frame."""
    info = read_manifest(run)
    if method not in info.get("methods", []):
        raise InputError(f"{run}: has no {method} DSA (a run of one frame has no conventional DSA)")
    keep = [k for k in range(info["frames"]) if k != info["mask_frame"]]
    frames = []
    for k in keep:
        path = run / method / f"frame_{k:03d}.png"
        try:
            frames.append(np.asarray(Image.open(path).convert("L")))
        except OSError:
            raise InputError(f"{path}: missing or unreadable (re-run ddsa-sim infer)") from None
    return gif_bytes(np.stack(frames), np.asarray(info["frame_times_ms"], dtype=float)[keep])


def make_study(runs: list[Path], out: Path, seed: int | None = None) -> tuple[Path, Path]:
    """Write the blinded page and its key into ``out`` (see the module docstring).

    Parameters
    ----------
    runs
        ``ddsa-sim infer`` output folders of XA runs, one case each.
    out
        Output folder (created).
    seed
        Seed of the case order and sides; None draws one (it is written to the key).

    Returns
    -------
    page, key : Path
    """
    if not runs:
        raise InputError("reader study: give at least one run folder")
    if len({Path(r).resolve() for r in runs}) != len(runs):
        raise InputError("reader study: a run folder is given twice")
    seed = secrets.randbits(32) if seed is None else int(seed)
    rng = random.Random(seed)
    gifs = [{method: _gif(Path(run), method) for method in METHODS} for run in runs]
    order = list(range(len(runs)))
    rng.shuffle(order)
    study_id = secrets.token_hex(4)
    cases, key_cases = [], []
    for number, index in enumerate(order, start=1):
        methods = list(METHODS)
        rng.shuffle(methods)
        sides = dict(zip(_IMAGES, methods))
        case = f"{number:02d}"
        cases.append({"case": case, "images": {image: base64.b64encode(gifs[index][m]).decode("ascii")
                                               for image, m in sides.items()}})
        key_cases.append({"case": case, "run": str(Path(runs[index]).resolve()), **sides})
    page_data = {"study_id": study_id, "cases": cases,
                 "criteria": [{"key": k, "label": label, "hint": hint} for k, label, hint in CRITERIA]}
    template = resources.files("ddsa_sim.angio").joinpath(PAGE_NAME).read_text(encoding="utf-8")
    html = template.replace("__STUDY_JSON__", json.dumps(page_data).replace("</", "<\\/"))
    out.mkdir(parents=True, exist_ok=True)
    page, key = out / PAGE_NAME, out / KEY_NAME
    with atomic_output(key) as tmp:
        tmp.write_text(json.dumps({"format": KEY_FORMAT, "study_id": study_id, "seed": seed,
                                   "criteria": [k for k, _, _ in CRITERIA], "cases": key_cases}, indent=1))
    with atomic_output(page) as tmp:
        tmp.write_text(html, encoding="utf-8")
    return page, key


def _read_key(path: Path) -> dict[str, Any]:
    try:
        key = json.loads(path.read_text())
    except (OSError, ValueError):
        raise InputError(f"{path}: cannot read the reader-study key") from None
    if not isinstance(key, dict) or key.get("format") != KEY_FORMAT:
        raise InputError(f"{path}: not a reader-study key ({KEY_FORMAT})")
    return key


def _read_scores(path: Path, key: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of one readers' CSV, unblinded: reader, case, run, method and integer scores (None = empty)."""
    cases = {c["case"]: c for c in key["cases"]}
    columns = ["study_id", "reader", "case", "image", *key["criteria"]]
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            if reader.fieldnames is None or not set(columns) <= set(reader.fieldnames):
                raise InputError(f"{path}: expected the columns {', '.join(columns)}")
            rows = list(enumerate(reader, start=2))
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    out = []
    for line, row in rows:
        where = f"{path}:{line}"
        if row["study_id"] != key["study_id"]:
            raise InputError(f"{where}: study {row['study_id']!r} is not this key's study {key['study_id']!r}")
        if row["case"] not in cases or row["image"] not in _IMAGES:
            raise InputError(f"{where}: unknown case {row['case']!r} / image {row['image']!r}")
        scores: dict[str, int | None] = {}
        for criterion in key["criteria"]:
            text = (row[criterion] or "").strip()
            if text and text not in {"1", "2", "3", "4", "5"}:
                raise InputError(f"{where}: {criterion} must be 1-5 or empty, not {text!r}")
            scores[criterion] = int(text) if text else None
        case = cases[row["case"]]
        out.append({"reader": row["reader"], "case": row["case"], "image": row["image"], "run": case["run"],
                    "method": case[row["image"]], **scores})
    return out


def _summary(rows: list[dict[str, Any]], criterion: str) -> dict[str, Any]:
    by_pair: dict[tuple[str, str], dict[str, int]] = {}
    for row in rows:
        if row[criterion] is not None:
            by_pair.setdefault((row["reader"], row["case"]), {})[row["method"]] = row[criterion]
    pairs = [(p["network"], p["conventional"]) for p in by_pair.values() if len(p) == 2]
    result: dict[str, Any] = {"n_pairs": len(pairs)}
    if not pairs:
        return result
    net, conv = np.array(pairs, dtype=float).T
    diff = net - conv
    for name, values in (("network", net), ("conventional", conv)):
        result[name] = {"mean": float(values.mean()), "sd": float(values.std(ddof=1)) if len(values) > 1 else None}
    result["difference"] = {"mean": float(diff.mean()), "sd": float(diff.std(ddof=1)) if len(diff) > 1 else None,
                            "network_better": int((diff > 0).sum()), "equal": int((diff == 0).sum()),
                            "conventional_better": int((diff < 0).sum())}
    if np.count_nonzero(diff):
        test = stats.wilcoxon(diff, zero_method="wilcox", alternative="two-sided")
        result["wilcoxon"] = {"statistic": float(test.statistic), "p_value": float(test.pvalue)}
    else:
        result["wilcoxon"] = None  # every pair equal: nothing to test
    return result


def score_study(csv_paths: list[Path], key_path: Path) -> dict[str, Any]:
    """Unblind readers' CSV files with the key; write ``<csv>_unblinded.csv``; return the summary.

    Returns
    -------
    dict
        ``{"study_id", "readers", "cases", "criteria": {criterion: {"n_pairs", "network": {"mean", "sd"},
        "conventional": {...}, "difference": {"mean", "sd", "network_better", "equal",
        "conventional_better"}, "wilcoxon": {"statistic", "p_value"} | None}}}``.
    """
    key = _read_key(key_path)
    rows: list[dict[str, Any]] = []
    for path in csv_paths:
        unblinded = _read_scores(path, key)
        out = path.with_name(path.stem + "_unblinded.csv")
        with atomic_output(out) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=["reader", "case", "image", "method", "run", *key["criteria"]])
            writer.writeheader()
            writer.writerows(unblinded)
        rows += unblinded
    seen: set[tuple[str, str, str]] = set()
    for row in rows:
        ident = (row["reader"], row["case"], row["image"])
        if ident in seen:
            raise InputError(f"reader {row['reader']!r} scored case {row['case']} image {row['image']} twice")
        seen.add(ident)
    return {"study_id": key["study_id"], "readers": sorted({r["reader"] for r in rows}),
            "cases": len(key["cases"]), "criteria": {c: _summary(rows, c) for c in key["criteria"]}}
