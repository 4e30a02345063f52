"""U-Net shapes, WGAN-GP gradient penalty, checkpoints (weights_only) and architecture refusal."""

import pytest
import torch

from ddsa_sim import InputError
from ddsa_sim.training.checkpoint import check_architecture, load_checkpoint, load_model, save_checkpoint
from ddsa_sim.training.config import ModelConfig, TrainConfig
from ddsa_sim.training.gan import Critic, critic_loss, gradient_penalty
from ddsa_sim.training.normalization import Normalization
from ddsa_sim.training.unet import UNet


@pytest.mark.parametrize("depth,size", [(1, (16, 16)), (2, (37, 50)), (3, (64, 64)), (5, (64, 48))])
@pytest.mark.parametrize("up,down,norm", [("transpose", "maxpool", "none"), ("bilinear", "stride", "group")])
def test_unet_output_shape(depth, size, up, down, norm):
    m = UNet(ModelConfig(base_channels=4, depth=depth, up_mode=up, down_mode=down, norm=norm, dropout=0.1))
    x = torch.randn(2, 1, *size)
    assert m(x).shape == (2, 1, *size)
    assert len(m.downs) == depth


def test_unet_published_channel_plan():
    m = UNet(ModelConfig())  # published defaults: 64..1024 with 5 down-samplings
    assert m.channels == [64, 128, 256, 512, 1024, 1024]
    assert isinstance(m.inc[2], torch.nn.LeakyReLU)


class LinearCritic(torch.nn.Module):
    """D(c, y) = <w, y> + <v, c>: its gradient in y is w, so GP = (||w|| - 1)^2 exactly."""

    def __init__(self, shape):
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(shape))
        self.v = torch.nn.Parameter(torch.randn(shape))

    def forward(self, c, y):
        return (self.w * y).sum(dim=(1, 2, 3)) + (self.v * c).sum(dim=(1, 2, 3))


def test_gradient_penalty_linear_critic_analytic():
    torch.manual_seed(0)
    critic = LinearCritic((1, 1, 8, 8))
    c, real, fake = torch.randn(3, 4, 1, 8, 8).unbind(0)
    gp = gradient_penalty(critic, c, real, fake, torch.Generator().manual_seed(0))
    expected = (critic.w.detach().norm() - 1) ** 2
    assert float(gp.detach()) == pytest.approx(float(expected), rel=1e-5)


def test_gradient_penalty_matches_per_sample_autograd():
    torch.manual_seed(1)
    critic = Critic(2, channels=4, depth=2)
    c, real, fake = torch.randn(3, 3, 1, 16, 16).unbind(0)
    eps = torch.tensor([0.1, 0.5, 0.9])
    gp = gradient_penalty(critic, c, real, fake, eps=eps)
    terms = []
    for i in range(3):  # one sample at a time: no batch coupling possible
        y = (eps[i] * real[i : i + 1] + (1 - eps[i]) * fake[i : i + 1]).requires_grad_(True)
        (gi,) = torch.autograd.grad(critic(c[i : i + 1], y).sum(), y)
        terms.append((gi.norm() - 1) ** 2)
    assert float(gp.detach()) == pytest.approx(float(torch.stack(terms).mean()), rel=1e-5)
    # the penalty is differentiable w.r.t. critic parameters (double backward)
    gp.backward()
    weights = [p for n, p in critic.named_parameters() if n.endswith("weight")]
    assert all(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in weights)


def test_critic_loss_parts():
    torch.manual_seed(2)
    critic = Critic(2, channels=4, depth=2)
    c, real, fake = torch.randn(3, 2, 1, 16, 16).unbind(0)
    loss, parts = critic_loss(
        critic, c, real, fake, gp_lambda=10.0, generator=torch.Generator().manual_seed(0)
    )
    w = float((critic(c, real).mean() - critic(c, fake).mean()).detach())
    assert parts["wasserstein"] == pytest.approx(w, rel=1e-5)
    assert float(loss.detach()) == pytest.approx(-w + 10.0 * parts["gp"], rel=1e-4)


def _tiny_cfg(**model):
    return TrainConfig.model_validate({"model": {"base_channels": 4, "depth": 2, **model}})


def test_checkpoint_roundtrip_weights_only(tmp_path):
    cfg = _tiny_cfg()
    torch.manual_seed(0)
    model = UNet(cfg.model)
    norm = Normalization(offset=3.0, scale=0.5, target_min=0.0, target_max=0.4)
    path = save_checkpoint(
        tmp_path / "m.pt",
        config=cfg,
        norm=norm,
        model=model,
        step=7,
        best_score=12.5,
        optimizer=torch.optim.Adam(model.parameters()),
    )
    raw = torch.load(path, weights_only=True)  # must not need pickle of arbitrary objects
    assert raw["step"] == 7 and isinstance(raw["config_json"], str)
    ckpt = load_checkpoint(path)
    assert ckpt["normalization"] == norm.to_dict()
    m2, n2, cfg2, _ = load_model(path, expected=cfg.model)
    x = torch.randn(1, 1, 20, 20)
    model.eval()
    assert torch.equal(model(x), m2(x))
    assert n2 == norm and cfg2 == cfg


def test_checkpoint_refuses_mismatched_architecture(tmp_path):
    cfg = _tiny_cfg()
    path = save_checkpoint(tmp_path / "m.pt", config=cfg, norm=Normalization(), model=UNet(cfg.model), step=0)
    other = _tiny_cfg(base_channels=8, up_mode="bilinear").model
    with pytest.raises(InputError, match=r"architecture mismatch: .*base_channels 4 .*8.*up_mode"):
        check_architecture(load_checkpoint(path), other, str(path))
    with pytest.raises(InputError, match="architecture mismatch"):
        load_model(path, expected=other)


class Evil:
    """An arbitrary class: unpickling it must be refused by weights_only loading."""


def test_checkpoint_rejects_non_checkpoints(tmp_path):
    bad = tmp_path / "x.pt"
    torch.save({"hello": 1}, bad)
    with pytest.raises(InputError, match="not a ddsa-sim checkpoint"):
        load_checkpoint(bad)
    with pytest.raises(InputError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    evil = tmp_path / "evil.pt"
    torch.save({"format": "ddsa-sim-checkpoint", "obj": Evil()}, evil)
    with pytest.raises(InputError, match="not a ddsa-sim checkpoint: it holds objects"):
        load_checkpoint(evil)
    png = tmp_path / "image.png"  # a file of another kind: our message, not torch's weights_only advice
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    with pytest.raises(InputError, match=r"not a ddsa-sim checkpoint \(not a whole torch file") as err:
        load_checkpoint(png)
    assert "weights_only" not in str(err.value)
    with pytest.raises(InputError, match=r"is a folder; give a checkpoint in it, e\.g\. .*best\.pt"):
        load_checkpoint(tmp_path)
