"""Conditional WGAN-GP critic for the U-Net-GAN (critic sees input + output, gradient penalty).

Losses (published: lambda 10, 4 critic steps per generator step, G loss = 10 * L1 - E[D])::

    L_D = E[D(x, G(x))] - E[D(x, y)] + lambda * E[(||grad_yhat D(x, yhat)||_2 - 1)^2]
    L_G = l1_weight * L1(G(x), y) - E[D(x, G(x))]

with ``yhat = eps * y + (1 - eps) * G(x)``, ``eps ~ U(0, 1)`` per sample; the penalty gradient is taken
with respect to the interpolated output only (the condition ``x`` is fixed).

One generator step of the training loop is :func:`train_critic` (``critic_steps`` critic updates against
one generator output) followed by :func:`generator_loss` (the critic frozen).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.distributed as dist
from torch import nn

from ddsa_sim.training.config import GANConfig

__all__ = [
    "Critic",
    "average_gradients",
    "build_critic",
    "critic_loss",
    "generator_adv_loss",
    "generator_loss",
    "gradient_penalty",
    "train_critic",
]


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


def average_gradients(module: nn.Module, world: int) -> None:
    """Average the gradients of ``module`` over the ``world`` ranks of the process group (in place).

    The critic is not wrapped in DDP (its gradient penalty needs a double backward), so its gradients
    are all-reduced here instead.
    """
    for p in module.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad /= world


def train_critic(
    critic: nn.Module,
    optimizer: torch.optim.Optimizer,
    condition: torch.Tensor,
    real: torch.Tensor,
    fake: torch.Tensor,
    cfg: GANConfig,
    *,
    generator: torch.Generator | None = None,
    world: int = 1,
) -> dict[str, float]:
    """``cfg.critic_steps`` WGAN-GP updates of the critic against one generator output.

    The critic's parameters require gradients only during this call, so the generator loss that
    follows builds no critic gradients.

    Parameters
    ----------
    critic, optimizer
        The critic and its optimiser.
    condition, real, fake
        ``(B, C, H, W)`` network input, target and generator output (network units); ``fake`` is
        detached here.
    cfg
        ``critic_steps`` and ``gp_lambda``.
    generator
        Source of the gradient-penalty interpolation weights (one draw per update).
    world
        Number of DDP ranks; above 1 the critic gradients are averaged over them before each update.

    Returns
    -------
    dict
        ``critic_loss``, ``wasserstein`` and ``gp`` of the last update.
    """
    critic.requires_grad_(True)
    for _ in range(cfg.critic_steps):
        loss, parts = critic_loss(critic, condition, real, fake.detach().float(), cfg.gp_lambda, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if world > 1:
            average_gradients(critic, world)
        optimizer.step()
    logs = {"critic_loss": float(loss.detach()), **parts}
    critic.requires_grad_(False)
    return logs


def generator_loss(
    critic: nn.Module,
    condition: torch.Tensor,
    real: torch.Tensor,
    fake: torch.Tensor,
    recon_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    l1_weight: float,
) -> tuple[torch.Tensor, dict[str, float]]:
    """U-Net-GAN generator loss ``l1_weight * recon(G(x), y) - E[D(x, G(x))]``.

    Parameters
    ----------
    critic
        The (frozen) critic.
    condition, real, fake
        ``(B, C, H, W)`` network input, target and generator output (not detached: the loss
        back-propagates into the generator).
    recon_loss
        Reconstruction loss ``recon(pred, target)`` (the configured L1 / L2 / SSIM mix).
    l1_weight
        Weight of the reconstruction term.

    Returns
    -------
    loss, parts
        Scalar loss and ``{"recon": reconstruction term}``.
    """
    rec = recon_loss(fake, real)
    loss = l1_weight * rec + generator_adv_loss(critic, condition, fake.float())
    return loss, {"recon": float(rec.detach())}
