"""The `ddsa-sim` command: project/sweep outputs and one-line errors for bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "ddsa_sim.cli", *args], capture_output=True, text=True, cwd=cwd)


@pytest.fixture(scope="module")
def small_ct(tmp_path_factory):
    """A 48^3 water cylinder with a bone rod, in air, 2 mm voxels (NIfTI, RAS)."""
    d = tmp_path_factory.mktemp("ct")
    n = 48
    idx = np.indices((n, n, n)).astype(float) - (n - 1) / 2
    hu = np.full((n, n, n), -1000.0, np.float32)
    hu[idx[0] ** 2 + idx[1] ** 2 <= 20**2] = 0.0
    hu[(idx[0] - 6) ** 2 + idx[1] ** 2 <= 3**2] = 1200.0
    path = d / "ct.nii.gz"
    nib.save(nib.Nifti1Image(hu, np.diag([2.0, 2.0, 2.0, 1.0])), path)
    return path


def test_project_writes_quantitative_view(small_ct, tmp_path):
    r = run("project", str(small_ct), "-o", str(tmp_path / "p"), "--detector", "32x40", "--pixel-mm", "2",
            "--alpha", "10")
    assert r.returncode == 0, r.stderr
    v = np.load(tmp_path / "p" / "view_000.npz")
    assert v["neglog"].shape == (32, 40) and v["projection_matrix"].shape == (3, 4)
    assert {"density_air", "density_soft_tissue", "density_bone"} <= set(v.files)
    # -ln(I/I0) is quantitative: consistent with the intensity, not min-max scaled
    np.testing.assert_allclose(v["neglog"], -np.log(v["intensity"]), rtol=1e-5)
    assert v["neglog"].max() > 1.0 and v["intensity"].max() <= 1.0
    assert (tmp_path / "p" / "view_000.png").exists()
    # atomic writes still give ordinary file permissions (not mkstemp's private 0600)
    umask = os.umask(0)
    os.umask(umask)
    for f in ("view_000.npz", "view_000.png"):
        assert (tmp_path / "p" / f).stat().st_mode & 0o777 == 0o666 & ~umask
    assert not list((tmp_path / "p").glob(".*"))  # no temporary files left behind


def test_sweep_random_draws_cover_start_to_stop_and_one_view_names_what_it_wrote(small_ct, tmp_path):
    """QA found: `--random` drew from the grid's ends (-30:30:25 drew within -30..20), and a one-view sweep printed
    a contact sheet it never wrote."""
    r = run("sweep", str(small_ct), "-o", str(tmp_path / "r"), "--alpha=-30:30:25", "--beta=5:-5", "--random", "200",
            "--detector", "4x4", "--pixel-mm", "20")
    assert r.returncode == 0, r.stderr
    poses = json.loads((tmp_path / "r" / "poses.json").read_text())["views"]
    a, b = np.array([p["alpha_deg"] for p in poses]), np.array([p["beta_deg"] for p in poses])
    assert a.min() < -25 and a.max() > 25 and a.max() <= 30  # P(no draw above 25 of 200 uniform on -30..30) ~ 1e-8
    assert b.min() < -4 and b.max() > 4 and np.abs(b).max() <= 5
    r = run("sweep", str(small_ct), "-o", str(tmp_path / "one"), "--detector", "4x4", "--pixel-mm", "20")
    assert r.returncode == 0 and r.stdout.strip().endswith("view_000.npz"), r.stdout
    assert not (tmp_path / "one" / "contact_sheet.png").exists()


def test_sweep_contact_sheet_and_poses(small_ct, tmp_path):
    r = run("sweep", str(small_ct), "-o", str(tmp_path / "s"), "--alpha", "-20:20:20", "--beta", "0:10:10",
            "--detector", "24x24", "--pixel-mm", "3")
    assert r.returncode == 0, r.stderr
    poses = json.loads((tmp_path / "s" / "poses.json").read_text())["views"]
    assert [(p["alpha_deg"], p["beta_deg"]) for p in poses] == [(-20, 0), (-20, 10), (0, 0), (0, 10), (20, 0), (20, 10)]
    assert (tmp_path / "s" / "contact_sheet.png").exists()
    assert len(list((tmp_path / "s").glob("view_*.npz"))) == 6


@pytest.mark.parametrize("args,needle", [
    (["project", "missing.nii.gz", "-o", "x"], "missing.nii.gz: no such file"),
    (["project", "CT", "-o", "x", "--alpha", "150"], "alpha=150"),
    (["project", "CT", "-o", "x", "--detector", "12by12"], "--detector"),
    (["project", "CT", "-o", "x", "--isocenter", "5000,0,0", "--detector", "8x8"], "outside the field of view"),
    (["project", "MRI", "-o", "x"], "does not look like a CT"),
    (["project", "builtin:nothing", "-o", "x"], "unknown builtin"),
    (["sweep", "CT", "-o", "x", "--beta", "0:10:-5"], "--beta"),
    (["project", "CT", "-o", "x", "--kvp", "5"], "--kvp: 5 is outside 40..150 kVp"),
    (["sweep", "CT", "-o", "x", "--filter-al", "-1"], "--filter-al"),
    (["project", "CT", "-o", "x", "--detector", "100000x100000"], "--detector: '100000x100000' is above"),
    (["project", "CT", "-o", "FILE/x"], "FILE: is a file, not a folder"),
    (["project", "CT", "-o", "FULL"], "FULL: output folder exists and is not empty"),
    (["dsa", "--ct", "CT", "--vessels", "lsystem", "-o", "FULL"], "--overwrite"),
    # --overwrite deletes nothing before the inputs are checked, and never an input
    (["dsa", "--ct", "CT", "--vessels", "banana", "-o", "FULL", "--overwrite"], "--vessels: 'banana'"),
    (["project", "FULL/ct.nii.gz", "-o", "FULL", "--overwrite"], "would delete the input FULL/ct.nii.gz"),
    (["dsa", "--ct", "CT", "--vessels", "lsystem", "-o", "x", "--alpha", "10,,20"], "--alpha: expected a number"),
    (["dsa", "--ct", "CT", "--vessels", "lsystem", "-o", "x", "--detector", "16x16", "--pixel-mm", "3",
      "--collimation", "0.49,0.49,0.49,0.49"], "collimation: the field left open exposes no detector pixel"),
    (["scene", "CT", "--png", "OLD.png"], "OLD.png: exists; choose another --png, or --overwrite"),
    # a number out of range names its flag (was: "spacing_mm must be > 0, got nan" after a numpy warning)
    (["dsa", "--ct", "CT", "--vessels", "lsystem", "-o", "x", "--spacing-mm", "0"],
     "--spacing-mm: must be finite and > 0, got 0"),
    (["dsa", "--ct", "CT", "--vessels", "lsystem", "-o", "x", "--scintillator-mm", "-1"],
     "--scintillator-mm: must be finite and >= 0, got -1"),
    # named the scene's fields (motion heart_rate_bpm, motion diaphragm_z_mm, detector threshold_kev)
    (["dsa", "--ct", "CT", "--vessels", "lsystem", "-o", "x", "--heart-rate-bpm", "inf"],
     "--heart-rate-bpm: must be finite and > 0, got inf"),
    (["dsa", "--ct", "CT", "--vessels", "lsystem", "-o", "x", "--diaphragm-z-mm", "nan"],
     "--diaphragm-z-mm: must be a finite height"),
    (["dsa", "--ct", "CT", "--vessels", "lsystem", "-o", "x", "--threshold-kev", "20"],
     "--threshold-kev 20: an energy threshold is a photon-counting detector's"),
    (["dsa", "--ct", "CT", "--vessels", "lsystem", "-o", "x", "--lag", "0.5,0.6"], "--lag: the frame lags sum to 1.1"),
    # were tracebacks (numpy's uniform, seed sequence, an empty view) or named another flag
    (["sweep", "CT", "-o", "x", "--random", "3", "--jitter-mm", "-10"], "--jitter-mm: must be a finite length >= 0"),
    (["sweep", "CT", "-o", "x", "--random", "3", "--jitter-mm", "nan"], "--jitter-mm: must be a finite length >= 0"),
    (["sweep", "CT", "-o", "x", "--random", "3", "--seed", "-1"], "--seed: must be >= 0, got -1"),
    (["project", "CT", "-o", "x", "--gamma", "nan"], "gamma=nan deg (detector roll) must be finite"),
    (["project", "CT", "-o", "x", "--kvp", "80", "--spectrum", "60KV_AL35"], "both give the spectrum; use one"),
    (["dsa", "--ct", "CT", "--vessels", "lsystem", "-o", "x", "--feed-direction", "0,0,1", "--feed-roll", "10,5"],
     "--feed-roll: expected LO,HI in degrees with LO <= HI"),
    (["dsa", "--ct", "CT", "--vessels", "lsystem", "-o", "x", "--feed-roll", "10,20"], "give that too"),
    (["dsa", "--ct", "CT", "--vessels", "lsystem", "-o", "x", "--detector-mode", "photon", "--threshold-kev", "200"],
     "(energy threshold 200 keV)"),
    # QA found: tracebacks (NaN / infinite range ends), an out-of-memory line blaming the CT (a mistyped STEP), and
    # a jitter that a grid sweep dropped without a word
    (["sweep", "CT", "-o", "x", "--alpha=0:100:nan"], "--alpha: angles must be finite numbers, got '0:100:nan'"),
    (["sweep", "CT", "-o", "x", "--alpha=0:inf:10"], "--alpha: angles must be finite numbers"),
    (["sweep", "CT", "-o", "x", "--alpha=0:1e6:1e-6"], "--alpha: '0:1e6:1e-6' makes 1e+12 angles, more than the 100000"),
    (["sweep", "CT", "-o", "x", "--alpha=0:90:0.01", "--beta=0:90:0.01"], "a grid of 9001 x 9001 angles"),
    (["sweep", "CT", "-o", "x", "--jitter-mm", "5"], "--jitter-mm: moves the isocenter of --random draws"),
    # and a pose that sees no CT was found after the views before it were written
    (["sweep", "CT", "-o", "x", "--alpha", "0:90:45", "--detector", "8x8", "--isocenter", "0,130,0"],
     "outside the field of view at alpha=45"),
    (["sweep", "CT", "-o", "FULL", "--alpha", "0:90:45", "--detector", "8x8", "--isocenter", "0,130,0",
      "--overwrite"], "outside the field of view at alpha=45"),  # the older run is kept
])
def test_bad_input_one_line_error(small_ct, tmp_path, args, needle):
    mri = tmp_path / "mri.nii.gz"
    nib.save(nib.Nifti1Image(np.random.default_rng(0).uniform(0, 900, (8, 8, 8)).astype(np.float32), np.eye(4)), mri)
    (tmp_path / "FILE").write_text("x")
    (tmp_path / "FULL").mkdir()
    (tmp_path / "FULL" / "view_000.npz").write_text("an older run")
    (tmp_path / "FULL" / "ct.nii.gz").write_bytes(small_ct.read_bytes())
    (tmp_path / "OLD.png").write_text("an older picture")
    args = [str(small_ct) if a == "CT" else str(mri) if a == "MRI" else a for a in args]
    r = run(*args, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "x").exists()  # no empty output folder left behind
    assert (tmp_path / "FULL" / "view_000.npz").read_text() == "an older run"
    assert (tmp_path / "OLD.png").read_text() == "an older picture"


def test_project_overwrite_clears_the_old_run(small_ct, tmp_path):
    out = tmp_path / "p"
    out.mkdir()
    (out / "stale.png").write_text("old")
    r = run("project", str(small_ct), "-o", str(out), "--detector", "8x8", "--pixel-mm", "8", "--overwrite")
    assert r.returncode == 0, r.stderr
    assert not (out / "stale.png").exists() and (out / "view_000.npz").exists()


def test_export_flags_name_themselves_and_do_not_hide_the_config(tmp_path):
    cfg = Path(__file__).resolve().parent.parent / "experiments" / "export_small.yaml"
    r = run("export", str(cfg), "-o", str(tmp_path / "s.zarr"), "--count", "-5")
    assert r.returncode == 2 and r.stderr.strip() == "error: --count: must be >= 1, got -5"
    r = run("export", str(cfg), "-o", str(tmp_path / "s.zarr"), "--seed", "-1")
    assert r.returncode == 2 and r.stderr.strip() == "error: --seed: must be >= 0, got -1"
    bad = tmp_path / "bad.yaml"
    bad.write_text(cfg.read_text().replace("\ncount: 200", "\ncount: lots"))
    r = run("export", str(bad), "-o", str(tmp_path / "s.zarr"), "--count", "5")
    assert r.returncode == 2 and f"{bad}: count: Input should be a valid integer" in r.stderr, r.stderr
    assert not (tmp_path / "s.zarr").exists()
    # a field the run's own checks refuse (before the store exists) is named with its file too
    typo = tmp_path / "typo.yaml"
    typo.write_text(cfg.read_text().replace("generator: lsystem", "generator: lsystm", 1))
    r = run("export", str(typo), "-o", str(tmp_path / "s.zarr"))
    assert r.returncode == 2 and "lsystm" in r.stderr, r.stderr
    assert f"error: {typo}: vessels.sources.2.generator: unknown vessel generator" in r.stderr, r.stderr
    assert not (tmp_path / "s.zarr").exists()


def test_help_shows_boolean_flags_as_flags():
    for command in ("export", "train", "inspect", "project"):
        r = run(command, "--help")
        assert r.returncode == 0 and "<bool>" not in r.stdout, r.stdout
    assert "--resume  " in run("export", "--help").stdout.replace("\n", " ")


# ------------------------------------------------------------------------ imports cost nothing
HEAVY = ("torch", "zarr", "pyvista", "scipy", "matplotlib", "killeengeo", "numba", "xraydb", "spekpy", "nibabel",
         "ddsa_sim.projector", "ddsa_sim.physics", "ddsa_sim.geometry", "ddsa_sim.volumes")


def _loaded(code: str, env: dict | None = None) -> list[str]:
    script = f"import json, sys\n{code}\nprint(json.dumps(sorted(m for m in {HEAVY + ('sqlalchemy',)!r} if m in sys.modules)))"
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_cli_import_and_help_load_no_heavy_module():
    assert _loaded("import ddsa_sim.cli") == []
    assert _loaded("from ddsa_sim.cli import app\ntry:\n    app(args=['--help'], prog_name='ddsa-sim')\n"
                   "except SystemExit:\n    pass") == []


def test_project_code_loads_no_scipy_subpackage_or_killeengeo():
    """What ``project`` imports (reader, volume preparation, C-arm, projector) leaves out scipy.spatial
    (killeengeo, rotations) and scipy.ndimage: 0.3 s of its 1.9 s once. (numba's first kernel still
    imports scipy.linalg for its BLAS check.)"""
    code = ("import ddsa_sim.cli.drr\nprint(json.dumps(sorted(m for m in sys.modules if m in "
            "('killeengeo', 'scipy.spatial', 'scipy.ndimage'))))")
    r = subprocess.run([sys.executable, "-c", f"import json, sys\n{code}"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1]) == []


def test_project_with_warm_caches_loads_no_table_library(small_ct, tmp_path):
    """Spectrum and attenuation tables come from the disk cache: neither SpekPy nor xraydb is imported."""
    env = {**os.environ, "DDSA_SIM_CACHE_DIR": str(tmp_path / "cache")}
    args = ["project", str(small_ct), "-o", str(tmp_path / "p"), "--detector", "16x16", "--pixel-mm", "4",
            "--overwrite"]  # the second run replaces the first one's view
    code = f"from ddsa_sim.cli import app\napp(args={args!r}, prog_name='ddsa-sim', standalone_mode=False)"
    first = _loaded(code, env)  # fills the caches
    assert "xraydb" in first and "spekpy" in first
    again = _loaded(code, env)
    assert not {"xraydb", "spekpy", "sqlalchemy", "torch", "matplotlib", "pyvista", "zarr"} & set(again), again
    assert "nibabel" in again and "pydicom" not in again  # nibabel is imported without pydicom (0.12 s)


# ------------------------------------------------------------------------ optional command groups
def test_missing_optional_dependency_gives_a_named_stub(monkeypatch):
    import importlib.util

    import typer
    from typer.testing import CliRunner

    import ddsa_sim.cli as cli
    from ddsa_sim import InputError

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pyvista" else real(name, *a))
    app = typer.Typer(add_completion=False)
    cli._mount(app)
    helptext = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"}).output
    assert "needs pyvista" in helptext and "project" in helptext and "vessels" in helptext
    r = CliRunner().invoke(app, ["scene", "ct.nii.gz", "--png", "x.png"])
    assert isinstance(r.exception, InputError) and str(r.exception).startswith("scene: needs pyvista")


def test_other_import_errors_surface(monkeypatch, tmp_path):
    import typer

    import ddsa_sim.cli as cli

    (tmp_path / "broken_commands.py").write_text("import not_installed_dep_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    # declared dependency missing in the import: a stub; anything else missing: the error surfaces
    monkeypatch.setattr(cli, "COMMAND_MODULES", (("broken_commands", "not_installed_dep_xyz", ("broken",)),))
    monkeypatch.setattr(cli.importlib.util, "find_spec", lambda name, *a: object())
    cli._mount(typer.Typer())
    sys.modules.pop("broken_commands", None)
    monkeypatch.setattr(cli, "COMMAND_MODULES", (("broken_commands", "pyvista", ("broken",)),))
    with pytest.raises(ModuleNotFoundError, match="not_installed_dep_xyz"):
        cli._mount(typer.Typer())


def test_json_lines_are_strict_json():
    """train / evaluate print one JSON line; a metric with nothing to measure (the PSNR of an exact prediction,
    a loss before the first step) is null there: NaN and Infinity are not JSON (jq, JavaScript refuse them)."""
    from ddsa_sim.cli.options import json_line

    line = json_line({"psnr": float("inf"), "std": float("nan"), "per_dose": [{"psnr": -float("inf")}, 1.5], "n": 3})
    assert json.loads(line, parse_constant=lambda c: pytest.fail(c)) == {"psnr": None, "std": None,
                                                                          "per_dose": [{"psnr": None}, 1.5], "n": 3}
