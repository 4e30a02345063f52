"""Vessel-GAN checkpoints: dicts of tensors and plain Python values, loaded with ``weights_only=True``.

Keys: ``format`` ("vessel-gan-checkpoint"), ``format_version``, ``config`` (:meth:`GanConfig.to_dict`),
``generator`` / ``critic`` (state dicts), ``generator_ema`` (the moving average of the generator, or
None without one; :func:`load_generator` prefers it), ``opt_g`` / ``opt_d`` (state dicts or None),
``scalers`` (AMP grad scalers ``{"d", "g"}`` or None),
``step``, ``best_score`` (lower is better, None before the first evaluation).
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vessel_models.gan.config import GanConfig
from vessel_models.gan.stylegan import StyleCritic, StyleGenerator
from vessel_models.gan.wgan import WGANCritic, WGANGenerator
from vessel_models.io import atomic_output
from vessel_models.tree import VesselInputError

__all__ = ["build_networks", "load_checkpoint", "load_generator", "save_checkpoint"]

FORMAT = "vessel-gan-checkpoint"
VERSION = 1


def build_networks(cfg: GanConfig) -> tuple[nn.Module, nn.Module]:
    """(generator, critic) of ``cfg.net`` for volumes of ``cfg.data.shape``, seeded by ``cfg.seed``."""
    torch.manual_seed(cfg.seed)
    net, shape = cfg.net, cfg.data.shape
    try:
        if net.kind == "wgan":
            return (WGANGenerator(shape, net.latent_dim, net.base_channels, net.max_channels, net.half_res,
                                  net.output_bias),
                    WGANCritic(shape, net.base_channels, net.max_channels, net.half_res))
        return (StyleGenerator(shape, net.latent_dim, net.base_channels, net.max_channels, net.mapping_layers,
                               half_res=net.half_res, output_bias=net.output_bias),
                StyleCritic(shape, net.base_channels, net.max_channels, half_res=net.half_res))
    except ValueError as exc:
        raise VesselInputError(f"data.shape: {exc}") from None


def _bare(m: nn.Module | None) -> nn.Module | None:
    return m.module if hasattr(m, "module") else m


def save_checkpoint(path: str | os.PathLike, cfg: GanConfig, generator: nn.Module, critic: nn.Module,
                    step: int, best_score: float | None = None, opt_g: Any = None, opt_d: Any = None,
                    scalers: dict[str, Any] | None = None, generator_ema: nn.Module | None = None) -> Path:
    """Write a checkpoint atomically; returns its path."""
    state = {
        "format": FORMAT, "format_version": VERSION, "config": cfg.to_dict(),
        "generator": _bare(generator).state_dict(), "critic": _bare(critic).state_dict(),
        "generator_ema": generator_ema.state_dict() if generator_ema is not None else None,
        "opt_g": opt_g.state_dict() if opt_g is not None else None,
        "opt_d": opt_d.state_dict() if opt_d is not None else None,
        "scalers": {k: v.state_dict() for k, v in scalers.items()} if scalers else None,
        "step": int(step), "best_score": None if best_score is None else float(best_score),
    }
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(p) as tmp:
        torch.save(state, tmp)
    return p


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``.

    Raises
    ------
    VesselInputError
        A folder, a missing, unreadable or unsafe file, or not a vessel-GAN checkpoint.
    """
    p = Path(path)
    if p.is_dir():
        raise VesselInputError(f"{p}: is a folder; give a checkpoint in it, e.g. {p / 'best.pt'}")
    if not p.is_file():
        raise VesselInputError(f"checkpoint not found: {p}")
    try:
        ckpt = torch.load(p, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
        # not torch's own first line: it advises weights_only=False, which would run whatever the file pickled
        raise VesselInputError(f"{p}: not a vessel-GAN checkpoint (no torch file of weights alone: "
                               f"{type(exc).__name__})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise VesselInputError(f"{p}: not a vessel-GAN checkpoint")
    if ckpt.get("format_version") != VERSION:
        raise VesselInputError(f"{p}: unsupported checkpoint format_version {ckpt.get('format_version')}")
    return ckpt


def load_generator(path: str | os.PathLike, map_location: str | torch.device = "cpu",
                   ) -> tuple[nn.Module, GanConfig]:
    """The generator of a checkpoint (its moving average when it has one; eval mode) and its config."""
    ckpt = load_checkpoint(path, map_location)
    cfg = GanConfig.from_dict(ckpt["config"], where=str(path))
    generator, _ = build_networks(cfg)
    try:
        generator.load_state_dict(ckpt.get("generator_ema") or ckpt["generator"])
    except RuntimeError as exc:
        raise VesselInputError(f"{path}: generator weights do not fit its config ({str(exc).splitlines()[0]})"
                               ) from None
    return generator.to(map_location).eval(), cfg
