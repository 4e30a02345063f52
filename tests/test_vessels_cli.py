"""The ``vessels`` command line (typer): generate / voxelize / stats / from-mask and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from vessel_models.cli import app

runner = CliRunner()


def _invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("gen") / "trees" / "tree.vtp"
    res = _invoke("generate", "--model", "lsystem", "--seed", "3", "--param", "iterations=3", "-o", out)
    assert res.exit_code == 0, res.output
    return out


def test_generate_writes_vtp_json_png(generated):
    from vessel_models.io import load_tree

    for suffix in (".vtp", ".json", ".png"):
        assert generated.with_suffix(suffix).is_file()
    assert generated.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    a = load_tree(generated)
    b = load_tree(generated.with_suffix(".json"))
    np.testing.assert_allclose(a.positions_mm, b.positions_mm, atol=1e-4)
    np.testing.assert_allclose(a.radii_mm, b.radii_mm, atol=1e-4)


def test_stats_prints_one_json_object(generated):
    from vessel_models.io import load_tree

    res = _invoke("stats", generated.with_suffix(".json"))
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    for key in ("n_branches", "n_bifurcations", "total_length_mm", "murray_residual", "radius_mm", "tortuosity"):
        assert key in data
    tree = load_tree(generated.with_suffix(".json"))
    assert data["total_length_mm"] == pytest.approx(tree.total_length_mm(), rel=1e-9)
    assert data["radius_mm"]["min"] == pytest.approx(tree.radii_mm.min())
    assert data["radius_mm"]["max"] == pytest.approx(tree.radii_mm.max())
    assert data["radius_mm"]["median"] == pytest.approx(np.median(tree.radii_mm))
    n_kids = np.bincount(tree.parents[1:], minlength=tree.n_nodes)
    assert data["n_bifurcations"] == np.count_nonzero(n_kids >= 2)
    assert data["tortuosity"]["min"] >= 1.0


def test_stats_json_tortuosity_angles_and_named_segments(tmp_path):
    """A hand-made labelled tree with known answers: trunk 0 -> (0, 0, 10) (straight), a bent left branch
    (path 8 over a chord of sqrt(52)) and a straight right branch, both at 90 degrees to the trunk."""
    from vessel_models.io import save_json
    from vessel_models.tree import VesselTree

    pos = [[0, 0, 0], [0, 0, 10], [4, 0, 10], [6, 0, 14], [-5, 0, 10]]
    tree = VesselTree(pos, [2.0, 2.0, 1.5, 1.5, 1.0], [-1, 0, 1, 2, 1], [0, 0, 1, 1, 2], [0, 0, 1, 1, 1],
                      {"labels": {0: "trunk", 1: "left", 2: "right"}})
    path = tmp_path / "t.json"
    save_json(tree, path)
    res = _invoke("stats", path, "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["n_segments"] == 3 and data["total_length_mm"] == pytest.approx(10 + 4 + np.hypot(2, 4) + 5)
    assert data["n_bifurcations"] == 1 and not {"branch_count", "bifurcation_count", "murray_residual_abs_max"} & set(data)
    left_dm = (4 + np.hypot(2, 4)) / np.hypot(6, 4)
    assert data["tortuosity_dm"]["median"] == pytest.approx(1.0)
    assert data["tortuosity_dm"]["p90"] == pytest.approx(1.0 + 0.8 * (left_dm - 1.0))  # numpy's linear p90
    assert data["bifurcation_angle_deg"]["median"] == pytest.approx(90.0)
    assert data["murray_residual"] == pytest.approx(abs(1.5**3 + 1.0**3 - 2.0**3) / 2.0**3)
    named = data["named_segments"]
    assert named["left"]["length_mm"] == pytest.approx(4 + np.hypot(2, 4))
    assert named["left"]["tortuosity_dm"] == pytest.approx(left_dm)
    assert named["right"] == pytest.approx({"diameter_mm": 3.0, "proximal_diameter_mm": 2.0, "length_mm": 5.0,
                                            "tortuosity_dm": 1.0})
    text = _invoke("stats", path, "--text")
    assert text.exit_code == 0 and "n_segments: 3" in text.stdout


def test_voxelize_own_grid_and_like_grid(generated, tmp_path):
    nib = pytest.importorskip("nibabel")
    from vessel_models.io import load_tree
    from vessel_models.voxelize import voxelize_tree

    out = tmp_path / "vessel.nii.gz"
    res = _invoke("voxelize", generated, "--spacing-mm", "0.4", "-o", out)
    assert res.exit_code == 0, res.output
    img = nib.load(str(out))
    vol = np.asarray(img.dataobj)
    assert vol.dtype == np.float32 and 0 <= vol.min() and vol.max() <= 1
    # RAS on disk: x and y spacing negated, z positive
    np.testing.assert_allclose(np.diag(img.affine)[:3], [-0.4, -0.4, 0.4])
    tree = load_tree(generated)
    lumen = vol.sum() * 0.4**3
    assert lumen > 0
    # --like: the exact grid of another NIfTI (a coarse "CT"), LPS affine with rotation
    ct_affine_ras = np.array([[-0.8, 0, 0, 0], [0, -0.8, 0, 0], [0, 0, 1.0, 0], [0, 0, 0, 1.0]])
    lo, hi = tree.bounds_mm()
    shape = tuple(int(v) for v in np.ceil((hi - lo) / [0.8, 0.8, 1.0]) + 6)
    # voxel (0, 0, 0) at the tree's low LPS corner minus 2 mm; LPS index axes run +0.8, +0.8, +1 mm
    lps_start = lo - 2.0
    ct_affine_ras[:3, 3] = (np.diag([-1.0, -1.0, 1.0, 1.0]) @ np.append(lps_start, 1.0))[:3]
    ct = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros(shape, dtype=np.int16), ct_affine_ras), str(ct))
    out2 = tmp_path / "like.nii"
    res = _invoke("voxelize", generated, "--like", ct, "-o", out2)
    assert res.exit_code == 0, res.output
    img2 = nib.load(str(out2))
    assert img2.shape == shape
    np.testing.assert_allclose(img2.affine, ct_affine_ras)
    ref = voxelize_tree(tree, np.diag([-1.0, -1.0, 1.0, 1.0]) @ ct_affine_ras, shape)
    np.testing.assert_allclose(np.asarray(img2.dataobj), ref, atol=1e-6)
    # same tree, same lumen volume on both grids (within the voxelizer's accuracy)
    assert ref.sum() * 0.64 == pytest.approx(lumen, rel=0.05)
    assert "outside the --like grid" not in res.output
    # a grid that holds half the tree says so (its lumen was cut without a word)
    half = tuple(shape[:2]) + (shape[2] // 2,)
    nib.save(nib.Nifti1Image(np.zeros(half, dtype=np.int16), ct_affine_ras), str(tmp_path / "half.nii.gz"))
    res = _invoke("voxelize", generated, "--like", tmp_path / "half.nii.gz", "-o", tmp_path / "cut.nii")
    assert res.exit_code == 0 and "tree nodes lie outside the --like grid" in res.output, res.output


def _json_tree(path, radii, parents=(-1, 0, 1)):
    data = {
        "format": "vessel_models.tree",
        "version": 1,
        "positions_mm": [[0, 0, 0], [0, 0, 5], [0, 3, 9]][: len(radii)],
        "radii_mm": list(radii),
        "parents": list(parents)[: len(radii)],
        "branch_ids": [0] * len(radii),
        "generations": [0] * len(radii),
        "metadata": {},
    }
    path.write_text(json.dumps(data))
    return path


def _nan_mask(folder):
    """A mask with one NaN voxel (it was cast to an integer with a numpy warning and made into a tree)."""
    import nibabel as nib

    data = np.zeros((8, 8, 8), np.float32)
    data[2:6, 3:5, 1:7] = 1.0
    data[0, 0, 0] = np.nan
    nib.save(nib.Nifti1Image(data, np.eye(4)), folder / "nan.nii.gz")
    return folder / "nan.nii.gz"


def _truncated_vtp(folder):
    """The first 500 bytes of a tree file (VTK dumped its parser's state before the error)."""
    from vessel_models.generators import generate
    from vessel_models.io import save_vtp

    save_vtp(generate("lsystem", 0, iterations=3), folder / "whole.vtp")
    (folder / "half.vtp").write_bytes((folder / "whole.vtp").read_bytes()[:500])
    return folder / "half.vtp"


def _older(path):
    """``path`` holding an older result, which a command must not replace unasked."""
    path.write_text("an older result")
    return path


def _binary_json(folder):
    """A binary file named .json (the reader raised UnicodeDecodeError)."""
    (folder / "bin.json").write_bytes(bytes(range(256)) * 4)
    return folder / "bin.json"


def _version_json(folder, version):
    path = _json_tree(folder / "ver.json", [1.0, 0.5, 0.4])
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "version": version}))
    return path


def _cycle_vtp(folder):
    """Foreign centrelines (no parent array) whose polylines close a triangle: a spanning tree had dropped one
    segment silently (and numpy warned "All-NaN slice")."""
    import pyvista as pv

    poly = pv.PolyData()
    poly.points = np.array([[0, 0, 0], [0, 0, 10], [0, 5, 15], [0, -5, 15]], dtype=float)
    poly.lines = np.array([2, 0, 1, 2, 1, 2, 2, 2, 3, 2, 3, 1])
    poly.point_data["radius_mm"] = np.ones(4)
    poly.save(str(folder / "cycle.vtp"))
    return folder / "cycle.vtp"


def _run_folder(folder):
    """A gan-train run folder (what gan-sample was given instead of its checkpoint)."""
    (folder / "run").mkdir()
    (folder / "run" / "last.pt").write_bytes(b"a checkpoint")
    return folder / "run"


@pytest.mark.parametrize(
    "args_factory, message",
    [
        (lambda d: ("stats", _binary_json(d)), "bin.json: not valid JSON (not UTF-8 text"),
        (lambda d: ("stats", _version_json(d, 99)), "ver.json: vessel tree JSON: unsupported version 99"),
        (lambda d: ("stats", _json_tree(d / "neg1.json", [1.0, -0.5, 0.4])), "node 1 has -0.5"),
        (lambda d: ("stats", _cycle_vtp(d)), "cycle.vtp: vtp: centrelines form 1 closed loop(s)"),
        (lambda d: ("generate", "-m", "lsystem", "-p", "root_diameter_mm=inf", "-o", d / "t.vtp"),
         "lsystem parameter root_diameter_mm=inf must be finite"),
        (lambda d: ("generate", "-m", "lsystem", "-p", "length_diameter_ratio=1e308", "-o", d / "t.vtp"),
         "would take more than 10000 steps"),
        (lambda d: ("gan-data", "-o", d / "gd", "--spacing-mm", "0"), "--spacing-mm: must be a voxel size > 0 mm"),
        (lambda d: ("gan-data", "-o", d / "gd", "--spacing-mm", "-1.5"), "--spacing-mm: must be a voxel size > 0"),
        (lambda d: ("gan-sample", _run_folder(d), "-o", d / "gd"), "run: is a folder; give a checkpoint in it"),
        (lambda d: ("stats", d / "missing.vtp"), "not found"),
        (lambda d: ("stats", _json_tree(d / "neg.json", [1.0, -0.5, 0.4])), "radii"),
        (lambda d: ("stats", _json_tree(d / "disc.json", [1.0, 0.5, 0.4], (-1, 0, -1))), "disconnected"),
        (lambda d: ("voxelize", _json_tree(d / "ok.json", [1.0, 0.5, 0.4]), "--spacing-mm", "0.0001",
                    "-o", d / "v.nii.gz"), "GiB"),
        (lambda d: ("voxelize", _json_tree(d / "ok2.json", [1.0, 0.5, 0.4]), "--spacing-mm", "-1",
                    "-o", d / "v.nii.gz"), "spacing"),
        (lambda d: ("generate", "--model", "nope", "-o", d / "t.vtp"), "unknown model"),
        (lambda d: ("generate", "--model", "lsystem", "--param", "iterations", "-o", d / "t.vtp"), "key=value"),
        (lambda d: ("from-mask", d / "nomask.nii.gz", "-o", d / "t.vtp"), "not found"),
        (lambda d: ("from-mask", _nan_mask(d), "-o", d / "t.json"), "1 voxel(s) are NaN or infinite"),
        (lambda d: ("stats", _truncated_vtp(d)), "half.vtp: no points read: not a readable VTK XML PolyData file"),
        # no existing output is replaced unless asked, and an input never
        (lambda d: ("generate", "--model", "lsystem", "-o", _older(d / "t.vtp")), "t.vtp: exists"),
        (lambda d: ("voxelize", _json_tree(d / "in.json", [1.0, 0.5, 0.4]), "-o", _older(d / "v0.nii.gz")),
         "v0.nii.gz: exists"),
        (lambda d: ("voxelize", _json_tree(d / "in.json", [1.0, 0.5, 0.4]), "--like", d / "ct.nii.gz",
                    "-o", d / "ct.nii.gz", "--overwrite"), "ct.nii.gz: is an input"),
    ],
)
def test_bad_input_one_line_error_exit_2(tmp_path, args_factory, message):
    res = _invoke(*args_factory(tmp_path))
    assert res.exit_code == 2, res.output
    err = res.stderr.strip()
    assert err.startswith("error: ") and message in err
    assert "\n" not in err and "Traceback" not in res.output
    assert not (tmp_path / "v.nii.gz").exists() and not (tmp_path / "gd").exists()
    assert all(p.read_text() == "an older result" for p in (tmp_path / "t.vtp", tmp_path / "v0.nii.gz") if p.exists())


def test_empty_mask_and_from_mask(tmp_path):
    nib = pytest.importorskip("nibabel")
    empty = tmp_path / "empty.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8), dtype=np.uint8), np.eye(4)), str(empty))
    res = _invoke("from-mask", empty, "-o", tmp_path / "t.vtp")
    assert res.exit_code == 2 and "no foreground" in res.stderr
    # a straight tube along z, radius 3 voxels (1 mm voxels), 30 voxels long
    g = np.stack(np.meshgrid(np.arange(20), np.arange(20), np.arange(40), indexing="ij"), -1) - (10, 10, 0)
    tube = (g[..., 0] ** 2 + g[..., 1] ** 2 <= 9) & (g[..., 2] >= 5) & (g[..., 2] < 35)
    mask = tmp_path / "tube.nii.gz"
    nib.save(nib.Nifti1Image(tube.astype(np.uint8) * 4, np.eye(4)), str(mask))
    res = _invoke("from-mask", mask, "--labels", "4", "-o", tmp_path / "t.json")
    assert res.exit_code == 0, res.output
    from vessel_models.io import load_tree

    tree = load_tree(tmp_path / "t.json")
    assert np.all(np.abs(tree.radii_mm - 3.0) <= 1.0)
    # RAS -> LPS: x and y change sign
    assert np.allclose(tree.positions_mm[:, :2], [-10.0, -10.0], atol=1.0)
    # --root picks the end (LPS mm); a bad -o, node spacing or root is refused before the extraction
    res = _invoke("from-mask", mask, "-o", tmp_path / "top.json", "--root", "-10,-10,40")
    assert res.exit_code == 0, res.output
    assert load_tree(tmp_path / "top.json").positions_mm[0][2] > 30.0
    for args, needle in ((["-o", tmp_path / "t.txt"], "must end in .vtp or .json"),
                         (["-o", tmp_path / "u.json", "--node-spacing-mm", "0"], "--node-spacing-mm must be > 0"),
                         (["-o", tmp_path / "u.json", "--root", "1,2"], "--root must be X,Y,Z")):
        res = _invoke("from-mask", mask, *args)
        assert res.exit_code == 2 and needle in res.stderr, res.output


def test_gan_train_names_a_missing_held_out_folder(tmp_path):
    data = tmp_path / "train"
    assert _invoke("gan-data", "-o", data, "-n", "3", "--shape", "16", "--param", "iterations=2").exit_code == 0
    cfg = tmp_path / "gan.yaml"
    cfg.write_text("device: cpu\ndata: {shape: [16, 16, 16], spacing_mm: 1.5, mode: crop}\n")
    res = _invoke("gan-train", cfg, "--data", data, "--val-data", tmp_path / "missing", "-o", tmp_path / "run")
    assert res.exit_code != 0 and f"--val-data: {tmp_path / 'missing'}: no such folder" in res.output
    assert not (tmp_path / "run").exists()  # nothing written


def test_gan_commands_keep_an_existing_folder_unless_asked(tmp_path):
    """A mistyped -o must not replace a trained run (gan-train had written a 2-step WGAN over a StyleGAN run), nor
    mix two generators' volumes in one training folder (gan-data)."""
    data = tmp_path / "train"
    assert _invoke("gan-data", "-o", data, "-n", "2", "--shape", "16", "--param", "iterations=2").exit_code == 0
    res = _invoke("gan-data", "-o", data, "-n", "1", "--shape", "16", "-m", "cow")
    assert res.exit_code != 0 and "output folder exists and is not empty" in res.output, res.output
    assert sorted(p.name for p in data.iterdir()) == ["lsystem_00000.nii.gz", "lsystem_00001.nii.gz"]
    res = _invoke("gan-data", "-o", data, "-n", "1", "--shape", "16", "--param", "iterations=2", "--overwrite")
    assert res.exit_code == 0 and sorted(p.name for p in data.iterdir()) == ["lsystem_00000.nii.gz"]
    cfg = tmp_path / "gan.yaml"
    cfg.write_text("device: cpu\ndata: {shape: [16, 16, 16], spacing_mm: 1.5, mode: crop}\n")
    run = tmp_path / "run"
    run.mkdir()
    (run / "best.pt").write_bytes(b"an earlier run")
    res = _invoke("gan-train", cfg, "--data", data, "-o", run, "--max-steps", "1")
    assert res.exit_code != 0 and "output folder exists and is not empty" in res.output, res.output
    assert (run / "best.pt").read_bytes() == b"an earlier run"
    res = _invoke("gan-train", cfg, "--data", data, "-o", run, "--resume", "--overwrite")
    assert res.exit_code != 0 and "--resume and --overwrite: give one" in res.output
    from vessel_models.gan.data import save_label_volume

    empty = tmp_path / "empty"  # a generator drawing nothing would score perfectly against these
    for k in range(2):
        save_label_volume(np.zeros((16, 16, 16), np.uint8), 1.5, empty / f"e{k}.nii.gz")
    res = _invoke("gan-train", cfg, "--data", empty, "-o", tmp_path / "run2")
    assert res.exit_code != 0 and "none of its 2 label volumes holds a vessel voxel" in res.output, res.output


def test_gan_train_resume_without_a_last_checkpoint_is_refused(tmp_path):
    """``gan-train --resume`` into a folder without last.pt (a mistyped -o) had started a fresh run silently; ``train
    --resume`` refuses (docs/reliability.md)."""
    data = tmp_path / "train"
    assert _invoke("gan-data", "-o", data, "-n", "2", "--shape", "16", "--param", "iterations=2").exit_code == 0
    cfg = tmp_path / "gan.yaml"
    cfg.write_text("device: cpu\ndata: {shape: [16, 16, 16], spacing_mm: 1.5, mode: crop}\n"
                   "net: {base_channels: 2, max_channels: 4, latent_dim: 4}\n")
    other = tmp_path / "other"  # a folder of something else, without last.pt
    other.mkdir()
    (other / "notes.txt").write_text("kept")
    for run in (tmp_path / "nothere", other):
        res = _invoke("gan-train", cfg, "--data", data, "-o", run, "--resume", "--max-steps", "1")
        assert res.exit_code == 2, res.output
        assert res.stderr.strip() == (f"error: --resume: no {run / 'last.pt'} to continue from; run without --resume "
                                      "to start")
    assert not (tmp_path / "nothere").exists()  # nothing written
    assert [p.name for p in other.iterdir()] == ["notes.txt"]
    # two volumes in crop mode hold one out, and one crop cannot be scored: that had been a ValueError traceback at
    # the first evaluation, after eval_every steps
    res = _invoke("gan-train", cfg, "--data", data, "-o", tmp_path / "run2", "--max-steps", "1")
    assert res.exit_code == 2 and "--data: 2 label volumes leave 1 held out" in res.stderr, res.output
    assert not (tmp_path / "run2").exists()


def test_gan_overwrite_deletes_only_after_the_inputs_are_read_and_never_the_working_directory(tmp_path, monkeypatch):
    """--overwrite had removed the run folder before reading --data (a bad data folder then cost the old run), and
    ``-o . --overwrite`` removed the working directory's files (ddsa_sim's commands refused it)."""
    cfg = tmp_path / "gan.yaml"
    cfg.write_text("device: cpu\ndata: {shape: [16, 16, 16], spacing_mm: 1.5, mode: crop}\n")
    run = tmp_path / "run"
    run.mkdir()
    (run / "best.pt").write_bytes(b"an earlier run")
    (tmp_path / "no_volumes").mkdir()
    res = _invoke("gan-train", cfg, "--data", tmp_path / "no_volumes", "-o", run, "--overwrite")
    assert res.exit_code != 0 and "no_volumes" in res.output, res.output
    assert (run / "best.pt").read_bytes() == b"an earlier run"
    monkeypatch.chdir(run)
    res = _invoke("gan-data", "-o", ".", "-n", "1", "--shape", "16", "--param", "iterations=2", "--overwrite")
    assert res.exit_code != 0 and "would delete the working directory" in res.output, res.output
    res = _invoke("gan-data", "-o", tmp_path, "-n", "1", "--shape", "16", "--param", "iterations=2", "--overwrite")
    assert res.exit_code != 0 and "would delete the working directory" in res.output, res.output
    assert (run / "best.pt").read_bytes() == b"an earlier run"
    res = _invoke("gan-data", "-o", run, "-n", "1", "--shape", "16", "--param", "iterations=2", "--overwrite")
    assert res.exit_code != 0 and (run / "best.pt").exists()
    monkeypatch.chdir(tmp_path)  # from outside it, the folder is emptied and written
    res = _invoke("gan-data", "-o", run, "-n", "1", "--shape", "16", "--param", "iterations=2", "--overwrite")
    assert res.exit_code == 0 and sorted(p.name for p in run.iterdir()) == ["lsystem_00000.nii.gz"], res.output


def test_os_errors_name_the_output_and_a_closed_pipe_is_no_error(tmp_path):
    """An output that cannot be created is named as given, not as our temporary file beside it; `| head`
    closing the pipe early ends the command quietly (it printed "error: [Errno 32] Broken pipe", exit 2)."""
    import subprocess
    import sys

    from vessel_models.io import atomic_output

    with pytest.raises(OSError) as err:  # /proc takes no new files
        with atomic_output("/proc/tree.json"):
            pass
    assert err.value.filename == "/proc/tree.json"
    tree = _json_tree(tmp_path / "t.json", [1.0, 0.5, 0.4])
    code = (f"import sys; sys.argv = ['ddsa-sim', 'vessels', 'stats', {str(tree)!r}, '--text']; "
            "from ddsa_sim.cli import main; main()")
    # `true` leaves at once, before the command (a second to start) writes: the write meets a closed pipe
    closed = subprocess.run(f"{sys.executable} -c \"{code}\" | true", shell=True, capture_output=True, text=True)
    assert closed.stderr == "", closed.stderr


def test_stats_leave_a_templates_virtual_connectors_out():
    """docs/vessels.md: the 1 um connectors joining the left and right coronary trees are no vessel (the smallest
    radius had read 0.001 mm)."""
    from vessel_models.cli import tree_stats
    from vessel_models.generators import generate

    tree = generate("coronary", 0, side="both")
    assert tree.radii_mm.min() < 0.01 and tree.metadata["virtual_branches"]
    assert tree_stats(tree)["radius_mm"]["min"] >= 0.25 * 0.8  # min_radius_mm, within the radius jitter


def test_gan_train_interrupted_saves_and_says_how_to_resume(tmp_path, monkeypatch):
    """Ctrl-C during gan-train had printed nothing (exit 130) and lost every step since the last evaluation."""
    import os
    import signal

    from vessel_models.gan import train
    from vessel_models.gan.checkpoint import load_checkpoint

    data = tmp_path / "train"
    assert _invoke("gan-data", "-o", data, "-n", "4", "--shape", "16", "--param", "iterations=2").exit_code == 0
    cfg = tmp_path / "gan.yaml"
    cfg.write_text("device: cpu\nnum_threads: 1\neval_samples: 2\ndata: {shape: [16, 16, 16], spacing_mm: 1.5, "
                   "mode: crop}\nnet: {base_channels: 2, max_channels: 4, latent_dim: 4}\noptim: {n_critic: 1}\n")
    calls, step = [0], train._Run.generator_step

    def interrupted(self, n):  # Ctrl-C in the middle of the second step
        calls[0] += 1
        if calls[0] == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return step(self, n)

    monkeypatch.setattr(train._Run, "generator_step", interrupted)
    run = tmp_path / "run"
    res = _invoke("gan-train", cfg, "--data", data, "-o", run, "--max-steps", "5")
    assert res.exit_code == 130, res.output
    assert res.stderr.strip().splitlines()[-1] == (
        f"error: interrupted by SIGINT after step 2; saved it to {run / 'last.pt'}: continue with: ddsa-sim vessels "
        f"gan-train {cfg} --data {data} -o {run} --resume --max-steps 5")
    assert load_checkpoint(run / "last.pt")["step"] == 2
    monkeypatch.undo()
    res = _invoke("gan-train", cfg, "--data", data, "-o", run, "--resume", "--max-steps", "5")
    assert res.exit_code == 0 and f"{run}: 5 steps" in res.output, res.output
