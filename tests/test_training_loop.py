"""End-to-end on a tiny synthetic store: datasets, training, resume, GAN, CLI evaluate / infer."""

import json

import numpy as np
import pytest
import torch
import typer
import yaml
from typer.testing import CliRunner

from ddsa_sim import InputError
from ddsa_sim.cli.train import register
from ddsa_sim.export.format import source_ct_id
from ddsa_sim.training.checkpoint import load_checkpoint, load_model
from ddsa_sim.training.config import parse_config
from ddsa_sim.training.data import OnTheFlyDataset, ZarrDDSADataset
from ddsa_sim.training.evaluate import dose_level, evaluate_checkpoint, format_table
from ddsa_sim.training.loop import (
    ALL_ZERO_ENERGY,
    _bn_inputs,
    _setup_state,
    learning_rate,
    run_training,
    target_data_range,
    validate,
    warn_if_all_zero,
)
from ddsa_sim.training.normalization import compute_normalization
from ddsa_sim.training.synthetic import SyntheticRenderer, write_synthetic_store
from ddsa_sim.training.unet import UNet

TINY = {
    "seed": 3,
    "num_threads": 1,
    "data": {
        "crop_size": 48,
        "patch_size": 32,
        "batch_size": 4,
        "in_memory": True,
        "max_val_samples": 4,
        "augment": {"p_affine": 0.3, "scale_range": [0.9, 1.1], "p_elastic": 0.2},
    },
    "model": {"base_channels": 8, "depth": 3},
    "optim": {"lr": 2e-3, "max_steps": 30, "val_every": 10, "ckpt_every": 10, "log_every": 5},
}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("store") / "syn.zarr"
    return write_synthetic_store(
        path, splits={"train": 3, "val": 1, "test": 1}, per_ct=3, size=48, incomplete=2
    )


def _cfg(**over):
    d = json.loads(json.dumps(TINY))
    for k, v in over.items():
        d[k] = {**d.get(k, {}), **v} if isinstance(v, dict) else v
    return parse_config(d)


def test_cosine_schedule_falls_from_lr_to_lr_min_and_resumes_on_its_curve(store, tmp_path):
    """Closed form of cosine annealing: lr at step 0, the mean of lr and lr_min half-way, lr_min at the end;
    the optimiser of a run (and of one resumed to more steps) holds the rate of its last step."""
    optim = _cfg(optim={"lr_schedule": "cosine", "lr_min": 1e-5}).optim
    assert learning_rate(optim, 0, 30) == pytest.approx(2e-3)
    assert learning_rate(optim, 15, 30) == pytest.approx((2e-3 + 1e-5) / 2)
    assert learning_rate(optim, 30, 30) == pytest.approx(1e-5)
    rates = [learning_rate(optim, s, 30) for s in range(31)]
    assert all(a > b for a, b in zip(rates, rates[1:]))
    assert learning_rate(_cfg().optim, 17, 30) == 2e-3  # constant: the configured rate
    cfg = _cfg(optim={"lr_schedule": "cosine", "lr_min": 1e-5, "max_steps": 12})
    run_training(cfg, tmp_path / "run", store=store, progress=False)
    ckpt = load_checkpoint(tmp_path / "run" / "last.pt")
    assert ckpt["optimizer"]["param_groups"][0]["lr"] == pytest.approx(learning_rate(cfg.optim, 11, 12))
    run_training(cfg, tmp_path / "run", store=store, progress=False, resume=True, max_steps=20)
    ckpt = load_checkpoint(tmp_path / "run" / "last.pt")
    assert ckpt["step"] == 20 and ckpt["optimizer"]["param_groups"][0]["lr"] == pytest.approx(
        learning_rate(cfg.optim, 19, 20))
    with pytest.raises(InputError, match="lr_min"):
        _cfg(optim={"lr_min": 1.0})


def test_cosine_over_the_last_steps_keeps_lr_until_then_and_ends_at_lr_min():
    """Warmup-stable-decay without the warm-up: lr until total - lr_decay_steps, then the cosine of a run of
    lr_decay_steps steps, shifted to the end; extending the run (another total) moves the fall with it."""
    optim = _cfg(optim={"lr_schedule": "cosine", "lr_min": 1e-5, "lr_decay_steps": 10}).optim
    whole = _cfg(optim={"lr_schedule": "cosine", "lr_min": 1e-5}).optim
    assert [learning_rate(optim, s, 30) for s in (0, 19, 20)] == [2e-3, 2e-3, 2e-3]
    for s in range(20, 31):
        assert learning_rate(optim, s, 30) == pytest.approx(learning_rate(whole, s - 20, 10))
    assert learning_rate(optim, 25, 30) == pytest.approx((2e-3 + 1e-5) / 2)
    assert learning_rate(optim, 29, 40) == 2e-3 and learning_rate(optim, 40, 40) == pytest.approx(1e-5)
    # a run shorter than the decay anneals over the whole run, as without lr_decay_steps
    assert learning_rate(optim, 3, 6) == pytest.approx(learning_rate(whole, 3, 6))
    with pytest.raises(InputError, match="lr_decay_steps"):
        _cfg(optim={"lr_decay_steps": 10})


def test_zarr_dataset_split_and_incomplete(store):
    with pytest.warns(UserWarning, match=r"9 of 11 samples of split 'train' are complete \(an interrupted export"):
        tr = ZarrDDSADataset(store, "train")
    assert len(tr) == 9  # the 2 incomplete train slots are skipped, with a word
    assert len(ZarrDDSADataset(store, "test")) == 3
    item = tr[0]
    assert set(item) >= {"contrast_clean", "contrast", "mask", "dsa_target"}
    assert item["contrast"].shape == (1, 48, 48) and item["contrast"].dtype == torch.float32
    # documented relation of the store
    assert set(ZarrDDSADataset(store, "test").ct_ids) & set(tr.ct_ids) == set()
    with pytest.raises(InputError, match="not found"):
        ZarrDDSADataset(store.parent / "nope.zarr", "train")
    with pytest.raises(InputError, match="split: must be one of train, val, test, not 'tets'"):  # not "no samples"
        ZarrDDSADataset(store, "tets")


def test_a_crop_larger_than_the_images_is_said(store, tmp_path):
    cfg = _cfg(data={"crop_size": 64}, optim={"max_steps": 1, "val_every": 1})
    with pytest.warns(UserWarning, match=r"data.crop_size 64 is larger than the training images \(48x48\)"):
        run_training(cfg, tmp_path / "run", store=store, progress=False)


def test_on_the_fly_dataset_contract():
    ds = OnTheFlyDataset(SyntheticRenderer(seed=1, size=32), length=5)
    a, b = ds[2], ds[2]
    assert torch.equal(a["contrast"], b["contrast"]) and a["dsa_target"].shape == (1, 32, 32)
    bad = OnTheFlyDataset(lambda i: {"contrast": np.zeros((4, 4))}, length=1)
    with pytest.raises(InputError, match="missing image"):
        bad[0]


def test_training_reduces_l1_and_writes_checkpoints(store, tmp_path):
    cfg = _cfg()
    val = ZarrDDSADataset(store, "val")
    norm = compute_normalization(ZarrDDSADataset(store, "train"))
    torch.manual_seed(cfg.seed)
    init = UNet(cfg.model)  # identical to the loop's initial weights (same seed)
    before, _ = validate(init, val, norm, torch.device("cpu"), target_data_range(val))
    res = run_training(cfg, tmp_path / "run", store=store, progress=False)
    assert res.step == 30 and len(res.losses) == 30
    after = res.val_history[-1][1]
    assert after["l1"] < 0.8 * before["l1"], (before["l1"], after["l1"])
    for name in ("best.pt", "last.pt", "normalization.json", "config.json"):
        assert (tmp_path / "run" / name).exists()
    assert list((tmp_path / "run" / "tb").iterdir())
    ck = load_checkpoint(tmp_path / "run" / "last.pt")
    assert ck["step"] == 30 and ck["normalization"]["scale"] == pytest.approx(norm.scale)


class _Constant(torch.nn.Module):
    """A network whose output is ``value`` (network units) everywhere."""

    def __init__(self, value: float):
        super().__init__()
        self.value = value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full_like(x, self.value)


def test_validation_energy_ratio_is_the_predictions_energy_over_the_targets(store):
    """0 for the all-zero image; for a constant output c (network units) N (c scale)^2 over the sum of squared
    targets, summed over the validation images straight from the store."""
    val = ZarrDDSADataset(store, "val")
    norm = compute_normalization(ZarrDDSADataset(store, "train"), progress=False)
    targets = [val[i]["dsa_target"].double() for i in range(len(val))]
    zero, _ = validate(_Constant(0.0), val, norm, torch.device("cpu"), target_data_range(val))
    assert zero["energy_ratio"] == 0.0 and zero["nmse"] == pytest.approx(1.0)
    const, _ = validate(_Constant(0.5), val, norm, torch.device("cpu"), target_data_range(val))
    pixel = float(np.float32(0.5 * norm.scale))  # the prediction is float32
    expected = sum(t.numel() * pixel**2 for t in targets) / sum(float(t.square().sum()) for t in targets)
    assert const["energy_ratio"] == pytest.approx(expected, rel=1e-9)


def test_a_run_at_the_all_zero_image_for_three_validations_is_warned_about_once_per_fall(recwarn):
    def history(*ratios):
        return [(100 * i, {"energy_ratio": r}) for i, r in enumerate(ratios)]

    low, high = ALL_ZERO_ENERGY / 10, 0.5
    for quiet in (history(low, low), history(high, low, low), history(low, low, high), history(*[float("nan")] * 3)):
        warn_if_all_zero(quiet)
    assert not recwarn.list
    with pytest.warns(UserWarning, match="step 300: .* all-zero image at every validation since step 100"):
        warn_if_all_zero(history(high, low, low, low))
    with pytest.warns(UserWarning, match="since step 0"):
        warn_if_all_zero(history(low, low, low))
    recwarn.clear()
    warn_if_all_zero(history(high, low, low, low, low))  # the same fall, one validation later
    assert not recwarn.list
    with pytest.warns(UserWarning, match="since step 400"):  # fell again after leaving
        warn_if_all_zero(history(low, low, low, high, low, low, low))


def test_resume_continues_and_matches_uninterrupted_run(store, tmp_path):
    cfg = _cfg(optim={"max_steps": 8, "ckpt_every": 100, "val_every": 100})
    full = run_training(cfg, tmp_path / "full", store=store, progress=False)
    part = run_training(cfg, tmp_path / "part", store=store, max_steps=5, progress=False)
    assert part.step == 5 and load_checkpoint(tmp_path / "part" / "last.pt")["step"] == 5
    rest = run_training(cfg, tmp_path / "part", store=store, resume=True, progress=False)
    assert rest.start_step == 5 and rest.step == 8 and [s for s, _ in rest.losses] == [6, 7, 8]
    assert load_checkpoint(tmp_path / "part" / "last.pt")["step"] == 8
    a = full.model.state_dict()
    b = rest.model.state_dict()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6), k
    # a different architecture must not resume from this run
    with pytest.raises(InputError, match="architecture mismatch"):
        run_training(
            _cfg(model={"base_channels": 4}),
            tmp_path / "part",
            store=store,
            resume=True,
            max_steps=9,
            progress=False,
        )


def test_bfloat16_on_the_cpu_is_opt_in_resumes_exactly_and_writes_float32_weights(store, tmp_path):
    steps = {"max_steps": 6, "ckpt_every": 100, "val_every": 100}
    fp32 = run_training(_cfg(optim=steps), tmp_path / "fp32", store=store, progress=False)
    cfg = _cfg(optim=steps | {"amp_cpu": True})
    full = run_training(cfg, tmp_path / "full", store=store, progress=False)
    assert fp32.precision == "float32" and full.precision == "bfloat16"
    # the same first batch through the same initial weights: bfloat16 keeps 8 significant bits (unit
    # roundoff 2^-8 = 0.004 per operand), so the first loss moves by far more than float32 rounding (1e-7)
    # and by far less than a different batch or network would
    rel = abs(full.losses[0][1] - fp32.losses[0][1]) / fp32.losses[0][1]
    assert 1e-5 < rel < 0.02, rel
    part = run_training(cfg, tmp_path / "part", store=store, max_steps=4, progress=False)
    rest = run_training(cfg, tmp_path / "part", store=store, resume=True, progress=False)
    assert part.step == 4 and rest.step == 6
    a, b = full.model.state_dict(), rest.model.state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # the checkpoint holds float32 master weights, which an inference in the default layout reproduces
    model, _, _, ckpt = load_model(tmp_path / "full" / "last.pt")
    assert all(v.dtype == torch.float32 for v in ckpt["model"].values() if v.is_floating_point())
    x = torch.randn(2, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    full.model.eval()
    with torch.no_grad():
        assert torch.allclose(model(x), full.model(x), atol=1e-6)


def test_branch_continues_its_source_exactly_and_keeps_a_best_of_its_own(store, tmp_path):
    """A branch with its source's recipe ends where the source continued ends (weights, weight average and
    optimiser carried, the same batches: it is paired with its source); one with another recipe steps from
    the same state; its best.pt is its own, the start validated first."""
    cfg = _cfg(optim={"max_steps": 8, "ckpt_every": 100, "val_every": 100, "ema_decay": 0.9})
    run_training(cfg, tmp_path / "source", store=store, max_steps=5, progress=False)
    start = tmp_path / "start.pt"
    start.write_bytes((tmp_path / "source" / "last.pt").read_bytes())
    source = run_training(cfg, tmp_path / "source", store=store, resume=True, progress=False)
    same = run_training(cfg, tmp_path / "same", store=store, branch_from=start, progress=False)
    assert same.start_step == 5 and [s for s, _ in same.losses] == [6, 7, 8]
    assert [s for s, _ in same.losses] == [s for s, _ in source.losses]
    assert [v for _, v in same.losses] == pytest.approx([v for _, v in source.losses], rel=1e-6)
    a, b = load_checkpoint(tmp_path / "source" / "last.pt"), load_checkpoint(tmp_path / "same" / "last.pt")
    for key in ("model", "model_stepped"):
        for k in a[key]:
            assert torch.allclose(a[key][k], b[key][k], atol=1e-6), (key, k)
    assert json.loads((tmp_path / "same" / "branch.json").read_text()) == {"checkpoint": str(start), "step": 5}
    assert same.val_history[0][0] == 5  # the network it starts from, scored before its first step
    # another recipe (lr 0: Adam moves nothing): the branch keeps its start's weights, at the source's step
    frozen = run_training(_cfg(optim={"max_steps": 7, "ckpt_every": 100, "val_every": 100, "ema_decay": 0.9,
                                      "lr": 1e-30}), tmp_path / "frozen", store=store, branch_from=start,
                          progress=False)
    ck, st = load_checkpoint(tmp_path / "frozen" / "last.pt"), load_checkpoint(start)
    assert frozen.start_step == 5 and ck["step"] == 7
    for k in st["model_stepped"]:
        if st["model_stepped"][k].is_floating_point() and "running" not in k:
            assert torch.allclose(ck["model_stepped"][k], st["model_stepped"][k], atol=1e-6), k
    assert load_checkpoint(tmp_path / "frozen" / "best.pt")["step"] >= 5
    with pytest.raises(InputError, match="resume and branch_from"):
        run_training(cfg, tmp_path / "x", store=store, resume=True, branch_from=start, progress=False)
    with pytest.raises(InputError, match="no checkpoint"):
        run_training(cfg, tmp_path / "x", store=store, branch_from=tmp_path / "missing.pt", progress=False)
    with pytest.raises(InputError, match="architecture mismatch"):
        run_training(_cfg(model={"base_channels": 4}), tmp_path / "y", store=store, branch_from=start,
                     progress=False)


def test_weight_average_is_the_exponential_average_of_the_stepped_weights_and_resumes_exactly(store, tmp_path):
    """With ``optim.ema_decay`` d the kept generator after steps 1-3 is d^2 w1 + d (1 - d) w2 + (1 - d) w3 of
    the weights w_k the optimiser reaches (a run without the average, resumed step by step, gives them),
    batch-norm statistics alike; the checkpoint keeps w3 to step on, inference loads the average, and a
    resumed averaged run ends where an uninterrupted one does."""
    model = {"base_channels": 8, "depth": 3, "norm": "batch"}
    plain = _cfg(model=model, optim={"max_steps": 3, "ckpt_every": 100, "val_every": 100})
    stepped = []
    for k in (1, 2, 3):
        run_training(plain, tmp_path / "plain", store=store, progress=False, resume=k > 1, max_steps=k)
        stepped.append(load_checkpoint(tmp_path / "plain" / "last.pt")["model"])
    d = 0.5
    # ema_bn_batches 0: the batch-norm statistics averaged as the weights (the next test: recomputed)
    averaged = _cfg(model=model, optim={"max_steps": 3, "ckpt_every": 100, "val_every": 100, "ema_decay": d,
                                        "ema_bn_batches": 0})
    start = _setup_state(averaged, torch.device("cpu"), 0, 1, ZarrDDSADataset(store, "train"), None).nets
    assert start.generator is start.core  # before the first step the run's generator is the one it starts from
    res = run_training(averaged, tmp_path / "avg", store=store, progress=False)
    ckpt = load_checkpoint(tmp_path / "avg" / "last.pt")
    inference, _, _, _ = load_model(tmp_path / "avg" / "last.pt")
    optimisers, _, _, _ = load_model(tmp_path / "avg" / "last.pt", stepped=True)
    w1, w2, w3 = stepped
    floats = [k for k, v in w3.items() if v.is_floating_point()]
    assert any("running_var" in k for k in floats)
    for k in floats:
        expected = d * d * w1[k] + d * (1 - d) * w2[k] + (1 - d) * w3[k]
        assert not torch.allclose(expected, w3[k]), k  # the weights moved: the average is not the last step
        assert torch.allclose(ckpt["model"][k], expected, atol=1e-6), k
        assert torch.allclose(inference.state_dict()[k], expected, atol=1e-6), k
        assert torch.allclose(res.model.state_dict()[k], expected, atol=1e-6), k
        assert torch.allclose(ckpt["model_stepped"][k], w3[k], atol=1e-6), k
        assert torch.allclose(optimisers.state_dict()[k], w3[k], atol=1e-6), k
    run_training(averaged, tmp_path / "part", store=store, progress=False, max_steps=2)
    run_training(averaged, tmp_path / "part", store=store, progress=False, resume=True)
    resumed = load_checkpoint(tmp_path / "part" / "last.pt")
    for key in ("model", "model_stepped"):
        for k in floats:
            assert torch.allclose(resumed[key][k], ckpt[key][k], atol=1e-6), (key, k)
    assert load_checkpoint(tmp_path / "plain" / "last.pt")["model_stepped"] is None
    with pytest.raises(InputError, match="no optimiser's weights apart from the network"):
        load_model(tmp_path / "plain" / "last.pt", stepped=True)
    with pytest.raises(InputError, match="ema_decay"):
        _cfg(optim={"ema_decay": 1.0})


def test_weight_average_batch_norm_statistics_are_its_own(store, tmp_path):
    """With ``optim.ema_bn_batches`` k the kept average has the averaged weights and, in each batch-norm layer,
    the plain mean over k fixed training batches of that layer's batch statistics under those weights; the
    optimiser's trajectory is the run's without it, and a resumed run ends where an uninterrupted one does."""
    model = {"base_channels": 8, "depth": 3, "norm": "batch"}
    optim = {"max_steps": 3, "ckpt_every": 100, "val_every": 100, "ema_decay": 0.5}
    kept = _cfg(model=model, optim=optim | {"ema_bn_batches": 0})
    own = _cfg(model=model, optim=optim | {"ema_bn_batches": 3})
    run_training(kept, tmp_path / "kept", store=store, progress=False)
    run_training(own, tmp_path / "own", store=store, progress=False)
    a, b = load_checkpoint(tmp_path / "kept" / "last.pt"), load_checkpoint(tmp_path / "own" / "last.pt")
    buffers = {k for k in a["model"] if "running_" in k or "num_batches" in k}
    assert buffers and all(torch.equal(a["model_stepped"][k], b["model_stepped"][k]) for k in a["model_stepped"])
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"] if k not in buffers)
    # the statistics by hand: the inputs the run made, through the average's weights, batch by batch
    state = _setup_state(own, torch.device("cpu"), 0, 1, ZarrDDSADataset(store, "train"), None)
    inputs = _bn_inputs(state, ZarrDDSADataset(store, "train"))
    assert len(inputs) == 3 and inputs[0].shape == (4, 1, 32, 32)
    net, _, _, _ = load_model(tmp_path / "own" / "last.pt")
    bn = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    seen = {m: [] for m in bn}
    hooks = [m.register_forward_hook(lambda m, i, o: seen[m].append(i[0].detach())) for m in bn]
    net.eval()
    with torch.no_grad():
        for x in inputs:
            net(x)  # eval mode: every layer's input is that of the stored statistics' pass, layer by layer
    for h in hooks:
        h.remove()
    for m in bn[:1]:  # the first layer's input does not depend on the statistics of any layer before it
        means = torch.stack([x.mean(dim=(0, 2, 3)) for x in seen[m]])
        assert torch.allclose(m.running_mean, means.mean(0), atol=1e-5)
    assert not torch.allclose(b["model"]["inc.1.running_mean"], a["model"]["inc.1.running_mean"])
    run_training(own, tmp_path / "part", store=store, progress=False, max_steps=2)
    run_training(own, tmp_path / "part", store=store, progress=False, resume=True)
    resumed = load_checkpoint(tmp_path / "part" / "last.pt")
    for k, v in b["model"].items():
        if v.is_floating_point():
            assert torch.allclose(resumed["model"][k], v, atol=1e-6), k


def test_vessel_threshold_reaches_the_loss_in_network_units(store):
    """``optim.vessel_threshold`` is in -ln units; the loss sees targets divided by the normalisation scale."""
    cfg = _cfg(optim={"vessel_weight": 3.0, "vessel_threshold": 0.02, "loss_reduction": "image"})
    train = ZarrDDSADataset(store, "train")
    state = _setup_state(cfg, torch.device("cpu"), 0, 1, train, None)
    crit = state.criterion
    assert crit.vessel_threshold * state.norm.scale == pytest.approx(0.02)
    assert (crit.vessel_weight, crit.reduction) == (3.0, "image")


@pytest.mark.parametrize("amp_cpu", [False, True])
def test_gan_training_steps(store, tmp_path, amp_cpu):
    cfg = _cfg(
        gan={"enabled": True, "critic_channels": 4, "critic_depth": 2, "critic_steps": 2},
        optim={"max_steps": 3, "val_every": 3, "amp_cpu": amp_cpu},
    )
    res = run_training(cfg, tmp_path / "gan", store=store, progress=False)
    assert res.step == 3 and all(np.isfinite(l) for _, l in res.losses)
    assert res.precision == ("bfloat16" if amp_cpu else "float32")  # the critic takes the bfloat16 output
    ck = load_checkpoint(tmp_path / "gan" / "last.pt")
    assert ck["critic"] is not None and ck["critic_optimizer"] is not None


def test_init_from_starts_the_generator_at_a_trained_run(store, tmp_path):
    unet = run_training(_cfg(optim={"max_steps": 6, "ckpt_every": 100, "val_every": 100}), tmp_path / "unet",
                        store=store, progress=False)
    source = load_checkpoint(tmp_path / "unet" / "last.pt")
    # a GAN run from those weights; Adam moves each weight by about lr per step, so with lr 1e-12 the
    # generator after one step is the source's to float precision, while a fresh start would differ by O(0.1)
    cfg = _cfg(init_from=str(tmp_path / "unet" / "last.pt"),
               gan={"enabled": True, "critic_channels": 4, "critic_depth": 2, "critic_steps": 1},
               optim={"lr": 1e-12, "max_steps": 1, "val_every": 100, "ckpt_every": 100})
    res = run_training(cfg, tmp_path / "gan", store=store, progress=False)
    assert res.start_step == 0 and res.step == 1
    for name, p in res.model.named_parameters():
        assert torch.allclose(p, unet.model.state_dict()[name], atol=1e-6), name
    assert load_checkpoint(tmp_path / "gan" / "last.pt")["normalization"] == source["normalization"]
    assert res.val_history[0][0] == 0  # the starting generator is scored before the first step
    # a fine-tuning that only makes it worse (Adam lr 1: every weight moves by about 1 per step) keeps the
    # starting generator as best.pt
    worse = run_training(cfg.model_copy(update={"optim": cfg.optim.model_copy(update={"lr": 1.0, "max_steps": 2})}),
                         tmp_path / "worse", store=store, progress=False)
    best = load_checkpoint(tmp_path / "worse" / "best.pt")
    assert best["step"] == 0 and worse.val_history[-1][1]["psnr"] < worse.val_history[0][1]["psnr"]
    for name, p in unet.model.named_parameters():
        assert torch.allclose(best["model"][name], p), name
    with pytest.raises(InputError, match="init_from .*architecture mismatch"):
        run_training(_cfg(init_from=str(tmp_path / "unet" / "last.pt"), model={"base_channels": 4}),
                     tmp_path / "other", store=store, progress=False)


@pytest.fixture(scope="module")
def trained(store, tmp_path_factory):
    run = tmp_path_factory.mktemp("cli")
    cfg_path = run / "tiny.yaml"
    cfg_path.write_text(yaml.safe_dump(TINY))
    app = typer.Typer()
    register(app)
    r = CliRunner().invoke(
        app, ["train", str(cfg_path), "--data", str(store), "--max-steps", "4", "-o", str(run / "run")]
    )
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["step"] == 4
    # optim.amp (on by default, bfloat16) is a CUDA feature: a run on the CPU says it trained in float32
    assert out["precision"] == ("bfloat16" if torch.cuda.is_available() else "float32")
    assert "note:" not in r.stderr  # a run from scratch has no starting network to speak of
    return app, run / "run" / "best.pt", run


def test_cli_train_says_where_a_fine_tuning_that_never_beat_its_start_is(trained, store):
    app, best, run = trained
    # Adam lr 1 moves every weight by about 1 per step: the fine-tuned network scores below the one it starts from
    cfg = TINY | {"init_from": str(best), "optim": TINY["optim"] | {"lr": 1.0, "max_steps": 2, "val_every": 100}}
    (run / "worse.yaml").write_text(yaml.safe_dump(cfg))
    r = CliRunner().invoke(app, ["train", str(run / "worse.yaml"), "--data", str(store), "-o", str(run / "worse")])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["step"] == 2 and out["best_step"] == 0 == load_checkpoint(run / "worse" / "best.pt")["step"]
    assert "best.pt is that network" in r.stderr and str(run / "worse" / "last.pt") in r.stderr


def test_source_ct_id_groups_pseudo_patients_with_their_ct():
    assert source_ct_id("chest_z0R~p3") == "chest_z0R" and source_ct_id("head-phantom-2~p0") == "head-phantom-2"
    for plain in ("chest_z0R", "a~b", "a~p", "~p1", "x~px"):
        assert source_ct_id(plain) == plain


def test_evaluate_reports_each_source_ct(trained, store):
    _, ckpt, _ = trained
    out = evaluate_checkpoint(ckpt, store, "train", progress=False)
    ds = ZarrDDSADataset(store, "train")
    cts = [str(c) for c in ds.ct_ids]
    assert sorted(out["by_source_ct"]) == sorted(set(cts)) and len(set(cts)) == 3
    assert sum(r["n_samples"] for r in out["by_source_ct"].values()) == out["n_samples"] == len(ds)
    for ct, block in out["by_source_ct"].items():
        # the all-zero image on that CT's targets alone, with the split's data range
        targets = [ds[i]["dsa_target"][0].numpy().astype(np.float64) for i in range(len(ds)) if cts[i] == ct]
        zero = np.mean([10 * np.log10(out["data_range"] ** 2 / np.mean(t**2)) for t in targets])
        assert block["n_samples"] == len(targets) and block["zero"]["psnr"] == pytest.approx(zero, rel=1e-6)
    # the split's means are the CTs' means weighted by their sample counts
    for method in ("network", "conventional", "known_anatomy"):
        weighted = sum(r["n_samples"] * r[method]["psnr"] for r in out["by_source_ct"].values()) / out["n_samples"]
        assert out[method]["psnr"] == pytest.approx(weighted, rel=1e-9)
    table = format_table(out)
    assert "PSNR (dB) per source CT:" in table and all(ct in table for ct in set(cts))
    # the synthetic store records no dose: one group, and no per-dose lines
    assert list(out["by_dose_ugy"]) == ["unknown"] and out["by_dose_ugy"]["unknown"]["n_samples"] == len(ds)
    assert "per detector dose" not in table


def test_evaluate_max_samples_keeps_the_splits_data_range(trained, store):
    """--max-samples scores fewer images, each against the whole split's range: a sample's PSNR does not depend on
    how many are scored (the range of the targets of every sample, computed here from the store)."""
    _, ckpt, _ = trained
    full = ZarrDDSADataset(store, "train")
    targets = [full[i]["dsa_target"].numpy() for i in range(len(full))]
    want = max(float(t.max()) for t in targets) - min(float(t.min()) for t in targets)
    few = evaluate_checkpoint(ckpt, store, "train", progress=False, max_samples=2)
    assert few["n_samples"] == 2 and few["data_range"] == pytest.approx(want, rel=1e-6)
    kept = ZarrDDSADataset(store, "train", max_samples=2)
    few_range = max(float(kept[i]["dsa_target"].max()) for i in range(2)) - min(
        float(kept[i]["dsa_target"].min()) for i in range(2))
    assert few_range < want  # the two samples alone span less: the range is not theirs


def test_dose_level_is_the_nearest_1_2_5_value_on_a_log_scale():
    # geometric midpoints: 0.005|0.00707|0.01|0.0141|0.02|0.0316|0.05|0.0707|0.1
    cases = {0.0064: "0.005", 0.0072: "0.01", 0.01: "0.01", 0.014: "0.01", 0.015: "0.02", 0.02: "0.02", 0.03: "0.02",
             0.033: "0.05", 0.07: "0.05", 0.075: "0.1", 0.1: "0.1", 0.5: "0.5", 0.8: "1", 1.0: "1", 3.0: "2", 4.0: "5"}
    assert {d: dose_level(d) for d in cases} == cases
    assert dose_level(float("nan")) == dose_level(0.0) == dose_level(-1.0) == "unknown"


def test_evaluate_reports_each_dose_level(trained, store, tmp_path):
    import shutil

    import zarr

    _, ckpt, _ = trained
    dosed = tmp_path / "dosed.zarr"
    shutil.copytree(store, dosed)
    ds = ZarrDDSADataset(dosed, "train")
    doses = [0.0064, 0.008, 0.02, 0.05, 0.07, 0.075, 0.2, 1.0, float("nan")]
    assert len(ds) == len(doses)
    meta = zarr.open_group(str(dosed), mode="r+")["meta"]
    kerma = np.asarray(meta["detector_air_kerma_ugy"][:])
    kerma[ds.indices] = doses  # meta is outside the samples' checksums
    meta["detector_air_kerma_ugy"][:] = kerma
    out = evaluate_checkpoint(ckpt, dosed, "train", progress=False)
    by_dose = out["by_dose_ugy"]
    assert list(by_dose) == ["0.005", "0.01", "0.02", "0.05", "0.1", "0.2", "1", "unknown"]  # ascending, unknown last
    assert [by_dose[k]["n_samples"] for k in by_dose] == [1, 1, 1, 2, 1, 1, 1, 1]
    ds = ZarrDDSADataset(dosed, "train")
    targets = [ds[i]["dsa_target"][0].numpy().astype(np.float64) for i in range(len(ds))]
    zero = [10 * np.log10(out["data_range"] ** 2 / np.mean(t**2)) for t in targets]
    assert by_dose["0.05"]["zero"]["psnr"] == pytest.approx((zero[3] + zero[4]) / 2, rel=1e-6)
    assert by_dose["unknown"]["zero"]["psnr"] == pytest.approx(zero[8], rel=1e-6)
    for method in ("network", "conventional", "known_anatomy"):
        weighted = sum(r["n_samples"] * r[method]["psnr"] for r in by_dose.values()) / out["n_samples"]
        assert out[method]["psnr"] == pytest.approx(weighted, rel=1e-9)
    table = format_table(out)
    assert "PSNR (dB) per detector dose:" in table and "  0.05 uGy (2 samples): network" in table
    assert "  unknown (1 samples)" in table


def test_cli_evaluate_prints_json_with_both_keys(trained, store, tmp_path):
    app, ckpt, _ = trained
    png = tmp_path / "grid.png"
    r = CliRunner().invoke(
        app, ["evaluate", str(ckpt), "--data", str(store), "--split", "test", "--out-png", str(png)]
    )
    assert r.exit_code == 0, r.output
    # strict JSON (jq, JavaScript): a metric with nothing to measure is null, never NaN / Infinity
    out = json.loads(r.stdout, parse_constant=lambda c: pytest.fail(f"not JSON: {c}"))
    vessel_keys = {"vessel_psnr", "vessel_nmse", "bg_fp_energy", "bg_fp_fraction", "vessel_cnr", "iodine_recovery",
                   "psnr_background_exact", "psnr_vessels_exact"}
    for key in ("network", "conventional", "known_anatomy", "zero"):
        assert {"psnr", "ssim", "nmse", "mae", "psnr_std"} | vessel_keys <= set(out[key])
    assert out["n_samples"] == 3 and out["data_range"] > 0
    # the all-zero image, from the store directly
    test = ZarrDDSADataset(store, "test")
    targets = np.stack([test[i]["dsa_target"][0].numpy().astype(np.float64) for i in range(len(test))])
    assert out["data_range"] == pytest.approx(np.ptp(targets), rel=1e-6)  # of the split's targets
    zero_psnr = [10 * np.log10(out["data_range"] ** 2 / np.mean(t**2)) for t in targets]
    assert out["zero"]["psnr"] == pytest.approx(np.mean(zero_psnr), rel=1e-6)
    assert out["zero"]["nmse"] == 1 and out["zero"]["vessel_nmse"] == 1 and out["zero"]["iodine_recovery"] == 0
    assert out["zero"]["bg_fp_fraction"] == 0 and out["zero"]["vessel_cnr"] == 0
    # the target lies inside the dilated vessels, so the all-zero image's error is all there
    assert out["zero"]["psnr_background_exact"] == pytest.approx(out["zero"]["psnr"], abs=1e-3)
    assert out["zero"]["psnr_vessels_exact"] > out["zero"]["psnr"] + 30
    # known-anatomy subtraction: its error is the contrast frame's own noise, contrast - contrast_clean, whatever the motion
    noise = [test[i]["contrast"][0].numpy().astype(np.float64) - test[i]["contrast_clean"][0].numpy() for i in range(len(test))]
    noise_psnr = [10 * np.log10(out["data_range"] ** 2 / np.mean(n**2)) for n in noise]
    assert np.std(noise[0]) > 0 and out["known_anatomy"]["psnr"] == pytest.approx(np.mean(noise_psnr), rel=1e-6)
    assert out["known_anatomy"]["psnr"] > out["conventional"]["psnr"]
    for baseline in ("conventional", "known_anatomy", "zero"):
        wins = out["wins"][f"network_vs_{baseline}"]
        assert set(wins) >= {"psnr", "vessel_psnr", "bg_fp_fraction"} and all(0 <= n <= 3 for n in wins.values())
    assert out["vessel_metrics"]["dilation_px"] == 2 and out["vessel_metrics"]["bg_threshold"] == 0.05
    assert "vessel PSNR (dB)" in r.stderr and "net wins vs zero" in r.stderr and "net wins vs known_anatomy" in r.stderr
    assert png.exists()
    from PIL import Image

    assert Image.open(png).size[0] > 4 * 48
    # --tta changes the network's image only (tests/test_training_predict.py: what it computes)
    r = CliRunner().invoke(app, ["evaluate", str(ckpt), "--data", str(store), "--out-png", str(png), "--tta"])
    assert r.exit_code == 0, r.output
    tta = json.loads(r.stdout)
    assert out["tta"] is False and tta["tta"] is True
    assert tta["network"]["psnr"] != out["network"]["psnr"]
    assert all(tta[m] == out[m] for m in ("conventional", "known_anatomy", "zero"))
    assert out["weights"] == "model"
    # a run without a weight average has no optimiser's weights to score apart from its network
    r = CliRunner().invoke(app, ["evaluate", str(ckpt), "--data", str(store), "--out-png", str(png), "--stepped"])
    assert r.exit_code != 0 and "leave out --stepped" in r.output


def test_cli_infer_png_tiff_dicom(trained, tmp_path):
    import pydicom
    import tifffile
    from PIL import Image
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    app, ckpt, _ = trained
    rng = np.random.default_rng(0)
    intensity = (rng.uniform(0.02, 0.2, (3, 40, 44)) * 65535).astype(np.uint16)

    png_in = tmp_path / "f.png"
    Image.fromarray((intensity[0] >> 8).astype(np.uint8)).save(png_in)
    tif_in = tmp_path / "seq.tif"
    tifffile.imwrite(tif_in, intensity, photometric="minisblack")  # 16-bit, 3 pages
    dcm_in = tmp_path / "f.dcm"
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(dcm_in), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientID = "XA", "test"
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = 40, 44, 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = intensity[0].tobytes()
    ds.save_as(dcm_in, enforce_file_format=True)

    runner = CliRunner()
    for src, dst in (
        (png_in, tmp_path / "o.png"),
        (tif_in, tmp_path / "o.tif"),
        (dcm_in, tmp_path / "o_dcm"),  # a DICOM is an XA run: OUT is a folder (tests/test_infer_xa.py)
    ):
        r = runner.invoke(app, ["infer", str(ckpt), str(src), "-o", str(dst)])
        assert r.exit_code == 0, r.output
        assert dst.exists()
    assert Image.open(tmp_path / "o.png").mode.startswith("I")  # 16-bit PNG
    assert (tmp_path / "o_preview.png").exists()
    tif = tifffile.imread(tmp_path / "o.tif")
    assert tif.shape == (3, 40, 44) and tif.dtype == np.float32 and np.isfinite(tif).all()
    assert all((tmp_path / f"o_preview_{k:03d}.png").exists() for k in range(3))
    out = pydicom.dcmread(tmp_path / "o_dcm" / "network" / "dsa.dcm")
    assert out.pixel_array.shape == (40, 44) and out.SOPInstanceUID != ds.SOPInstanceUID
    # the DICOM rescale recovers the network output of the TIFF's first frame (same intensities)
    values = out.pixel_array * float(out.RescaleSlope) + float(out.RescaleIntercept)
    assert np.allclose(values, tif[0], atol=float(out.RescaleSlope) + 1e-6)


def test_cli_train_branch_from(trained, store):
    app, _, run = trained
    cfg_path, last = run / "tiny.yaml", run / "run" / "last.pt"
    r = CliRunner().invoke(app, ["train", str(cfg_path), "--data", str(store), "--max-steps", "6",
                                 "--branch-from", str(last), "-o", str(run / "branch")])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["start_step"] == 4 and out["step"] == 6 and out["best_step"] >= 4
    assert json.loads((run / "branch" / "branch.json").read_text())["step"] == 4
    for args, message in [
        (["--resume", "-o", str(run / "branch")], "--resume and --branch-from: give one"),
        (["-o", str(run / "run"), "--overwrite"], "lies in the run folder"),
    ]:
        r = CliRunner().invoke(app, ["train", str(cfg_path), "--data", str(store), "--branch-from", str(last), *args])
        assert r.exit_code == 2 and r.stderr.startswith("error: ") and message in r.stderr, r.output
    assert last.is_file()  # the refused --overwrite left the source run alone
    r = CliRunner().invoke(app, ["train", str(cfg_path), "--branch-from", str(run / "none.pt"), "-o", str(run / "n")])
    assert r.exit_code == 2 and "--branch-from: no checkpoint" in r.stderr and not (run / "n").exists()


def test_cli_bad_input_is_one_line_exit_2(trained, tmp_path):
    app, ckpt, _ = trained
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"model": {"depth": 0}}))
    r = CliRunner().invoke(app, ["train", str(bad), "-o", str(tmp_path / "x")])
    assert r.exit_code == 2
    assert r.stderr.strip().startswith("error:") and "model.depth" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.output
    r = CliRunner().invoke(app, ["infer", str(tmp_path / "missing.pt"), str(ckpt), "-o", str(tmp_path / "y")])
    assert r.exit_code == 2 and "checkpoint not found" in r.stderr


def test_cli_train_device_overrides_the_config_and_names_bad_values(trained, store):
    app, _, run = trained
    cfg_path = run / "tiny.yaml"
    bad = CliRunner().invoke(app, ["train", str(cfg_path), "--data", str(store), "--device", "gpu",
                                   "-o", str(run / "bad")])
    assert bad.exit_code == 2 and "error: --device: must be one of auto, cpu, cuda, not 'gpu'" in bad.stderr
    assert not (run / "bad").exists()  # refused before the run folder is made
    if torch.cuda.is_available():
        pytest.skip("the CUDA refusal below needs a machine without a GPU")
    # the config says auto (cpu here); --device cuda reaches the trainer, which refuses it here with its one line
    r = CliRunner().invoke(app, ["train", str(cfg_path), "--data", str(store), "--device", "cuda",
                                 "-o", str(run / "cuda")])
    assert r.exit_code == 2 and "error: device: 'cuda' requested but no CUDA GPU is available" in r.stderr
