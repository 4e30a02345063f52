"""Metric functions against independently computed numbers."""

import math

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
