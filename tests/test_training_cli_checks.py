"""Bad input to ``train`` / ``evaluate`` is one line naming the flag or config field, before any work or any file is
written; a run that fails before its first step leaves nothing that blocks the corrected command."""

import pytest
import typer
import yaml
from typer.testing import CliRunner

from ddsa_sim import InputError
from ddsa_sim.cli.train import register
from ddsa_sim.training import loop
from ddsa_sim.training.config import parse_config
from ddsa_sim.training.synthetic import write_synthetic_store

TINY = {
    "seed": 1,
    "num_threads": 1,
    "device": "cpu",
    "data": {"crop_size": 32, "patch_size": 32, "batch_size": 2, "in_memory": True, "max_val_samples": 1,
             "norm_samples": 2},
    "model": {"base_channels": 4, "depth": 2},
    "optim": {"max_steps": 2, "val_every": 100, "ckpt_every": 100},
}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return write_synthetic_store(tmp_path_factory.mktemp("store") / "s.zarr", splits={"train": 2, "val": 1},
                                 per_ct=2, size=32)


@pytest.fixture()
def app():
    app = typer.Typer()
    register(app)
    return app


def _error_line(result) -> str:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.mark.parametrize("name", ["grid.json", "folder"])
def test_evaluate_checks_out_png_before_any_work(app, tmp_path, name):
    """The checkpoint given does not exist: the --out-png error shows it was checked first (before: the whole
    evaluation ran, then a traceback from the picture writer lost its metrics)."""
    (tmp_path / "folder").mkdir()
    r = CliRunner().invoke(app, ["evaluate", str(tmp_path / "none.pt"), "--data", str(tmp_path / "none.zarr"),
                                 "--out-png", str(tmp_path / name)])
    line = _error_line(r)
    assert line.startswith(f"error: --out-png: {tmp_path / name}: ")
    assert ("is a folder" if name == "folder" else "not a picture file name") in line


def test_evaluate_help_names_all_four_blocks(app):
    r = CliRunner().invoke(app, ["evaluate", "--help"], terminal_width=200)
    text = " ".join(r.output.split())
    assert r.exit_code == 0 and "known-anatomy subtraction" in text and "all-zero image" in text


@pytest.mark.parametrize("noise, message", [
    ({"photons_range": [-5, 10]}, "photons_range must be 0 < low <= high, got [-5.0, 10.0]"),
    ({"photons_range": [75000, 30000]}, "photons_range must be 0 < low <= high"),
    ({"blur_sigma_range": [-1, -0.5]}, "blur_sigma_range must be 0 < low <= high"),
    ({"blur_sigma_range": [0, 0.5]}, "blur_sigma_range must be 0 < low <= high"),
])
def test_noise_injection_ranges_are_checked(noise, message):
    with pytest.raises(InputError, match=r"^cfg\.yaml: data\.noise: .*" + message.replace("[", r"\[")):
        parse_config({"data": {"noise": noise}}, "cfg.yaml")


def test_a_bad_noise_range_is_refused_before_the_run_folder_is_made(app, store, tmp_path):
    cfg = tmp_path / "neg.yaml"
    cfg.write_text(yaml.safe_dump({**TINY, "data": {**TINY["data"], "noise": {"photons_range": [-5, 10]}}}))
    r = CliRunner().invoke(app, ["train", str(cfg), "--data", str(store), "-o", str(tmp_path / "run")])
    assert "data.noise: Value error, photons_range" in _error_line(r)
    assert not (tmp_path / "run").exists()


def test_a_run_that_fails_in_its_first_step_leaves_no_folder_in_the_way(app, store, tmp_path, monkeypatch):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(TINY))
    run = tmp_path / "run"

    def broken(*args, **kwargs):
        raise RuntimeError("a failure inside the first step")

    with monkeypatch.context() as m:
        m.setattr(loop, "make_training_batch", broken)
        with pytest.raises(RuntimeError, match="first step"):
            loop.run_training(parse_config(TINY), run, store=store, progress=False)
    assert not run.exists()
    # the same command again trains
    r = CliRunner().invoke(app, ["train", str(cfg), "--data", str(store), "-o", str(run)])
    assert r.exit_code == 0, r.output


def test_max_steps_names_the_flag(app, tmp_path):
    r = CliRunner().invoke(app, ["train", str(tmp_path / "none.yaml"), "--max-steps", "0", "-o", str(tmp_path / "r")])
    assert _error_line(r) == "error: --max-steps: must be >= 1, got 0"


@pytest.mark.parametrize("field", ["data.store", "init_from"])
def test_config_paths_that_do_not_exist_name_the_config_and_field(app, store, tmp_path, monkeypatch, field):
    """Relative paths of a training config are read from the current folder: one that exists only beside the config
    is named, with the path to give."""
    folder = tmp_path / "cfgs"
    folder.mkdir()
    (folder / "ds.zarr").mkdir()  # a store beside the config, not in the current folder
    (folder / "best.pt").write_bytes(b"")
    cfg = folder / "c.yaml"
    body = {**TINY, "data": {**TINY["data"], "store": "ds.zarr"}} if field == "data.store" else \
        {**TINY, "init_from": "best.pt"}
    cfg.write_text(yaml.safe_dump(body))
    monkeypatch.chdir(tmp_path)
    args = ["train", str(cfg), "-o", str(tmp_path / "run")] + (["--data", str(store)] if field == "init_from" else [])
    line = _error_line(CliRunner().invoke(app, args))
    value = "ds.zarr" if field == "data.store" else "best.pt"
    assert line.startswith(f"error: {cfg}: {field}: {value}: ")
    assert f"read from the current folder, {tmp_path}; {folder / value} exists: give that path" in line
    assert not (tmp_path / "run").exists()
