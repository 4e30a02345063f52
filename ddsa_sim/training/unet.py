"""U-Net for DDSA (published: channels 64..1024, 5 down-samplings, double 3x3 conv + LeakyReLU,
max-pool down, transposed-conv up).

Channels at level ``i`` (``0 .. depth``) are ``min(base_channels * 2**i, max_channels)``. Inputs whose
size is not a multiple of ``2**depth`` are replicate-padded inside :meth:`UNet.forward` and cropped
back, so any image size works at inference.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ddsa_sim.training.config import ModelConfig


def _norm(kind: str, ch: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(ch)
    if kind == "instance":
        return nn.InstanceNorm2d(ch, affine=True)
    if kind == "group":
        return nn.GroupNorm(min(32, ch) if ch % min(32, ch) == 0 else 1, ch)
    return nn.Identity()


class DoubleConv(nn.Sequential):
    """(conv 3x3 -> norm -> LeakyReLU) x 2, optional Dropout2d at the end."""

    def __init__(self, cin: int, cout: int, norm: str, slope: float, dropout: float) -> None:
        bias = norm == "none"
        layers: list[nn.Module] = [
            nn.Conv2d(cin, cout, 3, padding=1, bias=bias),
            _norm(norm, cout),
            nn.LeakyReLU(slope, inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=bias),
            _norm(norm, cout),
            nn.LeakyReLU(slope, inplace=True),
        ]
        if dropout > 0:
            layers.append(nn.Dropout2d(dropout))
        super().__init__(*layers)


class UNet(nn.Module):
    """Configurable U-Net (see module docstring).

    Parameters
    ----------
    cfg
        Architecture (:class:`ddsa_sim.training.config.ModelConfig`).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        ch = [min(cfg.base_channels * 2**i, cfg.max_channels) for i in range(cfg.depth + 1)]
        self.channels = ch
        a = dict(norm=cfg.norm, slope=cfg.negative_slope, dropout=cfg.dropout)
        self.inc = DoubleConv(cfg.in_channels, ch[0], **a)
        self.downs = nn.ModuleList()
        self.enc = nn.ModuleList()
        for i in range(cfg.depth):
            if cfg.down_mode == "maxpool":
                self.downs.append(nn.MaxPool2d(2))
            else:
                self.downs.append(nn.Conv2d(ch[i], ch[i], 3, stride=2, padding=1))
            self.enc.append(DoubleConv(ch[i], ch[i + 1], **a))
        self.ups = nn.ModuleList()
        self.dec = nn.ModuleList()
        for i in reversed(range(cfg.depth)):
            if cfg.up_mode == "transpose":
                self.ups.append(nn.ConvTranspose2d(ch[i + 1], ch[i], 2, stride=2))
            else:
                self.ups.append(
                    nn.Sequential(
                        nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                        nn.Conv2d(ch[i + 1], ch[i], 1),
                    )
                )
            self.dec.append(DoubleConv(2 * ch[i], ch[i], **a))
        self.outc = nn.Conv2d(ch[0], cfg.out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, H, W)`` -> ``(B, out_channels, H, W)``."""
        h, w = x.shape[-2:]
        m = 2**self.cfg.depth
        ph, pw = (-h) % m, (-w) % m
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        x = self.inc(x)
        skips = [x]
        for down, enc in zip(self.downs, self.enc):
            x = enc(down(x))
            skips.append(x)
        skips.pop()
        for up, dec in zip(self.ups, self.dec):
            x = dec(torch.cat([skips.pop(), up(x)], dim=1))
        return self.outc(x)[..., :h, :w]


def build_unet(cfg: ModelConfig) -> UNet:
    """Construct a :class:`UNet` from its config."""
    return UNet(cfg)
