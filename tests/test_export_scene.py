"""The scene (physics) renderer of the exporter: store contract, DSA identities, regeneration alone."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml

from ddsa_sim import InputError
from ddsa_sim.export.config import load_config
from ddsa_sim.export.format import V2_META_ARRAYS, V3_META_ARRAYS
from ddsa_sim.export.plan import plan_dataset
from ddsa_sim.export.runner import run_export
from ddsa_sim.export.sample import (
    IMAGE_ARRAYS,
    IMAGE_DTYPES,
    CTCache,
    render_sample,
)
from ddsa_sim.export.store import open_store, sample_checksum
from ddsa_sim.physics.spectra import spectrum_at_kvp
from ddsa_sim.scene.render import VESSEL_MASK_MIN_IODINE_MG_PER_CM2

REPO = Path(__file__).resolve().parent.parent
SIZE = 48


def write_ct(folder: Path) -> Path:
    """A 48^3 water cylinder (4 mm voxels) with a bone rod, in air."""
    hu = np.full((SIZE, SIZE, SIZE), -1000.0, np.float32)
    i, j, _ = np.indices(hu.shape)
    c = (SIZE - 1) / 2
    hu[(i - c) ** 2 + (j - c) ** 2 < (0.42 * SIZE) ** 2] = 0.0
    hu[(i - c - 6) ** 2 + (j - c) ** 2 < 9] = 1000.0
    path = folder / "phantom.nii.gz"
    nib.save(nib.Nifti1Image(hu, np.diag([4.0, 4.0, 4.0, 1.0])), str(path))
    return path


def write_config(folder: Path, noise: bool, count: int = 4, **extra) -> Path:
    cfg = {
        "cts": [{"path": str(write_ct(folder))}],
        "vessels": {"per_ct": 2, "sources": [{"generator": "lsystem", "params": {
            "iterations": {"grid": [3, 4]}, "root_diameter_mm": {"min": 3.0, "max": 4.0}}}]},
        "placement": {"jitter_mm": 5.0},
        "pose": {"alpha_deg": {"min": -20, "max": 20}, "beta_deg": {"min": -10, "max": 10}},
        "detector": {"rows": 64, "cols": 64, "pixel_mm": 4.0, "binning": 1},
        "effects": {"noise": noise, "scatter": False, "motion": "none"},
        "output": {"crop": [48, 56]},
        "count": count,
        "seed": 11,
        "renderer_options": {"vessel_spacing_mm": 0.5},
        **extra,
    }
    path = folder / "ds.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def clean_samples(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clean")
    specs = plan_dataset(load_config(write_config(folder, noise=False)))
    cache = CTCache(1)
    return specs, [render_sample(s, cache) for s in specs], cache


def test_arrays_satisfy_the_store_contract(clean_samples):
    specs, samples, _ = clean_samples
    for spec, a in zip(specs, samples):
        assert set(a) == {*IMAGE_ARRAYS, "isocenter_mm", "projection_matrix", "photons_per_pixel", *V2_META_ARRAYS,
                          *V3_META_ARRAYS, "motion_applied"}
        assert json.loads(str(a["motion_applied"])) == [{"kind": "none"}]  # params_json leaves it out then
        assert np.isnan(a["frame_times_s"]).all() and a["frame_times_s"].shape == (1,)  # one fully filled frame
        assert a["photons_per_pixel"] == spec.photons_per_pixel
        assert 0 < a["detector_air_kerma_ugy"] < a["air_kerma_ugy"]  # the patient attenuates
        for name in IMAGE_ARRAYS:
            assert a[name].shape == (48, 56) and a[name].dtype == IMAGE_DTYPES[name], name
        assert a["vessel_mask"].any(), "a tree placed at the CT centre must be in the field of view"
        np.testing.assert_array_equal(a["vessel_mask"],
                                      (a["iodine_mg_per_cm2"] >= VESSEL_MASK_MIN_IODINE_MG_PER_CM2).astype(np.uint8))
        body = a["mask"] > 1.0  # rays through the water cylinder
        assert body.mean() > 0.3
        assert np.all(a["dsa_target"][a["vessel_mask"] > 0] >= 0)


def test_without_noise_and_motion_conventional_dsa_is_the_target(clean_samples):
    _, samples, _ = clean_samples
    for a in samples:
        np.testing.assert_allclose(a["contrast"] - a["mask"], a["dsa_target"], atol=1e-5, rtol=0)
        np.testing.assert_array_equal(a["contrast"], a["contrast_clean"])
        assert np.all(a["dsa_target"][a["iodine_mg_per_cm2"] == 0] == 0)
        assert a["dsa_target"].max() > 0.05  # iodine is visible


def test_iodine_scales_with_concentration_and_poses_differ(clean_samples):
    specs, samples, _ = clean_samples
    # samples 0 and 2 share tree v0 (per_ct = 2) seen from two poses: same tree, other projection
    assert specs[0].vessel_id == specs[2].vessel_id
    assert not np.array_equal(samples[0]["vessel_mask"], samples[2]["vessel_mask"])
    for spec, a in zip(specs, samples):
        # iodine area density / concentration is the lumen chord (cm), a few mm at most per vessel
        chord_cm = a["iodine_mg_per_cm2"].max() / spec.iodine_mg_per_ml
        assert 0.05 < chord_cm < 5.0


def test_one_voxelization_per_tree_per_worker(clean_samples):
    specs, _, cache = clean_samples
    assert cache.loads == 1
    loaded = next(iter(cache._items.values()))
    assert len(loaded.derived["vessels"]) == len({s.vessel_id for s in specs}) == 2
    assert "ct_volume" in loaded.derived


def test_noise_makes_the_recorded_frames_differ(tmp_path):
    spec = plan_dataset(load_config(write_config(tmp_path, noise=True, count=1)))[0]
    a = render_sample(spec, CTCache(1))
    assert not np.array_equal(a["contrast"], a["contrast_clean"])
    resid = (a["contrast"] - a["mask"]) - a["dsa_target"]
    assert 1e-4 < float(np.std(resid[a["vessel_mask"] == 0])) < 0.5


def test_regenerated_alone_in_a_fresh_process_is_bit_identical(tmp_path):
    cfg = write_config(tmp_path, noise=True, count=4)
    run_export(load_config(cfg), tmp_path / "ds.zarr", workers=1, progress=False, preview=False)
    root = open_store(tmp_path / "ds.zarr")
    stored = {name: root[name][3] for name in IMAGE_ARRAYS}
    code = ("import sys, json; from ddsa_sim.export import load_config, plan_dataset, render_sample; "
            "from ddsa_sim.export.store import sample_checksum; "
            "a = render_sample(plan_dataset(load_config(sys.argv[1]))[3]); print(json.dumps(sample_checksum(a)))")
    out = subprocess.run([sys.executable, "-c", code, str(cfg)], capture_output=True, text=True, cwd=REPO,
                         timeout=300, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == root["meta"]["checksum"][3]
    assert sample_checksum(stored) == root["meta"]["checksum"][3]


def test_bad_generator_parameter_names_the_field(tmp_path):
    cfg = yaml.safe_load(write_config(tmp_path, noise=False, count=1).read_text())
    cfg["vessels"]["sources"][0]["params"] = {"n_generations": 4}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(cfg))
    spec = plan_dataset(load_config(tmp_path / "bad.yaml"))[0]
    with pytest.raises(InputError, match=r"vessels.sources.0.params.n_generations"):
        render_sample(spec, CTCache(1))


def test_interpolated_spectrum_sits_between_its_nodes():
    lo, mid, hi = spectrum_at_kvp(80.0, 4.0, 2.0), spectrum_at_kvp(81.0, 4.0, 2.0), spectrum_at_kvp(82.0, 4.0, 2.0)
    assert lo.mean_energy_kev < mid.mean_energy_kev < hi.mean_energy_kev
    assert spectrum_at_kvp(81.0, 4.0, 2.0) is mid  # memoised


def test_mas_and_automatic_exposure_configs(tmp_path):
    """``mas``: N0 is SpekPy's fluence per mAs at the source-to-detector distance times the pixel area
    (physics.noise.photons_per_pixel_from_mas); ``detector_air_kerma_ugy``: the detector air kerma behind
    the patient reaches the target; ``electronic_noise`` reaches the detector."""
    from ddsa_sim.export.sample import sample_carm, scene_options, scene_spec
    from ddsa_sim.physics.noise import photons_per_pixel_from_mas

    specs = plan_dataset(load_config(write_config(tmp_path, noise=True, count=1, mas=2.5, electronic_noise=3.0,
                                                  spectrum={"kvp": 90, "filter_al_mm": 4.0})))
    a = render_sample(specs[0], CTCache(1))
    carm = sample_carm(specs[0], np.zeros(3))
    want = photons_per_pixel_from_mas(2.5, 90.0, carm.source_to_detector_distance, carm.pixel_mm, filter_al_mm=4.0)
    assert a["photons_per_pixel"] == pytest.approx(want, rel=1e-9) and a["mas"] == pytest.approx(2.5, rel=1e-9)
    assert scene_spec(specs[0], scene_options({})).exposure.detector.electronic_noise_std == 3.0

    (tmp_path / "aec").mkdir()
    config = load_config(write_config(tmp_path / "aec", noise=True, count=2, detector_air_kerma_ugy={"grid": [1, 4]}))
    run_export(config, tmp_path / "store", workers=1, progress=False, preview=False)
    root = open_store(tmp_path / "store")
    specs = plan_dataset(config)
    got = np.asarray(root["meta/detector_air_kerma_ugy"][:])
    np.testing.assert_allclose(got, [s.detector_air_kerma_ugy for s in specs], rtol=1e-9)
    assert all(s.photons_per_pixel is None for s in specs) and np.all(np.asarray(root["meta/photons_per_pixel"][:]) > 0)
    # training reads each sample's dose with it (augment.p_dose)
    from ddsa_sim.training.data import ZarrDDSADataset

    for split in {s.split for s in specs}:
        ds = ZarrDDSADataset(tmp_path / "store", split)
        assert [float(ds[i]["dose_ugy"]) for i in range(len(ds))] == pytest.approx(got[ds.indices].tolist(), rel=1e-12)


def test_supersample_renders_each_pixel_from_k_by_k_rays(tmp_path):
    """``renderer_options.supersample``: the scene averages k x k rays per stored pixel; the iodine it
    records is the same in total (a pixel's mean of its rays) but not the centre rays' pixel by pixel;
    a bad value is refused before any store, naming the option."""
    from ddsa_sim.export.sample import scene_options, scene_spec

    iodine = {}
    for k in (1, 3):
        (tmp_path / str(k)).mkdir()
        spec = plan_dataset(load_config(write_config(tmp_path / str(k), noise=False, count=1, renderer_options={
            "vessel_spacing_mm": 0.5, "supersample": k})))[0]
        assert scene_spec(spec, scene_options(spec.renderer_options)).effects.supersample == k
        iodine[k] = render_sample(spec, CTCache(1))["iodine_mg_per_cm2"].astype(np.float64)
    assert iodine[3].sum() == pytest.approx(iodine[1].sum(), rel=0.02)
    assert np.abs(iodine[3] - iodine[1]).max() > 0.05 * iodine[1].max()
    for bad in (0, 1.5, "2", float("nan")):
        (tmp_path / "bad").mkdir(exist_ok=True)
        config = load_config(write_config(tmp_path / "bad", noise=False, count=1,
                                          renderer_options={"supersample": bad}))
        with pytest.raises(InputError, match=r"renderer_options.supersample: expected an integer >= 1"):
            run_export(config, tmp_path / "bad" / "store", workers=1, progress=False, preview=False)
        assert not (tmp_path / "bad" / "store").exists()


def test_respiratory_motion_without_lung_says_the_config_field_and_takes_it(tmp_path):
    """A CT without lung (this water cylinder; a head): the scene asks for the diaphragm's height by the export
    config's field, which the config now takes and the scene uses."""
    from ddsa_sim.export.sample import scene_options, scene_spec

    effects = {"noise": False, "scatter": False, "motion": "respiratory"}
    path = write_config(tmp_path, noise=False, count=1, effects=effects)
    with pytest.raises(InputError, match=r"found no lung in CT .* give diaphragm_z_mm.*effects\.diaphragm_z_mm"):
        render_sample(plan_dataset(load_config(path))[0], CTCache(1))
    path = write_config(tmp_path, noise=False, count=1, effects={**effects, "diaphragm_z_mm": 60.0})
    spec = plan_dataset(load_config(path))[0]
    assert scene_spec(spec, scene_options({})).effects.motion.diaphragm_z_mm == 60.0
    arrays = render_sample(spec, CTCache(1))
    applied = json.loads(str(arrays["motion_applied"]))
    assert applied[0]["kind"] == "respiratory" and arrays["vessel_mask"].any()


def test_params_json_records_every_drawn_value(tmp_path):
    """``meta/params_json`` holds each sample's electronic noise (drawn per sample, in no meta array) and the rigid
    motion drawn while rendering (a rotation of at most 1 degree per axis and a shift of at most 1.5 mm per axis,
    ``MotionParams`` defaults), beside what it held before."""
    from scipy.spatial.transform import Rotation

    path = write_config(tmp_path, noise=True, count=3, split={"train": 1.0, "val": 0.0, "test": 0.0},
                        electronic_noise={"min": 1.0, "max": 5.0},
                        effects={"noise": True, "scatter": False, "motion": "rigid"})
    cfg = load_config(path)
    specs = plan_dataset(cfg)
    run_export(cfg, tmp_path / "s.zarr", progress=False, preview=False)
    stored = open_store(tmp_path / "s.zarr")["meta"]["params_json"][:]
    for spec, text in zip(specs, stored):
        params = json.loads(str(text))
        assert params["electronic_noise"] == spec.electronic_noise and 1.0 <= params["electronic_noise"] <= 5.0
        assert {"vessel_source", "filter_al_mm", "isocenter_offset_mm", "motion"} <= set(params)
        (frame,) = params["motion_applied"]
        m = np.asarray(frame["world_from_world"])
        assert frame["kind"] == "rigid" and m.shape == (4, 4) and not np.allclose(m, np.eye(4))
        np.testing.assert_allclose(m[:3, :3] @ m[:3, :3].T, np.eye(3), atol=1e-12)
        assert np.all(np.abs(Rotation.from_matrix(m[:3, :3]).as_euler("xyz", degrees=True)) <= 1.0 + 1e-9)
    assert len({json.loads(str(t))["electronic_noise"] for t in stored}) == 3
