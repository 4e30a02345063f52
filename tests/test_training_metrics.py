"""Metric functions against independently computed numbers."""

import math
import warnings

import numpy as np
import pytest

from ddsa_sim.training.metrics import mae, nmse, psnr, ssim, summarize


def test_psnr_of_known_mse():
    rng = np.random.default_rng(0)
    t = rng.uniform(0, 2, (32, 32))
    p = t + 0.1  # MSE exactly 0.01
    assert psnr(p, t, data_range=2.0) == pytest.approx(10 * math.log10(4.0 / 0.01), rel=1e-9)
    assert psnr(p, t, data_range=1.0) == pytest.approx(20.0, rel=1e-9)
    assert psnr(t, t, data_range=1.0) == math.inf
    with pytest.raises(ValueError):
        psnr(p, t, data_range=0.0)


def test_ssim_identity_and_degradation():
    rng = np.random.default_rng(1)
    t = rng.uniform(0, 1, (48, 48)).astype(np.float32)
    assert ssim(t, t, data_range=1.0) == pytest.approx(1.0, abs=1e-6)
    noisy = t + rng.normal(0, 0.2, t.shape).astype(np.float32)
    assert ssim(noisy, t, data_range=1.0) < 0.9


def test_ssim_matches_skimage_gaussian():
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(2)
    t = rng.uniform(0, 1, (64, 64))
    p = t + rng.normal(0, 0.1, t.shape)
    ref = structural_similarity(
        p, t, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )
    # pytorch_msssim uses 'valid' filtering, skimage crops the borders: agree to ~1e-2
    assert ssim(p, t, data_range=1.0) == pytest.approx(ref, abs=1e-2)


def test_nmse_and_mae_formulas():
    t = np.array([[1.0, 2.0], [3.0, 4.0]])
    p = np.array([[1.0, 1.0], [3.0, 6.0]])
    assert nmse(p, t) == pytest.approx((0 + 1 + 0 + 4) / (1 + 4 + 9 + 16))
    assert mae(p, t) == pytest.approx((0 + 1 + 0 + 2) / 4)


def test_summarize_means_and_spread():
    s = summarize([{"psnr": 10.0}, {"psnr": 20.0}, {"psnr": 30.0}])
    assert s["psnr"] == pytest.approx(20.0)
    assert s["psnr_std"] == pytest.approx(np.std([10, 20, 30]))
    assert s["psnr_median"] == pytest.approx(20.0)
    with warnings.catch_warnings():  # an exact image's PSNR, infinite on every sample: no numpy warning
        warnings.simplefilter("error")
        s = summarize([{"psnr": math.inf}, {"psnr": math.inf}])
    assert s["psnr"] == math.inf and math.isnan(s["psnr_std"]) and s["psnr_median"] == math.inf


def test_combined_loss_terms():
    import torch

    from ddsa_sim.training.losses import CombinedLoss

    t = torch.rand(2, 1, 24, 24)
    p = t + 0.5
    assert float(CombinedLoss({"l1": 1.0})(p, t)) == pytest.approx(0.5, rel=1e-6)
    assert float(CombinedLoss({"l2": 2.0})(p, t)) == pytest.approx(0.5, rel=1e-6)
    assert float(CombinedLoss({"ssim": 1.0}, ssim_data_range=1.0)(t, t)) == pytest.approx(0.0, abs=1e-6)
    noisy = t + 0.3 * torch.randn_like(t)
    both = CombinedLoss({"l1": 1.0, "ssim": 1.0}, ssim_data_range=1.0)(noisy, t)
    assert float(both) == pytest.approx(
        float((noisy - t).abs().mean())
        + 1
        - ssim(noisy[0, 0], t[0, 0], 1.0) / 2
        - ssim(noisy[1, 0], t[1, 0], 1.0) / 2,
        rel=1e-4,
    )
    with pytest.raises(ValueError):
        CombinedLoss({"l3": 1.0})


def test_image_reduction_counts_each_image_by_its_relative_error():
    """Two images whose targets differ 2 x in amplitude (4 x in energy) and whose predictions are both 10 %
    too high: pixel-wise their L2 errors differ 4 x; per image both are 1 % of their energy, and the loss is
    that 1 % of the batch's mean energy. An image without vessels weighs 1 / ENERGY_FLOOR_FRACTION."""
    import torch

    from ddsa_sim.training.losses import ENERGY_FLOOR_FRACTION, CombinedLoss, reduce_error

    t1 = torch.rand(1, 1, 16, 16) + 0.1
    t = torch.cat([t1, 2 * t1])
    p = 1.1 * t
    e1, e2 = float((t1**2).mean()), float((4 * t1**2).mean())
    mean_energy = (e1 + e2) / 2
    assert float(CombinedLoss({"l2": 1.0})(p, t)) == pytest.approx(0.01 * mean_energy, rel=1e-4)
    assert float(CombinedLoss({"l2": 1.0}, reduction="image")(p, t)) == pytest.approx(
        0.01 * mean_energy, rel=1e-4
    )
    # the faint image's error counts 4 x what it counts pixel-wise: the loss's gradient on it is that larger
    for reduction, ratio in (("pixel", 1.0), ("image", 4.0)):
        q = p.clone().requires_grad_(True)
        CombinedLoss({"l2": 1.0}, reduction=reduction)(q, t).backward()
        g = q.grad.abs().sum(dim=(1, 2, 3))
        assert float(g[0] / g[1]) == pytest.approx(ratio * 0.5, rel=1e-4)  # error of image 0 is half
    # L1 uses mean |t| as the energy
    l1 = float(CombinedLoss({"l1": 1.0}, reduction="image")(p, t))
    m1, m2 = float(t1.mean()), float(2 * t1.mean())
    assert l1 == pytest.approx(0.1 * (m1 + m2) / 2, rel=1e-4)
    # a vessel-free image (target 0, error 0.2 everywhere) next to a vessel image: floored energy
    z = torch.zeros_like(t1)
    err = torch.cat([torch.full_like(t1, 0.04), ((p - t) ** 2)[:1]])
    ref = torch.cat([z, t1**2])
    got = float(reduce_error(err, ref, reduction="image"))
    mean_e = e1 / 2
    want = (0.04 * mean_e / (ENERGY_FLOOR_FRACTION * mean_e) + 0.01 * e1 * mean_e / e1) / 2
    assert got == pytest.approx(want, rel=1e-4)
    # a batch without any vessel: plain mean
    assert float(reduce_error(err[:1], ref[:1], reduction="image")) == pytest.approx(0.04, rel=1e-6)


def test_vessel_weight_is_a_weighted_mean_per_image():
    import torch

    from ddsa_sim.training.losses import CombinedLoss

    torch.manual_seed(0)
    t = torch.where(torch.rand(2, 1, 16, 16) > 0.8, torch.rand(2, 1, 16, 16) + 0.5, torch.zeros(2, 1, 16, 16))
    p = t + 0.2 * torch.randn_like(t)
    got = float(CombinedLoss({"l1": 1.0}, vessel_weight=4.0, vessel_threshold=0.1)(p, t))
    e, v = (p - t).abs().numpy(), (t > 0.1).numpy()
    want = np.mean([(e[i] * np.where(v[i], 4.0, 1.0)).sum() / np.where(v[i], 4.0, 1.0).sum() for i in range(2)])
    assert got == pytest.approx(want, rel=1e-5)
    plain = float(CombinedLoss({"l1": 1.0}, vessel_weight=1.0, vessel_threshold=0.1)(p, t))
    assert plain == pytest.approx(float((p - t).abs().mean()), rel=1e-6)
