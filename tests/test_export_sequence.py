"""Sequence export (store format 3): round trip through the scene renderer, training, inspect and pictures."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from ddsa_sim import InputError
from ddsa_sim.cli import app
from ddsa_sim.export.config import load_config
from ddsa_sim.export.format import FRAME_ARRAYS, IMAGE_ARRAYS, sample_checksum
from ddsa_sim.export.inspect import inspect_store, sample_png
from ddsa_sim.export.plan import plan_dataset
from ddsa_sim.export.runner import run_export
from ddsa_sim.export.sample import CTCache, render_sample
from ddsa_sim.export.store import open_store, read_sample

TIMES = [0.1, 0.3, 1.5]
SIZE = 40


def write_chest(folder: Path) -> Path:
    """A water cylinder (5 mm voxels, axis along z) with lungs (-800 HU) in its upper half and a bone rod."""
    hu = np.full((SIZE, SIZE, SIZE), -1000.0, np.float32)
    i, j, k = np.indices(hu.shape)
    c = (SIZE - 1) / 2
    body = (i - c) ** 2 + (j - c) ** 2 < (0.45 * SIZE) ** 2
    hu[body] = 0.0
    hu[body & (k > SIZE // 2) & (np.abs(i - c) > 3)] = -800.0
    hu[(i - c - 8) ** 2 + (j - c) ** 2 < 4] = 1000.0
    aff = np.diag([5.0, 5.0, 5.0, 1.0])
    aff[:3, 3] = -c * 5.0
    path = folder / "chest.nii.gz"
    nib.save(nib.Nifti1Image(hu, aff), str(path))
    return path


def write_config(folder: Path, **extra) -> Path:
    cfg = {
        "cts": [{"path": str(write_chest(folder))}],
        "vessels": {"per_ct": 1, "sources": [{"generator": "lsystem", "params": {
            "iterations": 3, "root_diameter_mm": 4.0}}]},
        "placement": {"mode": "pose", "jitter_mm": 0.0},
        "pose": {"alpha_deg": 0.0, "beta_deg": 0.0},
        "detector": {"rows": 48, "cols": 48, "pixel_mm": 5.0, "binning": 1},
        "effects": {"noise": True, "scatter": False, "motion": "cardiorespiratory"},
        "sequence": {"frames": len(TIMES), "times_s": TIMES, "mask_time_s": 0.0},
        "output": {"crop": [40, 44]},
        "count": 2,
        "seed": 5,
        "renderer_options": {"vessel_spacing_mm": 0.5},
        **extra,
    }
    path = folder / "seq.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    base = tmp_path_factory.mktemp("seq")
    cfg = load_config(write_config(base))
    result = run_export(cfg, base / "seq.zarr", progress=False)
    return cfg, base / "seq.zarr", result


def test_sequence_store_layout_times_and_regeneration(exported):
    cfg, path, result = exported
    assert result.written == 2
    root = open_store(path)
    assert root.attrs["format_version"] == 3 and root.attrs["frames"] == 3
    for name in IMAGE_ARRAYS:
        expected = (2, 3, 40, 44) if name in FRAME_ARRAYS else (2, 40, 44)
        assert root[name].shape == expected and root[name].chunks == (1, *expected[1:]), name
    assert np.array_equal(root["meta/frame_times_s"][:], [TIMES, TIMES])
    assert np.array_equal(root["meta/mask_time_s"][:], [0.0, 0.0])
    spec = plan_dataset(cfg)[1]
    assert spec.frames == 3 and spec.frame_times_s == tuple(TIMES) and set(spec.motion_params) == {
        "heart_rate_bpm", "cardiac_longitudinal_mm", "cardiac_radial_mm", "breathing_period_s", "diaphragm_amplitude_mm"}
    stored, meta = read_sample(root, 1)
    fresh = render_sample(spec, CTCache())  # alone, on a fresh cache: bit for bit the stored sample
    for name in IMAGE_ARRAYS:
        assert stored[name].tobytes() == fresh[name].tobytes(), name
    assert meta["checksum"] == sample_checksum(fresh)
    # the bolus fills over the frames: less iodine early than late
    iodine = stored["iodine_mg_per_cm2"].astype(np.float64).sum(axis=(1, 2))
    assert iodine[0] < iodine[-1]
    # each frame's target is the iodine alone: 0 wherever no iodine is projected
    assert np.all(stored["dsa_target"][stored["iodine_mg_per_cm2"] == 0] == 0)


def test_training_reads_every_frame_as_a_pair(exported):
    from ddsa_sim.training.data import ZarrDDSADataset

    _, path, _ = exported
    root = open_store(path)
    for verify in ("refuse", "off"):
        ds = ZarrDDSADataset(path, "train", verify=verify)
        assert len(ds) == 2 * 3 and ds.frames == 3
        for i in (0, 4):
            j, k = int(ds.indices[i]), int(ds.frame_index[i])
            assert (j, k) == (i // 3, i % 3)
            item = ds[i]
            assert item["dsa_target"].shape == (1, 40, 44)
            assert np.array_equal(item["dsa_target"][0].numpy(), root["dsa_target"][j, k])
            assert np.array_equal(ds.dsa_target(i), root["dsa_target"][j, k])  # that frame alone
            assert np.array_equal(item["mask"][0].numpy(), root["mask"][j])
            assert ds.meta(i)["time_s"] == TIMES[k] and ds.meta(i)["frame"] == k
    # a subset is spread over the split, first to last item: both samples' frames, not the first sample's
    subset = ZarrDDSADataset(path, "train", max_samples=4)
    assert len(subset) == 4 and list(zip(subset.indices, subset.frame_index)) == [(0, 0), (0, 2), (1, 0), (1, 2)]


def test_inspect_and_pictures_of_a_sequence_store(exported, tmp_path):
    _, path, _ = exported
    report = inspect_store(path)
    assert report.ok and report.frames == 3 and "sequences of 3 frames" in report.format()
    res = CliRunner().invoke(app, ["inspect", str(path)])
    assert res.exit_code == 0 and "2 sample checksum(s) OK" in res.output, res.output
    png, tif = sample_png(path, 0, tmp_path / "s0.png")
    assert png.stat().st_size > 1000
    import tifffile

    assert tifffile.imread(tif).shape == (3, 40, 44)
    assert (path / "preview.png").stat().st_size > 1000


def test_sequence_config_errors(tmp_path):
    with pytest.raises(InputError, match=r"sequence: times_s has 2 values for 3 frames"):
        load_config(write_config(tmp_path, sequence={"frames": 3, "times_s": [0.1, 0.2]}))
    with pytest.raises(InputError, match=r"sequence: give times_s or fps"):
        load_config(write_config(tmp_path, sequence={"frames": 2, "times_s": [0.1, 0.2], "fps": 4}))
    cfg = load_config(write_config(tmp_path, sequence={"frames": 3, "fps": 4, "start_s": 0.5}))
    assert plan_dataset(cfg)[0].frame_times_s == (0.5, 0.75, 1.0)


def test_single_frame_sample_with_respiratory_motion(tmp_path):
    """Without `sequence` a sample is one fully filled frame (time NaN) at a random breathing state."""
    cfg = load_config(write_config(tmp_path, sequence=None, count=1,
                                   effects={"noise": False, "scatter": False, "motion": "respiratory"}))
    spec = plan_dataset(cfg)[0]
    assert spec.frames == 0 and set(spec.motion_params) == {"breathing_period_s", "diaphragm_amplitude_mm"}
    a = render_sample(spec, CTCache())
    assert a["dsa_target"].shape == (40, 44) and np.isnan(a["frame_times_s"]).all() and a["mask_time_s"] == 0.0
    assert np.all(a["dsa_target"][a["iodine_mg_per_cm2"] == 0] == 0)
    assert np.abs((a["contrast"] - a["mask"]) - a["dsa_target"]).max() > 1e-3  # misregistered background


def test_config_motion_kinds_are_the_scene_s():
    from typing import get_args

    from ddsa_sim.export.config import PHYSIOLOGICAL_MOTION_FIELDS, Effects
    from ddsa_sim.scene.motion import CARDIAC_KINDS, MOTION_KINDS, RESPIRATORY_KINDS, MotionParams

    assert get_args(Effects.model_fields["motion"].annotation) == MOTION_KINDS
    assert set(PHYSIOLOGICAL_MOTION_FIELDS) == {*CARDIAC_KINDS, *RESPIRATORY_KINDS}
    for kind, fields in PHYSIOLOGICAL_MOTION_FIELDS.items():  # every drawn field is a MotionParams field
        MotionParams(kind, **dict.fromkeys(fields, 1.0))


def test_interrupted_sequence_store_resumes_bit_for_bit(exported, tmp_path):
    import shutil

    import zarr

    cfg, path, _ = exported
    copy = tmp_path / "resumed.zarr"
    shutil.copytree(path, copy)
    root = zarr.open_group(str(copy), mode="r+")
    root["meta/complete"][1] = 0  # as a killed export leaves a slot
    root["contrast"][1] = np.zeros((3, 40, 44), np.float32)
    res = run_export(cfg, copy, resume=True, progress=False, preview=False)
    assert res.skipped == 1 and res.written == 1
    a, b = open_store(path), open_store(copy)
    for name in IMAGE_ARRAYS:
        assert a[name][:].tobytes() == b[name][:].tobytes(), name
    assert np.array_equal(a["meta/frame_times_s"][:], b["meta/frame_times_s"][:])


def test_detector_lag_of_the_config_reaches_every_frame_but_not_the_targets(tmp_path):
    cfg = load_config(write_config(tmp_path, count=1, detector={"rows": 48, "cols": 48, "pixel_mm": 5.0, "binning": 1,
                                                                 "lag": [0.2, 0.1]},
                                   effects={"noise": False, "scatter": False, "motion": "none"}))
    spec = plan_dataset(cfg)[0]
    assert spec.detector_lag == (0.2, 0.1) and spec.to_dict()["detector_lag"] == [0.2, 0.1]
    lag, free = render_sample(spec, CTCache()), render_sample(dataclasses.replace(spec, detector_lag=()), CTCache())
    # the frames the mask and earlier contrast frames leave behind; targets and mask are the frames' own
    intensity = np.exp(-free["contrast"].astype(np.float64))
    mask = np.exp(-free["mask"].astype(np.float64))
    history = [mask, mask, mask, *intensity]
    expected = [0.7 * history[k] + 0.2 * history[k - 1] + 0.1 * history[k - 2] for k in range(3, 6)]
    np.testing.assert_allclose(np.exp(-lag["contrast"].astype(np.float64)), expected, rtol=1e-6)
    for name in ("mask", "dsa_target", "iodine_mg_per_cm2", "vessel_mask"):
        assert np.array_equal(lag[name], free[name]), name
    with pytest.raises(InputError, match=r"detector: .*lag: the frame lags sum to 1"):
        load_config(write_config(tmp_path, detector={"rows": 48, "cols": 48, "pixel_mm": 5.0, "lag": [0.5, 0.5]}))
