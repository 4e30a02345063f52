"""The YAML training config of a vessel GAN, validated into frozen dataclasses.

A bad value or an unknown key raises :class:`~vessel_models.tree.VesselInputError` naming the field
(``optim.lr_g``...). Defaults follow the publications: WGAN-GP Adam(1e-4, betas 0 / 0.9), 5 critic
steps, lambda 10 (Gulrajani et al. 2017); StyleGAN2 Adam(2e-3, betas 0 / 0.99), R1 gamma with lazy
regularisation every 16 critic steps (Karras et al. 2020).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vessel_models.tree import VesselInputError

__all__ = ["SAMPLE_PARAMS", "DataConfig", "GanConfig", "NetConfig", "OptimConfig", "check_sample_params",
           "load_gan_config"]


@dataclass(frozen=True)
class DataConfig:
    """Label volumes -> training windows. ``shape`` (D, H, W) voxels at isotropic ``spacing_mm``;
    ``mode`` patch (random) or crop (centred); ``val_fraction`` of the files is held out to pick best.pt."""

    shape: tuple[int, int, int] = (32, 32, 32)
    spacing_mm: float = 2.0
    mode: str = "patch"
    flips: bool = True
    labels: tuple[int, ...] = ()
    val_fraction: float = 0.1


@dataclass(frozen=True)
class NetConfig:
    """Architecture: ``kind`` wgan | stylegan, latent size, channels, mapping depth (stylegan)."""

    kind: str = "wgan"
    latent_dim: int = 64
    base_channels: int = 8
    max_channels: int = 128
    mapping_layers: int = 4


@dataclass(frozen=True)
class OptimConfig:
    """Adam settings, critic steps per generator step, penalties, batch size and step budget."""

    lr_g: float = 1e-4
    lr_d: float = 1e-4
    betas: tuple[float, float] = (0.0, 0.9)
    n_critic: int = 5
    gp_lambda: float = 10.0
    r1_gamma: float = 1.0
    r1_every: int = 16
    batch_size: int = 8
    max_steps: int = 1000


@dataclass(frozen=True)
class GanConfig:
    """The whole config. ``max_minutes`` stops training early (wall time, checkpoint kept);
    ``amp`` (auto | on | off) is used on CUDA only; every ``eval_every`` generator steps ``eval_samples``
    generated volumes are scored (the best score gives best.pt) and last.pt is written."""

    data: DataConfig = field(default_factory=DataConfig)
    net: NetConfig = field(default_factory=NetConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    seed: int = 0
    device: str = "auto"
    amp: str = "auto"
    num_threads: int | None = None
    max_minutes: float | None = None
    eval_every: int = 100
    eval_samples: int = 32

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (lists for tuples), safe in a ``weights_only`` checkpoint."""
        return _lists(asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "config") -> GanConfig:
        """Validate a dict (e.g. parsed YAML) into a config."""
        return _build(cls, data or {}, where, "")


def _lists(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _lists(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_lists(v) for v in obj]
    return obj


_CHOICES = {"data.mode": ("patch", "crop"), "net.kind": ("wgan", "stylegan"), "device": ("auto", "cpu", "cuda"),
            "amp": ("auto", "on", "off")}
_POSITIVE = {"data.spacing_mm", "net.latent_dim", "net.base_channels", "net.max_channels", "optim.lr_g",
             "optim.lr_d", "optim.n_critic", "optim.batch_size", "optim.max_steps", "optim.r1_every",
             "eval_every", "eval_samples", "max_minutes", "num_threads"}


def _build(cls: type, data: dict[str, Any], where: str, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise VesselInputError(f"{where}: {prefix.rstrip('.') or 'config'} must be a mapping")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise VesselInputError(f"{where}: unknown field {prefix}{unknown[0]}; valid: {', '.join(fields)}")
    kwargs = {}
    for name, value in data.items():
        key = prefix + name
        default = fields[name].default_factory() if fields[name].default_factory is not dataclasses.MISSING \
            else fields[name].default
        if dataclasses.is_dataclass(default):
            kwargs[name] = _build(type(default), value, where, key + ".")
        else:
            kwargs[name] = _value(key, value, default, where)
    return cls(**kwargs)


def _value(key: str, value: Any, default: Any, where: str) -> Any:
    bad = VesselInputError(f"{where}: {key}: expected {type(default).__name__ if default is not None else 'a number'}"
                           f", got {value!r}")
    if value is None and default is None:
        return None
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise bad
        return value
    if isinstance(default, tuple):
        if not isinstance(value, (list, tuple)) or (default and len(value) != len(default)):
            raise bad
        kind = type(default[0]) if default else int
        try:
            out = tuple(kind(v) for v in value)
        except (TypeError, ValueError):
            raise bad from None
        if key == "data.shape" and any(v < 8 for v in out):
            raise VesselInputError(f"{where}: data.shape: every side must be >= 8, got {list(value)}")
        return out
    if isinstance(default, str):
        if value not in _CHOICES.get(key, (value,)):
            raise VesselInputError(f"{where}: {key}: use {' or '.join(_CHOICES[key])}, got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise bad
    integer = isinstance(default, int) or key == "num_threads"
    if integer and value != int(value):
        raise bad
    value = int(value) if integer else float(value)
    if key in _POSITIVE and value <= 0:
        raise VesselInputError(f"{where}: {key}: must be > 0, got {value}")
    if key == "data.val_fraction" and not 0 <= value < 1:
        raise VesselInputError(f"{where}: {key}: must be in [0, 1), got {value}")
    return value


def load_gan_config(path: str | os.PathLike) -> GanConfig:
    """Read and validate a YAML config file."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise VesselInputError(f"config file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise VesselInputError(f"{p}: not valid YAML ({str(exc).splitlines()[0]})") from None
    return GanConfig.from_dict(data, where=str(p))


#: Sampling parameters of a trained generator: name -> (default, open lower bound, upper bound, upper
#: bound included). ``truncation`` psi in (0, 2] (1: the trained distribution), ``threshold`` on the
#: vessel probability in (0, 1).
SAMPLE_PARAMS: dict[str, tuple[float, float, float, bool]] = {
    "truncation": (1.0, 0.0, 2.0, True),
    "threshold": (0.5, 0.0, 1.0, False),
}


def check_sample_params(params: dict[str, Any], where: str = "params") -> dict[str, float]:
    """Validated sampling parameters (:data:`SAMPLE_PARAMS`), defaults filled in.

    Raises
    ------
    VesselInputError
        An unknown name or a value out of range (``where.name: ...``).
    """
    out = {name: spec[0] for name, spec in SAMPLE_PARAMS.items()}
    for name, value in params.items():
        if name not in SAMPLE_PARAMS:
            raise VesselInputError(f"{where}.{name}: unknown sampling parameter; valid: {', '.join(SAMPLE_PARAMS)}")
        _, low, high, closed = SAMPLE_PARAMS[name]
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and low < value and (
            value <= high if closed else value < high)
        if not ok:
            raise VesselInputError(f"{where}.{name}: must be in ({low:g}, {high:g}{']' if closed else ')'}, "
                                   f"got {value!r}")
        out[name] = float(value)
    return out
