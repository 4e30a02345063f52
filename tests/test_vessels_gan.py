"""Learned vessel generators (vessel_models.gan): networks, penalties, sampling, checkpoints, training."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from vessel_models.gan.checkpoint import build_networks, load_checkpoint, load_generator, save_checkpoint
from vessel_models.gan.config import GanConfig
from vessel_models.gan.losses import gradient_penalty, r1_penalty
from vessel_models.gan.quality import FEATURES, compare_sets, feature_matrix, vessel_features
from vessel_models.gan.sample import sample_labels
from vessel_models.gan.train import split_volumes, train_gan
from vessel_models.tree import VesselInputError

SHAPE = (16, 16, 16)


def tiny(kind: str, half_res: bool = False, **optim) -> GanConfig:
    return GanConfig.from_dict({
        "device": "cpu", "num_threads": 1, "eval_every": 1000, "eval_samples": 4,
        "data": {"shape": list(SHAPE), "spacing_mm": 1.0, "mode": "crop", "val_fraction": 0.25},
        "net": {"kind": kind, "latent_dim": 8, "base_channels": 4, "max_channels": 8, "mapping_layers": 2,
                "half_res": half_res},
        "optim": {"batch_size": 4, **optim},
    })


def tubes(n: int, seed: int = 0) -> list[np.ndarray]:
    """Straight tubes of radius 2 voxels along axis 0 at random positions (a toy vessel data set)."""
    rng = np.random.default_rng(seed)
    j, k = np.mgrid[:SHAPE[1], :SHAPE[2]]
    out = []
    for _ in range(n):
        cj, ck = rng.uniform(5, 11, size=2)
        disc = (j - cj) ** 2 + (k - ck) ** 2 <= 4.0
        out.append(np.broadcast_to(disc, SHAPE).copy())
    return out


@pytest.mark.parametrize("half_res", [False, True])
@pytest.mark.parametrize("kind", ["wgan", "stylegan"])
def test_shapes(kind, half_res):
    g, c = build_networks(tiny(kind, half_res))
    z = torch.randn(3, 8)
    x = g(z)
    assert x.shape == (3, 1, *SHAPE)
    assert c(x).shape == (3,)
    p = sample_labels(g, 2, seed=0)
    assert p.shape == (2, *SHAPE) and p.dtype == bool


def test_space_to_depth_puts_each_block_in_channels():
    from vessel_models.gan.wgan import space_to_depth

    x = torch.arange(2 * 3 * 4 * 6 * 8, dtype=torch.float32).reshape(2, 3, 4, 6, 8)
    blocks = space_to_depth(x)
    assert blocks.shape == (2, 24, 2, 3, 4)
    for c in range(3):  # channel 8 c + 4 a + 2 b + e holds voxels (2 i + a, 2 j + b, 2 k + e) of channel c
        for a, b, e in np.ndindex(2, 2, 2):
            assert torch.equal(blocks[:, 8 * c + 4 * a + 2 * b + e], x[:, c, a::2, b::2, e::2])


def test_wgan_critic_is_spectrally_normalised():
    _, critic = build_networks(tiny("wgan"))
    layers = [m for m in critic.modules() if isinstance(m, (torch.nn.Conv3d, torch.nn.Linear))]
    assert layers and all(torch.nn.utils.parametrize.is_parametrized(m, "weight") for m in layers)
    for m in layers:  # the largest singular value of each normalised weight is ~1 after power iterations
        critic.train()
        for _ in range(30):
            critic(torch.randn(2, 1, *SHAPE))
        w = m.weight.detach().flatten(1)
        assert torch.linalg.matrix_norm(w, ord=2) == pytest.approx(1.0, rel=0.05)


def test_gradient_penalty_of_known_critics():
    real, fake = torch.randn(2, 1, 2, 2, 2), torch.randn(2, 1, 2, 2, 2)
    # linear critic D(x) = sum(a x): gradient a everywhere, penalty (||a|| - 1)^2 = (0.5 sqrt(8) - 1)^2
    gp = gradient_penalty(lambda x: (0.5 * x).flatten(1).sum(1), real, fake)
    assert float(gp) == pytest.approx((0.5 * np.sqrt(8) - 1) ** 2, rel=1e-6)
    # quadratic critic D(x) = |x|^2 / 2: gradient x_hat = eps real + (1 - eps) fake
    eps = torch.tensor([0.25, 0.75])
    x_hat = eps.view(-1, 1, 1, 1, 1) * real + (1 - eps.view(-1, 1, 1, 1, 1)) * fake
    want = ((x_hat.flatten(1).norm(dim=1) - 1) ** 2).mean()
    got = gradient_penalty(lambda x: 0.5 * x.pow(2).flatten(1).sum(1), real, fake, eps=eps)
    assert float(got.detach()) == pytest.approx(float(want), rel=1e-6)
    assert float(r1_penalty(lambda x: 0.5 * x.pow(2).flatten(1).sum(1), real)) == pytest.approx(
        float(real.flatten(1).pow(2).sum(1).mean()), rel=1e-6)


@pytest.mark.parametrize("kind", ["wgan", "stylegan"])
def test_sampling_is_deterministic_per_seed(kind):
    g, _ = build_networks(tiny(kind))
    a = sample_labels(g, 3, seed=5, threshold=0.5)
    assert np.array_equal(a, sample_labels(g, 3, seed=5))
    assert np.array_equal(a[:1], sample_labels(g, 1, seed=5))  # a sample does not depend on n
    pa = torch.sigmoid(g(torch.zeros(1, 8))) if kind == "wgan" else None
    b = sample_labels(g, 3, seed=6)
    assert not np.array_equal(a, b) or pa is not None
    g2, _ = build_networks(tiny(kind))  # same config seed: same initial weights
    assert np.array_equal(a, sample_labels(g2, 3, seed=5))


@pytest.mark.parametrize("kind", ["wgan", "stylegan"])
def test_checkpoint_round_trip(kind, tmp_path):
    cfg = tiny(kind)
    g, c = build_networks(cfg)
    with torch.no_grad():
        for p in g.parameters():
            p.add_(0.01 * torch.randn_like(p))
    path = save_checkpoint(tmp_path / "x.pt", cfg, g, c, step=7, best_score=0.5)
    ckpt = torch.load(path, weights_only=True)  # loadable with weights_only
    assert ckpt["step"] == 7 and ckpt["best_score"] == 0.5
    g2, cfg2 = load_generator(path)
    assert cfg2 == cfg
    g.eval()
    z = torch.randn(2, 8)
    gen = torch.Generator().manual_seed(0)
    args = {} if kind == "wgan" else {"generator": gen}
    out1 = g(z, **args)
    gen.manual_seed(0)
    assert torch.equal(out1, g2(z, **args))
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(VesselInputError, match="bad.pt"):
        load_checkpoint(tmp_path / "bad.pt")


def test_few_steps_of_wgan_training_lower_the_critic_loss(tmp_path):
    result = train_gan(tiny("wgan", n_critic=5, max_steps=6), tubes(8), tmp_path, progress=False)
    losses = np.asarray(result.critic_losses)
    assert losses[-2:].mean() < losses[:2].mean() - 0.1, losses
    assert (tmp_path / "best.pt").is_file() and (tmp_path / "last.pt").is_file()
    resumed = train_gan(tiny("wgan", n_critic=5, max_steps=6), tubes(8), tmp_path, max_steps=7, resume=True,
                        progress=False)
    assert resumed.step == 7 and len(resumed.critic_losses) == 1
    # resumed with a held-out set the run never had (or without the one it had): the scores would not compare
    with pytest.warns(UserWarning, match="picked on the held-out volumes of data.val_fraction, the resumed run "
                                         "scores on those of --val-data"):
        train_gan(tiny("wgan", n_critic=5, max_steps=6), tubes(8), tmp_path, max_steps=8, resume=True,
                  progress=False, val_volumes=tubes(2))


def test_stylegan_training_steps_run(tmp_path):
    result = train_gan(tiny("stylegan", n_critic=1, r1_every=2, max_steps=3), tubes(8), tmp_path, progress=False)
    assert result.step == 3 and np.all(np.isfinite(result.critic_losses))


@pytest.mark.parametrize("kind", ["wgan", "stylegan"])
def test_bfloat16_on_the_cpu_is_opt_in_and_keeps_float32_weights(kind, tmp_path):
    cfg = tiny(kind, half_res=True, n_critic=1, r1_every=1, max_steps=3)
    fp32 = train_gan(cfg, tubes(8), tmp_path / "fp32", progress=False)
    bf16 = train_gan(dataclasses.replace(cfg, amp_cpu=True), tubes(8), tmp_path / "bf16", progress=False)
    assert fp32.precision == "float32" and bf16.precision == "bfloat16"
    # the same initial weights, batch and latents: bfloat16 keeps 8 significant bits (unit roundoff 2^-8 per
    # operand), so the first critic loss moves by far more than float32 rounding (1e-7) and far less than
    # another batch or network would
    rel = abs(bf16.critic_losses[0] - fp32.critic_losses[0]) / abs(fp32.critic_losses[0])
    assert 1e-5 < rel < 0.02, rel
    # the checkpoint holds float32 weights, which a generator in the default layout reproduces
    ckpt = load_checkpoint(tmp_path / "bf16" / "last.pt")
    assert all(v.dtype == torch.float32 for v in ckpt["generator"].values() if v.is_floating_point())
    g, _ = load_generator(tmp_path / "bf16" / "last.pt")
    trained = bf16.generator.eval()
    z = torch.randn(2, 8, generator=torch.Generator().manual_seed(0))
    args = (lambda: {}) if kind == "wgan" else (lambda: {"generator": torch.Generator().manual_seed(1)})
    with torch.no_grad():
        assert torch.allclose(g(z, **args()), trained(z, **args()), atol=1e-5)
    resumed = train_gan(dataclasses.replace(cfg, amp_cpu=True), tubes(8), tmp_path / "bf16", max_steps=4,
                        resume=True, progress=False)
    assert resumed.step == 4 and resumed.precision == "bfloat16" and np.isfinite(resumed.critic_losses).all()


def test_vessel_features_of_a_straight_tube():
    j, k = np.mgrid[:SHAPE[1], :SHAPE[2]]
    tube = np.broadcast_to((j - 8) ** 2 + (k - 8) ** 2 <= 4, SHAPE).copy()
    f = vessel_features(tube, spacing_mm=0.5)
    assert f["n_components"] == 1 and f["largest_fraction"] == 1.0
    assert f["n_branches"] == 1
    assert f["tortuosity_mean"] == pytest.approx(1.0, abs=0.05)
    # on the axis the nearest background voxel centre is at (2, 1): sqrt(5) voxels of 0.5 mm; the volume's
    # border is background too, so the two end slices of the skeleton are closer to it (mean a bit lower)
    assert f["radius_p90_mm"] == pytest.approx(0.5 * np.sqrt(5))
    assert 0.85 * 0.5 * np.sqrt(5) < f["radius_mean_mm"] < 0.5 * np.sqrt(5)
    assert f["branch_length_mean_mm"] == pytest.approx(0.5 * (SHAPE[0] - 1), rel=0.15)
    assert f["volume_fraction"] == pytest.approx(13 / 256)  # 13 voxels of the disc per 16 x 16 slice
    assert vessel_features(np.zeros(SHAPE, bool), 1.0)["volume_fraction"] == 0.0


def test_feature_matrix_measures_each_volume_once(monkeypatch):
    import vessel_models.gan.quality as quality

    vols = tubes(3, seed=4)
    expected = [[vessel_features(v, 1.0)[k] for k in FEATURES] for v in vols]
    calls = []
    monkeypatch.setattr(quality, "vessel_features", lambda v, s: calls.append(1) or vessel_features(v, s))
    assert np.array_equal(quality.feature_matrix(iter(vols), 1.0), expected)  # any iterable, rows in order
    assert len(calls) == 3  # not once per feature: the skeleton and distance transform dominate the cost
    assert quality.feature_matrix([], 1.0).shape == (0, len(FEATURES))


def test_compare_sets_floor_and_far_sets():
    real = feature_matrix(tubes(12, seed=1), 1.0)
    again = feature_matrix(tubes(12, seed=2), 1.0)
    noise = feature_matrix([np.random.default_rng(i).random(SHAPE) > 0.7 for i in range(12)], 1.0)
    same = compare_sets(real, real)
    assert same["w1_mean"] == 0.0 and same["precision"] == 1.0 and same["recall"] == 1.0
    near, far = compare_sets(again, real), compare_sets(noise, real)
    assert near["w1_mean"] < 0.1 * far["w1_mean"] and far["precision"] == 0.0
    per_feature = [v for k, v in near.items() if k.startswith("w1_") and k not in ("w1_mean", "w1_median")]
    assert len(per_feature) == len(FEATURES) and near["w1_median"] == pytest.approx(np.median(per_feature))
    with pytest.raises(ValueError, match="at least 2 volumes per set"):
        compare_sets(real, real[:1])


def test_a_separate_held_out_set_scores_the_evaluations(tmp_path):
    cfg = dataclasses.replace(tiny("wgan", n_critic=1, max_steps=2), eval_every=2, eval_samples=6)
    held_out = tubes(5, seed=9)
    result = train_gan(cfg, tubes(8), tmp_path, val_volumes=held_out, progress=False)
    g, _ = load_generator(tmp_path / "last.pt")  # the network evaluated at step 2
    expected = compare_sets(feature_matrix(sample_labels(g, 6, cfg.seed), 1.0), feature_matrix(held_out, 1.0))
    assert result.evaluations[0][1]["w1_median"] == pytest.approx(expected["w1_median"], abs=1e-9)
    split = train_gan(cfg, tubes(8), tmp_path / "split", progress=False)  # the default: a fraction of the data
    assert split.evaluations[0][1]["w1_median"] != result.evaluations[0][1]["w1_median"]
    with pytest.raises(VesselInputError, match="--val-data: 1 held-out"):
        train_gan(cfg, tubes(8), tmp_path / "one", val_volumes=held_out[:1], progress=False)


def test_split_holds_out_at_least_two_volumes():
    train, val = split_volumes(tubes(6), 0.1, seed=0)
    assert len(val) == 2 and len(train) == 4
    assert not any(any(v is t for t in train) for v in val)


def test_config_errors_name_the_field():
    with pytest.raises(VesselInputError, match="optim.lr_g"):
        GanConfig.from_dict({"optim": {"lr_g": 0}})
    with pytest.raises(VesselInputError, match="net.kind"):
        GanConfig.from_dict({"net": {"kind": "vae"}})
    with pytest.raises(VesselInputError, match="data.shape"):
        build_networks(GanConfig.from_dict({"data": {"shape": [16, 16, 18]}}))


def test_one_eval_sample_is_refused_when_the_config_is_read():
    """``eval_samples: 1`` passed ``> 0`` and failed at the first evaluation (compare_sets' ValueError traceback)."""
    with pytest.raises(VesselInputError, match="eval_samples: must be >= 2, got 1"):
        GanConfig.from_dict({"eval_samples": 1})


def test_soft_target_keeps_the_label_at_the_half_level():
    from vessel_models.gan.data import soft_target

    half = np.zeros(SHAPE, bool)
    half[:, :, :8] = True  # a flat boundary between voxels 7 and 8
    soft = soft_target(half, 0.75)
    # a step blurred by the sampled Gaussian (weights exp(-m^2 / 2 sigma^2), |m| <= 4 sigma, normalised):
    # the last voxel inside keeps 1/2 + w_0 / 2, the first outside gets 1/2 - w_0 / 2
    m = np.arange(-3, 4)
    w0 = 1 / np.exp(-(m**2) / (2 * 0.75**2)).sum()
    assert soft[4, 4, 7] == pytest.approx(0.5 + w0 / 2, rel=1e-5) and soft[4, 4, 8] == pytest.approx(0.5 - w0 / 2, rel=1e-5)
    assert np.array_equal(soft >= 0.5, half) and soft.min() >= 0 and soft.max() <= 1
    margin = soft_target(half, 0.75, margin=0.05)  # [0, 1] -> [0.05, 0.95], the 0.5 level unchanged
    assert np.allclose(margin, 0.05 + 0.9 * soft) and np.array_equal(margin >= 0.5, half)
    tube = tubes(1)[0]  # radius 2 voxels: thresholding the soft target gives the tube back
    assert np.array_equal(soft_target(tube, 0.75) >= 0.5, tube)
    assert np.array_equal(soft_target(tube, 0.0), tube.astype(np.float32))


def test_distance_target_is_the_clipped_signed_distance_with_the_label_at_the_half_level():
    from vessel_models.gan.data import distance_target, training_target

    half = np.zeros(SHAPE, bool)
    half[:, :, :8] = True  # a flat boundary between voxels 7 and 8: signed distance 8 - k - 1/2 voxels
    target = distance_target(half, 3.0)
    expected = 0.5 + 0.5 * np.clip((7.5 - np.arange(16)) / 3.0, -1, 1)
    assert np.allclose(target, np.broadcast_to(expected, SHAPE), atol=1e-6)
    assert np.allclose(distance_target(half, 3.0, margin=0.05), 0.05 + 0.9 * target)
    tube = tubes(1)[0]  # along axis 0 through both faces, radius 2 voxels: the label comes back at 0.5
    t = distance_target(tube, 3.0)
    assert np.array_equal(t >= 0.5, tube)
    # the faces continue the tube (edge extension): every slice along the axis is the same
    assert np.allclose(t, t[8][None])
    # a disc of radius 2: no voxel is 3 voxels from the background, none reaches the clip
    assert 0.5 < t[tube].max() < 1.0 and t[~tube].min() == 0.0
    assert np.array_equal(training_target(tube, 0.75, 0.05, distance_clip_vox=3.0), distance_target(tube, 3.0, 0.05))


def test_ema_decay_and_update():
    from vessel_models.gan.train import ema_beta, update_ema

    assert ema_beta(20, 5) == 0.0  # ramp: half-life step / 10 = 0.5 <= 1 -> a copy
    assert ema_beta(20, 100) == pytest.approx(0.5 ** (1 / 10))
    assert ema_beta(20, 1000) == pytest.approx(0.5 ** (1 / 20))
    assert ema_beta(0, 1000) == 0.0
    torch.manual_seed(0)
    live = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    ema = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    live(torch.randn(4, 3))  # moves live's running statistics
    before = [p.detach().clone() for p in ema.parameters()]
    update_ema(ema, live, 0.9)
    for e, b, p in zip(ema.parameters(), before, live.parameters()):
        assert torch.allclose(e, 0.9 * b + 0.1 * p.detach())
    assert torch.equal(ema[1].running_mean, live[1].running_mean)


def test_batchnorm_recalibration_uses_the_networks_own_statistics():
    from vessel_models.gan.train import recalibrate_batchnorm

    g, _ = build_networks(tiny("wgan"))
    g.eval()
    with torch.no_grad():
        g.project.weight.mul_(3.0)  # weights the stored statistics no longer fit
    recalibrate_batchnorm(g, n_batches=2, batch_size=4, seed=7)
    assert not g.training and g.body[0].momentum == 0.1
    gen = torch.Generator().manual_seed(7)
    z = [torch.randn(4, g.latent_dim, generator=gen) for _ in range(2)]
    with torch.no_grad():  # the first batch norm's input: the projected latents, per channel
        means = [g.project(x).view(4, -1, *g.start).mean(dim=(0, 2, 3, 4)) for x in z]
    assert torch.allclose(g.body[0].running_mean, (means[0] + means[1]) / 2, atol=1e-5)
    s, _ = build_networks(tiny("stylegan"))  # no batch norm: untouched (w_avg too)
    before = {k: v.clone() for k, v in s.state_dict().items()}
    recalibrate_batchnorm(s, 2, 4, 7)
    assert all(torch.equal(v, before[k]) for k, v in s.state_dict().items())


def test_snapshots_keep_every_evaluated_network_and_best_is_one_of_them(tmp_path):
    cfg = dataclasses.replace(tiny("wgan", n_critic=1, max_steps=5, ema_half_life=2.0), eval_every=2,
                              keep_snapshots=True)
    result = train_gan(cfg, tubes(8), tmp_path, progress=False)
    steps = [s for s, _ in result.evaluations]
    assert steps == [2, 4, 5]
    assert sorted(p.name for p in (tmp_path / "snapshots").iterdir()) == [f"step_{s:06d}.pt" for s in steps]

    def weights(path):
        return load_checkpoint(path)["generator_ema"]

    # best.pt is the snapshot of the lowest score; the last snapshot is last.pt's network
    best_step = steps[int(np.argmin([sc["w1_median"] for _, sc in result.evaluations]))]
    best = weights(tmp_path / "best.pt")
    assert all(torch.equal(v, best[k]) for k, v in weights(tmp_path / "snapshots" / f"step_{best_step:06d}.pt").items())
    last = weights(tmp_path / "last.pt")
    assert all(torch.equal(v, last[k]) for k, v in weights(tmp_path / "snapshots" / "step_000005.pt").items())
    assert load_checkpoint(tmp_path / "snapshots" / "step_000002.pt")["opt_g"] is None  # no optimiser state
    train_gan(dataclasses.replace(cfg, keep_snapshots=False), tubes(8), tmp_path / "off", progress=False)
    assert not (tmp_path / "off" / "snapshots").exists()


@pytest.mark.parametrize("kind", ["wgan", "stylegan"])
def test_training_with_ema_and_soft_targets_keeps_the_average(kind, tmp_path):
    base = tiny(kind).to_dict()
    cfg = GanConfig.from_dict({**base, "data": {**base["data"], "soft_sigma_vox": 0.75},
                               "optim": {**base["optim"], "n_critic": 1, "max_steps": 12, "ema_half_life": 5.0}})
    train_gan(cfg, tubes(8), tmp_path, progress=False)
    ckpt = torch.load(tmp_path / "last.pt", weights_only=True)  # loadable with weights_only
    live, ema = ckpt["generator"], ckpt["generator_ema"]
    assert ema.keys() == live.keys()
    # from step 11 on (ramped half-life > 1) the average lags the trained weights
    assert any(not torch.equal(ema[k], live[k]) for k in ema if k.endswith("weight"))
    g, _ = load_generator(tmp_path / "last.pt")  # the average is what samples
    assert all(torch.equal(v, ema[k]) for k, v in g.state_dict().items())
    resumed = train_gan(cfg, tubes(8), tmp_path, max_steps=13, resume=True, progress=False)
    assert resumed.step == 13


def _signal_in_generator_step(monkeypatch, at_call: int, times: int = 1) -> None:
    """SIGINT to this process ``times`` times inside the ``at_call``-th generator step (its critic steps done, its
    generator step not: the middle of a step)."""
    import os
    import signal

    from vessel_models.gan import train

    calls, step = [0], train._Run.generator_step

    def interrupted(self, n):
        calls[0] += 1
        if calls[0] == at_call:
            for _ in range(times):
                os.kill(os.getpid(), signal.SIGINT)
        return step(self, n)

    monkeypatch.setattr(train._Run, "generator_step", interrupted)


def _assert_same_state(a, b):
    for key in ("generator", "critic", "generator_ema"):
        for name, value in a[key].items():
            assert torch.equal(value, b[key][name]), (key, name)
    for key in ("opt_g", "opt_d"):  # best.pt keeps none
        assert (a[key] is None) == (b[key] is None)
        for pid, state in (a[key] or {"state": {}})["state"].items():
            for name, value in state.items():
                assert torch.equal(torch.as_tensor(value), torch.as_tensor(b[key]["state"][pid][name])), (key, name)
    assert a["step"] == b["step"] and a["best_score"] == b["best_score"]


def test_an_interrupt_saves_the_whole_step_and_the_resume_continues_as_if_uninterrupted(tmp_path, monkeypatch):
    """Ctrl-C had lost every step since the last evaluation and said nothing. The step in progress is finished,
    saved, and a resume from it ends bit for bit where an uninterrupted run ends."""
    import signal

    from vessel_models.gan.train import TrainingInterrupted

    cfg = tiny("wgan", n_critic=2, max_steps=5, ema_half_life=20.0)
    train_gan(cfg, tubes(6), tmp_path / "whole", progress=False)
    _signal_in_generator_step(monkeypatch, at_call=3)
    with pytest.raises(TrainingInterrupted) as stop:
        train_gan(cfg, tubes(6), tmp_path / "cut", progress=False)
    assert (stop.value.signum, stop.value.step, stop.value.saved_step) == (signal.SIGINT, 3, 3)
    assert isinstance(stop.value, KeyboardInterrupt)  # a caller that does not catch it stops as on Ctrl-C
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is given back
    assert load_checkpoint(tmp_path / "cut" / "last.pt")["step"] == 3 and not (tmp_path / "cut" / "best.pt").exists()
    monkeypatch.undo()
    resumed = train_gan(cfg, tubes(6), tmp_path / "cut", resume=True, progress=False)
    assert resumed.step == 5 and len(resumed.critic_losses) == 2
    for name in ("last.pt", "best.pt"):
        _assert_same_state(load_checkpoint(tmp_path / "whole" / name), load_checkpoint(tmp_path / "cut" / name))


def test_a_second_interrupt_stops_inside_the_step_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    from vessel_models.gan.train import TrainingInterrupted

    cfg = dataclasses.replace(tiny("wgan", n_critic=1, max_steps=6), eval_every=2)
    _signal_in_generator_step(monkeypatch, at_call=4, times=2)  # step 4 half done: not saved
    with pytest.raises(TrainingInterrupted) as stop:
        train_gan(cfg, tubes(6), tmp_path, progress=False)
    assert (stop.value.step, stop.value.saved_step) == (3, 2)
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 2
