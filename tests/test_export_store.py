"""Store, sample rendering, inspect: regeneration bit for bit, checksums catch corruption, memory guards."""

from __future__ import annotations

import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import zarr
from synthetic_renderer import render_synthetic
from typer.testing import CliRunner

from ddsa_sim import InputError
from ddsa_sim.cli import app
from ddsa_sim.export.config import config_from_dict
from ddsa_sim.export.format import (
    FORMAT_VERSION,
    IMAGE_ARRAYS,
    IMAGE_DTYPES,
    META_ARRAYS,
    SAMPLE_META_ARRAYS,
    exposed_field,
    meta_sample_shape,
    sample_checksum,
)
from ddsa_sim.export.inspect import CLUTTER_SIGMA_PX, inspect_store, vessel_conspicuity
from ddsa_sim.export.plan import plan_dataset
from ddsa_sim.export.runner import run_export
from ddsa_sim.export.sample import CTCache, render_sample
from ddsa_sim.export.store import create_store, open_store, read_sample, write_slot
from ddsa_sim.volumes.readers import peek_voxels, read_ct_with_labels


def write_cts(folder: Path, n: int = 2, size: int = 12) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(n):
        d = np.full((size, size, size), -1000.0, np.float32)
        d[2:-2, 2:-2, 2:-2] = 40.0 + 20 * k
        d[4:7, 4:7, 4:7] = 800.0
        nib.save(nib.Nifti1Image(d, np.diag([2.0, 2.0, 2.0, 1.0])), str(folder / f"ct{k}.nii.gz"))
    return str(folder / "ct*.nii.gz")


def small_config(glob: str, **extra):
    data = {
        "cts": [{"path": glob}],
        "vessels": {"per_ct": 2, "sources": [{"generator": "lsystem"}]},
        "detector": {"rows": 64, "cols": 64, "pixel_mm": 1.0, "binning": 2},
        "output": {"crop": [24, 32]},
        "effects": {"noise": True, "motion": "rigid"},
        "count": 8,
        "seed": 11,
        "renderer": "synthetic_renderer:render_synthetic",
    }
    data.update(extra)
    return config_from_dict(data)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    base = tmp_path_factory.mktemp("store")
    cfg = small_config(write_cts(base / "cts"))
    result = run_export(cfg, base / "ds.zarr", progress=False)
    return cfg, base / "ds.zarr", result


def test_store_layout_and_attrs(exported):
    cfg, path, result = exported
    assert result.written == 8 and result.skipped == 0
    assert result.preview is not None and result.preview.stat().st_size > 1000
    with warnings.catch_warnings():  # the preview beside the arrays is no stray object to warn about
        warnings.simplefilter("error")
        root = open_store(path)
    assert root.attrs["format"] == "ddsa-sim-dataset" and root.attrs["format_version"] == FORMAT_VERSION == 3
    assert root.attrs["n_samples"] == 8 and root.attrs["image_shape"] == [24, 32]
    assert root.attrs["config"] == cfg.resolved()
    for name in IMAGE_ARRAYS:
        assert root[name].shape == (8, 24, 32) and root[name].chunks == (1, 24, 32)
    assert root["vessel_mask"].dtype == np.uint8 and root["mask"].dtype == np.float32
    assert root["meta/projection_matrix"].shape == (8, 3, 4)
    assert set(root["meta"].array_keys()) == set(META_ARRAYS)
    assert np.all(root["meta/complete"][:] == 1)


def test_sample_regenerated_alone_is_bit_identical(exported):
    cfg, path, _ = exported
    root = open_store(path)
    spec = plan_dataset(cfg)[5]
    fresh = render_sample(spec, CTCache())  # new cache: nothing shared with the export
    stored, meta = read_sample(root, 5)
    for name in IMAGE_ARRAYS:
        assert stored[name].dtype == fresh[name].dtype
        assert stored[name].tobytes() == fresh[name].tobytes(), name
    assert meta["checksum"] == sample_checksum(fresh)
    assert meta["seed"] == spec.seed and meta["ct_id"] == spec.ct_id and meta["split"] == spec.split
    assert meta["alpha_deg"] == spec.alpha_deg and meta["vessel_id"] == spec.vessel_id
    assert np.array_equal(meta["projection_matrix"], fresh["projection_matrix"])
    # physics-agnostic invariants of the format
    assert np.array_equal(fresh["vessel_mask"], (fresh["iodine_mg_per_cm2"] > 0).astype(np.uint8))
    assert not np.array_equal(fresh["mask"], fresh["contrast"] - fresh["dsa_target"])  # noise is on


def test_projection_matrix_accounts_for_crop(exported):
    _, path, _ = exported
    root = open_store(path)
    p = root["meta/projection_matrix"][0]
    iso = root["meta/isocenter_mm"][0]
    uv = p @ np.append(iso, 1.0)
    # the isocenter projects to the centre of the binned detector (32, 32), i.e. (16, 12) after the crop
    assert np.allclose(uv[:2] / uv[2], [16.0, 12.0], atol=1e-6)
    # a 2 mm binned pixel at the isocenter: 2 mm x SOD / SDD (MobileCArm's 530 / 1020 mm), whatever the crop
    from ddsa_sim.training.data import ZarrDDSADataset

    splits = {str(s) for s in root["meta/split"][:]}
    assert all(ZarrDDSADataset(path, s).pixel_mm() == pytest.approx(2.0 * 530 / 1020, rel=1e-12) for s in splits)


def test_inspect_ok_and_cli(exported):
    _, path, _ = exported
    report = inspect_store(path)
    assert report.ok and report.n_complete == 8
    assert sum(report.samples_per_split.values()) == 8
    # conspicuity: per split, over the images with vessels, the median of each image's ratios
    root = open_store(path)
    splits = [str(s) for s in root["meta/split"][:]]
    fields = [exposed_field(root["meta/collimation"][i] if "collimation" in root["meta"] else None,
                            root["contrast"].shape[-2:]) for i in range(8)]
    for split, c in report.conspicuity.items():
        ratios = [r for i in range(8) if splits[i] == split and (r := vessel_conspicuity(
            *(root[k][i] for k in ("contrast", "contrast_clean", "dsa_target", "vessel_mask")), fields[i]))
            is not None]
        assert c["n_images"] == len(ratios) > 0
        assert c["signal_to_clutter"] == pytest.approx(np.median([r[0] for r in ratios]))
        assert c["signal_to_noise"] == pytest.approx(np.median([r[1] for r in ratios]))
    res = CliRunner().invoke(app, ["inspect", str(path)])
    assert res.exit_code == 0, res.output
    assert "8/8 complete" in res.output and "checksum(s) OK" in res.output
    assert "signal/clutter" in res.output
    # 2 mm binned detector pixels at SOD / SDD = 530 / 1020 (the crop does not change them)
    assert report.pixel_mm == pytest.approx(2.0 * 530 / 1020, rel=1e-12)
    assert "images 24x32 of 1.039 mm at the isocenter" in res.output


def _copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_inspect_detects_overwritten_chunk_bytes(exported, tmp_path):
    _, path, _ = exported
    bad = _copy(path, tmp_path / "bad.zarr")
    chunk = bad / "contrast" / "c" / "3" / "0" / "0"
    raw = bytearray(chunk.read_bytes())
    mid = len(raw) // 2
    raw[mid:mid + 8] = bytes(b ^ 0xFF for b in raw[mid:mid + 8])
    chunk.write_bytes(bytes(raw))
    report = inspect_store(bad)
    assert [i for i, _ in report.corrupted] == [3]
    res = CliRunner().invoke(app, ["inspect", str(bad)])
    assert res.exit_code == 1 and "#3" in res.output


def test_inspect_detects_valid_chunk_with_wrong_data(exported, tmp_path):
    """A well-formed chunk with other values (decodes fine) is caught by the checksum."""
    _, path, _ = exported
    bad = _copy(path, tmp_path / "bad2.zarr")
    arr = zarr.open_array(str(bad / "dsa_target"), mode="r+")
    arr[6] = arr[6] + np.float32(1e-3)
    report = inspect_store(bad)
    assert report.corrupted == [(6, "checksum mismatch")]


def test_existing_store_and_resume_with_other_config_refused(exported, tmp_path):
    cfg, path, _ = exported
    with pytest.raises(InputError, match="already exists; use --resume"):
        run_export(cfg, path, progress=False)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("x")  # not a store: nothing --resume could continue
    with pytest.raises(InputError, match="notes: already exists and is not a dataset store; choose another output"):
        run_export(cfg, tmp_path / "notes", progress=False)
    (tmp_path / "made_for_it").mkdir()  # an empty folder made for the store is where it goes
    assert run_export(cfg, tmp_path / "made_for_it", progress=False, preview=False).written == 8
    other = small_config(cfg.cts[0].path, seed=12)
    with pytest.raises(InputError, match=r"different config \(differs in: seed\)"):
        run_export(other, path, resume=True, progress=False)
    # resuming a complete store with the same config writes nothing
    res = run_export(cfg, path, resume=True, progress=False, preview=False)
    assert res.written == 0 and res.skipped == 8
    # nor with fewer CTs cached per worker (how it runs, not what it writes: a resume after running out of memory;
    # it had been refused as another config)
    res = run_export(cfg.model_copy(update={"ct_cache_size": cfg.ct_cache_size + 1}), path, resume=True,
                     progress=False, preview=False)
    assert res.written == 0 and res.skipped == 8


def test_huge_ct_refused_before_reading(tmp_path):
    glob = write_cts(tmp_path / "cts", n=1, size=12)
    cfg = small_config(glob, max_ct_voxels=1000)
    with pytest.raises(InputError, match=r"cts.0.path: .*ct0.nii.gz: CT has 1,728 voxels, above "
                                         r"max_ct_voxels=1,000"):
        run_export(cfg, tmp_path / "x.zarr", progress=False)
    assert not (tmp_path / "x.zarr").exists()
    with pytest.raises(InputError, match="max_ct_voxels"):
        read_ct_with_labels(str(tmp_path / "cts" / "ct0.nii.gz"), None, 1000)


def test_missing_ct_or_labels_named_by_config_field_before_any_store(tmp_path):
    """A glob's file or a ``{stem}`` label map that is not there: the error names the config entry it came from."""
    glob = write_cts(tmp_path / "cts", n=2, size=12)
    cfg = small_config(glob, cts=[{"path": glob}, {"path": str(tmp_path / "gone.nii.gz"), "id": "gone"}])
    with pytest.raises(InputError, match=r"^cts.1.path: .*gone.nii.gz: no such file or folder"):
        run_export(cfg, tmp_path / "x.zarr", progress=False)
    cfg = small_config(glob, cts=[{"path": glob, "labels": str(tmp_path / "{stem}_labels.nii.gz")}])
    with pytest.raises(InputError, match=r"^cts.0.labels: .*ct0_labels.nii.gz: no such file or folder"):
        run_export(cfg, tmp_path / "x.zarr", progress=False)
    assert not (tmp_path / "x.zarr").exists()


def test_ct_cache_loads_each_ct_once_and_evicts(tmp_path):
    glob = write_cts(tmp_path / "cts", n=2)
    specs = plan_dataset(small_config(glob))
    cache = CTCache(max_items=1)
    for s in specs:  # 4 samples of ct0, then 4 of ct1
        render_sample(s, cache)
    assert cache.loads == 2 and len(cache) == 1
    cache2 = CTCache(max_items=1)
    for s in specs[:2] + specs[4:6] + specs[2:4]:  # ct0, ct1, ct0 again: evicted, re-read
        render_sample(s, cache2)
    assert cache2.loads == 3
    cache3 = CTCache(max_items=2)
    for s in specs[:2] + specs[4:6] + specs[2:4]:
        render_sample(s, cache3)
    assert cache3.loads == 2


def broken_renderer(spec, cache):
    """The fake renderer with one row missing from ``mask`` (breaks the renderer contract)."""
    out = render_synthetic(spec, cache)
    out["mask"] = out["mask"][:-1]
    return out


def test_unknown_renderer_and_broken_contract(tmp_path):
    import dataclasses

    glob = write_cts(tmp_path / "cts", n=1)
    spec = plan_dataset(small_config(glob))[0]
    with pytest.raises(InputError, match="renderer: unknown 'nope'"):
        render_sample(dataclasses.replace(spec, renderer="nope"), CTCache())
    with pytest.raises(InputError, match="renderer: cannot load 'no_such_module:f'"):
        render_sample(dataclasses.replace(spec, renderer="no_such_module:f"), CTCache())
    with pytest.raises(RuntimeError, match="'mask' has shape"):
        render_sample(dataclasses.replace(spec, renderer=f"{__name__}:broken_renderer"), CTCache())


def test_cli_export_overrides_count_and_seed(tmp_path):
    import yaml

    glob = write_cts(tmp_path / "cts", n=1)
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(yaml.safe_dump(small_config(glob).model_dump(mode="json")))
    out = tmp_path / "o.zarr"
    res = CliRunner().invoke(app, ["export", str(cfg_path), "-o", str(out), "--count", "3", "--seed", "42",
                                   "--no-progress"])
    assert res.exit_code == 0, res.output
    root = open_store(out)
    assert root.attrs["n_samples"] == 3 and root.attrs["config"]["seed"] == 42
    assert (out / "preview.png").exists()
    again = CliRunner().invoke(app, ["export", str(cfg_path), "-o", str(out), "--count", "3"])
    assert again.exit_code == 2 and "already exists" in again.output
    bad = CliRunner().invoke(app, ["export", str(cfg_path), "-o", str(tmp_path / "p.zarr"), "--count", "0"])
    assert bad.exit_code == 2 and "count:" in bad.output


def test_dicom_size_from_headers():
    from pydicom.data import get_testdata_file

    path = get_testdata_file("CT_small.dcm")
    assert peek_voxels(path) == 128 * 128
    with pytest.raises(InputError, match="max_ct_voxels=100"):
        read_ct_with_labels(path, None, 100)


@pytest.mark.parametrize("source,needle", [
    ({"generator": "lsystm"}, r"vessels.sources.0.generator: unknown vessel generator 'lsystm'"),
    ({"generator": "lsystem", "params": {"root_diam_mm": 3.0}}, r"vessels.sources.0.params.root_diam_mm: unknown"),
])
def test_unknown_generator_or_parameter_refused_before_store(tmp_path, source, needle):
    """A typo in a generator's name or parameters is found before the store exists, not by the first sample
    (which left an empty store that refused the corrected config's run)."""
    glob = write_cts(tmp_path / "cts", n=1)
    cfg = small_config(glob, vessels={"sources": [source]}, renderer="scene")
    with pytest.raises(InputError, match=needle):
        run_export(cfg, tmp_path / "s.zarr", progress=False)
    assert not (tmp_path / "s.zarr").exists()


def test_missing_vessel_segmentation_refused_before_store(tmp_path):
    glob = write_cts(tmp_path / "cts", n=1)
    cfg = small_config(glob, vessels={"sources": [{"segmentation": str(tmp_path / "nope.nii.gz")}]})
    with pytest.raises(InputError, match=r"vessels.sources.0.segmentation: .*nope.nii.gz: no such file"):
        run_export(cfg, tmp_path / "s.zarr", progress=False)
    assert not (tmp_path / "s.zarr").exists()


def _layout(root: zarr.Group) -> dict[str, tuple[str, tuple[int, ...], tuple[int, ...]]]:
    """name -> (dtype, per-sample shape, chunks) of every array, root and meta/."""
    out = {name: (str(a.dtype), a.shape[1:], a.chunks) for name, a in root.arrays()}
    out.update({f"meta/{name}": (str(a.dtype), a.shape[1:], a.chunks) for name, a in root["meta"].arrays()})
    return out


@pytest.mark.filterwarnings("ignore:Object at preview.png:UserWarning")
def test_synthetic_training_store_has_the_exported_layout_and_checksums(exported, tmp_path):
    """The training path's synthetic store is written by the export writer: same arrays, dtypes, checksums."""
    from ddsa_sim.training.synthetic import phantom_sample as synthetic_sample
    from ddsa_sim.training.synthetic import write_synthetic_store

    _, path, _ = exported
    exp = open_store(path)
    syn_path = write_synthetic_store(tmp_path / "syn.zarr", splits={"train": 2, "val": 1}, per_ct=2, size=24,
                                     incomplete=1)
    syn = open_store(syn_path)
    exp_layout = {k: v[:2] for k, v in _layout(exp).items()}
    syn_layout = {k: v[:2] for k, v in _layout(syn).items()}
    assert syn_layout.keys() == exp_layout.keys() == {*IMAGE_ARRAYS, *(f"meta/{m}" for m in META_ARRAYS)}
    for name in IMAGE_ARRAYS:
        assert syn_layout[name][0] == exp_layout[name][0] == str(IMAGE_DTYPES[name]), name
        assert syn[name].chunks == (1, 24, 24)
    for name in META_ARRAYS:
        shape = meta_sample_shape(name, 0)
        assert syn_layout[f"meta/{name}"] == exp_layout[f"meta/{name}"], name
        assert syn_layout[f"meta/{name}"][1] == shape and syn[f"meta/{name}"].chunks == (1, *shape), name
    assert set(exp.attrs) - set(syn.attrs) <= {"plan_sha256", "cts", "samples_per_split"}  # export-plan attributes only
    # the same checksum verification as `ddsa-sim inspect`
    report = inspect_store(syn_path)
    assert report.ok and report.n_complete == 6 and report.incomplete == [6]
    res = CliRunner().invoke(app, ["inspect", str(syn_path)])
    assert res.exit_code == 0 and "6 sample checksum(s) OK" in res.output, res.output
    images, meta = read_sample(syn, 3)
    fresh = synthetic_sample(0, 1, 1, 24, 1.5)  # train CT 1, draw 1: the images are the renderer's, bit for bit
    assert all(images[name].tobytes() == fresh[name].tobytes() for name in IMAGE_ARRAYS)
    assert meta["checksum"] == sample_checksum(fresh) and meta["split"] == "train" and meta["complete"] == 1
    # a flipped value is caught like in an exported store
    arr = zarr.open_array(str(syn_path / "mask"), mode="r+")
    arr[2] = arr[2] + np.float32(1e-3)
    assert inspect_store(syn_path).corrupted == [(2, "checksum mismatch")]


def test_write_slot_requires_every_meta_array(tmp_path):
    root = create_store(tmp_path / "w.zarr", {}, 1, (4, 4))
    images = {name: np.zeros((4, 4), IMAGE_DTYPES[name]) for name in IMAGE_ARRAYS}
    meta = dict.fromkeys(SAMPLE_META_ARRAYS, 0.0)
    del meta["kvp"]
    with pytest.raises(ValueError, match=r"missing \['kvp'\]"):
        write_slot(root, 0, images, meta)
    assert root["meta/complete"][0] == 0


def test_format_module_is_light():
    """Readers (training) import the format without zarr, the exporter, the scene, numba or torch."""
    import subprocess
    import sys

    code = ("import sys, ddsa_sim.export.format; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('zarr', 'numba', 'torch', 'pydantic') "
            "or m.startswith(('ddsa_sim.export.', 'ddsa_sim.scene', 'ddsa_sim.projector', 'ddsa_sim.physics')) "
            "and m != 'ddsa_sim.export.format'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_training_reads_format_version_1_and_2_and_refuses_others(tmp_path):
    """Version-1 and -2 stores (no exposure meta arrays, no frame times) stay readable by training and
    `inspect`; unknown versions are refused."""
    from ddsa_sim.export.format import V2_META_ARRAYS, V3_META_ARRAYS
    from ddsa_sim.training.data import ZarrDDSADataset
    from ddsa_sim.training.data import open_store as open_training_store
    from ddsa_sim.training.synthetic import write_synthetic_store

    path = write_synthetic_store(tmp_path / "s.zarr", size=16)
    root = zarr.open_group(str(path), mode="r+")
    assert root.attrs["format_version"] == FORMAT_VERSION == 3 and root.attrs["frames"] == 0
    n = len(ZarrDDSADataset(path, "train"))
    for name in V3_META_ARRAYS:  # make it a genuine version-2 store
        del root["meta"][name]
    del root.attrs["frames"]
    root.attrs["format_version"] = 2
    assert len(ZarrDDSADataset(path, "train")) == n > 0
    assert inspect_store(path).ok and read_sample(open_store(path), 0)[1]["split"] == "train"
    for name in V2_META_ARRAYS:  # and a genuine version-1 store
        del root["meta"][name]
    root.attrs["format_version"] = 1
    assert len(ZarrDDSADataset(path, "train")) == n > 0
    root.attrs["format_version"] = 4
    with pytest.raises(InputError, match="format_version 4"):
        open_training_store(path)


def test_vessel_conspicuity_against_an_analytic_anatomy():
    """Anatomy a cos(2 pi (x + 1/2) / P) continues itself under the filter's mirror boundary, so its
    Gaussian blur is exp(-2 pi^2 sigma^2 / P^2) times itself and the clutter's standard deviation is
    a (1 - that) / sqrt(2); a bar of iodine 0.3 over it and white noise of SD 0.05 on the frame."""
    n, period, a = 128, 16.0, 0.2
    x = np.arange(n)
    anatomy = np.tile(a * np.cos(2 * np.pi * (x + 0.5) / period), (n, 1)) + 3.0
    target = np.zeros((n, n))
    target[60:66, :] = 0.3
    clean = anatomy + target
    noisy = clean + np.random.default_rng(0).normal(0.0, 0.05, (n, n))
    scr, snr = vessel_conspicuity(noisy, clean, target, target > 0)
    clutter = a * (1 - np.exp(-2 * np.pi**2 * CLUTTER_SIGMA_PX**2 / period**2)) / np.sqrt(2)
    assert scr == pytest.approx(0.3 / clutter, rel=2e-3)
    assert snr == pytest.approx(0.3 / 0.05, rel=0.02)  # 16384 noise samples: SD known to 0.6 %
    assert vessel_conspicuity(noisy, clean, np.zeros((n, n)), np.zeros((n, n))) is None  # no vessel
    assert vessel_conspicuity(clean, clean, target, target > 0)[1] == np.inf  # noise-free frame
    # collimated: the left 48 columns unexposed (the frame 0 there, a step of 3 at the field's edge); clutter
    # is taken 4 sigma = 16 px inside the field (columns 64-127: 4 periods), noise within the field
    field = exposed_field([48 / n, 0, 0, 0, 0], (n, n))
    assert field[:, 48:].all() and not field[:, :48].any()
    cut = [np.where(field, a, 0.0) for a in (noisy, clean, target)]
    scr_c, snr_c = vessel_conspicuity(*cut, cut[2] > 0, field)
    assert scr_c == pytest.approx(0.3 / clutter, rel=2e-3)
    assert snr_c == pytest.approx(0.3 / np.std((noisy - clean)[field]), rel=1e-9)
    # without the field, the edge's step dominates the clutter
    assert vessel_conspicuity(*cut, cut[2] > 0)[0] < 0.5 * scr_c
    assert vessel_conspicuity(*cut, cut[2] > 0, exposed_field([0.9, 0, 0, 0, 0], (n, n))) is None  # no room


def test_a_split_with_a_share_but_no_ct_is_said(tmp_path):
    """Splits are by CT: two CTs at 0.8 / 0.1 / 0.1 are both train, which the export says (train would not validate
    and evaluate would find no test split); every split given a CT: nothing said."""
    glob = write_cts(tmp_path / "cts", n=2, size=12)
    with pytest.warns(UserWarning, match=r"split: no sample in 'val' or 'test': splits are by CT and 2 CTs give "
                                         r"\{'train': 8\}"):
        run_export(small_config(glob), tmp_path / "a.zarr", progress=False, preview=False)
    forced = small_config(glob, cts=[{"path": str(tmp_path / "cts" / "ct0.nii.gz"), "split": "train"},
                                     {"path": str(tmp_path / "cts" / "ct1.nii.gz"), "split": "val"}],
                          split={"train": 0.5, "val": 0.5, "test": 0.0})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run_export(forced, tmp_path / "b.zarr", progress=False, preview=False)
