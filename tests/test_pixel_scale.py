"""Pixel scale: the spacing at the isocenter from a projection matrix and from XA headers, the network run on
frames resampled to its training scale (``ddsa-sim infer`` / ``evaluate``), and its record in checkpoints.

Truths: the C-arm's own parameters (``pixel * SOD / SDD``), the DICOM tags written, the mean of a detector's
intensities over a coarse pixel, and the width of an analytic tube.
"""

import json
import re

import numpy as np
import pydicom
import pytest
import torch
import typer
from pydicom.dataset import Dataset
from typer.testing import CliRunner
from xa_helpers import phantom, tiny_checkpoint, write_multiframe

from ddsa_sim import InputError
from ddsa_sim.angio.xa import read_run
from ddsa_sim.cli.train import register
from ddsa_sim.export.format import META_GROUP
from ddsa_sim.geometry import CArm
from ddsa_sim.geometry.pixel_scale import pixel_spacing_at
from ddsa_sim.training.checkpoint import load_checkpoint, load_model
from ddsa_sim.training.config import parse_config
from ddsa_sim.training.data import ZarrDDSADataset
from ddsa_sim.training.evaluate import evaluate_checkpoint
from ddsa_sim.training.infer import Frames, predict, to_log_domain
from ddsa_sim.training.loop import run_training
from ddsa_sim.training.normalization import Normalization
from ddsa_sim.training.pixel_grid import network_dsa_on_grid, network_shape, to_network_grid
from ddsa_sim.training.synthetic import write_synthetic_store

#: the XA phantom's tags (tests/xa_helpers.py): ImagerPixelSpacing 0.154 mm, SOD 785 mm, SDD 1195 mm
PHANTOM_PIXEL_MM = 0.154 * 785 / 1195


@pytest.mark.parametrize("alpha,beta,gamma,binning", [(0, 0, 0, 1), (30, -20, 40, 6), (-35, 100, 180, 2)])
def test_spacing_at_the_isocenter_is_the_detector_pixel_over_the_magnification(alpha, beta, gamma, binning):
    iso = (12.0, -40.0, 300.0)
    c = CArm(isocenter_mm=iso, alpha_deg=alpha, beta_deg=beta, gamma_deg=gamma, sensor_height=768,
             sensor_width=768).binned(binning)
    expected = 0.194 * binning * 530.0 / 1020.0
    assert pixel_spacing_at(c.projection_matrix, np.array(iso)) == pytest.approx(expected, rel=1e-12)
    # halfway between source and isocenter the same pixel covers half as much
    halfway = (c.source_mm + np.array(iso)) / 2
    assert pixel_spacing_at(c.projection_matrix, halfway) == pytest.approx(expected / 2, rel=1e-9)


def test_network_shape_keeps_the_field_and_leaves_matching_frames_alone():
    assert network_shape((384, 381), (0.2, 0.2), 0.6) == (128, 127)
    assert network_shape((100, 90), (0.3, 0.6), 0.6) == (50, 90)  # anisotropic pixels
    assert network_shape((128, 128), (0.6048, 0.6048), 0.605) is None  # within 1 %
    assert network_shape((64, 64), (1.2, 1.2), 0.6) == (128, 128)


def test_frames_are_binned_as_intensities():
    rng = np.random.default_rng(0)
    fine = rng.uniform(0.5, 6.0, (1, 1, 12, 18))  # -ln values of a 3 x 3-binnable frame
    coarse = to_network_grid(torch.from_numpy(fine), (4, 6))[0, 0].numpy()
    # a coarse detector pixel receives the mean intensity of the nine fine ones it covers
    expected = -np.log(np.exp(-fine[0, 0]).reshape(4, 3, 6, 3).mean(axis=(1, 3)))
    np.testing.assert_allclose(coarse, expected, rtol=1e-12)
    flat = torch.full((1, 1, 30, 30), 4.2, dtype=torch.float32)
    np.testing.assert_allclose(to_network_grid(flat, (10, 10)).numpy(), 4.2, rtol=1e-6)


class _Recorder(torch.nn.Module):
    """A 'network' whose output is its input (network units); remembers what it was given."""

    def forward(self, x):
        self.seen = x.clone()
        return x


def _fwhm(profile: np.ndarray) -> float:
    above = np.nonzero(profile >= profile.max() / 2)[0]
    return float(above[-1] - above[0] + 1)


def test_the_network_sees_a_vessel_at_its_training_width_and_answers_on_the_frame_grid():
    # a 6 mm wide vertical tube (circular profile) on a 0.2 mm grid: 30 px; at 0.6 mm the network sees 10 px
    x = (np.arange(300) + 0.5) * 0.2 - 30.0
    tube = 0.5 * np.sqrt(np.clip(1 - (x / 3.0) ** 2, 0, None))
    frame = torch.from_numpy(np.tile(1.0 + tube, (300, 1)))[None, None]
    model, norm = _Recorder(), Normalization()
    out = network_dsa_on_grid(model, norm, frame, network_shape((300, 300), (0.2, 0.2), 0.6))
    assert tuple(model.seen.shape[-2:]) == (100, 100)
    seen = model.seen[0, 0, 50].numpy() - 1.0
    assert abs(_fwhm(seen) - 6.0 / 0.6 * np.sqrt(3) / 2) <= 1.0  # FWHM of the circular profile, in 0.6 mm px
    assert tuple(out.shape[-2:]) == (300, 300)
    # the identity network's answer, brought back, is the frame seen through 0.6 mm pixels
    np.testing.assert_allclose(out[0, 0, 150].numpy()[::3].mean(), frame[0, 0, 150].numpy().mean(), atol=0.01)


def _ds_with(**tags) -> Dataset:
    ds = Dataset()
    for k, v in tags.items():
        setattr(ds, k, v)
    return ds


@pytest.mark.parametrize("tags,expected,source", [
    ({}, (PHANTOM_PIXEL_MM,) * 2, "ImagerPixelSpacing x DistanceSourceToPatient / DistanceSourceToDetector"),
    ({"DistanceSourceToPatient": None, "EstimatedRadiographicMagnificationFactor": "1.5"}, (0.154 / 1.5,) * 2,
     "ImagerPixelSpacing / EstimatedRadiographicMagnificationFactor"),
    ({"ImagerPixelSpacing": None, "PixelSpacing": [0.3, 0.25]}, (0.3, 0.25), "PixelSpacing"),
    ({"ImagerPixelSpacing": None}, None, None),
])
def test_xa_run_spacing_at_the_isocenter_from_its_tags(tmp_path, tags, expected, source):
    ds = write_multiframe(tmp_path / "run.dcm", phantom(12))
    for key, value in tags.items():
        if value is None:
            delattr(ds, key)
        else:
            setattr(ds, key, value)
    ds.save_as(tmp_path / "run.dcm", enforce_file_format=True)
    run = read_run(tmp_path / "run.dcm")
    assert run.pixel_mm == (None if expected is None else pytest.approx(expected, rel=1e-9))
    assert run.pixel_mm_from == source


def test_enhanced_xa_spacing_from_its_functional_groups(tmp_path):
    ds = write_multiframe(tmp_path / "run.dcm", phantom(12), enhanced=True)
    for key in ("DistanceSourceToPatient", "DistanceSourceToDetector"):
        delattr(ds, key)
    shared = Dataset()  # the X-Ray Geometry and Pixel Measures functional groups
    shared.XRayGeometrySequence = [_ds_with(DistanceSourceToIsocenter=700.0, DistanceSourceToDetector=1100.0)]
    shared.PixelMeasuresSequence = [_ds_with(PixelSpacing=[0.2, 0.2])]
    ds.SharedFunctionalGroupsSequence = [shared]
    ds.save_as(tmp_path / "run.dcm", enforce_file_format=True)
    run = read_run(tmp_path / "run.dcm")
    assert run.pixel_mm == pytest.approx((0.154 * 700 / 1100,) * 2)
    assert run.pixel_mm_from == "ImagerPixelSpacing x DistanceSourceToIsocenter / DistanceSourceToDetector"


def test_bad_spacing_is_one_line_naming_the_file(tmp_path):
    ds = write_multiframe(tmp_path / "run.dcm", phantom(12))
    ds.DistanceSourceToPatient = "0"
    ds.save_as(tmp_path / "run.dcm", enforce_file_format=True)
    with pytest.raises(InputError, match=r"run\.dcm: pixel spacing at the isocenter must be > 0"):
        read_run(tmp_path / "run.dcm")


@pytest.fixture(scope="module")
def app_ckpt(tmp_path_factory):
    app = typer.Typer()
    register(app)
    return app, tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", pixel_mm=0.3)


def test_infer_runs_the_network_at_its_training_scale(app_ckpt, tmp_path):
    app, ckpt = app_ckpt
    ph = phantom(12, shape=(60, 72))
    write_multiframe(tmp_path / "run.dcm", ph)
    model, norm, _, _ = load_model(ckpt)
    log = to_log_domain(Frames(ph.intensity, "dicom", 2**12 - 1.0, False))
    grid = (round(60 * PHANTOM_PIXEL_MM / 0.3), round(72 * PHANTOM_PIXEL_MM / 0.3))
    expected = {"resampled": predict(model, norm, log, torch.device("cpu"), grid=grid),
                "native": predict(model, norm, log, torch.device("cpu")),
                "given": predict(model, norm, log, torch.device("cpu"), grid=(120, 144))}
    assert np.abs(expected["resampled"] - expected["native"]).max() > 1e-3  # the grid changes the answer
    for name, options in (("resampled", []), ("native", ["--native-grid"]), ("given", ["--pixel-mm", "0.6"])):
        out = tmp_path / name
        r = CliRunner().invoke(app, ["infer", str(ckpt), str(tmp_path / "run.dcm"), "-o", str(out), *options])
        assert r.exit_code == 0, r.output
        info = json.loads((out / "run.json").read_text())
        assert info["model_pixel_mm"] == 0.3
        assert info["network_grid"] == {"resampled": list(grid), "native": None, "given": [120, 144]}[name]
        assert info["pixel_mm_from"] == ("--pixel-mm" if name == "given" else
                                         "ImagerPixelSpacing x DistanceSourceToPatient / DistanceSourceToDetector")
        ds = pydicom.dcmread(out / "network" / "dsa.dcm")
        values = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        assert values.shape == (6, 60, 72)
        assert np.abs(values - expected[name]).max() <= float(ds.RescaleSlope) / 2 + 1e-7


def test_infer_png_without_spacing_warns_and_bad_spacing_is_refused(app_ckpt, tmp_path):
    from PIL import Image

    app, ckpt = app_ckpt
    Image.fromarray(np.full((32, 32), 30000, np.uint16)).save(tmp_path / "f.png")
    with pytest.warns(UserWarning, match=r"f\.png: pixel spacing unknown.*--pixel-mm.*0\.3 mm"):
        from ddsa_sim.training.infer import infer_path

        infer_path(ckpt, tmp_path / "f.png", tmp_path / "o.png", progress=False)
    r = CliRunner().invoke(app, ["infer", str(ckpt), str(tmp_path / "f.png"), "-o", str(tmp_path / "o.png"),
                                 "--pixel-mm", "-1"])
    assert r.exit_code == 2 and "--pixel-mm must be > 0" in r.output


def _store_seen_by_a_carm(tmp_path):
    """A synthetic store whose samples get the geometry of C-arms with 1.2 mm detector pixels."""
    from ddsa_sim.export.store import open_store

    store = write_synthetic_store(tmp_path / "syn.zarr", splits={"train": 1, "val": 1, "test": 1}, per_ct=2, size=48)
    assert ZarrDDSADataset(store, "train").pixel_mm() is None  # phantoms without a C-arm
    meta = open_store(store, mode="r+")[META_GROUP]
    carms = [CArm(isocenter_mm=(0.0, 0.0, 10.0 * j), alpha_deg=5.0 * j, sensor_height=48, sensor_width=48,
                  pixel_mm=1.2) for j in range(meta["projection_matrix"].shape[0])]
    meta["projection_matrix"][:] = np.stack([c.projection_matrix for c in carms])
    meta["isocenter_mm"][:] = np.stack([c.isocenter_mm for c in carms])
    return store


def test_training_records_its_images_scale_and_evaluate_resamples_to_it(tmp_path):
    store = _store_seen_by_a_carm(tmp_path)
    cfg = parse_config({"seed": 0, "num_threads": 1, "model": {"base_channels": 4, "depth": 2},
                        "data": {"crop_size": 48, "patch_size": 32, "batch_size": 2, "in_memory": True},
                        "optim": {"max_steps": 2, "val_every": 2, "ckpt_every": 2}})
    run_training(cfg, tmp_path / "run", store=store, progress=False)
    trained_at = 1.2 * 530.0 / 1020.0
    assert load_checkpoint(tmp_path / "run" / "best.pt")["pixel_mm"] == pytest.approx(trained_at, rel=1e-12)
    same = evaluate_checkpoint(tmp_path / "run" / "best.pt", store, progress=False)
    assert same["network_grid"] is None and same["pixel_mm"] == pytest.approx(trained_at)
    # the same images at half the spacing: evaluate runs the network on them binned 2 x 2
    ckpt = load_checkpoint(tmp_path / "run" / "best.pt")
    ckpt["pixel_mm"] = 2 * trained_at
    torch.save(ckpt, tmp_path / "coarse.pt")
    coarse = evaluate_checkpoint(tmp_path / "coarse.pt", store, progress=False)
    native = evaluate_checkpoint(tmp_path / "coarse.pt", store, progress=False, native_grid=True)
    assert coarse["network_grid"] == [24, 24] and coarse["model_pixel_mm"] == pytest.approx(2 * trained_at)
    assert native["network_grid"] is None and native["network"]["psnr"] == pytest.approx(same["network"]["psnr"])
    assert coarse["network"]["psnr"] != pytest.approx(same["network"]["psnr"])


def test_evaluate_on_a_store_of_unknown_scale_warns_and_keeps_its_grid(tmp_path):
    store = write_synthetic_store(tmp_path / "syn.zarr", splits={"train": 1, "val": 1, "test": 1}, per_ct=2, size=48)
    ckpt = tiny_checkpoint(tmp_path / "tiny.pt", pixel_mm=0.3)
    with pytest.warns(UserWarning, match=r"syn\.zarr: pixel spacing unknown.*0\.3 mm"):
        res = evaluate_checkpoint(ckpt, store, progress=False)
    native = evaluate_checkpoint(ckpt, store, progress=False, native_grid=True)
    assert res["pixel_mm"] is None and res["network_grid"] is None
    assert res["network"]["psnr"] == pytest.approx(native["network"]["psnr"])


def test_pixel_scale_script_stamps_old_checkpoints_with_their_training_scale(experiment_script, tmp_path):
    script = experiment_script("duan/pixel_scale.py")
    store = _store_seen_by_a_carm(tmp_path)
    old = tiny_checkpoint(tmp_path / "run" / "best.pt")
    copy = script.stamped_copy(old, store, tmp_path)
    assert copy != old and load_checkpoint(copy)["pixel_mm"] == pytest.approx(1.2 * 530 / 1020)
    assert load_checkpoint(old)["pixel_mm"] is None  # the original is left as it was
    recorded = tiny_checkpoint(tmp_path / "new" / "best.pt", pixel_mm=0.3)
    assert script.stamped_copy(recorded, store, tmp_path) == recorded


@pytest.mark.parametrize("pixel_mm, needle", [
    ((0.001, 0.001), "resampling by 0.000826"),  # a spacing in m (or um typed as mm): a 1 x 1 grid
    ((50.0, 50.0), "resampling by 41.3"),  # 20 typed for 0.20: a 5290^2 grid, minutes a frame
    ((0.125, 0.125), "are 13 x 13 at the network's 1.21 mm, under 16 a side"),
])
def test_a_spacing_that_would_resample_absurdly_is_refused(pixel_mm, needle):
    """QA found: `infer --pixel-mm 0.001` ran the network on one pixel without a word, and `--pixel-mm 50` for a
    1.21 mm network ran 87 s per frame; both a unit typed wrong."""
    from ddsa_sim.training.pixel_grid import network_grid

    with pytest.raises(InputError, match=r"xa\.dcm: .*" + re.escape(needle)):
        network_grid((128, 128), pixel_mm, 1.21, name="xa.dcm")
    assert network_grid((128, 128), pixel_mm, 1.21, native_grid=True, name="xa.dcm") is None  # the way out it names
