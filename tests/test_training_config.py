"""Training configs: ``base:`` chains (merge rules, relative paths, errors) and the committed configs that use them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from ddsa_sim import InputError
from ddsa_sim.training.config import load_config, parse_config

DUAN = Path(__file__).parents[1] / "experiments" / "duan"


def _write(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data))
    return path


def test_base_merges_mappings_key_by_key_and_replaces_scalars_and_lists(tmp_path):
    _write(tmp_path / "shared" / "root.yaml", {"name": "root", "seed": 1,
                                               "data": {"batch_size": 4, "augment": {"p_hflip": 0.1, "scale_range": [0.5, 2.0]}},
                                               "optim": {"lr": 0.1, "max_steps": 7}})
    _write(tmp_path / "shared" / "mid.yaml", {"base": "root.yaml", "data": {"augment": {"scale_range": [0.9, 1.1]}}})
    leaf = _write(tmp_path / "runs" / "leaf.yaml", {"base": "../shared/mid.yaml", "seed": 3, "optim": {"lr": 0.2}})
    cfg = load_config(leaf)
    expected = parse_config({"name": "root", "seed": 3,
                             "data": {"batch_size": 4, "augment": {"p_hflip": 0.1, "scale_range": [0.9, 1.1]}},
                             "optim": {"lr": 0.2, "max_steps": 7}})
    assert cfg == expected
    # an absolute base works from anywhere
    elsewhere = _write(tmp_path / "x" / "y.yaml", {"base": str(tmp_path / "shared" / "root.yaml")})
    assert load_config(elsewhere).optim.lr == 0.1 and load_config(elsewhere).seed == 1


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"a.yaml": {"base": "missing.yaml"}}, r"a\.yaml: base: config file not found: .*missing\.yaml"),
        ({"a.yaml": {"base": "b.yaml"}, "b.yaml": {"base": "a.yaml"}}, r"b\.yaml: base: .*a\.yaml is already in the chain"),
        ({"a.yaml": {"base": 3}}, r"a\.yaml: base: must be the path of another training config"),
        ({"a.yaml": {"base": "b.yaml"}, "b.yaml": {"model": {"depth": 0}}}, r"a\.yaml: model\.depth"),
    ],
)
def test_bad_base_is_a_one_line_error_naming_the_file(tmp_path, files, message):
    for name, data in files.items():
        _write(tmp_path / name, data)
    with pytest.raises(InputError, match=message):
        load_config(tmp_path / "a.yaml")


def test_an_empty_or_broken_yaml_is_one_line_naming_the_file_and_line(tmp_path):
    (tmp_path / "empty.yaml").write_text("# nothing yet\n")
    with pytest.raises(InputError, match=r"empty.yaml: empty config"):  # was: the paper-size defaults, trained
        load_config(tmp_path / "empty.yaml")
    (tmp_path / "typo.yaml").write_text("data:\n  train_split: trian\n")
    with pytest.raises(InputError, match=r"typo.yaml: data.train_split: "):  # at load, naming the field
        load_config(tmp_path / "typo.yaml")
    (tmp_path / "broken.yaml").write_text("optim:\n  lr: 1e-3\n model: [\n")
    with pytest.raises(InputError, match=r"broken.yaml: line 3 not valid YAML"):
        load_config(tmp_path / "broken.yaml")


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out |= _flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v}
    return out


@pytest.mark.parametrize("name", ["unet_sup", "unet_sup4k", "unet_sup_cos", "unet_vsup", "unet_dose", "unet_wgan",
                                  "unet_d4", "unet_dose_d4", "unet_w16", "unet_dose_w16",
                                  "unet_dose_norm", "unet_dose_vw", "unet_flips4k", "unet_dose_wgan", "unet_dose_w16_wgan",
                                  "unet_w16_wgan", "unet_d4_p128", "unet_dose_d4_p128", "unet_dose_d4_p128_ema",
                                  "unet_dose_d4_p128_cos", "unet_dose_d4_p128_cos_ema", "unet_d4_w16",
                                  "unet_dose_d4_p128_ema_w16", "unet_dose_d4_p128_ema_w16_cosend",
                                  "unet_dose_d4_p128_ema_w16_l2", "unet_dose_d4_p128_ema_w16_lowdose",
                                  "unet_dose_d4_p128_ema_w16_faint", "unet_dose_d4_p128_ema_w16_faint_lowdose"])
def test_duan_variants_differ_from_unet_yaml_only_where_their_chain_says(name):
    unet = _flat(json.loads(load_config(DUAN / "unet.yaml").to_json()))
    variant = _flat(json.loads(load_config(DUAN / f"{name}.yaml").to_json()))
    declared, path = set(), DUAN / f"{name}.yaml"
    while path.name != "unet.yaml":  # the keys each file of the chain writes itself
        raw = yaml.safe_load(path.read_text())
        declared |= set(_flat(raw)) - {"base"}
        path = DUAN / raw["base"]
    differing = {k for k in variant if variant[k] != unet[k]}
    assert "name" in differing and differing <= declared
    assert variant["data.augment.p_superpose"] == (0.5 if "sup" in name or "dose" in name else 0.0)
    assert variant["data.augment.p_vessel_superpose"] == (0.5 if "vsup" in name else 0.0)
    assert variant["data.augment.p_dose"] == (0.5 if "dose" in name else 0.0)
    assert (variant["model.depth"], variant["model.base_channels"], variant["model.max_channels"]) == (
        4 if "d4" in name else 3, *((16, 128) if "w16" in name else (8, 64)))
    assert variant["optim.loss_reduction"] == ("image" if "norm" in name else "pixel")
    assert variant["gan.enabled"] == ("wgan" in name)
    assert variant["optim.vessel_weight"] == (4.0 if "vw" in name else 1.0)
    assert variant["data.augment.p_affine"] == (0.0 if "flips" in name else 0.3)
    assert variant["optim.ema_decay"] == (0.999 if "ema" in name else None)
    assert variant["optim.lr_schedule"] == ("cosine" if "cos" in name else "constant")
    assert variant["optim.lr_decay_steps"] == (2000 if "cosend" in name else None)
    assert (variant["optim.loss.l1"], variant["optim.loss.l2"]) == ((0.0, 1.0) if name.endswith("_l2") else (1.0, 1.0))
    assert (variant["data.augment.p_contrast"], variant["data.augment.contrast_range"]) == (
        (0.5, [0.3, 1.3]) if "faint" in name else (0.0 if "flips" in name else 0.3, [0.7, 1.3]))
    assert variant["data.augment.dose_floor_ugy"] == (0.002 if "lowdose" in name else 0.01 if "dose" in name else
                                                      unet["data.augment.dose_floor_ugy"])


@pytest.mark.parametrize("width", [8, 16, 32])
def test_capacity_diagnostic_configs_differ_from_their_recipe_in_width_loss_and_steps_only(width):
    recipe = _flat(json.loads(load_config(DUAN / "unet_dose_d4_p128_ema.yaml").to_json()))
    fit = _flat(json.loads(load_config(DUAN / f"fit_cow_w{width}.yaml").to_json()))
    assert {k for k in fit if fit[k] != recipe[k]} <= {"name", "optim.loss.l1", "optim.max_steps",
                                                     "model.base_channels", "model.max_channels"}
    assert (fit["optim.loss.l1"], fit["optim.loss.l2"], fit["optim.max_steps"]) == (0.0, 1.0, 3000)
    assert (fit["model.depth"], fit["model.base_channels"], fit["model.max_channels"]) == (4, width, 8 * width)


def test_the_capacity_diagnostic_without_augmentation_differs_only_in_augmenting_nothing():
    augmented = _flat(json.loads(load_config(DUAN / "fit_cow_w16.yaml").to_json()))
    plain = _flat(json.loads(load_config(DUAN / "fit_cow_w16_noaug.yaml").to_json()))
    assert {k for k in plain if plain[k] != augmented[k]} == {"name", "data.augment.enabled"}
    assert plain["data.augment.enabled"] is False


@pytest.mark.parametrize(
    ("optim", "field"),
    [({"loss_reduction": "batch"}, r"optim\.loss_reduction"), ({"vessel_weight": 0.5}, r"optim\.vessel_weight")],
)
def test_bad_loss_weighting_is_an_error_naming_the_field(optim, field):
    with pytest.raises(InputError, match=field):
        parse_config({"optim": optim})
