"""Checkpoints: safe to load with ``torch.load(weights_only=True)``.

A checkpoint is a dict of tensors and plain Python types only::

    format="ddsa-sim-checkpoint", format_version=1, software_version,
    config_json (the full TrainConfig as a JSON string), architecture (ModelConfig as a dict),
    normalization (dict of floats), model (state_dict), model_stepped (state_dict | None),
    critic (state_dict | None),
    optimizer / critic_optimizer / scaler (state dicts | None), step, best_score, rng (tensors / ints),
    pixel_mm, world_size, validation_pending (bool: a Ctrl-C cut the validation of ``step`` short)

``model`` is the generator to use (inference, evaluation, ``init_from``): with ``optim.ema_decay`` the
average of its weights, and ``model_stepped`` the weights the optimiser steps, which a resumed run
continues from (None without the average).

Loading refuses a checkpoint whose architecture differs from the one asked for, naming the fields.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

import ddsa_sim
from ddsa_sim import InputError
from ddsa_sim.files import atomic_output
from ddsa_sim.training.config import ModelConfig, TrainConfig
from ddsa_sim.training.normalization import Normalization
from ddsa_sim.training.unet import UNet

FORMAT = "ddsa-sim-checkpoint"
VERSION = 1


def _unwrap(m: torch.nn.Module) -> torch.nn.Module:
    return m.module if hasattr(m, "module") else m


def save_checkpoint(
    path: str | Path,
    *,
    config: TrainConfig,
    norm: Normalization,
    model: torch.nn.Module,
    step: int,
    best_score: float | None = None,
    model_stepped: torch.nn.Module | None = None,
    critic: torch.nn.Module | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    critic_optimizer: torch.optim.Optimizer | None = None,
    scaler: Any = None,
    rng: dict[str, Any] | None = None,
    pixel_mm: float | None = None,
    world_size: int = 1,
    validation_pending: bool = False,
) -> Path:
    """Write a checkpoint atomically (temporary file + rename).

    ``model`` is the generator to use, ``model_stepped`` the optimiser's weights where they differ (a
    weight average); ``pixel_mm`` the pixel spacing at the isocenter of the training images, mm, to which
    ``ddsa-sim infer`` resamples a run (None: unknown, a run is used on its own pixel grid); ``world_size``
    the number of training processes (each draws its own batches: a resume under another count is another run);
    ``validation_pending`` that the validation due at ``step`` was not done (a resume does it first).

    Returns
    -------
    Path
        The written path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "format": FORMAT,
        "format_version": VERSION,
        "software_version": ddsa_sim.__version__,
        "config_json": config.to_json(),
        "architecture": config.model.model_dump(),
        "normalization": norm.to_dict(),
        "model": _unwrap(model).state_dict(),
        "model_stepped": _unwrap(model_stepped).state_dict() if model_stepped is not None else None,
        "critic": _unwrap(critic).state_dict() if critic is not None else None,
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "critic_optimizer": critic_optimizer.state_dict() if critic_optimizer is not None else None,
        "scaler": scaler.state_dict() if scaler is not None else None,
        "step": int(step),
        "best_score": None if best_score is None else float(best_score),
        "rng": rng or {},
        "pixel_mm": None if pixel_mm is None else float(pixel_mm),
        "world_size": int(world_size),
        "validation_pending": bool(validation_pending),
    }
    with atomic_output(path) as tmp:
        torch.save(state, tmp)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint dict with ``weights_only=True``.

    Raises
    ------
    ddsa_sim.InputError
        Missing file, unreadable file, unsafe content or not a ddsa-sim checkpoint.
    """
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a folder; give a checkpoint in it, e.g. {path / 'best.pt'}")
    if not path.is_file():
        raise InputError(f"checkpoint not found: {path}")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive (its index at the end: a cut file has none)
        raise InputError(f"{path}: not a ddsa-sim checkpoint (not a whole torch file: another file, or one cut "
                         "short); give the best.pt or last.pt of a `ddsa-sim train` run")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        raise InputError(f"{path}: not a ddsa-sim checkpoint: it holds objects a checkpoint never has "
                         "(refused unopened, nothing of it was run)") from None
    except (RuntimeError, EOFError, ValueError) as exc:
        raise InputError(f"{path}: cannot read checkpoint ({exc.__class__.__name__}: damaged or truncated "
                         "file?)") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise InputError(f"{path}: not a ddsa-sim checkpoint")
    if int(ckpt.get("format_version", -1)) != VERSION:
        raise InputError(f"{path}: unsupported checkpoint format_version {ckpt.get('format_version')}")
    return ckpt


def check_architecture(ckpt: dict[str, Any], expected: ModelConfig, source: str = "checkpoint") -> None:
    """Raise :class:`InputError` naming every field where the checkpoint's architecture differs."""
    have = ckpt["architecture"]
    want = expected.model_dump()
    diffs = [
        f"{k} {have.get(k)!r} (checkpoint) vs {want[k]!r} (config)" for k in want if have.get(k) != want[k]
    ]
    if diffs:
        raise InputError(f"{source}: architecture mismatch: " + "; ".join(diffs))


def config_of(ckpt: dict[str, Any]) -> TrainConfig:
    """The :class:`TrainConfig` stored in a checkpoint."""
    return TrainConfig.from_json(ckpt["config_json"])


def load_model(
    path: str | Path,
    device: str | torch.device = "cpu",
    expected: ModelConfig | None = None,
    stepped: bool = False,
) -> tuple[UNet, Normalization, TrainConfig, dict[str, Any]]:
    """Rebuild the generator of a checkpoint for inference.

    Parameters
    ----------
    path
        Checkpoint file.
    device
        Where to place the model.
    expected
        If given, refuse a checkpoint with another architecture.
    stepped
        Rebuild the optimiser's own weights (``model_stepped``) of a run with a weight average
        (``optim.ema_decay``) instead of the average; an :class:`InputError` for a checkpoint without them.

    Returns
    -------
    model, normalization, config, checkpoint dict
    """
    ckpt = load_checkpoint(path, map_location="cpu")
    if expected is not None:
        check_architecture(ckpt, expected, str(path))
    cfg = config_of(ckpt)
    model = UNet(ModelConfig.model_validate(ckpt["architecture"]))
    if stepped and ckpt.get("model_stepped") is None:
        raise InputError(f"{path}: no optimiser's weights apart from the network (a run without optim.ema_decay): "
                         "leave out --stepped")
    load_state(model, ckpt["model_stepped" if stepped else "model"], str(path))
    model.to(device).eval()
    return model, Normalization.from_dict(ckpt["normalization"]), cfg, ckpt


def load_state(module: torch.nn.Module, state: dict[str, Any], source: str) -> None:
    """``load_state_dict(strict=True)`` with a one-line :class:`InputError` on mismatch."""
    try:
        _unwrap(module).load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = " ".join(str(exc).split())[:300]
        raise InputError(f"{source}: weights do not fit the architecture ({first})") from None
