"""The vessel GAN trainer under two gloo processes (torchrun's environment), and the published-size configs."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from vessel_models.gan.checkpoint import build_networks, load_checkpoint
from vessel_models.gan.config import GanConfig, load_gan_config
from vessel_models.gan.train import train_gan

REPO = Path(__file__).resolve().parents[1]
SHAPE = (8, 8, 8)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tubes(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    j, k = np.mgrid[:SHAPE[1], :SHAPE[2]]
    return [np.broadcast_to((j - rng.uniform(3, 5)) ** 2 + (k - rng.uniform(3, 5)) ** 2 <= 2.0, SHAPE).copy()
            for _ in range(n)]


def _worker(rank: int, world: int, port: int, out: str, cfg: dict) -> None:
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": str(world),
                       "RANK": str(rank), "LOCAL_RANK": str(rank)})
    result = train_gan(GanConfig.from_dict(cfg), _tubes(6), out, progress=False)
    torch.save({"step": result.step, "first_critic_loss": result.critic_losses[0],
                "generator": result.generator.state_dict(), "critic": result.critic.state_dict()},
               Path(out) / f"rank{rank}.pt")


@pytest.mark.parametrize("amp_cpu", [False, True])
@pytest.mark.parametrize("kind", ["wgan", "stylegan"])
def test_two_gloo_processes_end_with_identical_networks(kind, amp_cpu, tmp_path):
    cfg = {"device": "cpu", "num_threads": 1, "seed": 3, "eval_every": 1000, "eval_samples": 2, "amp_cpu": amp_cpu,
           "data": {"shape": list(SHAPE), "spacing_mm": 1.0, "mode": "crop", "val_fraction": 0.2},
           "net": {"kind": kind, "latent_dim": 4, "base_channels": 2, "max_channels": 4, "mapping_layers": 1},
           "optim": {"batch_size": 2, "n_critic": 2, "r1_every": 2, "max_steps": 3}}
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path), cfg), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert r0["step"] == r1["step"] == 3
    assert r0["first_critic_loss"] != r1["first_critic_loss"]  # each rank drew its own batches
    for which in ("generator", "critic"):
        for name, value in r0[which].items():
            assert torch.equal(value, r1[which][name]), (which, name)  # gradients were averaged
    torch.manual_seed(cfg["seed"])
    init_g, _ = build_networks(GanConfig.from_dict(cfg))
    assert any(not torch.equal(v, r0["generator"][k]) for k, v in init_g.state_dict().items())  # it trained
    last = load_checkpoint(tmp_path / "last.pt")  # written by rank 0 alone, of the shared state
    assert last["step"] == 3
    for name, value in last["generator"].items():
        assert torch.equal(value, r0["generator"][name]), name


@pytest.mark.parametrize("name, shape", [("vessel_wgan_gpu.yaml", (128, 128, 64)),
                                         ("vessel_stylegan_gpu.yaml", (32, 128, 128))])
def test_published_size_configs_build_and_generate(name, shape):
    """The GPU configs parse, build at the published patch/crop size, and one generator + critic pass runs."""
    cfg = load_gan_config(REPO / "experiments" / name)
    assert tuple(cfg.data.shape) == shape
    g, c = build_networks(cfg)
    with torch.no_grad():
        x = g(torch.randn(1, cfg.net.latent_dim))
        assert x.shape == (1, 1, *shape)
        assert c(torch.tanh(x)).shape == (1,)
