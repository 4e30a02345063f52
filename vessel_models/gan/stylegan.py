"""A 3D StyleGAN2-style generator and its residual critic (after Karras et al. 2020; Aydin et al. 2024).

Generator: a mapping network ``z -> w`` (pixel-norm + equalised-lr MLP), a learned constant at the
coarsest grid, per level a trilinear 2x up-sampling and two modulated / demodulated 3x3x3
convolutions with per-voxel noise inputs, and the *skip* architecture: every level adds its own
1x1x1 modulated "to-logits" output to the up-sampled sum of the coarser ones. Truncation moves ``w``
towards the running mean ``w_avg`` (psi = 1: none). Critic: residual down-sampling blocks, a
minibatch standard-deviation channel and a linear head.

Every weight of both networks, as in StyleGAN2, has an equalised learning rate: stored as ``N(0, 1)``
and scaled by ``1 / sqrt(fan_in)`` at run time, so that Adam's step (the published 2e-3) is the same
relative change for every layer. (A plain ``nn.Conv3d`` critic, weights about ``1 / sqrt(fan_in)``,
would move by a far larger fraction of its weights per step than the generator does.)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from vessel_models.gan.wgan import levels_for, network_shape, space_to_depth

__all__ = ["ModulatedConv3d", "StyleCritic", "StyleGenerator"]


class EqualLinear(nn.Module):
    """Linear layer with equalised learning rate (weights scaled by ``lr_mul / sqrt(fan_in)`` at run time)."""

    def __init__(self, cin: int, cout: int, bias_init: float = 0.0, lr_mul: float = 1.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin) / lr_mul)
        self.bias = nn.Parameter(torch.full((cout,), float(bias_init)))
        self.scale, self.lr_mul = lr_mul / math.sqrt(cin), lr_mul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)


class EqualConv3d(nn.Module):
    """3D convolution with equalised learning rate (weights scaled by ``1 / sqrt(fan_in)`` at run time)."""

    def __init__(self, cin: int, cout: int, kernel: int, bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, kernel, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(cout)) if bias else None
        self.scale, self.padding = 1 / math.sqrt(cin * kernel**3), kernel // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv3d(x, self.weight * self.scale, self.bias, padding=self.padding)


class ModulatedConv3d(nn.Module):
    """3D convolution whose weights are scaled per sample by a style and (optionally) demodulated.

    ``w'_{oi} = w_{oi} s_i``, demodulated ``w''_{oi} = w'_{oi} / sqrt(sum_i w'^2_{oi} + 1e-8)``, computed
    as StyleGAN2's non-fused form: the input scaled by ``s``, one shared-weight convolution, the output
    scaled by the demodulation factor (equal to the per-sample weights; far faster on CPUs than a
    grouped convolution over the batch).
    """

    def __init__(self, cin: int, cout: int, kernel: int, w_dim: int, demodulate: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, kernel, kernel, kernel))
        self.affine = EqualLinear(w_dim, cin, bias_init=1.0)
        self.scale = 1 / math.sqrt(cin * kernel**3)
        self.demodulate, self.padding = demodulate, kernel // 2

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        style = self.affine(w)  # (B, cin)
        weight = self.weight * self.scale
        out = F.conv3d(x * style.view(*style.shape, 1, 1, 1).to(x.dtype), weight.to(x.dtype), padding=self.padding)
        if self.demodulate:
            demod = torch.rsqrt(style.pow(2) @ weight.pow(2).sum(dim=(2, 3, 4)).t() + 1e-8)  # (B, cout)
            out = out * demod.view(*demod.shape, 1, 1, 1).to(out.dtype)
        return out


class StyleLayer(nn.Module):
    """Modulated 3x3x3 conv + scaled per-voxel noise + bias + leaky ReLU (gain sqrt 2)."""

    def __init__(self, cin: int, cout: int, w_dim: int):
        super().__init__()
        self.conv = ModulatedConv3d(cin, cout, 3, w_dim)
        self.noise_strength = nn.Parameter(torch.zeros(()))
        self.bias = nn.Parameter(torch.zeros(cout))

    def forward(self, x: torch.Tensor, w: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        x = self.conv(x, w)
        noise = torch.randn((x.shape[0], 1, *x.shape[2:]), generator=generator, device=x.device, dtype=x.dtype)
        x = x + self.noise_strength * noise + self.bias.view(1, -1, 1, 1, 1)
        return F.leaky_relu(x, 0.2) * math.sqrt(2)


class StyleGenerator(nn.Module):
    """``z (B, latent_dim)`` -> logits ``(B, 1, *shape)`` (StyleGAN2 skip architecture, 3D).

    Parameters
    ----------
    shape : tuple of int
        Output ``(D, H, W)``.
    latent_dim : int
        Size of ``z`` and ``w``.
    base_channels, max_channels : int
        Channels at the finest level, doubling per coarser level up to ``max_channels``.
    mapping_layers : int
        Depth of the mapping MLP.
    w_avg_beta : float
        EMA factor of the running mean ``w_avg`` (updated in training mode).
    half_res : bool
        Compute at half resolution; a last modulated 3x3x3 convolution of the up-sampled finest
        features adds the full-resolution logits.
    output_bias : float
        Initial value of the learned bias added to the output logits.
    """

    def __init__(self, shape: tuple[int, int, int], latent_dim: int = 128, base_channels: int = 16,
                 max_channels: int = 256, mapping_layers: int = 4, w_avg_beta: float = 0.995,
                 half_res: bool = False, output_bias: float = 0.0):
        super().__init__()
        self.shape, self.latent_dim, self.w_avg_beta = tuple(int(s) for s in shape), int(latent_dim), w_avg_beta
        grid = network_shape(self.shape, half_res)
        self.levels = levels_for(grid)
        start = tuple(s // 2**self.levels for s in grid)
        mapping: list[nn.Module] = []
        for _ in range(mapping_layers):
            mapping += [EqualLinear(latent_dim, latent_dim, lr_mul=0.01), nn.LeakyReLU(0.2)]
        self.mapping = nn.Sequential(*mapping)
        self.register_buffer("w_avg", torch.zeros(latent_dim))
        ch = [min(base_channels * 2 ** (self.levels - lv), max_channels) for lv in range(self.levels + 1)]
        self.const = nn.Parameter(torch.randn(1, ch[0], *start))
        self.blocks = nn.ModuleList()
        self.to_logits = nn.ModuleList()
        for lv in range(self.levels + 1):
            cin = ch[0] if lv == 0 else ch[lv - 1]
            layers = [StyleLayer(cin, ch[lv], latent_dim)] + ([StyleLayer(ch[lv], ch[lv], latent_dim)] if lv else [])
            self.blocks.append(nn.ModuleList(layers))
            self.to_logits.append(ModulatedConv3d(ch[lv], 1, 1, latent_dim, demodulate=False))
        self.to_full = ModulatedConv3d(ch[-1], 1, 3, latent_dim, demodulate=False) if half_res else None
        self.output_bias = nn.Parameter(torch.tensor(float(output_bias)))

    def map(self, z: torch.Tensor, truncation: float = 1.0) -> torch.Tensor:
        """``w`` of ``z`` (pixel-normalised first), truncated towards ``w_avg`` by ``truncation``."""
        z = z * torch.rsqrt(z.pow(2).mean(dim=1, keepdim=True) + 1e-8)
        w = self.mapping(z)
        if self.training:
            with torch.no_grad():
                self.w_avg.copy_(w.detach().float().mean(0).lerp(self.w_avg, self.w_avg_beta))
        return self.w_avg.to(w.dtype).lerp(w, float(truncation)) if truncation != 1.0 else w

    def forward(self, z: torch.Tensor, truncation: float = 1.0, generator: torch.Generator | None = None,
                ) -> torch.Tensor:
        w = self.map(z, truncation)
        x = self.const.expand(z.shape[0], *self.const.shape[1:])
        logits = None
        for lv, (layers, to_logits) in enumerate(zip(self.blocks, self.to_logits)):
            if lv:
                x = _up(x)
            for layer in layers:
                x = layer(x, w, generator)
            y = to_logits(x, w)
            logits = y if logits is None else y + _up(logits)
        if self.to_full is not None:
            logits = self.to_full(_up(x), w) + _up(logits)
        return logits + self.output_bias


def _up(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="trilinear", align_corners=False)


class StyleCritic(nn.Module):
    """Residual critic: volume ``(B, 1, *shape)`` in [-1, 1] -> score ``(B,)``; ``half_res``: reads 2 x 2 x 2
    blocks as channels (:func:`~vessel_models.gan.wgan.space_to_depth`) and computes at half resolution."""

    def __init__(self, shape: tuple[int, int, int], base_channels: int = 16, max_channels: int = 256,
                 mbstd_group: int = 4, half_res: bool = False):
        super().__init__()
        self.half_res = bool(half_res)
        shape = network_shape(shape, self.half_res)
        levels = levels_for(shape)
        ch = [min(base_channels * 2 ** (levels - lv), max_channels) for lv in range(levels + 1)]
        self.stem = EqualConv3d(8 if half_res else 1, ch[levels], 1)
        self.blocks = nn.ModuleList()
        for lv in range(levels, 0, -1):
            self.blocks.append(nn.ModuleDict({
                "conv1": EqualConv3d(ch[lv], ch[lv], 3),
                "conv2": EqualConv3d(ch[lv], ch[lv - 1], 3),
                "skip": EqualConv3d(ch[lv], ch[lv - 1], 1, bias=False),
            }))
        self.mbstd_group = mbstd_group
        self.final = EqualConv3d(ch[0] + 1, ch[0], 3)
        n = ch[0] * int(torch.tensor([s // 2**levels for s in shape]).prod())
        self.head = nn.Sequential(EqualLinear(n, ch[0]), nn.LeakyReLU(0.2), EqualLinear(ch[0], 1))

    def _mbstd(self, x: torch.Tensor) -> torch.Tensor:
        """Append the mean over features of the standard deviation across a group of samples."""
        b = x.shape[0]
        g = min(self.mbstd_group, b)
        while b % g:
            g -= 1
        y = x.float().view(g, -1, *x.shape[1:])
        y = (y.var(dim=0, unbiased=False) + 1e-8).sqrt().mean(dim=(1, 2, 3, 4))  # (B / g,)
        y = y.repeat(g).view(b, 1, 1, 1, 1).expand(b, 1, *x.shape[2:]).to(x.dtype)
        return torch.cat([x, y], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.stem(space_to_depth(x) if self.half_res else x), 0.2)
        for blk in self.blocks:
            y = F.leaky_relu(blk["conv1"](x), 0.2)
            y = F.avg_pool3d(F.leaky_relu(blk["conv2"](y), 0.2), 2)
            x = (y + F.avg_pool3d(blk["skip"](x), 2)) / math.sqrt(2)
        x = F.leaky_relu(self.final(self._mbstd(x)), 0.2)
        return self.head(x.flatten(1)).squeeze(1)
