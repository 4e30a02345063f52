"""Collimated fields in the exporter and the CLI: config, plan draws, stored images, meta, ``--collimation``."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from test_export_plan import base_config_dict
from test_export_scene import write_config

from ddsa_sim import InputError
from ddsa_sim.export.config import config_from_dict, load_config
from ddsa_sim.export.format import exposed_field
from ddsa_sim.export.inspect import inspect_store, vessel_conspicuity
from ddsa_sim.export.plan import plan_dataset, plan_fingerprint
from ddsa_sim.export.runner import run_export
from ddsa_sim.export.sample import CTCache, render_sample, sample_collimator
from ddsa_sim.export.store import open_store, read_sample
from ddsa_sim.scene.sources import structure_table

COLLIMATION = {"probability": 0.5, "blade": {"min": 0.05, "max": 0.3}, "iris_probability": 0.5,
               "iris_diameter": {"min": 0.8, "max": 1.2}}


def test_collimation_is_drawn_last_and_a_config_without_it_plans_as_before():
    old = plan_dataset(config_from_dict(base_config_dict(count=400)))
    data = base_config_dict(count=400)
    data["effects"] = {"collimation": COLLIMATION}
    new = plan_dataset(config_from_dict(data))
    assert plan_fingerprint(plan_dataset(config_from_dict(base_config_dict(count=400)))) == plan_fingerprint(old)
    for a, b in zip(old, new):  # every earlier draw keeps its value
        assert replace(b, collimation=None) == a
    coll = [s.collimation for s in new if s.collimation is not None]
    assert 0.4 < len(coll) / len(new) < 0.6
    blades = np.array([[c[k] for k in ("left", "right", "top", "bottom")] for c in coll])
    assert blades.min() >= 0.05 and blades.max() <= 0.3 and np.std(blades[:, 0] - blades[:, 1]) > 0.05
    iris = np.array([c["iris_diameter"] for c in coll])
    assert 0.35 < np.mean(iris > 0) < 0.65 and np.all((iris == 0) | ((iris >= 0.8) & (iris <= 1.2)))
    assert all("collimation" not in s.to_dict() for s in old)


@pytest.mark.parametrize("patch, match", [
    ({"blade": {"min": 0.0, "max": 0.6}}, "effects.collimation: .*blade range"),
    ({"iris_diameter": 0.0}, "effects.collimation: .*iris_diameter range"),
    ({"probability": 2.0}, "effects.collimation.probability"),
    ({"leakage": 1.0}, "effects.collimation.leakage"),
    ({"blades": 0.1}, "effects.collimation.blades"),
])
def test_bad_collimation_is_a_one_line_error_naming_the_field(patch, match):
    data = base_config_dict()
    data["effects"] = {"collimation": {**COLLIMATION, **patch}}
    with pytest.raises(InputError, match=match) as e:
        config_from_dict(data)
    assert "\n" not in str(e.value)


def test_blades_are_fractions_of_the_stored_image(tmp_path):
    """Detector 64 x 64, crop 48 x 56: a blade covering 0.25 of the image's width ends at image column 14."""
    cfg = load_config(write_config(tmp_path, noise=False, count=1, effects={
        "noise": False, "scatter": True, "motion": "none",
        "collimation": {"probability": 1.0, "blade": 0.25, "source_to_collimator_mm": 400.0}}))
    spec = plan_dataset(cfg)[0]
    c = sample_collimator(spec)
    assert c.left * 64 == pytest.approx(4 + 0.25 * 56) and c.top * 64 == pytest.approx(8 + 0.25 * 48)
    assert sample_collimator(replace(spec, collimation={**spec.collimation, "left": 0.0})).left == 0.0
    out = render_sample(spec, CTCache(1))
    open_ = render_sample(replace(spec, collimation=None), CTCache(1))
    outside = np.zeros((48, 56), bool)
    outside[:, :13], outside[:, 43:], outside[:11, :], outside[37:, :] = True, True, True, True
    inside = np.zeros((48, 56), bool)
    inside[13:35, 16:40] = True
    assert np.all(out["dsa_target"][outside] == 0) and np.all(out["vessel_mask"][outside] == 0)
    assert out["mask"][outside].min() > open_["mask"].max() + 1  # the unexposed border: saturated -ln
    # inside, the same image but for less scatter (a smaller irradiated volume): higher -ln
    assert np.all(out["mask"][inside] > open_["mask"][inside])
    np.testing.assert_allclose(out["dsa_target"][inside], open_["dsa_target"][inside], atol=1e-6)


def test_collimation_meta_round_trip(tmp_path):
    cfg = load_config(write_config(tmp_path, noise=True, count=4, effects={
        "noise": True, "scatter": False, "motion": "none", "collimation": {**COLLIMATION, "probability": 0.5}}))
    path = tmp_path / "ds.zarr"
    run_export(cfg, path, workers=1, progress=False, preview=True)
    specs = plan_dataset(cfg)
    expected = [[0.0] * 5 if s.collimation is None else
                [s.collimation[k] for k in ("left", "right", "top", "bottom", "iris_diameter")] for s in specs]
    assert any(s.collimation is None for s in specs) and any(s.collimation is not None for s in specs)
    np.testing.assert_array_equal(open_store(path)["meta/collimation"][:], expected)
    for i, spec in enumerate(specs):
        _, meta = read_sample(open_store(path), i)
        np.testing.assert_array_equal(meta["collimation"], expected[i])
        assert json.loads(str(meta["params_json"])).get("collimation") == spec.collimation
    # the stored targets are 0 outside the field the meta describes; the preview marks the collimated rows
    root = open_store(path)
    for i in range(len(specs)):
        field = exposed_field(root["meta/collimation"][i], (48, 56))
        assert np.all(root["dsa_target"][i][~field] == 0) and np.all(root["vessel_mask"][i][~field] == 0)
        assert field.all() == (specs[i].collimation is None)
    assert (path / "preview.png").stat().st_size > 0
    # inspect's vessel conspicuity takes each sample's field (clutter 16 px inside it, noise within it)
    splits = [str(s) for s in root["meta/split"][:]]
    ratios = {i: vessel_conspicuity(*(root[k][i] for k in ("contrast", "contrast_clean", "dsa_target", "vessel_mask")),
                                    exposed_field(root["meta/collimation"][i], (48, 56))) for i in range(len(specs))}
    conspicuity = inspect_store(path).conspicuity
    assert conspicuity
    for split, c in conspicuity.items():
        mine = [r for i, r in ratios.items() if splits[i] == split and r is not None]
        assert c["n_images"] == len(mine)
        assert c["signal_to_clutter"] == pytest.approx(np.median([r[0] for r in mine]))
        assert c["signal_to_noise"] == pytest.approx(np.median([r[1] for r in mine]))


def test_exposed_field_of_the_meta():
    assert exposed_field(None, (4, 6)).all() and exposed_field(np.zeros(5), (4, 6)).all()
    f = exposed_field([0.25, 0.5, 0.0, 0.25, 0.0], (8, 8))  # columns 2..3, rows 0..5
    assert f.sum() == 2 * 6 and f[0, 2] and f[5, 3] and not f[6, 2] and not f[0, 4] and not f[0, 1]
    disc = exposed_field([0, 0, 0, 0, 1.0], (200, 300))
    assert disc.sum() == pytest.approx(np.pi * 100**2, rel=0.01) and not disc[0, 0] and not disc[100, 49] and disc[100, 51]


def test_cli_collimation_option_parses_and_refuses_in_one_line():
    from ddsa_sim.cli.options import parse_collimator

    c = parse_collimator("0.1,0.2,0.3,0.0,0.9")
    assert (c.left, c.right, c.top, c.bottom, c.iris_diameter) == (0.1, 0.2, 0.3, 0.0, 0.9)
    assert parse_collimator(None) is None and parse_collimator("0,0,0,0").is_open
    for bad, match in (("0.1,0.2", "expected L,R,T,B"), ("0.6,0,0,0", "--collimation: collimator left"),
                       ("a,b,c,d", "--collimation: expected a number")):
        with pytest.raises(InputError, match=match) as e:
            parse_collimator(bad)
        assert "\n" not in str(e.value)


def test_an_aimed_collimated_view_keeps_some_vessel():
    """``pose.aim`` skips an aim voxel from which no vessel voxel is in the collimated field: sample 4 of this
    config (QA's) had its tree inside the detector but under the blades, an image with no vessel pixel."""
    cts = [{"id": f"chest_z{z}{side}", "path": f"builtin:chest-ct[{box},{k}]", "split": split,
            "labels": f"builtin:chest-ct-labels[{box},{k}]", "structures": "builtin:chest-ct-structures"}
           for z, side, box, k, split in (("0", "R", "0:252,43:454", "0:47", "train"),
                                          ("2", "R", "0:252,43:454", "98:133", "train"),
                                          ("2", "L", "260:512,43:454", "98:133", "val"),
                                          ("0", "L", "260:512,43:454", "0:47", "test"))]
    data = {"cts": cts, "vessels": {"per_ct": 1, "sources": [{"generator": "lsystem", "catheter": False, "params": {
                "iterations": {"grid": [4, 5]}, "root_diameter_mm": {"min": 3.0, "max": 5.0}}}]},
            "placement": {"mode": "auto", "root": "ct-center", "jitter_mm": 10.0},
            "pose": {"alpha_deg": {"min": -30, "max": 30}, "beta_deg": {"min": -25, "max": 25},
                     "gamma_deg": {"min": -180, "max": 180}, "isocenter_jitter_mm": 5.0, "aim": ["vertebrae_*"]},
            "detector": {"rows": 384, "cols": 384, "pixel_mm": 0.776, "binning": 6,
                         "mtf50_cycles_per_mm": {"min": 0.8, "max": 2.0}, "bit_depth": {"grid": [12, 14, 16]}},
            "spectrum": {"kvp": {"min": 60, "max": 125}, "filter_al_mm": {"min": 2, "max": 6},
                         "filter_cu_mm": {"grid": [0.0, 0.1, 0.2, 0.3]}},
            "iodine_mg_per_ml": {"min": 50, "max": 150}, "photons_per_pixel": {"min": 2e4, "max": 2e5},
            "effects": {"noise": True, "scatter": True, "motion": "none", "grid_fraction": 0.5,
                        "collimation": {"probability": 0.5, "blade": {"min": 0.0, "max": 0.25},
                                        "iris_probability": 0.5, "iris_diameter": {"min": 0.8, "max": 1.2}}},
            "count": 12, "seed": 7, "renderer_options": {"vessel_spacing_mm": 0.5}}
    spec = plan_dataset(config_from_dict(data))[4]
    assert spec.collimation is not None
    cache = CTCache(1)
    arrays = render_sample(spec, cache)
    field = exposed_field([spec.collimation[k] for k in ("left", "right", "top", "bottom", "iris_diameter")],
                          spec.image_shape)
    assert arrays["vessel_mask"][field].sum() > 0 and arrays["dsa_target"][field].max() > 0
    patient = cache.get(spec)  # still aimed at a vertebra
    ijk = np.rint(patient.ct.world_to_voxel(arrays["isocenter_mm"] - np.asarray(spec.isocenter_offset_mm)))
    names = {i: n for n, i in structure_table(spec.labels_source, spec.structures_source).items()}
    assert names[int(patient.labels.data[tuple(ijk.astype(int))])].startswith("vertebrae_")
