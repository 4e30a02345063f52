"""Command-line benchmark: ``ddsa-sim --help`` and ``ddsa-sim project`` end to end vs ``plastimatch drr``.

Usage::

    python experiments/bench_cli.py                 # 7 timed runs of each, JSON on the last line
    python experiments/bench_cli.py --runs 3 --json out.json

What is timed (wall clock of whole processes, as a user sees them; the median of ``--runs`` runs
after one warm-up run that fills the numba, spectrum and attenuation caches):

* ``help``: ``ddsa-sim --help``.
* ``project``: ``ddsa-sim project CT -o OUT --detector 256x256 --pixel-mm 1.164 --overwrite`` (one polychromatic
  view, 90 kVp preset, trilinear; writes view_000.npz + PNG).
* ``plastimatch``: ``plastimatch drr`` of the same CT file to the same 256 x 256 x 1.164 mm detector
  at the same pose (:func:`ddsa_sim.projector.peers.plastimatch_geometry`), exact (Siddon) tracer,
  its own HU conversion, raw float32 output: its whole process, reading the NIfTI included.

The CT is a 256 x 256 x 108 NIfTI (0.9 x 0.9 x 2.5 mm, int16 HU) of an analytic chest-like phantom:
an elliptic soft-tissue body (40 HU) with a fat rim (-100 HU), two lungs (-850 HU), a spine and a
sternum (700 HU) and ribs (500 HU), in air, voxel axes along L, P, S (identity direction cosines).
Peak memory is each process' ``ru_maxrss`` (``os.wait4``, the ``resource.getrusage`` of that one
child). The ``ddsa-sim`` command is the console script next to
this interpreter (else ``python -m ddsa_sim.cli``).

``project_stages_s`` splits the ``project`` time: the same work done by hand in a fresh process,
stage by stage (imports, reading, volume set-up, first and second render, saving), median of
``--stages`` processes. It leaves out the interpreter start and typer's own dispatch. The last line
printed is one JSON object.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from machine import machine  # experiments/machine.py, beside this script

SHAPE = (256, 256, 108)
SPACING_MM = (0.9, 0.9, 2.5)
DETECTOR = "256x256"
PIXEL_MM = 1.164


def write_phantom(path: Path) -> Path:
    """Write the analytic chest-like phantom (int16 HU) as NIfTI, centred on the world origin.

    The voxel axes run along L, P, S (RAS affine ``diag(-sx, -sy, sz)``, i.e. identity direction
    cosines in LPS): plastimatch's exact tracer renders zeros for a volume with flipped axes.
    """
    import nibabel as nib

    ni, nj, nk = SHAPE
    x = (np.arange(ni) - (ni - 1) / 2) * SPACING_MM[0]  # LPS mm: +x left
    y = (np.arange(nj) - (nj - 1) / 2) * SPACING_MM[1]  # +y posterior
    xx, yy = np.meshgrid(x, y, indexing="ij")
    ell = lambda cx, cy, ax, ay: ((xx - cx) / ax) ** 2 + ((yy - cy) / ay) ** 2 <= 1.0
    sl = np.full((ni, nj), -1000, np.int16)
    sl[ell(0, 0, 110, 80)] = -100  # fat rim
    sl[ell(0, 0, 102, 72)] = 40  # soft tissue
    sl[ell(-48, 0, 38, 50)] = -850  # lungs
    sl[ell(48, 0, 38, 50)] = -850
    sl[ell(0, 52, 14, 14)] = 700  # spine (posterior)
    sl[ell(0, -62, 10, 5)] = 700  # sternum (anterior)
    vol = np.repeat(sl[:, :, None], nk, axis=2)
    k = np.arange(nk)
    vol[:, :, (k % 12) < 2] = np.where(ell(0, 0, 102, 72) & ~ell(0, 0, 92, 62), 500, vol[:, :, 0])[:, :, None]  # ribs
    lps = np.diag([*SPACING_MM, 1.0])
    lps[:3, 3] = -(np.array(SHAPE) - 1) / 2 * np.array(SPACING_MM)
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps  # NIfTI stores RAS
    nib.save(nib.Nifti1Image(vol, affine), str(path))
    return path


def ddsa_command() -> list[str]:
    """The ``ddsa-sim`` console script of this environment, else ``python -m ddsa_sim.cli``."""
    exe = Path(sys.executable).with_name("ddsa-sim")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("ddsa-sim")
    return [found] if found else [sys.executable, "-m", "ddsa_sim.cli"]


def plastimatch_command(ct_path: Path, prefix: Path) -> list[str]:
    """``plastimatch drr`` of the CT file at the view ``ddsa-sim project`` renders (isocenter: CT centre)."""
    from ddsa_sim.cli.options import parse_detector
    from ddsa_sim.geometry import CArm
    from ddsa_sim.projector import peers
    from ddsa_sim.volumes import read_ct

    exe = peers.plastimatch_executable()
    if exe is None:
        raise SystemExit("plastimatch not found (pip install plastimatch)")
    ct = read_ct(str(ct_path))
    rows, cols = parse_detector(DETECTOR)
    carm = CArm(isocenter_mm=tuple(float(v) for v in ct.center_mm), sensor_height=rows, sensor_width=cols,
                pixel_mm=PIXEL_MM)
    geo = peers.plastimatch_geometry(carm)
    return [exe, "drr", "-A", "cpu", "-i", "exact", "-t", "raw", *geo.args(), "-O", str(prefix), "-I", str(ct_path)]


def run_once(cmd: list[str], log: Path) -> tuple[float, float]:
    """Run ``cmd`` to completion: (wall seconds, peak RSS of that process in MB). Fails loudly."""
    with open(log, "wb") as out:
        t = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{log.read_text()[-2000:]}")
    return wall, usage.ru_maxrss / 1024.0


def timed(cmd: list[str], runs: int, log: Path) -> dict:
    """Median wall time of ``runs`` runs after one warm-up run, and the largest peak RSS."""
    warm_s, warm_mb = run_once(cmd, log)
    walls, peaks = [], [warm_mb]
    for _ in range(runs):
        w, m = run_once(cmd, log)
        walls.append(w)
        peaks.append(m)
    return {"median_s": float(np.median(walls)), "min_s": float(np.min(walls)), "times_s": [round(w, 4) for w in walls],
            "warmup_s": round(warm_s, 4), "peak_rss_mb": round(max(peaks), 1)}


#: One ``project`` done by hand in a fresh process, stage by stage (what the end-to-end time is made of).
_STAGES = r"""
import json, sys, time
t = [time.perf_counter()]
out = {}
def lap(name):
    now = time.perf_counter(); out[name] = round(now - t[0], 4); t[0] = now
import ddsa_sim.cli; lap("import ddsa_sim.cli (typer, the command table)")
from ddsa_sim.volumes.readers import _import_nibabel; _import_nibabel(); lap("import nibabel (pydicom hidden)")
import numba; lap("import numba")
import ddsa_sim.cli.drr as drr; lap("import the rest (volumes, geometry, physics, projector)")
from ddsa_sim.cli.options import parse_detector
from ddsa_sim.geometry import CArm
from ddsa_sim.projector import Projector, ProjectorVolume
from ddsa_sim.volumes import read_ct
ct = read_ct(sys.argv[1]); lap("read_ct")
rows, cols = parse_detector(sys.argv[2])
carm = CArm(isocenter_mm=tuple(float(v) for v in ct.center_mm), sensor_height=rows, sensor_width=cols,
            pixel_mm=float(sys.argv[3]))
vol = ProjectorVolume.from_ct(ct); lap("ProjectorVolume.from_ct (HU -> density, materials, layout; numba's set-up)")
proj = Projector([vol]); lap("Projector() (spectrum, attenuation table)")
res = proj.render(carm); lap("first render (march and spectrum kernels loaded from numba's cache)")
res = proj.render(carm); lap("second render")
drr.save_drr_view(sys.argv[4], res, carm); lap("save view npz")
print(json.dumps(out))
"""


def stages(ct: Path, out_npz: Path, processes: int) -> dict:
    """Median over ``processes`` fresh processes of each stage of a hand-made ``project`` (seconds)."""
    runs = []
    for _ in range(processes):  # run in the CT's folder: ``python -c`` imports from the current folder first
        r = subprocess.run([sys.executable, "-c", _STAGES, str(ct), DETECTOR, str(PIXEL_MM), str(out_npz)],
                           capture_output=True, text=True, check=True, cwd=ct.parent)
        runs.append(json.loads(r.stdout.strip().splitlines()[-1]))
    return {k: float(np.median([r[k] for r in runs])) for k in runs[0]}


def tested_code(cwd: Path) -> dict:
    """Where the ``ddsa_sim`` that the commands import lives, and its git commit (None outside git).

    ``cwd`` must not hold a ``ddsa_sim`` folder: ``python -c`` looks in the current folder first.
    """
    code = "import ddsa_sim, os; print(os.path.dirname(os.path.dirname(os.path.abspath(ddsa_sim.__file__))))"
    root = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          cwd=cwd).stdout.strip()
    git = lambda *a: subprocess.run(["git", *a], capture_output=True, text=True, cwd=root, check=True).stdout.strip()
    try:
        return {"root": root, "commit": git("rev-parse", "--short", "HEAD"), "dirty": bool(git("status", "--porcelain",
                                                                                              "--", "ddsa_sim"))}
    except (OSError, subprocess.CalledProcessError):
        return {"root": root, "commit": None, "dirty": None}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=7, help="timed runs of each command (after one warm-up)")
    ap.add_argument("--json", type=Path, help="also write the result here")
    ap.add_argument("--no-plastimatch", action="store_true", help="time ddsa-sim only")
    ap.add_argument("--stages", type=int, default=3, metavar="N",
                    help="also time the stages of project in N fresh processes (0: skip)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench_cli_") as tmp:
        work = Path(tmp)
        ct = write_phantom(work / "ct.nii.gz")
        ddsa = ddsa_command()
        project = [*ddsa, "project", str(ct), "-o", str(work / "out"), "--detector", DETECTOR, "--pixel-mm", str(PIXEL_MM),
                   "--overwrite"]
        result: dict = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "code": tested_code(work),
                        "machine": machine(),
                        "ct": {"shape": list(SHAPE), "spacing_mm": list(SPACING_MM), "dtype": "int16"},
                        "runs": args.runs,
                        "commands": {"help": " ".join([*ddsa, "--help"]),
                                     "project": " ".join(project).replace(str(work), "$TMP")}}
        result["help"] = timed([*ddsa, "--help"], args.runs, work / "help.log")
        result["project"] = timed(project, args.runs, work / "project.log")
        view = np.load(work / "out" / "view_000.npz")
        result["project"]["neglog_max"] = round(float(view["neglog"].max()), 4)
        if args.stages:
            result["project_stages_s"] = stages(ct, work / "stages.npz", args.stages)
        if not args.no_plastimatch:
            plm = plastimatch_command(ct, work / "plm_")
            result["commands"]["plastimatch"] = " ".join(plm).replace(str(work), "$TMP")
            result["plastimatch"] = timed(plm, args.runs, work / "plastimatch.log")
            raw = sorted(work.glob("plm_*.raw"))
            img = np.fromfile(raw[0], dtype="<f4") if raw else np.zeros(1, np.float32)
            result["plastimatch"]["image_max"] = round(float(img.max()), 4)  # > 0: the rays saw the CT
            result["project_over_plastimatch"] = round(result["project"]["median_s"] / result["plastimatch"]["median_s"], 2)
        result["targets"] = {"help_s": 0.5, "project_s": 1.5,
                             "help_met": result["help"]["median_s"] < 0.5,
                             "project_met": result["project"]["median_s"] < 1.5}
        result["machine"]["load_avg_1m_after"] = round(os.getloadavg()[0], 2)
    text = json.dumps(result)
    if args.json:
        args.json.write_text(text + "\n")
    print(text)
    return result


if __name__ == "__main__":
    main()
