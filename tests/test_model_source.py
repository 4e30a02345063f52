"""The ``model:`` vessel source: a vessel-GAN sample placed in a CT and rendered (``dsa`` and the exporter).

Truth: the sample equals the generator's own sampling (an independent call); the projected iodine
integrates to the iodine mass of the sampled lumen (label voxels x voxel volume x concentration); the
target is exactly zero where no ray meets iodine; a sample regenerates bit for bit.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
import yaml
from scipy import ndimage

from ddsa_sim import InputError
from ddsa_sim.export.config import load_config
from ddsa_sim.export.plan import plan_dataset
from ddsa_sim.export.sample import CTCache, render_sample
from ddsa_sim.scene.model_source import lumen_points, model_volume
from vessel_models.gan.checkpoint import build_networks, load_generator, save_checkpoint
from vessel_models.gan.config import GanConfig
from vessel_models.gan.sample import sample_labels

SPACING_MM = 2.0
SHAPE = (16, 16, 16)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """An untrained tiny WGAN generator saved as a checkpoint; its output bias centres the logits on 0
    (about half the voxels are vessel at threshold 0.5)."""
    cfg = GanConfig.from_dict({"device": "cpu", "seed": 3,
                               "data": {"shape": list(SHAPE), "spacing_mm": SPACING_MM},
                               "net": {"kind": "wgan", "latent_dim": 8, "base_channels": 4, "max_channels": 8}})
    generator, critic = build_networks(cfg)
    generator.eval()
    with torch.no_grad():
        generator.body[-1].bias -= generator(torch.randn(4, 8, generator=torch.Generator().manual_seed(0))).median()
    return str(save_checkpoint(tmp_path_factory.mktemp("gan") / "best.pt", cfg, generator, critic, step=0))


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    """A 48^3 water cylinder (4 mm voxels) in air."""
    n = 48
    hu = np.full((n, n, n), -1000.0, np.float32)
    i, j, _ = np.indices(hu.shape)
    c = (n - 1) / 2
    hu[(i - c) ** 2 + (j - c) ** 2 < (0.42 * n) ** 2] = 0.0
    path = tmp_path_factory.mktemp("ct") / "phantom.nii.gz"
    nib.save(nib.Nifti1Image(hu, np.diag([4.0, 4.0, 4.0, 1.0])), str(path))
    return str(path)


def test_sample_is_the_generators_own_and_a_function_of_the_seed(checkpoint):
    frac, affine = model_volume(checkpoint, 5, {"threshold": 0.5, "truncation": 0.8})
    generator, _ = load_generator(checkpoint)
    expected = sample_labels(generator, 1, 5, truncation=0.8, threshold=0.5)[0]
    assert frac.dtype == np.float32 and np.array_equal(frac, expected.astype(np.float32))
    assert 0.05 < frac.mean() < 0.95
    np.testing.assert_allclose(np.diag(affine)[:3], SPACING_MM)
    np.testing.assert_allclose(affine[:3, :3] @ (np.array(SHAPE) - 1) / 2 + affine[:3, 3], 0.0)  # centred
    assert np.array_equal(model_volume(checkpoint, 5, {"truncation": 0.8})[0], frac)
    assert not np.array_equal(model_volume(checkpoint, 6, {"truncation": 0.8})[0], frac)


def test_bad_model_source_input_is_one_line(checkpoint, tmp_path):
    with pytest.raises(InputError, match=r"^src\.params\.temperature: unknown sampling parameter"):
        model_volume(checkpoint, 0, {"temperature": 1.0}, field="src")
    with pytest.raises(InputError, match=r"^src\.params\.threshold: must be in \(0, 1\)"):
        model_volume(checkpoint, 0, {"threshold": 1.0}, field="src")
    with pytest.raises(InputError, match=r"^src: checkpoint not found"):
        model_volume(str(tmp_path / "none.pt"), 0, field="src")
    with pytest.raises(InputError, match=r"no vessel voxel at threshold 0.999"):
        model_volume(checkpoint, 0, {"threshold": 0.999}, field="src")


def test_lumen_points_start_at_the_thickest_point():
    vol = np.zeros((12, 12, 12), np.float32)
    vol[2:9, 2:9, 2:9] = 1  # a 7^3 block (centre 5, 5, 5) with a one-voxel wire
    vol[5, 5, 9:12] = 1
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    pts = lumen_points(vol, affine)
    assert len(pts) == int(vol.sum())
    np.testing.assert_allclose(pts[0], [10.0, 10.0, 10.0])


def _iodine_mass_mg(label_voxels: int, iodine_mg_per_ml: float) -> float:
    return label_voxels * (SPACING_MM / 10) ** 3 * iodine_mg_per_ml


def test_dsa_renders_a_model_source(checkpoint, phantom, tmp_path):
    from typer.testing import CliRunner

    from ddsa_sim.cli import app

    out = tmp_path / "dsa"
    pixel_mm, iodine = 2.0, 100.0
    r = CliRunner().invoke(app, ["dsa", "--ct", phantom, "--vessels", f"model:{checkpoint}", "--seed", "4",
                                 "--detector", "128x128", "--pixel-mm", str(pixel_mm), "--no-noise", "--no-scatter",
                                 "--bit-depth", "0", "--iodine", str(iodine), "-o", str(out)])
    assert r.exit_code == 0, r.output
    v = np.load(out / "view_000.npz")
    label = model_volume(checkpoint, 4)[0]
    iod, target = v["iodine_mg_per_cm2"], v["dsa_target"]
    assert v["vessel_mask"].sum() > 50 and np.all(target[v["vessel_mask"] > 0] > 0)
    # nothing outside the lumen beyond the blur's reach (focal spot + detector: 5 sigma < 1 px of 2 mm)
    near = ndimage.binary_dilation(iod > 0, iterations=1)
    assert np.all(target[~near] == 0) and (~near).sum() > 0.5 * iod.size
    # the detector integral of the projected iodine is the lumen's iodine mass (pixel area at the isocenter)
    pixel_at_iso_cm = pixel_mm * 530.0 / 1020.0 / 10
    mass = float(iod.astype(np.float64).sum()) * pixel_at_iso_cm**2
    assert mass == pytest.approx(_iodine_mass_mg(int(label.sum()), iodine), rel=0.03)
    r2 = CliRunner().invoke(app, ["dsa", "--ct", phantom, "--vessels", "model:", "-o", str(tmp_path / "x")])
    assert isinstance(r2.exception, InputError) and str(r2.exception) == "--vessels model: names no checkpoint"


def _config(folder, checkpoint: str, phantom: str, **params) -> str:
    cfg = {
        "cts": [{"path": phantom}],
        "vessels": {"per_ct": 2, "sources": [{"model": checkpoint, "params": params}]},
        "placement": {"jitter_mm": 5.0},
        "pose": {"alpha_deg": {"min": -20, "max": 20}, "beta_deg": 0},
        "detector": {"rows": 64, "cols": 64, "pixel_mm": 4.0, "binning": 1},
        "effects": {"noise": True, "scatter": False, "motion": "none"},
        "count": 3, "seed": 7,
    }
    path = folder / "ds.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def test_export_renders_and_regenerates_a_model_source(checkpoint, phantom, tmp_path):
    specs = plan_dataset(load_config(_config(tmp_path, checkpoint, phantom, truncation={"min": 0.7, "max": 1.0})))
    assert {s.vessel_source["kind"] for s in specs} == {"model"}
    first = render_sample(specs[0], CTCache(1))
    iod, target = first["iodine_mg_per_cm2"], first["dsa_target"]
    assert first["vessel_mask"].sum() > 20
    assert np.all(target[iod == 0] == 0) and np.all(target[first["vessel_mask"] > 0] > 0)
    again = render_sample(specs[0], CTCache(1))  # alone, fresh cache: the same bits
    # frame_times_s of a single fully filled frame is NaN (docs/store_format.md): NaN equals NaN here
    assert all(np.array_equal(first[k], again[k], equal_nan=first[k].dtype.kind == "f") for k in first)
    other = [s for s in specs if s.vessel_source["seed"] != specs[0].vessel_source["seed"]]
    assert other and not np.array_equal(render_sample(other[0], CTCache(1))["iodine_mg_per_cm2"], iod)


def test_export_config_checks_model_params(checkpoint, phantom, tmp_path):
    with pytest.raises(InputError, match=r"vessels\.sources\.0.*params\.truncation: must be in \(0, 2\]"):
        load_config(_config(tmp_path, checkpoint, phantom, truncation={"min": 0.5, "max": 3.0}))
    with pytest.raises(InputError, match=r"params\.seed: unknown sampling parameter"):
        load_config(_config(tmp_path, checkpoint, phantom, seed=3))
