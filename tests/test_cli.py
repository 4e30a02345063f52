"""The `ddsa-sim` command: project/sweep outputs and one-line errors for bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys

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
])
def test_bad_input_one_line_error(small_ct, tmp_path, args, needle):
    mri = tmp_path / "mri.nii.gz"
    nib.save(nib.Nifti1Image(np.random.default_rng(0).uniform(0, 900, (8, 8, 8)).astype(np.float32), np.eye(4)), mri)
    args = [str(small_ct) if a == "CT" else str(mri) if a == "MRI" else a for a in args]
    r = run(*args, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "x" / "view_000.npz").exists()
