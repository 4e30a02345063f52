"""The torch (GPU) code path behind DSA scenes and the export, run on the CPU: equal to numba within float32."""

from __future__ import annotations

import numpy as np
import pytest
from test_export_scene import write_config

from ddsa_sim import InputError
from ddsa_sim.export.config import load_config
from ddsa_sim.export.format import IMAGE_ARRAYS
from ddsa_sim.export.plan import plan_dataset
from ddsa_sim.export.sample import CTCache, render_sample


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
            else:
                scale = max(float(np.abs(a).max()), 1e-12)
                assert np.abs(a.astype(np.float64) - b).max() <= 5e-5 * scale, name
        assert ref["dsa_target"].max() > 0.01  # vessels in view
    assert set(IMAGE_ARRAYS) <= set(samples["torch"][0])


def test_torch_backend_refuses_siddon_in_the_config(tmp_path):
    cfg = load_config(write_config(tmp_path, noise=False, count=1, renderer_options={"device": "cuda"}))
    with pytest.raises(InputError, match="renderer_options.method"):
        render_sample(plan_dataset(cfg)[0], CTCache(1))
