"""Torch backend = the numba trilinear kernel (CPU here; CUDA where a GPU is present)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from ddsa_sim import InputError
from ddsa_sim.geometry import CArm
from ddsa_sim.projector import Projector, ProjectorVolume
from ddsa_sim.projector.kernels_torch import TorchMarcher
from ddsa_sim.projector.torch_projector import TorchProjector

POSES = [(0.0, 0.0, 0.0), (27.0, -13.0, 5.0), (-38.0, 71.0, -20.0)]


def _carm(alpha, beta, gamma=0.0, rows=30, cols=36):
    return CArm(alpha_deg=alpha, beta_deg=beta, gamma_deg=gamma, sensor_height=rows, sensor_width=cols, pixel_mm=3.0)


@pytest.fixture(scope="module")
def scene():
    """A 3-material random CT on an anisotropic, offset grid + a fine iodine ball displacing blood."""
    rng = np.random.default_rng(1)
    n = (40, 33, 27)
    dens = rng.uniform(0, 2, n).astype(np.float32)
    dens[dens < 0.5] = 0
    labels = rng.integers(0, 3, n).astype(np.uint8)
    aff = np.diag([1.3, 1.1, 2.0, 1.0])
    aff[:3, 3] = [-25.0, -18.0, -27.0]
    ct = ProjectorVolume("ct", dens, labels, ("air", "soft tissue", "blood"), aff)
    m = 31
    idx = np.indices((m, m, m)) - (m - 1) / 2
    ball = (np.sqrt((idx**2).sum(0)) <= 12).astype(np.float32) * 0.01
    aff_i = np.diag([0.4, 0.4, 0.4, 1.0])
    aff_i[:3, 3] = [-6.0, -2.0, -7.0]
    iod = ProjectorVolume.single_material("iodine", ball, aff_i, "iodine", {"blood": 3.0})
    return ct, iod


@pytest.mark.parametrize("step_mm", [0.37, None])
@pytest.mark.parametrize("alpha,beta,gamma", POSES)
@pytest.mark.parametrize("dtype,rtol", [("float64", 1e-10), ("float32", 2e-5)])
def test_torch_equals_numba(scene, alpha, beta, gamma, dtype, rtol, step_mm):
    """Per-material area densities of every ray agree (relative to the image maximum), with
    subdivided planes (``step_mm``) and one sample per voxel plane (the bilinear path)."""
    ct, _ = scene
    proj = Projector([ct], step_mm=step_mm)
    carm = _carm(alpha, beta, gamma)
    ref = proj.march(carm, "ct")
    marcher = TorchMarcher("cpu", dtype=getattr(torch, dtype), samples_per_launch=4096)  # forces chunking
    got = (marcher.march(ct, proj.material_indices("ct"), len(proj.materials), [carm], step_mm)[0] * 0.1).numpy()
    assert ref.max() > 1.0 and np.count_nonzero(ref.sum(-1)) > 200
    assert np.abs(got - ref).max() <= rtol * ref.max()
    assert np.array_equal(got.sum(-1) == 0, ref.sum(-1) == 0)  # the same rays miss


def test_batched_views_equal_single_views(scene):
    ct, _ = scene
    proj = Projector([ct], step_mm=0.5)
    carms = [_carm(*p) for p in POSES]
    marcher = TorchMarcher("cpu", dtype=torch.float64)
    batch = marcher.march(ct, proj.material_indices("ct"), len(proj.materials), carms, 0.5).numpy() * 0.1
    for b, c in zip(batch, carms):
        np.testing.assert_allclose(b, proj.march(c, "ct"), rtol=0, atol=1e-10)


def test_volume_uploaded_once(scene):
    ct, _ = scene
    marcher = TorchMarcher("cpu")
    first = marcher.upload(ct)
    assert marcher.upload(ct) is first  # cached across poses / frames


def test_projector_backend_torch_dispatch_and_multi_volume_render(scene):
    """Projector(backend="torch") and TorchProjector.render match the numba path, iodine displacement included."""
    ct, iod = scene
    images = {"mask": ["ct"], "contrast": ["ct", "iodine"], "dsa": ["iodine"]}
    ref_p = Projector([ct, iod], step_mm=0.3)
    tor_p = Projector([ct, iod], step_mm=0.3, backend="torch")
    carm = _carm(20.0, 10.0)
    ref = ref_p.render(carm, images)
    got = tor_p.render(carm, images)
    batch = TorchProjector(tor_p).render([carm, carm.at(alpha_deg=-30.0)], images)
    for image in images:
        a_ref = np.stack([ref.area_density_g_per_cm2[image][m] for m in ref_p.materials], -1)
        a_got = np.stack([got.area_density_g_per_cm2[image][m] for m in ref_p.materials], -1)
        assert np.abs(a_got - a_ref).max() <= 2e-5 * a_ref.max()
        np.testing.assert_allclose(got.intensity[image], ref.intensity[image], rtol=0, atol=2e-5)
        np.testing.assert_allclose(batch[image]["intensity"][0].numpy(), ref.intensity[image], rtol=0, atol=2e-5)
        np.testing.assert_allclose(batch[image]["neglog"][0].numpy(), ref.neglog[image], rtol=0, atol=1e-3)
    # the iodine really is in the contrast image and absent from the mask
    assert got.area_density_g_per_cm2["contrast"]["iodine"].max() > 0.005
    assert got.area_density_g_per_cm2["mask"]["iodine"].max() == 0


def test_torch_backend_rejects_siddon_and_missing_cuda(scene):
    ct, _ = scene
    with pytest.raises(InputError, match="trilinear"):
        Projector([ct], method="siddon", backend="torch")
    with pytest.raises(InputError, match="backend"):
        Projector([ct], backend="triton")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="CUDA"):
            Projector([ct], device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("alpha,beta,gamma", POSES)
def test_cuda_equals_numba(scene, alpha, beta, gamma):
    ct, iod = scene
    carm = _carm(alpha, beta, gamma)
    ref_p = Projector([ct, iod], step_mm=0.37)
    cuda_p = Projector([ct, iod], step_mm=0.37, device="cuda")
    for name in ("ct", "iodine"):
        ref = ref_p.march(carm, name)
        got = cuda_p.march(carm, name)
        assert np.abs(got - ref).max() <= 2e-5 * max(ref.max(), 1e-12)
