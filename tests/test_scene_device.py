"""The torch (GPU) code path behind DSA scenes and the export, run on the CPU: equal to numba within float32;
several views of a scene batched per launch equal to view by view."""

from __future__ import annotations

import numpy as np
import pytest
from scene_helpers import make_scene, small_carm
from test_export_scene import write_config

from ddsa_sim import InputError
from ddsa_sim.export.config import load_config
from ddsa_sim.export.format import IMAGE_ARRAYS
from ddsa_sim.export.plan import plan_dataset
from ddsa_sim.export.sample import CTCache, render_sample
from ddsa_sim.scene import bolus_times, render_frames, render_views
from ddsa_sim.scene.recording import ScatterSettings


def test_export_sample_on_torch_equals_numba_on_every_array(tmp_path):
    pytest.importorskip("torch")
    samples = {}
    for backend in ("numba", "torch"):
        folder = tmp_path / backend
        folder.mkdir()
        # noise off: numpy's Poisson sampler consumes a varying number of uniforms, so a 1e-7 change of an
        # expected count re-draws every later pixel; the noise-free arrays are the comparison
        cfg = load_config(write_config(folder, noise=False, count=2, renderer_options={
            "vessel_spacing_mm": 0.5, "method": "trilinear", "backend": backend}))
        cache = CTCache(1)
        samples[backend] = [render_sample(s, cache) for s in plan_dataset(cfg)]
    for ref, got in zip(samples["numba"], samples["torch"]):
        assert set(ref) == set(got)
        for name in ref:
            a, b = ref[name], got[name]
            assert a.dtype == b.dtype, name
            if name == "vessel_mask":  # iodine > 0: equal but where float32 round-off decides a border pixel
                assert np.mean(a != b) < 1e-3
            elif name == "frame_times_s":  # NaN: a single fully filled frame
                assert np.array_equal(a, b, equal_nan=True)
            elif a.dtype.kind == "U":  # motion_applied: the motion drawn, JSON
                assert a == b, name
            else:
                scale = max(float(np.abs(a).max()), 1e-12)
                assert np.abs(a.astype(np.float64) - b).max() <= 5e-5 * scale, name
        assert ref["dsa_target"].max() > 0.01  # vessels in view
    assert set(IMAGE_ARRAYS) <= set(samples["torch"][0])


@pytest.mark.parametrize("supersample", [1, 2])
def test_batched_views_equal_view_by_view_within_float32(monkeypatch, supersample):
    """render_views marches each volume once for all views (one TorchMarcher call per volume and bolus
    time) and equals render_frames per view to float32 round-off, on every array of every frame (with
    2 x 2 rays per pixel too: the batch marches the subdivided detectors)."""
    pytest.importorskip("torch")
    from ddsa_sim.projector.kernels_torch import TorchMarcher

    scene = make_scene(method="trilinear", backend="torch", scatter=ScatterSettings(enabled=True),
                       supersample=supersample)
    carms = [small_carm(alpha_deg=a, beta_deg=b) for a, b in ((0, 0), (25, -10), (-30, 15))]
    times = bolus_times(scene, 2)
    seeds = [np.random.default_rng([5, n]) for n in range(3)]
    ref = [render_frames(scene, c, np.random.default_rng([5, n]), times) for n, c in enumerate(carms)]
    calls = []
    march = TorchMarcher.march
    monkeypatch.setattr(TorchMarcher, "march", lambda self, vol, *a, **k: calls.append((vol.name, len(a[2])))
                        or march(self, vol, *a, **k))
    got = list(render_views(scene, carms, seeds, times))
    assert calls == [("ct", 3), ("vessels0", 3), ("vessels0", 3)]  # CT once, vessels once per bolus time
    for r, g in zip(ref, got):
        for key in ("mask", "mask_clean", "contrast", "contrast_clean", "dsa_target", "conventional_dsa",
                    "iodine_mg_per_cm2", "mask_primary", "mask_scatter"):
            a, b = getattr(r, key), getattr(g, key)
            # differences of two frames carry the round-off of their operands (-ln I ~ 4 here)
            scale = float(np.abs(r.contrast).max()) if key in ("dsa_target", "conventional_dsa") else float(
                np.abs(a).max())
            assert np.abs(a.astype(np.float64) - b).max() <= 2e-6 * scale, key
        assert np.mean(r.vessel_mask != g.vessel_mask) < 1e-3
        assert r.dsa_target.max() > 0.01 and r.times_s.tolist() == g.times_s.tolist()
    # views of distinct poses differ (the batch is not one view repeated)
    assert np.abs(got[0].mask - got[1].mask).max() > 0.1
    # a batch of one view at a time gives the same images
    one = list(render_views(scene, carms, [np.random.default_rng([5, n]) for n in range(3)], times,
                            max_batch_bytes=1))
    for a, b in zip(got, one):
        assert np.abs(a.contrast - b.contrast).max() <= 2e-6 * float(np.abs(a.contrast).max())


def test_render_views_checks_its_arguments_first():
    scene = make_scene()
    with pytest.raises(InputError, match="one rng per view"):
        render_views(scene, [small_carm(), small_carm()], [np.random.default_rng(0)])
