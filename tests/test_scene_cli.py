"""The ``ddsa-sim dsa`` command: files written, and one-line errors for bad input."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from scene_helpers import run_cli

from ddsa_sim import InputError
from ddsa_sim.volumes.readers import LPS_FROM_RAS

FAST = ["--detector", "48x48", "--pixel-mm", "4", "--spacing-mm", "0.6"]




def test_dsa_writes_npz_and_png_strip(ct_path, tmp_path, capsys):
    out = tmp_path / "out"
    code = run_cli(["dsa", "--ct", str(ct_path), "--vessels", "lsystem", "--seed", "2", "--frames", "2",
                 "--motion", "rigid", "--alpha", "0,20", "-o", str(out), *FAST])
    assert code == 0, capsys.readouterr().err
    for n in (0, 1):
        d = np.load(out / f"view_{n:03d}.npz")
        for key in ("mask", "contrast", "dsa_target", "iodine_mg_per_cm2", "vessel_mask", "contrast_clean",
                    "conventional_dsa"):
            assert d[key].shape == (48, 48), key
        for key in ("contrast_frames", "dsa_target_frames", "iodine_mg_per_cm2_frames", "vessel_mask_frames"):
            assert d[key].shape == (2, 48, 48), key
        assert d["vessel_mask"].any() and d["dsa_target"].max() > 0
        assert d["frame_times_s"].shape == (2,)
        with Image.open(out / f"view_{n:03d}.png") as im:
            assert im.size[0] > 3 * im.size[1] / 2  # a strip: 4 columns, 2 rows
    a, b = np.load(out / "view_000.npz"), np.load(out / "view_001.npz")
    assert not np.array_equal(a["mask"], b["mask"])


def test_dsa_nifti_fraction_volume_and_no_noise(ct_path, tmp_path, capsys):
    frac = np.zeros((20, 20, 20), np.float32)
    frac[8:12, 8:12, :] = 1.0
    aff = np.diag([1.0, 1.0, 2.0, 1.0])
    aff[:3, 3] = [-10.0, -10.0, -20.0]
    vp = tmp_path / "vessel.nii.gz"
    nib.save(nib.Nifti1Image(frac, LPS_FROM_RAS @ aff), str(vp))
    out = tmp_path / "o"
    code = run_cli(["dsa", "--ct", str(ct_path), "--vessels", str(vp), "--no-noise", "--no-scatter",
                 "--bit-depth", "0", "-o", str(out), *FAST])
    assert code == 0, capsys.readouterr().err
    d = np.load(out / "view_000.npz")
    assert np.array_equal(d["dsa_target"], d["contrast"] - d["mask"])
    assert d["vessel_mask"].sum() > 10
    # a volume has no bolus timing: a sequence of it would be N equal frames at t = 0
    code = run_cli(["dsa", "--ct", str(ct_path), "--vessels", str(vp), "--frames", "3", "-o", str(tmp_path / "seq"),
                 *FAST])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "--frames 3: these vessels" in err and "give --fps" in err, err
    assert not (tmp_path / "seq").exists()
    # --fps gives them a clock (an export's sequence.fps): frame k at start + k / fps
    code = run_cli(["dsa", "--ct", str(ct_path), "--vessels", str(vp), "--frames", "3", "--fps", "10", "--start-s", "0.5",
                 "--no-noise", "-o", str(tmp_path / "seq"), *FAST])
    assert code == 0, capsys.readouterr().err
    seq = np.load(tmp_path / "seq" / "view_000.npz")
    np.testing.assert_allclose(seq["frame_times_s"], [0.5, 0.6, 0.7])
    assert np.array_equal(seq["dsa_target_frames"][0], seq["dsa_target_frames"][2])  # no motion: one image
    for bad in (["--fps", "0"], ["--fps", "nan"], ["--fps", "10", "--start-s", "-1"]):
        assert run_cli(["dsa", "--ct", str(ct_path), "--vessels", str(vp), *bad, "-o", str(tmp_path / "x"), *FAST]) == 2
        assert bad[-2] in capsys.readouterr().err


@pytest.mark.parametrize("vessels, needle", [
    ("/no/such/tree.vtp", "/no/such/tree.vtp"),
    ("/no/such/mask.nii.gz", "/no/such/mask.nii.gz"),
    ("spaghetti", "'spaghetti' is not a file"),
])
def test_dsa_bad_vessels_is_one_line_error(ct_path, tmp_path, capsys, vessels, needle):
    code = run_cli(["dsa", "--ct", str(ct_path), "--vessels", vessels, "-o", str(tmp_path / "x"), *FAST])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("error:") and "\n" not in err and needle in err


@pytest.mark.parametrize("extra, needle", [
    (["--vessels", "lsystem", "-p", "iterations"], "--param"),
    (["--vessels", "lsystem", "-p", "no_such_knob=1"], "no_such_knob"),  # the parameters reach the generator
    (["--vessels", "/no/such/tree.vtp", "-p", "iterations=3"], "only a generator"),
    (["--vessels", "lsystem", "--seed", "-1"], "--seed must be >= 0"),  # named --vessels before
    (["--vessels", "lsystem", "--place", "anatomical"], "--place anatomical: needs a template"),  # named --region
])
def test_dsa_bad_generator_param_is_one_line_error(ct_path, tmp_path, capsys, extra, needle):
    code = run_cli(["dsa", "--ct", str(ct_path), *extra, "-o", str(tmp_path / "x"), *FAST])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error:") and "\n" not in err and needle in err, err


def test_dsa_missing_ct_and_vessels_outside_fov(ct_path, tmp_path, capsys):
    assert run_cli(["dsa", "--ct", str(tmp_path / "none.nii.gz"), "--vessels", "lsystem", "-o", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "none.nii.gz" in err and "\n" not in err
    far = np.ones((4, 4, 4), np.float32)
    aff = np.eye(4)
    aff[:3, 3] = [0.0, 0.0, 3000.0]
    vp = tmp_path / "far.nii.gz"
    nib.save(nib.Nifti1Image(far, LPS_FROM_RAS @ aff), str(vp))
    assert run_cli(["dsa", "--ct", str(ct_path), "--vessels", str(vp), "-o", str(tmp_path / "y"), *FAST]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "outside the field of view" in err and "far.nii.gz" in err
    assert run_cli(["dsa", "--ct", str(ct_path), "--vessels", "labels:aorta", "-o", str(tmp_path / "z"), *FAST]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "--labels" in err


def test_dsa_takes_the_builtin_chest_labels_for_a_template_unless_told_none():
    """A template on the builtin chest CT is placed on its labelled heart (and fitted to its aorta), its catheter
    through the labelled arteries: the CT's own labels are taken as for labels:... vessels and organ regions (before,
    `dsa --vessels coronary` on it fell back to the lung heuristic without `--labels`). `--labels none` refuses them;
    an L-system tree in the body and another CT take none."""
    from ddsa_sim.cli.dsa import scene_spec

    assert scene_spec("builtin:chest-ct", "coronary", 0).ct.labels == "builtin:chest-ct-labels"
    assert scene_spec("builtin:chest-ct", "coronary", 0, labels="none").ct.labels is None
    assert scene_spec("builtin:chest-ct", "lsystem", 0).ct.labels is None
    assert scene_spec("ct.nii.gz", "coronary", 0).ct.labels is None
    with pytest.raises(InputError, match="--labels: --vessels labels"):
        scene_spec("builtin:chest-ct", "labels:aorta", 0, labels="none")


def test_dsa_supersample_is_recorded_and_checked(ct_path, tmp_path, capsys):
    """``--supersample 2``: 2 x 2 rays per pixel, recorded in the view's scene_json; 0 is one line."""
    import json

    out = tmp_path / "ss"
    assert run_cli(["dsa", "--ct", str(ct_path), "--vessels", "lsystem", "--no-noise", "--supersample", "2",
                 "-o", str(out), *FAST]) == 0, capsys.readouterr().err
    assert json.loads(str(np.load(out / "view_000.npz")["scene_json"]))["supersample"] == 2
    code = run_cli(["dsa", "--ct", str(ct_path), "--vessels", "lsystem", "--supersample", "0",
                 "-o", str(tmp_path / "x"), *FAST])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err == "error: --supersample must be >= 1, got 0", err


def test_dsa_overwrite_never_deletes_a_model_checkpoint_or_spectrum_file_it_reads(tmp_path, capsys):
    """QA found: `--vessels model:OUT/best.pt` and `--spectrum OUT/spec.txt` (or file:) were not counted as inputs, so
    `-o OUT --overwrite` deleted the GAN run and the spectrum the command had just read; `project` likewise."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "best.pt").write_bytes(b"a vessel GAN")
    (out / "spec.txt").write_text("40 1\n50 1\n")
    cases = ((["dsa", "--ct", "builtin:chest-ct", "--vessels", f"model:{out / 'best.pt'}"], "best.pt"),
             (["dsa", "--ct", "builtin:chest-ct", "--vessels", "lsystem", "--spectrum", str(out / "spec.txt")],
              "spec.txt"),
             (["dsa", "--ct", "builtin:chest-ct", "--vessels", "lsystem", "--spectrum", f"file:{out / 'spec.txt'}"],
              "spec.txt"),
             (["project", "builtin:chest-ct", "--spectrum", f"file:{out / 'spec.txt'}"], "spec.txt"))
    for args, name in cases:
        assert run_cli([*args, "-o", str(out), "--overwrite"]) == 2, args
        err = capsys.readouterr().err
        assert "would delete the input" in err and name in err, (args, err)
    assert sorted(p.name for p in out.iterdir()) == ["best.pt", "spec.txt"]


def test_dsa_refuses_a_structures_file_nothing_reads_and_an_exposure_below_one_quantum(ct_path, tmp_path, capsys):
    """QA found: `--structures` without a label map was ignored (a mistyped path unnoticed), and `--photons 1`
    (0.58 noise-equivalent quanta per pixel) floored every pixel above I0, a mask of -0.9 to -0.5: less
    attenuation than air."""
    base = ["dsa", "--ct", str(ct_path), "--vessels", "lsystem", *FAST]
    assert run_cli([*base, "--structures", str(tmp_path / "nostruct.csv"), "-o", str(tmp_path / "a")]) == 2
    assert "--structures" in capsys.readouterr().err and not (tmp_path / "a").exists()
    assert run_cli([*base, "--photons", "1", "--bit-depth", "0", "-o", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "quanta per pixel in the flat field, below one" in err and len(err.strip().splitlines()) == 1, err
    assert run_cli([*base, "--photons", "2", "--bit-depth", "0", "-o", str(tmp_path / "c")]) == 0  # 1.2 quanta: an image


@pytest.mark.parametrize("param, needle", [
    ("no_such_knob=1", "error: --param no_such_knob: unknown lsystem parameter"),
    ("iterations=-1", "error: --param: lsystem parameter iterations=-1 is out of range"),
])
def test_dsa_generator_parameter_errors_name_the_param_option(ct_path, tmp_path, capsys, param, needle):
    """QA found: a bad `-p KEY=VALUE` was reported as `--vessels.params.KEY` / `--vessels: ...`, an option
    the user had given right."""
    code = run_cli(["dsa", "--ct", str(ct_path), "--vessels", "lsystem", "-p", param, "-o", str(tmp_path / "x"), *FAST])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith(needle) and "\n" not in err, err


def test_dsa_weighs_the_frames_memory_first_and_shows_a_few_frames_of_a_longrun_cli(ct_path, tmp_path, capsys):
    """QA found: `--frames 100000` ran for minutes without a word toward a terabyte of frames (the run dies
    unannounced), and a strip of 40 frames was a 1040 x 10430 px PNG whose title lay over the first row."""
    from ddsa_sim.cli.dsa import STRIP_MAX_FRAMES

    base = ["dsa", "--ct", str(ct_path), "--vessels", "lsystem", *FAST]
    assert run_cli([*base, "--frames", "100000000", "-o", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err.strip()
    # 1e8 frames of 48 x 48 px: six images each (21 bytes per pixel), held twice while stacked
    assert err.startswith("error: --frames 100000000: needs about 9012.2 GiB") and "\n" not in err, err
    assert not (tmp_path / "a").exists()
    n = STRIP_MAX_FRAMES + 4
    assert run_cli([*base, "--frames", str(n), "-o", str(tmp_path / "b")]) == 0, capsys.readouterr().err
    assert np.load(tmp_path / "b" / "view_000.npz")["contrast_frames"].shape == (n, 48, 48)  # every frame kept
    with Image.open(tmp_path / "b" / "view_000.png") as im:
        w, h = im.size
    assert STRIP_MAX_FRAMES * w / 4 <= h < (STRIP_MAX_FRAMES + 1) * w / 4  # 4 columns, STRIP_MAX_FRAMES rows
