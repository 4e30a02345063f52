"""Export config -> scene spec of the catheter (``catheter: {french: ...}``) and of the feeding direction
(``placement.feeding_direction`` ...): carried to every generated tree's SceneSpec, absent by default
with an unchanged plan fingerprint."""

from __future__ import annotations

import warnings

import pytest

from ddsa_sim import InputError
from ddsa_sim.export.config import config_from_dict
from ddsa_sim.export.plan import plan_dataset, plan_fingerprint
from ddsa_sim.export.sample import scene_options, scene_spec
from ddsa_sim.scene import CatheterSpec, Feeding


def cfg(folder, **extra):
    (folder / "pat.nii.gz").write_bytes(b"")  # the plan never reads the file
    data = {"cts": [{"path": str(folder / "pat.nii.gz")}],
            "vessels": {"per_ct": 4, "sources": [{"generator": "lsystem"}, {"generator": "coronary"}]},
            "count": 8, "seed": 3}
    data.update(extra)
    return config_from_dict(data)


def test_catheter_and_feeding_reach_the_scene_spec(tmp_path):
    config = cfg(tmp_path, catheter={"french": 4},
                 placement={"feeding_direction": [0, 0, 1], "feeding_cone_deg": 15, "feeding_roll_deg": [0, 90]})
    specs = plan_dataset(config)
    kinds = set()
    for spec in specs:
        scene = scene_spec(spec, scene_options({}))
        assert scene.catheter == CatheterSpec(4.0, 0.25, 3.0, field="catheter")
        kinds.add(spec.vessel_source["name"])
        if spec.vessel_source["name"] == "lsystem":
            assert scene.placement.feeding == Feeding((0.0, 0.0, 1.0), 15.0, (0.0, 90.0))
            assert scene.placement.seed == spec.vessel_source["seed"]
        else:  # templates are registered to the anatomy, not fed
            assert scene.placement.mode == "anatomical" and scene.placement.feeding is None
    assert kinds == {"lsystem", "coronary"}


def test_defaults_leave_plans_unchanged_and_bad_fields_are_refused(tmp_path):
    plain = plan_dataset(cfg(tmp_path))
    assert all(s.catheter is None and "feeding" not in s.vessel_source for s in plain)
    assert plan_fingerprint(plain) == plan_fingerprint(plan_dataset(cfg(tmp_path, catheter=None)))
    assert scene_spec(plain[0], scene_options({})).catheter is None
    with pytest.raises(InputError, match="feeding_direction"):
        cfg(tmp_path, placement={"feeding_direction": [0, 0, 0]})
    with pytest.raises(InputError, match="french"):
        cfg(tmp_path, catheter={"french": -1})


def test_a_catheter_with_a_segmentation_source_is_said_and_left_out(tmp_path):
    """A catheter follows a generated tree; a segmentation source gets none: said at load (unless its own
    ``catheter: false`` says so) and absent from its samples' plan, while the generator's keep theirs."""
    (tmp_path / "tree.vtp").write_bytes(b"")
    sources = [{"generator": "lsystem"}, {"segmentation": str(tmp_path / "tree.vtp")}]
    with pytest.warns(UserWarning, match=r"vessels.sources.1 \(segmentation '.*tree.vtp'\) gets none"):
        config = cfg(tmp_path, catheter={"french": 5}, vessels={"per_ct": 4, "sources": sources})
    by_kind = {spec.vessel_source["kind"]: spec.catheter for spec in plan_dataset(config)}
    assert by_kind == {"generator": {"french": 5.0, "wall_mm": 0.25, "tip_offset_mm": 3.0}, "segmentation": None}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cfg(tmp_path, catheter={"french": 5}, vessels={"per_ct": 4, "sources": [
            sources[0], {**sources[1], "catheter": False}]})


def test_params_json_keeps_a_generators_integer_parameters_integers(tmp_path):
    """The plan draws every number as a float; the store's record of a tree's parameters is in the generator's
    field types (``iterations: 5``), as the tree was made, and floats stay floats."""
    import json

    from ddsa_sim.export.store import params_json

    config = cfg(tmp_path, vessels={"per_ct": 2, "sources": [{"generator": "lsystem", "params": {
        "iterations": {"grid": [4, 5]}, "root_diameter_mm": {"min": 3.0, "max": 4.0}}}]})
    for spec in plan_dataset(config):
        assert isinstance(spec.vessel_source["params"]["iterations"], float)  # the plan's draw
        params = json.loads(params_json(spec))["vessel_source"]["params"]
        assert type(params["iterations"]) is int and params["iterations"] in (4, 5)
        assert type(params["root_diameter_mm"]) is float
