"""The network's DSA of ``-ln`` frames, optionally averaged over the image symmetries (test-time augmentation).

A U-Net trained with flips and rotations (``data.augment``) is close to, not exactly, equivariant to
them: what it draws on anatomy it has not seen (bone edges, air cells, noise) changes with the
orientation, while the vessels it recognises follow the image. Test-time augmentation runs the network on
every symmetry ``g`` of the image, maps each output back with ``g^-1`` and averages, ``mean_g g^-1 f(g x)``:
the result is exactly equivariant, and output that does not follow the image averages out. The
symmetries are the 8 flips and right-angle rotations of a square image (the dihedral group D4), or the 4
flips of a non-square one (a right-angle rotation would change its shape); the cost is that many passes.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ddsa_sim.training.normalization import Normalization

__all__ = ["network_dsa", "symmetries"]

Transform = Callable[[torch.Tensor], torch.Tensor]


def _flip(x: torch.Tensor, h: bool, v: bool) -> torch.Tensor:
    dims = [d for d, on in ((-1, h), (-2, v)) if on]
    return x.flip(dims) if dims else x


def symmetries(height: int, width: int) -> list[tuple[Transform, Transform]]:
    """``[(g, g^-1), ...]`` acting on the last two axes: identity first; 8 for a square image, 4 otherwise."""
    pairs: list[tuple[Transform, Transform]] = []
    for h in (False, True):
        for v in (False, True):
            pairs.append((lambda x, h=h, v=v: _flip(x, h, v), lambda x, h=h, v=v: _flip(x, h, v)))
            if height == width:  # the flip, then a quarter turn; undone in reverse order
                pairs.append((lambda x, h=h, v=v: torch.rot90(_flip(x, h, v), 1, (-2, -1)),
                              lambda x, h=h, v=v: _flip(torch.rot90(x, -1, (-2, -1)), h, v)))
    return pairs


@torch.no_grad()
def network_dsa(model: torch.nn.Module, norm: Normalization, frames: torch.Tensor, tta: bool = False) -> torch.Tensor:
    """DSA ``(B, 1, H, W)`` (-ln domain) of contrast frames ``(B, 1, H, W)`` (-ln domain).

    Parameters
    ----------
    model, norm
        The loaded network and its normalisation (:func:`ddsa_sim.training.checkpoint.load_model`).
    frames
        Contrast frames, ``-ln(I / I0)``, on the model's device.
    tta
        Average over the image symmetries (:func:`symmetries`; module docstring) instead of one pass.
    """
    def once(x: torch.Tensor) -> torch.Tensor:
        return norm.denorm_target(model(norm.norm_input(x)).float())

    if not tta:
        return once(frames)
    pairs = symmetries(*frames.shape[-2:])
    return sum(inverse(once(forward(frames))) for forward, inverse in pairs) / len(pairs)
