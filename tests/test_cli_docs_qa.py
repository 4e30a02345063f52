"""What a first-time user meets in README.md, docs/dsa.md, docs/export.md and docs/geometry.md: the documented
snippets and commands run and do what the docs say (QA of the user docs; each test names the defect it pins)."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml
import zarr
from scene_helpers import run_cli
from typer.testing import CliRunner

from ddsa_sim.cli import app
from ddsa_sim.geometry import CArm

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests"), os.environ.get("PYTHONPATH", "")])}
#: The `dsa` command's tiny detector and vessel grid for fast runs.
FAST = ["--detector", "48x48", "--pixel-mm", "4", "--spacing-mm", "0.6"]


def _section(doc: Path, heading: str) -> str:
    """The text of a doc's section, from its heading line to the next heading of the same or a higher level."""
    text = doc.read_text()
    match = re.search(rf"^(#+) {re.escape(heading)}.*?$", text, re.M)
    assert match, f"{doc.name}: no section {heading!r}"
    level = len(match.group(1))
    rest = text[match.end():]
    end = re.search(rf"^#{{1,{level}}} ", rest, re.M)
    return rest[: end.start() if end else len(rest)]


def _code_blocks(text: str, lang: str = "") -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, re.S)




def _small_dataset(folder: Path) -> Path:
    """``folder/dataset.yaml``: one CT (so 'val' and 'test' get no sample: the split warning), the tests' fast fake
    renderer, count 8 and seed 11 (overridden on the command line below)."""
    folder.mkdir(parents=True, exist_ok=True)
    hu = np.full((12, 12, 12), -1000.0, np.float32)
    hu[2:-2, 2:-2, 2:-2] = 40.0
    hu[4:7, 4:7, 4:7] = 800.0
    nib.save(nib.Nifti1Image(hu, np.diag([2.0, 2.0, 2.0, 1.0])), str(folder / "ct0.nii.gz"))
    config = {"cts": [{"path": "ct0.nii.gz"}], "vessels": {"per_ct": 2, "sources": [{"generator": "lsystem"}]},
              "detector": {"rows": 64, "cols": 64, "pixel_mm": 1.0, "binning": 2}, "output": {"crop": [24, 32]},
              "effects": {"noise": True, "motion": "rigid"}, "count": 8, "seed": 11,
              "renderer": "synthetic_renderer:render_synthetic"}
    (folder / "dataset.yaml").write_text(yaml.safe_dump(config))
    return folder / "dataset.yaml"


# ----------------------------------------------------------------------------- defect 1: docs/export.md
@pytest.mark.filterwarnings("ignore:split. no sample")  # one CT: all train, as intended here
def test_export_reproducibility_snippet_rebuilds_a_sample_of_a_store_made_with_count_and_seed(tmp_path, monkeypatch):
    """QA: ``render_sample(plan_dataset(load_config(...))[i])`` gave another sample than the stored one when the store
    was made with ``--count`` / ``--seed`` (as the doc tells readers to): the snippet now plans with what the store
    records."""
    _small_dataset(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert run_cli(["export", "dataset.yaml", "-o", "data/ds.zarr", "--count", "5", "--seed", "3", "--no-progress",
                 "--no-preview"]) == 0
    (snippet,) = _code_blocks(_section(DOCS / "export.md", "Reproducibility"), "python")
    namespace: dict = {}
    exec(snippet.replace("1234", "4"), namespace)  # noqa: S102 - the doc's own code
    store = zarr.open_group("data/ds.zarr", mode="r")
    arrays = namespace["arrays"]
    for name in ("mask", "contrast", "contrast_clean", "dsa_target", "iodine_mg_per_cm2", "vessel_mask"):
        np.testing.assert_array_equal(arrays[name], np.asarray(store[name][4]), err_msg=name)


# ----------------------------------------------------------------------------- defect 2: docs/dsa.md §7
def test_dsa_python_api_snippet_runs_and_sees_its_vessels():
    """QA: the first Python API snippet used undefined names, and a generated tree left in the generator's frame is
    outside every view: the snippet is complete and its tree is placed in the patient."""
    snippet = _code_blocks(_section(DOCS / "dsa.md", "7. Python API"), "python")[0]
    namespace: dict = {}
    exec(snippet, namespace)  # noqa: S102 - the doc's own code
    sample = namespace["sample"]
    assert sample["vessel_mask"].any() and sample["dsa_target"].max() > 0.1  # an iodine line integral, -ln units
    assert sample["mask"].shape == (512, 512)


# ----------------------------------------------------------------------------- defect 3: --detector-dose
def test_dsa_detector_dose_works_without_bit_depth_and_refuses_an_explicit_one(ct_path, tmp_path, capsys):
    """QA: ``--detector-dose 2`` alone failed ("use it with --bit-depth 0") since --bit-depth defaulted to 16."""
    out = tmp_path / "dose"
    code = run_cli(["dsa", "--ct", str(ct_path), "--vessels", "lsystem", "--seed", "2", "--detector-dose", "2",
                 "-o", str(out), *FAST])
    assert code == 0, capsys.readouterr().err
    view = np.load(out / "view_000.npz")
    assert view["detector_air_kerma_ugy"] == pytest.approx(2.0, rel=1e-6)  # the automatic exposure's target
    assert json.loads(str(view["scene_json"]))["detector"]["bit_depth"] is None  # not quantised
    assert not np.allclose(view["mask"] * 1e3, np.round(view["mask"] * 1e3))  # float frames, not a staircase
    capsys.readouterr()
    refused = tmp_path / "refused"
    code = run_cli(["dsa", "--ct", str(ct_path), "--vessels", "lsystem", "--detector-dose", "2", "--bit-depth", "16",
                 "-o", str(refused), *FAST])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: --bit-depth 16: --detector-dose"), err
    assert not refused.exists()


def test_dsa_help_gives_the_bit_depth_under_detector_dose():
    helptext = " ".join(CliRunner().invoke(app, ["dsa", "--help"], env={"COLUMNS": "300"}).output.split())
    assert "Default 16, or 0 with --detector-dose" in helptext


# ----------------------------------------------------------------------------- defect 4: the README's pose caption
def test_geometry_figure_names_its_pose_as_pose_label_does(experiment_script, monkeypatch, tmp_path):
    """QA: the pictures said "RAO 20 / CAU 10" for alpha 20, beta 10, a pose whose clinical angles are
    RAO 20.3 / CAU 9.4 (docs/geometry.md): the script names it by ``pose_label`` and the README says the same."""
    pytest.importorskip("pyvista")
    import ddsa_sim.cli.dsa as dsa_cli
    import ddsa_sim.scene as scene_module
    from ddsa_sim.viz.scene3d import pose_label

    script = experiment_script("make_geometry_figure.py")
    titles: list[str] = []

    class Tree:
        def bounds_mm(self):
            return np.zeros(3), np.zeros(3)

    class Frames:
        contrast = np.zeros((1, 2, 2))

    monkeypatch.setattr(dsa_cli, "scene_spec", lambda *a, **k: None)
    monkeypatch.setattr(scene_module, "build_scene", lambda spec: type("S", (), {"vessels": [type("V", (), {
        "tree": Tree()})()], "ct": None})())
    monkeypatch.setattr(scene_module, "render_frames", lambda scene, carm, rng: Frames())
    monkeypatch.setattr(dsa_cli, "save_strip", lambda frames, out, title: titles.append(title))
    monkeypatch.setattr(script, "save_scene_png", lambda *a, title, **k: titles.append(title))
    script.dsa_pictures(tmp_path / "scene.png", tmp_path / "strip.png")
    label = pose_label(CArm(alpha_deg=20.0, beta_deg=10.0))
    assert label == "RAO 20.3 / CAU 9.4"
    assert len(titles) == 2 and all(label in t and "RAO 20 /" not in t for t in titles), titles
    readme = (REPO / "README.md").read_text()
    assert label in readme and "at RAO 20 / CAU 10" not in readme


# ----------------------------------------------------------------------------- defect 5: usage gaps
def test_geometry_doc_project_and_sweep_examplesrun_cli(ct_path, tmp_path, monkeypatch):
    """QA: `project` and `sweep` were in README's table only: docs/geometry.md shows them, and each example runs
    (on a small CT instead of the builtin one, with a tiny detector)."""
    blocks = _code_blocks(_section(DOCS / "geometry.md", "DRRs from the command line"), "bash")
    commands = [shlex.split(c) for c in blocks[0].replace("\\\n", " ").splitlines() if c.strip()]
    assert {c[1] for c in commands} == {"project", "sweep"}
    monkeypatch.chdir(tmp_path)
    for argv in commands:
        argv = [str(ct_path) if a == "builtin:chest-ct" else a for a in argv[1:]]
        for flag, value in (("--detector", "8x8"), ("--pixel-mm", "40")):
            argv[argv.index(flag) + 1] = value
        assert run_cli(argv) == 0, argv
        out = Path(argv[argv.index("-o") + 1])
        assert (out / "view_000.npz").is_file()
        if argv[0] == "sweep":
            views = json.loads((out / "poses.json").read_text())["views"]
            expected = int(argv[argv.index("--random") + 1]) if "--random" in argv else 9  # the doc's 3 x 3 grid
            assert len(views) == expected and (out / "contact_sheet.png").is_file()


def test_every_documented_project_command_names_its_ct():
    """QA: docs/deepdrr_migration.md wrote `ddsa-sim project --alpha 30 --beta 10`, without the required CT."""
    for doc in [REPO / "README.md", *DOCS.glob("*.md")]:
        for match in re.finditer(r"ddsa-sim (project|sweep) (\S+)", doc.read_text()):
            assert match.group(2).startswith("--help") or not match.group(2).startswith("-"), \
                f"{doc.name}: {match.group(0)}"


def test_dsa_synopsis_lists_every_option_of_the_command():
    """QA: the synopsis of docs/dsa.md §6 lacked ten options of `ddsa-sim dsa --help`."""
    import typer

    synopsis = _code_blocks(_section(DOCS / "dsa.md", "6. Command line"))[0]
    command = typer.main.get_command(app).commands["dsa"]
    def listed(flag: str) -> bool:
        return re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", synopsis) is not None

    missing = [p.opts for p in command.params if p.opts and p.opts[0].startswith("-") and p.name != "help"
               and not any(listed(flag) for flag in p.opts + p.secondary_opts)]  # -o for --out is listed
    assert not missing, missing


def test_reader_study_help_says_runs_go_to_make():
    helptext = " ".join(CliRunner().invoke(app, ["reader-study", "--help"], env={"COLUMNS": "300"}).output.split())
    assert "`ddsa-sim reader-study RUNS... -o DIR` is `ddsa-sim reader-study make RUNS... -o DIR`" in helptext


# ----------------------------------------------------------------------------- defect 6: export into a store
def test_export_into_an_existing_store_refuses_before_any_warning(tmp_path):
    """QA: a second `ddsa-sim export ... -o STORE` printed the split warning (twice) before its refusal: the
    refusal now comes first, alone, and the store is untouched."""
    _small_dataset(tmp_path)
    argv = [sys.executable, "-m", "ddsa_sim.cli", "export", "dataset.yaml", "-o", "ds.zarr", "--count", "2",
            "--no-progress", "--no-preview"]
    first = subprocess.run(argv, capture_output=True, text=True, cwd=tmp_path, env=ENV)
    assert first.returncode == 0, first.stderr
    assert first.stderr.count("warning: split: no sample in 'val' or 'test'") == 1  # the run it refuses warns
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "ds.zarr").rglob("*")}
    again = subprocess.run(argv, capture_output=True, text=True, cwd=tmp_path, env=ENV)
    assert again.returncode == 2
    assert again.stderr.splitlines() == ["error: ds.zarr: already exists; use --resume to continue it, or choose "
                                         "another output"]
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "ds.zarr").rglob("*")} == before
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("x")
    argv[argv.index("ds.zarr")] = "other"
    other = subprocess.run(argv, capture_output=True, text=True, cwd=tmp_path, env=ENV)
    assert other.returncode == 2 and other.stderr.splitlines() == [
        "error: other: already exists and is not a dataset store; choose another output"]
