"""GAN objectives: Wasserstein with gradient penalty (Gulrajani et al. 2017) and the non-saturating
logistic loss with R1 penalty (Mescheder et al. 2018; StyleGAN2)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

__all__ = ["gradient_penalty", "logistic_critic_loss", "logistic_generator_loss", "r1_penalty"]


def _input_gradients(critic: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                     scale: float = 1.0) -> torch.Tensor:
    """d(sum critic(x))/dx with the graph kept (double backward); ``scale`` as for an AMP grad scaler
    (the scores are multiplied by it before differentiating and the gradients divided after)."""
    x = x.detach().requires_grad_(True)
    scores = critic(x)
    (grad,) = torch.autograd.grad(scores.sum() * scale, x, create_graph=True)
    return grad.float() / scale


def gradient_penalty(critic: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor, fake: torch.Tensor,
                     eps: torch.Tensor | None = None, scale: float = 1.0) -> torch.Tensor:
    """``E[(||grad D(x_hat)||_2 - 1)^2]`` at ``x_hat = eps real + (1 - eps) fake``.

    Parameters
    ----------
    critic : callable
        Volume batch -> scores ``(B,)``.
    real, fake : torch.Tensor
        ``(B, ...)`` batches.
    eps : torch.Tensor, optional
        ``(B,)`` interpolation weights in [0, 1] (default: uniform random).
    scale : float
        AMP loss scale (see :func:`_input_gradients`).

    Returns
    -------
    torch.Tensor
        Scalar penalty (multiply by lambda = 10).
    """
    if eps is None:
        eps = torch.rand(real.shape[0], device=real.device)
    eps = eps.view(-1, *([1] * (real.dim() - 1))).to(real.dtype)
    x_hat = eps * real.detach() + (1 - eps) * fake.detach()
    grad = _input_gradients(critic, x_hat, scale)
    return ((grad.flatten(1).norm(2, dim=1) - 1) ** 2).mean()


def r1_penalty(critic: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor, scale: float = 1.0,
               ) -> torch.Tensor:
    """``E[||grad D(x_real)||_2^2]`` (multiply by gamma / 2)."""
    grad = _input_gradients(critic, real, scale)
    return grad.flatten(1).pow(2).sum(1).mean()


def logistic_critic_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """``softplus(D(fake)) + softplus(-D(real))`` averaged."""
    return F.softplus(fake_scores).mean() + F.softplus(-real_scores).mean()


def logistic_generator_loss(fake_scores: torch.Tensor) -> torch.Tensor:
    """Non-saturating ``softplus(-D(G(z)))`` averaged."""
    return F.softplus(-fake_scores).mean()
