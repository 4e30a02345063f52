"""Dataset config: validation errors name the field; example config; overrides."""

from __future__ import annotations

import pytest
import yaml
from typer.testing import CliRunner

from ddsa_sim import InputError
from ddsa_sim.cli import app
from ddsa_sim.export.config import Grid, Range, config_from_dict, example_config_yaml, load_config


def base() -> dict:
    return {
        "cts": [{"path": "builtin:chest-ct"}],
        "vessels": {"sources": [{"generator": "lsystem"}]},
        "count": 10,
        "seed": 1,
    }


@pytest.mark.parametrize("patch, field", [
    ({"pose": {"alpha_deg": {"min": -10, "max": "ten"}}}, "pose.alpha_deg.max"),
    ({"pose": {"alpha_deg": {"min": 10, "max": -10}}}, "pose.alpha_deg"),
    ({"pose": {"alpah_deg": 3}}, "pose.alpah_deg"),
    ({"pose": {"alpha_deg": {"min": -60, "max": 0}}}, "alpha_deg"),
    ({"split": {"train": 0.5, "val": 0.1, "test": 0.1}}, "split"),
    ({"count": 0}, "count"),
    ({"seed": -3}, "seed"),
    ({"detector": {"rows": 64, "cols": 64, "binning": 128}}, "detector"),
    ({"effects": {"motion": "wobbly"}}, "effects.motion"),
    ({"vessels": {"sources": [{"generator": "lsystem", "model": "x.pt"}]}}, "vessels.sources.0"),
    ({"renderer": "raytrace9000"}, "renderer"),
    ({"output": {"crop": [4096, 4096]}}, "output.crop"),
    ({"photons_per_pixel": 1e5, "mas": 2.0}, "photons_per_pixel and mas"),
    ({"mas": 2.0, "detector_air_kerma_ugy": {"min": 1, "max": 3}}, "mas and detector_air_kerma_ugy"),
    ({"mas": {"min": 0, "max": 2}}, "mas must be > 0"),
    ({"detector_air_kerma_ugy": -1.0}, "detector_air_kerma_ugy must be > 0"),
    ({"electronic_noise": {"min": -1, "max": 2}}, "electronic_noise must be >= 0"),
    ({"iodine_mg_per_ml": {"min": -5, "max": 10}}, "ds.yaml: iodine_mg_per_ml must be > 0"),  # was: at render time
    # a union's own message, not its other members' "Field required" (spectrum.kvp.grid: Field required ...)
    ({"spectrum": {"kvp": {"min": 100, "max": 70}}}, "spectrum.kvp: max (70.0) must be >= min (100.0)"),
    # every value a parameter can be drawn at, at load (an export had passed with one seed and failed with another)
    ({"vessels": {"sources": [{"generator": "lsystem", "params": {"root_diameter_mm": {"grid": [3, -1]}}}]}},
     "params.root_diameter_mm: lsystem parameter root_diameter_mm=-1.0 is out of range"),
    ({"vessels": {"sources": [{"generator": "coronary", "params": {"size_jitter": {"min": 0.0, "max": 1.5}}}]}},
     "params.size_jitter: coronary parameter size_jitter=1.5 is invalid"),
    # two fields' values that can be drawn together and fail together (colonize: influence_mm > kill_mm)
    ({"vessels": {"sources": [{"generator": "colonize", "params": {"influence_mm": {"min": 6, "max": 20},
                                                                  "kill_mm": {"min": 2, "max": 8}}}]}},
     "params: colonize parameter influence_mm=6.0 is out of range when drawn together at influence_mm=6, kill_mm=8"),
])
def test_bad_field_is_one_line_naming_it(patch, field):
    data = {**base(), **patch}
    with pytest.raises(InputError) as err:
        config_from_dict(data, where="ds.yaml")
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith("ds.yaml: ")
    assert field in msg and "Field required" not in msg.split(field)[-1]


def test_pose_limits_are_the_carms():
    """One fact in one place: the config refuses exactly the angles the C-arm refuses."""
    from ddsa_sim.geometry import ALPHA_LIMITS_DEG, BETA_LIMITS_DEG, CArm

    carm = CArm()
    assert (carm.min_alpha_deg, carm.max_alpha_deg) == ALPHA_LIMITS_DEG
    assert (carm.min_beta_deg, carm.max_beta_deg) == BETA_LIMITS_DEG
    for key, (lo, hi) in (("alpha_deg", ALPHA_LIMITS_DEG), ("beta_deg", BETA_LIMITS_DEG)):
        cfg = config_from_dict({**base(), "pose": {key: {"min": lo, "max": hi}}})  # the limits themselves are poses
        assert (getattr(cfg.pose, key).min, getattr(cfg.pose, key).max) == (lo, hi)
        for bad in ({"min": lo - 0.5, "max": hi}, {"min": lo, "max": hi + 0.5}):
            with pytest.raises(InputError, match=f"pose: {key} range"):
                config_from_dict({**base(), "pose": {key: bad}})


def test_missing_count_named():
    data = base()
    del data["count"]
    with pytest.raises(InputError, match=r"ds.yaml: count: Field required"):
        config_from_dict(data, where="ds.yaml")


def test_bad_yaml_and_missing_file(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("cts: [\n  - path: a\n count: : 3\n")
    with pytest.raises(InputError, match=r"bad.yaml: line \d+ invalid YAML"):
        load_config(p)
    with pytest.raises(InputError, match="nope.yaml: cannot read config"):
        load_config(tmp_path / "nope.yaml")


def test_dist_types_and_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    data = base()
    data["pose"] = {"alpha_deg": {"grid": [-10, 0, 10]}, "beta_deg": 5}
    data["cts"] = [{"path": "ct/a.nii.gz"}]
    p.write_text(yaml.safe_dump(data))
    cfg = load_config(p, count=7, seed=99)
    assert cfg.count == 7 and cfg.seed == 99
    assert isinstance(cfg.pose.alpha_deg, Grid) and cfg.pose.beta_deg == 5.0
    assert isinstance(cfg.spectrum.kvp, Range)
    # relative paths resolved against the config file's folder
    assert cfg.cts[0].path == str((tmp_path / "ct/a.nii.gz").resolve())


def test_exposure_is_one_field_drawn_once_per_sample():
    """No exposure field: the default photons_per_pixel range; one given: only it is set in the plan, the
    others None; the exposure and electronic noise each take one draw, so a config's other draws (iodine,
    its render seed) do not move when its exposure changes from photons to mAs or automatic exposure."""
    from ddsa_sim.export.config import DEFAULT_PHOTONS_PER_PIXEL
    from ddsa_sim.export.plan import plan_dataset

    assert config_from_dict(base()).photons_per_pixel == DEFAULT_PHOTONS_PER_PIXEL
    plans = {name: plan_dataset(config_from_dict({**base(), "count": 3, name: {"min": 1.0, "max": 2.0},
                                                  "electronic_noise": {"grid": [0, 5]}}))
             for name in ("photons_per_pixel", "mas", "detector_air_kerma_ugy")}
    for name, specs in plans.items():
        for s, ref in zip(specs, plans["photons_per_pixel"]):
            exposure = {k: getattr(s, k) for k in plans}
            assert exposure == {k: (ref.photons_per_pixel if k == name else None) for k in plans}
            assert 1.0 <= exposure[name] <= 2.0 and s.electronic_noise in (0.0, 5.0)
            assert (s.iodine_mg_per_ml, s.seed, s.electronic_noise) == (ref.iodine_mg_per_ml, ref.seed,
                                                                       ref.electronic_noise)


def test_example_config_is_valid_and_printed():
    from ddsa_sim.export.plan import plan_dataset

    cfg = config_from_dict(yaml.safe_load(example_config_yaml()), where="example")
    assert cfg.image_shape == (256, 256)
    trees = {s.vessel_id: s for s in plan_dataset(cfg)}
    kinds = {(s.vessel_source["name"], s.vessel_source["params"].get("side")) for s in trees.values()}
    assert kinds == {("coronary", None), ("coronary", "right"), ("lsystem", None)}  # None: the left coronary default
    for s in trees.values():  # templates registered to the anatomy with a catheter, generic trees fed from below
        if s.vessel_source["name"] == "coronary":
            assert s.vessel_source["placement"] == "anatomical" and s.catheter == {"french": 5.0, "wall_mm": 0.25,
                                                                                   "tip_offset_mm": 3.0}
        else:
            assert s.vessel_source["feeding"]["direction"] == [0.0, 0.0, 1.0] and s.catheter is None
    result = CliRunner().invoke(app, ["export", "--example-config"])
    assert result.exit_code == 0
    assert result.output == example_config_yaml()


def test_experiment_config_is_valid():
    from pathlib import Path

    cfg = load_config(Path(__file__).parent.parent / "experiments" / "export_small.yaml")
    assert cfg.image_shape == (256, 256)
    assert all(c.path.startswith("builtin:chest-ct[") for c in cfg.cts)  # regions of the builtin CT
    assert 100 <= cfg.count <= 1000


def test_duan_export_configs_are_what_make_configs_writes_and_load(experiment_script):
    """The committed experiments/duan/*.yaml are make_configs.py's output (not edited by hand, not stale),
    each loads, rows l and m differ from rows k and e only in their bones (a cortex around a cancellous
    core), row n from row l only in its number of pseudo-patients (and so of samples), rows o and p from
    rows l and m only in the detector's roll (drawn over the full circle), row q from row l only in its
    trees' feeding direction (within 45 deg of superior), as test_common_fed from test_common, and the matched
    controls r and s from row l only in the held-out exposure set's exposures and the Circle of Willis drawn
    for the procedural heads, and the capacity diagnostic fit_cow_heads from row s only in holding its heads alone,
    every tree the Circle of Willis (fit_cow_heads_plain: and no distractors; fit_cow_heads_many: 12 heads of one
    pseudo-patient each instead of 3 of four; fit_cow_heads_textured: mottled bone)."""
    from pathlib import Path

    here = Path(__file__).parents[1] / "experiments" / "duan"
    configs = experiment_script("duan/make_configs.py").configs()
    for stem, cfg in configs.items():
        assert yaml.safe_load((here / f"{stem}.yaml").read_text()) == cfg, stem
        load_config(here / f"{stem}.yaml")
    few, many = configs["train_l"], configs["train_n"]
    assert [ct["variants"]["count"] for ct in few["cts"]] == [4] * 7
    assert [ct["variants"]["count"] for ct in many["cts"]] == [12] * 7
    assert (few["count"], many["count"]) == (7 * 4 * 16, 7 * 12 * 16)  # CTs x pseudo-patients x 16 poses
    for ct in many["cts"]:
        ct["variants"]["count"] = 4
    assert {**many, "count": few["count"]} == few
    for fixed, rolled in ((configs["train_l"], configs["train_o"]), (configs["train_m"], configs["train_p"])):
        assert (fixed["pose"]["gamma_deg"], rolled["pose"]["gamma_deg"]) == (0, {"min": -180, "max": 180})
        assert {**rolled, "pose": {**rolled["pose"], "gamma_deg": 0}} == fixed
    fed = configs["train_q"]
    assert (fed["placement"]["feeding_direction"], fed["placement"]["feeding_cone_deg"]) == ([0, 0, 1], 45.0)
    assert "feeding_direction" not in configs["train_l"]["placement"]
    placement = {k: v for k, v in fed["placement"].items() if not k.startswith("feeding_")}
    assert {**fed, "placement": placement} == configs["train_l"]
    fed_test = configs["test_common_fed"]
    assert {**fed_test, "placement": configs["test_common"]["placement"]} == configs["test_common"]
    assert fed_test["placement"] == fed["placement"]
    held_out = configs["test_ood_exposure_static"]
    matched_exposure = configs["train_r"]
    assert matched_exposure["spectrum"] == held_out["spectrum"]
    assert matched_exposure["detector_air_kerma_ugy"] == held_out["detector_air_kerma_ugy"]
    exposure_keys = ("spectrum", "detector_air_kerma_ugy")
    assert {**matched_exposure, **{k: configs["train_l"][k] for k in exposure_keys}} == configs["train_l"]
    cow = configs["train_s"]["vessels"]["sources"]
    assert cow[:-1] == configs["train_l"]["vessels"]["sources"]
    assert cow[-1] == {"generator": "cow", "cts": ["head-phantom-*"], "weight": 2.0}
    assert {**configs["train_s"], "vessels": configs["train_l"]["vessels"]} == configs["train_l"]
    fit = configs["fit_cow_heads"]
    heads = [ct for ct in configs["train_s"]["cts"] if ct["path"].startswith("builtin:head-phantom-")]
    assert [(ct["path"], ct["split"]) for ct in fit["cts"]] == [
        (f"builtin:head-phantom-{i}", split) for i, split in enumerate(["train", "train", "train", "val"])]
    assert fit["cts"] == heads and fit["vessels"]["sources"] == [{"generator": "cow"}]
    assert fit["count"] == 4 * 4 * 16  # heads x pseudo-patients x 16 poses
    plain = configs["fit_cow_heads_plain"]
    assert all("distractors" not in ct["variants"] for ct in plain["cts"])
    assert {**plain, "cts": fit["cts"]} == fit
    assert [{**ct, "variants": {**ct["variants"], "distractors": d["variants"]["distractors"]}}
            for ct, d in zip(plain["cts"], fit["cts"], strict=True)] == fit["cts"]
    assert {**fit, "cts": configs["train_s"]["cts"], "vessels": configs["train_s"]["vessels"],
            "count": configs["train_s"]["count"]} == configs["train_s"]
    many = configs["fit_cow_heads_many"]
    assert [(ct["path"], ct["split"], ct["variants"]["count"]) for ct in many["cts"]] == [
        (f"builtin:head-phantom-{i}", "train", 1) for i in (0, 1, 2, *range(4, 13))] + [
        ("builtin:head-phantom-3", "val", 4)]
    assert many["count"] == fit["count"]  # the same 192 training frames (12 heads x 1 x 16) and validation head
    assert all({**ct["variants"], "count": 4} == fit["cts"][0]["variants"] for ct in many["cts"])
    assert {**many, "cts": fit["cts"]} == fit
    textured = configs["fit_cow_heads_textured"]
    assert all(ct["variants"]["bone_texture"] == {} for ct in textured["cts"])
    assert [{**ct, "variants": {k: v for k, v in ct["variants"].items() if k != "bone_texture"}}
            for ct in textured["cts"]] == fit["cts"]
    assert {**textured, "cts": fit["cts"]} == fit
    bones = {"bone_hu": {"min": 800, "max": 1900}, "bone_cortex_mm": {"min": 0.5, "max": 4.0},
             "bone_core_hu": {"min": 100, "max": 400}}
    for solid, cortical in ((configs["train_k"], configs["train_l"]), (configs["train_e"], configs["train_m"])):
        for ct_solid, ct_cortical in zip(solid["cts"], cortical["cts"], strict=True):
            assert ct_cortical["variants"]["distractors"] == {**ct_solid["variants"]["distractors"], **bones}
            ct_cortical["variants"]["distractors"] = ct_solid["variants"]["distractors"]
        assert cortical == solid


def test_a_mask_after_the_contrast_frames_is_said():
    """A DSA mask is taken before the contrast arrives; a mask time after the first frame is accepted with a word."""
    with pytest.warns(UserWarning, match=r"sequence.mask_time_s 5 s is after the first contrast frame \(0 s\)"):
        config_from_dict({**base(), "sequence": {"frames": 3, "fps": 2.0, "mask_time_s": 5.0}}, where="ds.yaml")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        config_from_dict({**base(), "sequence": {"frames": 3, "fps": 2.0, "start_s": 1.0, "mask_time_s": 0.5}})


@pytest.mark.parametrize("iodine", [{"min": 100, "max": 400}, {"grid": [100, 351]}, 360.0])
def test_iodine_above_the_agent_is_refused_at_load(iodine):
    """The vessels hold the injected agent (iohexol, 350 mgI/ml) diluted by blood: a range reaching above it had
    passed the config and stopped the export at the first sample that drew above 350 (which sample: the seed's)."""
    import dataclasses

    from ddsa_sim.scene import Scene

    agent = next(f.default for f in dataclasses.fields(Scene) if f.name == "agent_iodine_mg_per_ml")
    assert agent == 350.0  # Omnipaque 350, docs/physics.md
    with pytest.raises(InputError, match=r"^ds.yaml: iodine_mg_per_ml \d+ exceeds the injected agent's 350 mgI/ml"):
        config_from_dict({**base(), "iodine_mg_per_ml": iodine}, where="ds.yaml")
    cfg = config_from_dict({**base(), "iodine_mg_per_ml": {"min": 100, "max": 350}})  # the agent undiluted: allowed
    assert cfg.iodine_mg_per_ml.max == 350


# a value off by a unit prefix: mgI/ml given in g/ml, mm in um or m, beats/min in Hz, cycles/mm in lp/cm
@pytest.mark.parametrize("section, name, value, field", [
    (None, "iodine_mg_per_ml", 0.35, "iodine_mg_per_ml 0.35 mgI/ml is outside the plausible"),
    ("spectrum", "filter_al_mm", 4000, "spectrum: filter_al_mm 4000 mm Al is outside the plausible 0..20"),
    ("spectrum", "filter_cu_mm", 30, "spectrum: filter_cu_mm 30 mm Cu is outside the plausible 0..2"),
    ("effects", "heart_rate_bpm", 1.2, "effects: heart_rate_bpm 1.2 beats/min is outside the plausible 20..250"),
    ("effects", "breathing_period_s", {"min": 0.05, "max": 0.08}, "effects: breathing_period_s 0.05 s"),
    ("placement", "jitter_mm", 0.015, "placement: jitter_mm 0.015 mm is outside the plausible 0.5..250 mm (or 0"),
    ("pose", "isocenter_jitter_mm", 5000, "pose: isocenter_jitter_mm 5000 mm"),
    ("detector", "pixel_mm", 194, "detector: pixel_mm 194 mm is outside the plausible 0.05..10"),
    ("detector", "mtf50_cycles_per_mm", 14.6, "detector: mtf50_cycles_per_mm 14.6 cycles/mm"),
    ("detector", "rows", 100000, "detector: rows x pixel_mm = 100000 x 0.194 mm = 19400 mm is larger than any"),
])
def test_a_value_in_another_unit_is_refused_naming_the_field(section, name, value, field):
    data = base()
    if section is None:
        data[name] = value
    else:
        data[section] = {name: value}
    with pytest.raises(InputError) as err:
        config_from_dict(data, where="ds.yaml")
    assert str(err.value).startswith(f"ds.yaml: {field}") and "\n" not in str(err.value)


@pytest.mark.parametrize("section, values", [
    # clinical values at the edges of each range load
    (None, {"iodine_mg_per_ml": {"min": 10, "max": 350}}),  # an intravenous bolus's peak to the undiluted agent
    ("spectrum", {"filter_al_mm": 0.0, "filter_cu_mm": {"grid": [0.0, 0.9]}}),  # 0.9 mm Cu: a spectral filter
    ("effects", {"heart_rate_bpm": {"min": 40, "max": 180}, "breathing_period_s": {"min": 1.2, "max": 10}}),
    ("placement", {"jitter_mm": 0.0}),  # no jitter
    ("pose", {"isocenter_jitter_mm": 0.0}),
    ("detector", {"rows": 3072, "cols": 3072, "pixel_mm": 0.139, "mtf50_cycles_per_mm": {"min": 0.3, "max": 4}}),
])
def test_clinical_values_are_plausible(section, values):
    data = {**base(), **(values if section is None else {section: values})}
    config_from_dict(data)


@pytest.mark.parametrize("patch, message", [
    # the user wrote a grid: Grid's error, not Range's "min: Field required (and 2 more field(s))"
    ({"pose": {"beta_deg": {"grid": []}}}, "ds.yaml: pose.beta_deg.grid: List should have at least 1 item"),
    ({"detector": {"bit_depth": {"grid": []}}}, "ds.yaml: detector.bit_depth.grid: List should have at least 1 item"),
    ({"vessels": {"sources": [{"generator": "lsystem", "params": {"iterations": {"grid": []}}}]}},
     "ds.yaml: vessels.sources.0.params.iterations.grid: List should have at least 1 item"),
    # a range with a key too many: Range's error alone, not Grid's four
    ({"pose": {"alpha_deg": {"min": 1, "max": 2, "mean": 1.5}}},
     "ds.yaml: pose.alpha_deg.mean: Extra inputs are not permitted"),
])
def test_a_union_error_names_what_was_written(patch, message):
    with pytest.raises(InputError) as err:
        config_from_dict({**base(), **patch}, where="ds.yaml")
    assert str(err.value).startswith(message)
    assert "Field required" not in str(err.value) and "more field(s)" not in str(err.value)


def test_diaphragm_z_mm_is_taken_and_recorded_only_where_given():
    """``effects.diaphragm_z_mm``: what the scene's "found no lung ... give diaphragm_z_mm" asks for."""
    from ddsa_sim.export.plan import plan_dataset

    plain = config_from_dict({**base(), "effects": {"motion": "respiratory"}})
    given = config_from_dict({**base(), "effects": {"motion": "respiratory", "diaphragm_z_mm": -120.0}})
    assert "diaphragm_z_mm" not in plain.resolved()["effects"]  # a store made before the field resumes
    assert given.resolved()["effects"]["diaphragm_z_mm"] == -120.0
    a, b = plan_dataset(plain), plan_dataset(given)
    assert all(s.motion_params == {**p.motion_params, "diaphragm_z_mm": -120.0} for s, p in zip(b, a))
    cardiac = plan_dataset(config_from_dict({**base(), "effects": {"motion": "cardiac", "diaphragm_z_mm": -120.0}}))
    assert all("diaphragm_z_mm" not in s.motion_params for s in cardiac)  # no breathing: nothing to place
    with pytest.raises(InputError, match="effects.diaphragm_z_mm"):
        config_from_dict({**base(), "effects": {"motion": "respiratory", "diaphragm_z_mm": "low"}})
