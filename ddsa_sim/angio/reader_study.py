"""A blinded reader study of network vs conventional DSA: one self-contained HTML page, a key, a score.

:func:`make_study` takes ``ddsa-sim infer`` output folders of XA runs (:mod:`ddsa_sim.angio.outputs`)
and writes, into one folder (refused if it holds files, unless ``overwrite``):

* ``reader_study.html``: every case's two GIF animations embedded (base64), labelled A and B, made from
  the run's PNG frames without the mask frame (the conventional DSA's mask frame is exactly blank and
  would tell the method) at the run's frame times. Cases are
  numbered 1..N in a random order and the network's side is drawn per case (``random.Random(seed)``).
  The page holds no identifier: no patient, study, file or folder name, no method name, no DICOM (the
  GIFs carry pixels only). A scoring form (criteria :data:`CRITERIA`, 1-5) opens once a reader ID is
  entered, keeps each reader's scores apart in the browser's local storage (key: study id and reader
  ID) and saves a CSV: ``study_id, reader, case, image, <criteria...>``.
* ``reader_study_key.json``: case -> run folder and which image is which method. Keep it away from
  the readers.

The study follows from its inputs alone (:func:`study_id`): each run's identity is the SHA-256 of its
``run.json`` and of the frames the page shows; the runs are put in the order of their identities (the
order they are given in does not matter), the seed defaults to one drawn from the identities, and the
study id is a hash of the seed and the identities. Making the study again from the same runs and seed
gives the same page and key, so CSVs handed out stay scorable.

:func:`score_study` reads the readers' CSV files with the key (all of them are checked before anything
is written), writes ``<csv>_unblinded.csv`` beside each and returns a summary per criterion: mean and
standard deviation per method, the paired differences network - conventional (pairs = the same reader
and case, both images scored) and a two-sided Wilcoxon signed-rank test of them (``scipy.stats.wilcoxon``,
zero differences dropped). CSVs saved again by a spreadsheet are accepted (a UTF-8 byte order mark;
case ``1`` for ``01``); files that are score's own outputs are skipped (:func:`is_score_output`).
"""

from __future__ import annotations

import base64
import csv
import hashlib
import json
import random
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from scipy import stats

from ddsa_sim import InputError
from ddsa_sim.angio.media import gif_bytes
from ddsa_sim.angio.outputs import METHODS, read_manifest
from ddsa_sim.files import atomic_output, claim_output, clear_output

__all__ = ["CRITERIA", "KEY_FORMAT", "KEY_NAME", "PAGE_NAME", "UNBLINDED_SUFFIX", "is_score_output", "make_study",
           "score_study", "study_id"]

#: (CSV column, label, what 1 and 5 mean); higher is better for every criterion.
CRITERIA = (
    ("vessel_visibility", "Vessel visibility", "1 = vessels not seen, 5 = all vessels sharp down to small branches"),
    ("artefacts", "Artefacts", "1 = severe (residual anatomy, motion, noise), 5 = none"),
    ("overall", "Overall image quality", "1 = not diagnostic, 5 = excellent"),
)
PAGE_NAME = "reader_study.html"
KEY_NAME = "reader_study_key.json"
KEY_FORMAT = "ddsa-sim-reader-study-key"
#: ``score`` writes ``<csv>_unblinded.csv`` beside each readers' CSV.
UNBLINDED_SUFFIX = "_unblinded.csv"
_IMAGES = ("A", "B")


def _read_run(run: Path) -> tuple[str, dict[str, bytes]]:
    """A run's identity and its animation per method for the page (every frame but the mask frame).

    The identity is the SHA-256 (hex) of the run's ``run.json`` (its parsed content) and of the pixels of
    the frames shown: it does not depend on where the folder lies or on the GIF encoder's version.
    """
    info = read_manifest(run)
    missing = [m for m in METHODS if m not in info.get("methods", [])]
    if missing:
        raise InputError(f"{run}: has no {missing[0]} DSA (a run of one frame has no conventional DSA)")
    keep = [k for k in range(info["frames"]) if k != info["mask_frame"]]
    digest = hashlib.sha256(json.dumps(info, sort_keys=True).encode())
    gifs = {}
    for method in METHODS:
        frames = []
        for k in keep:
            path = run / method / f"frame_{k:03d}.png"
            try:
                frames.append(np.asarray(Image.open(path).convert("L")))
            except OSError:
                raise InputError(f"{path}: missing or unreadable (re-run ddsa-sim infer)") from None
        pixels = np.stack(frames)
        digest.update(f"{method} {pixels.shape}".encode())
        digest.update(pixels.tobytes())
        gifs[method] = gif_bytes(pixels, np.asarray(info["frame_times_ms"], dtype=float)[keep])
    return digest.hexdigest(), gifs


def _hash_int(*parts: object) -> int:
    """An integer from the SHA-256 of ``parts`` (their JSON text)."""
    return int(hashlib.sha256(json.dumps(parts).encode()).hexdigest(), 16)


def study_id(seed: int, identities: list[str]) -> str:
    """The study id: 8 hex digits from the SHA-256 of the seed and the runs' identities (sorted).

    The first digit is one of a-d, f so that a spreadsheet never reads the id as a number (``01234567``,
    ``1234e056``) and changes it in a CSV saved again.
    """
    digits = f"{_hash_int('study', seed, sorted(identities)):064x}"
    return "abcdf"[int(digits[0], 16) % 5] + digits[1:8]


def make_study(runs: list[Path], out: Path, seed: int | None = None, overwrite: bool = False) -> tuple[Path, Path]:
    """Write the blinded page and its key into ``out`` (see the module docstring).

    Parameters
    ----------
    runs
        ``ddsa-sim infer`` output folders of XA runs, one case each (their order does not matter).
    out
        Output folder (created). One that holds files is refused unless ``overwrite``; it is then emptied
        once every run is read (never when it holds a run).
    seed
        Seed (0 or more) of the case order and sides; None: one drawn from the runs' identities, so the
        same runs give the same study. It is written to the key.
    overwrite
        Replace what ``out`` holds.

    Returns
    -------
    page, key : Path
    """
    runs = [Path(r) for r in runs]
    if not runs:
        raise InputError("reader study: give at least one run folder")
    if len({r.resolve() for r in runs}) != len(runs):
        raise InputError("reader study: a run folder is given twice")
    if seed is not None and int(seed) < 0:
        raise InputError(f"--seed must be 0 or more, not {seed}")  # random.Random(-s) would repeat seed s
    out = claim_output(out, overwrite, inputs=runs)
    # the runs in the order of their identities: the study does not depend on the order they are given in
    read = sorted(((*_read_run(run), run) for run in runs), key=lambda item: item[0])
    identities = [identity for identity, _, _ in read]
    seed = _hash_int("seed", identities) % 2**32 if seed is None else int(seed)
    rng = random.Random(seed)
    order = list(range(len(read)))
    rng.shuffle(order)
    sid = study_id(seed, identities)
    cases, key_cases = [], []
    for number, index in enumerate(order, start=1):
        methods = list(METHODS)
        rng.shuffle(methods)
        sides = dict(zip(_IMAGES, methods))
        case = f"{number:02d}"
        _, gifs, run = read[index]
        cases.append({"case": case, "images": {image: base64.b64encode(gifs[m]).decode("ascii")
                                               for image, m in sides.items()}})
        key_cases.append({"case": case, "run": str(run.resolve()), **sides})
    page_data = {"study_id": sid, "cases": cases,
                 "criteria": [{"key": k, "label": label, "hint": hint} for k, label, hint in CRITERIA]}
    template = resources.files("ddsa_sim.angio").joinpath(PAGE_NAME).read_text(encoding="utf-8")
    html = template.replace("__STUDY_JSON__", json.dumps(page_data).replace("</", "<\\/"))
    if overwrite:
        clear_output(out)
    out.mkdir(parents=True, exist_ok=True)
    page, key = out / PAGE_NAME, out / KEY_NAME
    with atomic_output(key) as tmp:
        tmp.write_text(json.dumps({"format": KEY_FORMAT, "study_id": sid, "seed": seed,
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


def _case_ids(key: dict[str, Any]) -> dict[str, str]:
    """The key's case ids by the text a CSV may hold: each id, and a zero-padded number also without its
    zeros (a spreadsheet that saves the CSV again turns case ``01`` into ``1``)."""
    ids = {str(int(c["case"])): c["case"] for c in key["cases"] if c["case"].isdigit()}
    return {**ids, **{c["case"]: c["case"] for c in key["cases"]}}


def _read_scores(path: Path, key: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of one readers' CSV, unblinded: reader, case, run, method and integer scores (None = empty).

    Rows whose every field is empty (a spreadsheet's trailing rows) are skipped.
    """
    cases = {c["case"]: c for c in key["cases"]}
    case_ids = _case_ids(key)
    columns = ["study_id", "reader", "case", "image", *key["criteria"]]
    try:
        # utf-8-sig: a spreadsheet's "CSV UTF-8" begins with a byte order mark
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            if reader.fieldnames is None or not set(columns) <= set(reader.fieldnames):
                raise InputError(f"{path}: expected the columns {', '.join(columns)}")
            rows = list(enumerate(reader, start=2))
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text (save it as 'CSV UTF-8')") from None
    out = []
    for line, row in rows:
        where = f"{path}:{line}"
        values = {name: (row.get(name) or "").strip() for name in columns}
        if not any(values.values()):
            continue
        if values["study_id"] != key["study_id"]:
            raise InputError(f"{where}: study {values['study_id']!r} is not this key's study {key['study_id']!r}")
        if not values["reader"]:  # the pairs and the duplicate check are per reader
            raise InputError(f"{where}: no reader ID")
        case_id = case_ids.get(values["case"])
        if case_id is None or values["image"] not in _IMAGES:
            raise InputError(f"{where}: unknown case {values['case']!r} / image {values['image']!r}")
        scores: dict[str, int | None] = {}
        for criterion in key["criteria"]:
            text = values[criterion]
            if text and text not in {"1", "2", "3", "4", "5"}:
                raise InputError(f"{where}: {criterion} must be 1-5 or empty, not {text!r}")
            scores[criterion] = int(text) if text else None
        case = cases[case_id]
        out.append({"reader": values["reader"], "case": case_id, "image": values["image"], "run": case["run"],
                    "method": case[values["image"]], **scores})
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


def _unblinded_path(path: Path) -> Path:
    """Where :func:`score_study` writes the unblinded rows of the readers' CSV ``path``."""
    return path.with_name(path.stem + UNBLINDED_SUFFIX)


def is_score_output(path: Path) -> bool:
    """Whether ``path`` is a ``<csv>_unblinded.csv`` that :func:`score_study` wrote: its name ends so and
    its columns are the unblinded ones (``method`` and ``run``, no ``study_id``). A readers' CSV is never
    taken for one, even where a reader's ID makes its name end in ``_unblinded.csv``."""
    if not path.name.endswith(UNBLINDED_SUFFIX):
        return False
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            header = next(csv.reader(fh), [])
    except (OSError, UnicodeDecodeError):
        return False  # not score's: reading it as a readers' CSV names the problem
    return {"method", "run"} <= set(header) and "study_id" not in header


def score_study(csv_paths: list[Path], key_path: Path) -> dict[str, Any]:
    """Unblind readers' CSV files with the key; write ``<csv>_unblinded.csv``; return the summary.

    Every CSV is read and checked (a reader scoring one image twice, also across files, is refused)
    before anything is written, so a refused set of files leaves no unblinded file behind. Files that
    are score's own outputs (:func:`is_score_output`, e.g. picked up by ``*.csv``) are skipped.

    Returns
    -------
    dict
        ``{"study_id", "readers", "cases", "criteria": {criterion: {"n_pairs", "network": {"mean", "sd"},
        "conventional": {...}, "difference": {"mean", "sd", "network_better", "equal",
        "conventional_better"}, "wilcoxon": {"statistic", "p_value"} | None}}}``.
    """
    key = _read_key(key_path)
    csv_paths = [Path(p) for p in csv_paths if not is_score_output(Path(p))]
    if not csv_paths:
        raise InputError(f"no readers' CSV given (only score's own *{UNBLINDED_SUFFIX} files)")
    given = {path.resolve(): path for path in csv_paths}
    for path in csv_paths:  # a reader's ID can make one readers' CSV's name another's output name
        if _unblinded_path(path).resolve() in given:
            raise InputError(f"{given[_unblinded_path(path).resolve()]}: is where the unblinded scores of {path} go; "
                             "rename it")
    read = [(path, _read_scores(path, key)) for path in csv_paths]
    seen: dict[tuple[str, str, str], Path] = {}
    for path, unblinded in read:
        for row in unblinded:
            ident = (row["reader"], row["case"], row["image"])
            if ident in seen:
                files = str(path) if seen[ident] == path else f"{seen[ident]} and {path}"
                raise InputError(f"reader {row['reader']!r} scored case {row['case']} image {row['image']} twice "
                                 f"({files})")
            seen[ident] = path
    for path, unblinded in read:
        with atomic_output(_unblinded_path(path)) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=["reader", "case", "image", "method", "run", *key["criteria"]])
            writer.writeheader()
            writer.writerows(unblinded)
    rows = [row for _, unblinded in read for row in unblinded]
    return {"study_id": key["study_id"], "readers": sorted({r["reader"] for r in rows}),
            "cases": len(key["cases"]), "criteria": {c: _summary(rows, c) for c in key["criteria"]}}
