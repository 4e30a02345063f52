"""Conditional WGAN-GP critic for the U-Net-GAN (critic sees input + output, gradient penalty).

Losses (published: lambda 10, 4 critic steps per generator step, G loss = 10 * L1 - E[D])::

    L_D = E[D(x, G(x))] - E[D(x, y)] + lambda * E[(||grad_yhat D(x, yhat)||_2 - 1)^2]
    L_G = l1_weight * L1(G(x), y) - E[D(x, G(x))]

with ``yhat = eps * y + (1 - eps) * G(x)``, ``eps ~ U(0, 1)`` per sample; the penalty gradient is taken
with respect to the interpolated output only (the condition ``x`` is fixed).
"""

from __future__ import annotations

import torch
from torch import nn

from ddsa_sim.training.config import GANConfig


class Critic(nn.Module):
    """Strided conv critic, no batch norm (WGAN-GP), global average -> scalar per sample.

    Parameters
    ----------
    in_channels
        Channels of condition + image (2 for single-channel DDSA).
    channels
        Width of the first layer (doubled per level, capped at 8x).
    depth
        Number of stride-2 convolutions.
    """

    def __init__(self, in_channels: int = 2, channels: int = 64, depth: int = 4) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for i in range(depth):
            co = channels * min(2**i, 8)
            layers += [nn.Conv2d(c, co, 4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True)]
            c = co
        layers.append(nn.Conv2d(c, 1, 3, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, condition: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """Critic score ``(B,)`` of ``image`` given ``condition``."""
        return self.net(torch.cat([condition, image], dim=1)).mean(dim=(1, 2, 3))


def build_critic(cfg: GANConfig, in_channels: int = 1, out_channels: int = 1) -> Critic:
    """Critic for a generator with the given channel counts."""
    return Critic(in_channels + out_channels, cfg.critic_channels, cfg.critic_depth)


def gradient_penalty(
    critic: nn.Module,
    condition: torch.Tensor,
    real: torch.Tensor,
    fake: torch.Tensor,
    generator: torch.Generator | None = None,
    eps: torch.Tensor | None = None,
) -> torch.Tensor:
    """WGAN-GP penalty ``E[(||grad D(x, yhat)||_2 - 1)^2]`` on random interpolates.

    Parameters
    ----------
    critic
        ``critic(condition, image) -> (B,)``.
    condition, real, fake
        ``(B, C, H, W)`` tensors; ``fake`` should be detached.
    generator
        Source of the interpolation weights (ignored when ``eps`` is given).
    eps
        Optional explicit ``(B,)`` interpolation weights.
    """
    b = real.shape[0]
    if eps is None:
        eps = torch.rand(b, generator=generator, device=real.device)
    e = eps.view(-1, 1, 1, 1).to(real.dtype)
    yhat = (e * real + (1 - e) * fake).detach().requires_grad_(True)
    score = critic(condition, yhat)
    (grad,) = torch.autograd.grad(score.sum(), yhat, create_graph=True)
    return ((grad.flatten(1).norm(2, dim=1) - 1) ** 2).mean()


def critic_loss(
    critic: nn.Module,
    condition: torch.Tensor,
    real: torch.Tensor,
    fake: torch.Tensor,
    gp_lambda: float,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """WGAN-GP critic loss and its parts (``wasserstein``, ``gp``)."""
    fake = fake.detach()
    d_real = critic(condition, real).mean()
    d_fake = critic(condition, fake).mean()
    gp = gradient_penalty(critic, condition, real, fake, generator)
    loss = d_fake - d_real + gp_lambda * gp
    return loss, {"wasserstein": float((d_real - d_fake).detach()), "gp": float(gp.detach())}


def generator_adv_loss(critic: nn.Module, condition: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Adversarial generator term ``-E[D(x, G(x))]``."""
    return -critic(condition, fake).mean()
