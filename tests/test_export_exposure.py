"""Exposure randomisation in the exporter: Cu filtration, grid on/off, detector MTF50, bit depth."""

from __future__ import annotations

import shutil
from dataclasses import replace

import numpy as np
import pytest
from test_export_plan import base_config_dict
from test_export_scene import write_config

from ddsa_sim import InputError
from ddsa_sim.export.config import config_from_dict, load_config
from ddsa_sim.export.format import OPTIONAL_META_ARRAYS
from ddsa_sim.export.plan import plan_dataset
from ddsa_sim.export.runner import run_export
from ddsa_sim.export.sample import (
    CTCache,
    aim_point_mm,
    crop_origin,
    render_sample,
    sample_carm,
    scene_options,
    scene_spec,
)
from ddsa_sim.export.store import open_store, read_sample
from ddsa_sim.physics.blur import CSI_MTF50_CYCLES_PER_MM
from ddsa_sim.physics.spectra import spectrum_at_kvp, spekpy_spectrum
from ddsa_sim.scene import build_scene

RANDOMISED = {"spectrum": {"kvp": {"min": 60, "max": 125}, "filter_al_mm": {"min": 2, "max": 6},
                           "filter_cu_mm": {"grid": [0.0, 0.1, 0.2, 0.3]}},
              "detector": {"mtf50_cycles_per_mm": {"min": 0.8, "max": 2.0}, "bit_depth": {"grid": [12, 14, 16]}},
              "effects": {"grid_fraction": 0.5, "scatter": True}}


def test_randomised_fields_are_drawn_after_the_old_ones():
    old = plan_dataset(config_from_dict(base_config_dict(count=200)))
    data = base_config_dict(count=200)
    data["spectrum"] = {**data["spectrum"], "filter_cu_mm": RANDOMISED["spectrum"]["filter_cu_mm"]}
    data.update(detector=RANDOMISED["detector"], effects=RANDOMISED["effects"])
    new = plan_dataset(config_from_dict(data))
    for a, b in zip(old, new):  # every earlier draw keeps its value
        assert (a.seed, a.alpha_deg, a.kvp, a.filter_al_mm, a.mas, a.iodine_mg_per_ml, a.electronic_noise) == (
            b.seed, b.alpha_deg, b.kvp, b.filter_al_mm, b.mas, b.iodine_mg_per_ml, b.electronic_noise)
    assert {s.filter_cu_mm for s in new} == {0.0, 0.1, 0.2, 0.3} and {s.bit_depth for s in new} == {12, 14, 16}
    assert all(0.8 <= s.detector_mtf50_cycles_per_mm <= 2.0 for s in new)
    assert 0.4 < np.mean([s.grid for s in new]) < 0.6
    assert all(s.grid and s.bit_depth is None and s.detector_mtf50_cycles_per_mm == CSI_MTF50_CYCLES_PER_MM
               for s in old)


@pytest.mark.parametrize("patch, match", [
    ({"detector": {"bit_depth": {"min": 12, "max": 16}}}, "detector.bit_depth"),
    ({"detector": {"bit_depth": 20}}, "integers 8..16"),
    ({"detector": {"mtf50_cycles_per_mm": 0}}, "mtf50_cycles_per_mm must be > 0"),
    ({"spectrum": {"filter_cu_mm": -0.1}}, "filter_cu_mm must be >= 0"),
    ({"effects": {"grid_fraction": 1.5}}, "effects.grid_fraction"),
    ({"detector": {"bit_depth": 12}, "mas": None, "detector_air_kerma_ugy": 2.0}, "bit_depth needs photons_per_pixel"),
])
def test_bad_exposure_fields_are_one_line_errors(patch, match):
    data = base_config_dict()
    data.update(patch)
    with pytest.raises(InputError, match=match):
        config_from_dict(data)


def test_copper_reaches_the_spectrum():
    s = spectrum_at_kvp(81.0, 3.0, 2.0, 0.2)
    assert "cu=0.2" in s.name
    lo, hi = spekpy_spectrum(80.0, 3.0, 0.2), spekpy_spectrum(82.0, 3.0, 0.2)
    assert lo.mean_energy_kev < s.mean_energy_kev < hi.mean_energy_kev
    assert s.mean_energy_kev > spectrum_at_kvp(81.0, 3.0, 2.0).mean_energy_kev + 2  # copper hardens the beam


def test_bit_depth_quantises_and_grid_mtf_reach_the_scene(tmp_path):
    cfg = load_config(write_config(tmp_path, noise=True, count=2, photons_per_pixel=1e5,
                                   detector={"rows": 64, "cols": 64, "pixel_mm": 4.0, "binning": 1, "bit_depth": 8,
                                             "mtf50_cycles_per_mm": 0.3},
                                   effects={"noise": True, "scatter": True, "motion": "none", "grid_fraction": 0.0}))
    spec = plan_dataset(cfg)[0]
    assert spec.bit_depth == 8 and not spec.grid
    scene = scene_spec(spec, scene_options({}))
    assert scene.effects.scatter.grid is None and scene.effects.blur.detector_mtf50_cycles_per_mm == 0.3
    a = render_sample(spec, CTCache(1))
    # stored I/I0 = digital units / (gain x flat-field quanta), the gain putting the brightest flat-field pixel (the
    # heel effect's cathode edge) at 0.9 x 255: DU = I/I0 x 229.5 x each pixel's quanta / the brightest's, integers
    patient = CTCache(1).get(spec)
    scene = build_scene(scene_spec(spec, scene_options(spec.renderer_options, spec.device)), patient)
    carm = sample_carm(spec, aim_point_mm(spec, patient, scene))
    quanta = scene.flat_field_quanta(scene.projector, carm, scene.exposure.n0(scene.projector.spectrum, carm))
    (r0, c0), (h, w) = crop_origin(spec), spec.image_shape
    assert quanta.min() / quanta.max() < 0.9  # the heel effect spreads them (0.85 over this 256 mm field)
    du = np.exp(-a["mask"].astype(np.float64)) * 0.9 * 255 * (quanta / quanta.max())[r0:r0 + h, c0:c0 + w]
    assert np.abs(du - np.rint(du)).max() < 1e-3 * du.max()
    assert len(np.unique(np.rint(du))) <= 256
    # without the grid more scatter reaches the detector: less -ln; a lower MTF50 smooths the frame
    clean = replace(spec, noise=False, bit_depth=None)
    no_grid, with_grid = (render_sample(replace(clean, grid=g), CTCache(1))["mask"] for g in (False, True))
    assert no_grid.mean() < with_grid.mean() - 0.05
    sharp, soft = (render_sample(replace(clean, detector_mtf50_cycles_per_mm=m), CTCache(1))["mask"] for m in (None, 0.02))
    assert np.abs(np.diff(soft, n=2, axis=1)).sum() < 0.8 * np.abs(np.diff(sharp, n=2, axis=1)).sum()


def test_meta_records_the_draws_and_old_stores_without_them_still_work(tmp_path):
    cfg = load_config(write_config(tmp_path, noise=True, count=3, photons_per_pixel=1e5,
                                   spectrum={**RANDOMISED["spectrum"], "kvp": 80},  # few SpekPy calls
                                   detector={"rows": 64, "cols": 64, "pixel_mm": 4.0, "binning": 1,
                                             **RANDOMISED["detector"]},
                                   effects={"noise": True, "scatter": True, "motion": "none", "grid_fraction": 0.5}))
    path = tmp_path / "ds.zarr"
    run_export(cfg, path, workers=1, progress=False, preview=False)
    specs = plan_dataset(cfg)
    root = open_store(path)
    meta = root["meta"]
    np.testing.assert_array_equal(meta["filter_cu_mm"][:], [s.filter_cu_mm for s in specs])
    np.testing.assert_array_equal(meta["filter_al_mm"][:], [s.filter_al_mm for s in specs])
    np.testing.assert_array_equal(meta["grid"][:], [int(s.grid) for s in specs])
    np.testing.assert_array_equal(meta["bit_depth"][:], [s.bit_depth for s in specs])
    np.testing.assert_array_equal(meta["detector_mtf50_cycles_per_mm"][:],
                                  [s.detector_mtf50_cycles_per_mm for s in specs])
    # a store made before the optional arrays: opens, reads, and resumes
    for name in OPTIONAL_META_ARRAYS:
        shutil.rmtree(path / "meta" / name)
    root = open_store(path, mode="r+")
    root["meta/complete"][1] = 0
    _, m = read_sample(open_store(path), 0)
    assert "filter_cu_mm" not in m and "kvp" in m
    res = run_export(cfg, path, resume=True, progress=False, preview=False)
    assert res.written == 1 and bool(open_store(path)["meta/complete"][1])


def test_changed_defaults_are_recorded_so_old_physics_is_not_resumed():
    """The detector MTF50 (1.2 -> 1.46 cycles/mm) and the cardiac radial amplitude (3-6 -> 0.5-1.5 mm)
    changed after their fields came: a config at the new defaults records them (a store made under the
    old physics, which recorded neither, refuses to resume), one at the old values leaves them out."""
    new = config_from_dict(base_config_dict()).resolved()
    assert new["detector"]["mtf50_cycles_per_mm"] == CSI_MTF50_CYCLES_PER_MM
    assert new["effects"]["cardiac_radial_mm"] == {"min": 0.5, "max": 1.5}
    d = base_config_dict()
    d["detector"] = {**d.get("detector", {}), "mtf50_cycles_per_mm": 1.2}
    d["effects"] = {**d.get("effects", {}), "cardiac_radial_mm": {"min": 3.0, "max": 6.0}}
    old = config_from_dict(d).resolved()
    assert "mtf50_cycles_per_mm" not in old["detector"] and "cardiac_radial_mm" not in old["effects"]
