"""Export config -> scene spec of the catheter (``catheter: {french: ...}``) and of the feeding direction
(``placement.feeding_direction`` ...): carried to every generated tree's SceneSpec, absent by default
with an unchanged plan fingerprint."""

from __future__ import annotations

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
