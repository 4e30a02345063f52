"""Ctrl-C (SIGINT) of a training run: the run stops after a completed step, ``last.pt`` holds that step's whole state,
and ``--resume`` ends bit for bit where an uninterrupted run ends (weights, batch-norm buffers, weight average,
optimisers, critic, best.pt and its validations)."""

import json
import signal

import pytest
import torch
import typer
import yaml
from typer.testing import CliRunner

from ddsa_sim.cli.train import register
from ddsa_sim.training import loop
from ddsa_sim.training.checkpoint import load_checkpoint
from ddsa_sim.training.config import parse_config
from ddsa_sim.training.loop import run_training
from ddsa_sim.training.synthetic import write_synthetic_store

TINY = {
    "seed": 3,
    "num_threads": 1,
    "device": "cpu",
    "data": {"crop_size": 32, "patch_size": 32, "batch_size": 2, "in_memory": True, "max_val_samples": 2,
             "norm_samples": 4},
    # batch norm: every forward pass in training mode moves its running statistics and counters
    "model": {"base_channels": 4, "depth": 2, "norm": "batch"},
    "optim": {"lr": 2e-3, "max_steps": 5, "val_every": 3, "ckpt_every": 100, "log_every": 1, "ema_decay": 0.5,
              "ema_bn_batches": 2},
}
GAN = {"enabled": True, "critic_channels": 4, "critic_depth": 2, "critic_steps": 2}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return write_synthetic_store(tmp_path_factory.mktemp("store") / "s.zarr", splits={"train": 2, "val": 1},
                                 per_ct=2, size=32)


def _cfg(gan: bool):
    return parse_config({**TINY, "gan": GAN} if gan else TINY)


def _sigint_during(monkeypatch, name: str, call: int, before: bool = True) -> None:
    """Send this process SIGINT from inside ``loop.<name>`` at its ``call``-th call (0-based), before or after the
    original runs: what a Ctrl-C in the middle of a step (or a validation) does."""
    original = getattr(loop, name)
    calls = []

    def wrapper(*args, **kwargs):
        calls.append(1)
        now = len(calls) - 1 == call
        if now and before:
            signal.raise_signal(signal.SIGINT)
        out = original(*args, **kwargs)
        if now and not before:
            signal.raise_signal(signal.SIGINT)
        return out

    monkeypatch.setattr(loop, name, wrapper)


def _assert_same(a, b, where: str = "") -> None:
    """Nested checkpoint contents equal, tensors bit for bit."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


# (GAN, the function a Ctrl-C hits, its call, before / after it runs, the step the run stops after): the generator's
# forward pass done, its update not; a GAN's critic stepped, the generator not; a validation (steps 3 and 5) under way
CASES = {
    "supervised, mid-step": (False, "_generator_update", 2, True, 3),
    "gan, after the critic steps": (True, "train_critic", 2, False, 3),
    "supervised, during a validation": (False, "validate", 0, True, 3),
    "supervised, during the last validation": (False, "validate", 1, True, 5),
}


@pytest.mark.parametrize("case", CASES)
def test_interrupt_then_resume_equals_an_uninterrupted_run(store, tmp_path, monkeypatch, case):
    gan, name, call, before, stop = CASES[case]
    cfg = _cfg(gan)
    full = run_training(cfg, tmp_path / "full", store=store, progress=False)
    with monkeypatch.context() as m:
        _sigint_during(m, name, call, before)
        with pytest.raises(KeyboardInterrupt) as stopped:
            run_training(cfg, tmp_path / "part", store=store, progress=False)
    # the step the interrupt came in completes; the validation due at it is left to the resume
    assert getattr(stopped.value, "step", None) == stop and stopped.value.saved == tmp_path / "part" / "last.pt"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    part = load_checkpoint(tmp_path / "part" / "last.pt")
    assert part["step"] == stop and part["validation_pending"]
    rest = run_training(cfg, tmp_path / "part", store=store, resume=True, progress=False)
    assert rest.start_step == stop and [s for s, _ in rest.losses] == list(range(stop + 1, 6))
    assert [s for s, _ in full.val_history] == [3, 5]
    assert rest.val_history == [v for v in full.val_history if v[0] >= stop]
    for f in ("last.pt", "best.pt"):
        a, b = load_checkpoint(tmp_path / "full" / f), load_checkpoint(tmp_path / "part" / f)
        assert a["model_stepped"]["inc.1.num_batches_tracked"].item() == a["step"]  # one forward pass per step
        keys = ("model", "model_stepped", "optimizer", "critic", "critic_optimizer", "step", "best_score")
        _assert_same({k: a[k] for k in keys}, {k: b[k] for k in keys}, f)
    assert not load_checkpoint(tmp_path / "part" / "last.pt")["validation_pending"]


def test_an_interrupt_before_any_step_completes_saves_nothing(store, tmp_path, monkeypatch):
    """A SIGINT while the first batch is made stops at once: no step was done, nothing is kept (a folder that holds
    files would stand in the way of the same command again)."""
    # calls 0 and 1: the weight average's batch-norm inputs (optim.ema_bn_batches 2), made before the first step
    _sigint_during(monkeypatch, "make_training_batch", 2)
    with pytest.raises(loop.TrainingInterrupted) as stopped:
        run_training(_cfg(False), tmp_path / "run", store=store, progress=False)
    assert stopped.value.step == 0 and stopped.value.saved is None
    assert not (tmp_path / "run").exists()


def test_cli_train_says_where_an_interrupted_run_stopped(store, tmp_path, monkeypatch):
    cfg_path = tmp_path / "tiny.yaml"
    cfg_path.write_text(yaml.safe_dump(TINY))
    app = typer.Typer()
    register(app)
    run = tmp_path / "run"
    with monkeypatch.context() as m:
        _sigint_during(m, "_generator_update", 1)
        r = CliRunner().invoke(app, ["train", str(cfg_path), "--data", str(store), "-o", str(run)])
    assert r.exit_code == 130, r.output
    lines = [ln for ln in r.stderr.splitlines() if "interrupted" in ln]
    assert lines == [f"error: {run}: training interrupted by SIGINT after step 2 (saved in {run / 'last.pt'}); run "
                     "the same command with --resume to continue it"], r.stderr
    assert load_checkpoint(run / "last.pt")["step"] == 2
    r = CliRunner().invoke(app, ["train", str(cfg_path), "--data", str(store), "-o", str(run), "--resume"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout.strip().splitlines()[-1])["step"] == 5
