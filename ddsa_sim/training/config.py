"""Typed training configuration, read from YAML.

A training run is described by one YAML file validated into :class:`TrainConfig`. Unknown keys and bad
values raise :class:`ddsa_sim.InputError` with a one-line message naming the offending field, e.g.
``error: config.yaml: model.depth: Input should be greater than or equal to 1``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ddsa_sim import InputError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


def _positive_ranges(config: BaseModel, names: tuple[str, ...]) -> None:
    """Refuse a ``(low, high)`` field of ``config`` among ``names`` unless ``0 < low <= high``.

    Raises
    ------
    ValueError
        Naming the field (pydantic turns it into the config error).
    """
    for name in names:
        lo, hi = getattr(config, name)
        if not 0 < lo <= hi:
            raise ValueError(f"{name} must be 0 < low <= high, got [{lo}, {hi}]")


class NoiseInjectionConfig(_Strict):
    """Poisson noise injected on the mask part of the input (the target stays clean)."""

    enabled: bool = True
    photons_range: tuple[float, float] = (50_000.0, 125_000.0)  # incident photons per pixel, N0 ~ 1000 * U(50, 125)
    blur_sigma_range: tuple[float, float] = (0.3, 1.0)  # std of the noise's Gaussian blur, pixels

    @model_validator(mode="after")
    def _ranges(self) -> NoiseInjectionConfig:
        _positive_ranges(self, ("photons_range", "blur_sigma_range"))
        return self


class AugmentConfig(_Strict):
    """Augmentation probabilities and ranges (geometric transforms hit input and target alike)."""

    enabled: bool = True
    p_hflip: float = Field(0.5, ge=0, le=1)
    p_vflip: float = Field(0.5, ge=0, le=1)
    p_affine: float = Field(0.5, ge=0, le=1)
    scale_range: tuple[float, float] = (0.5, 1.5)
    rotation_deg: float = Field(180.0, ge=0, le=180)
    shear_deg: float = Field(25.0, ge=0, le=60)
    p_blur: float = Field(0.2, ge=0, le=1)
    blur_sigma_range: tuple[float, float] = (0.3, 1.5)
    p_elastic: float = Field(0.2, ge=0, le=1)
    elastic_grid: int = Field(4, ge=2, le=32)  # control points per side of the smooth warp
    elastic_scale: float = Field(0.03, ge=0, le=0.2)  # displacement std, fraction of the patch size
    p_multiply: float = Field(0.5, ge=0, le=1)
    multiply_range: tuple[float, float] = (0.7, 1.3)
    p_contrast: float = Field(0.3, ge=0, le=1)
    contrast_range: tuple[float, float] = (0.5, 1.5)
    # off by default (p = 0 draws no random numbers: configs without them train bit-identically)
    p_anatomy_gain: float = Field(0.0, ge=0, le=1)  # scales the non-vessel part only (patient size)
    anatomy_gain_range: tuple[float, float] = (0.6, 1.6)
    p_ln_offset: float = Field(0.0, ge=0, le=1)  # adds a constant to the input only (detector gain, -ln k)
    ln_offset_range: tuple[float, float] = (-1.0, 1.0)
    p_superpose: float = Field(0.0, ge=0, le=1)  # adds another sample's anatomy (zero mean) to the base
    superpose_range: tuple[float, float] = (0.3, 1.0)
    p_vessel_superpose: float = Field(0.0, ge=0, le=1)  # adds another sample's vessels to the target
    vessel_superpose_range: tuple[float, float] = (0.5, 1.5)
    p_dose: float = Field(0.0, ge=0, le=1)  # lowers the dose: the recorded noise times 1 / sqrt(fraction)
    dose_fraction_range: tuple[float, float] = (0.01, 1.0)  # drawn log-uniform, fraction of the recorded dose
    dose_floor_ugy: float = Field(0.0, ge=0)  # never below this detector air kerma per frame (the store's)

    @model_validator(mode="after")
    def _ranges(self) -> AugmentConfig:
        _positive_ranges(self, ("scale_range", "blur_sigma_range", "multiply_range", "contrast_range",
                                "anatomy_gain_range", "superpose_range", "vessel_superpose_range",
                                "dose_fraction_range"))
        if self.dose_fraction_range[1] > 1:
            raise ValueError(f"dose_fraction_range must be <= 1 (a dose can only be lowered), got {self.dose_fraction_range}")
        lo, hi = self.ln_offset_range
        if lo > hi:
            raise ValueError(f"ln_offset_range must be low <= high, got [{lo}, {hi}]")
        return self


class DataConfig(_Strict):
    """Data source and patch sizes."""

    # exported Zarr store (``--data`` overrides it); a relative path is read from the current folder (``base:``, from
    # the config's folder)
    store: str | None = None
    train_split: Literal["train", "val", "test"] = "train"  # the store's splits (export.format.SPLITS)
    val_split: Literal["train", "val", "test"] = "val"
    crop_size: int = Field(512, ge=8)
    patch_size: int = Field(384, ge=8)
    batch_size: int = Field(4, ge=1)
    num_workers: int = Field(0, ge=0)
    in_memory: bool = False
    verify: Literal["refuse", "skip", "off"] = "refuse"  # sample checksums on read (training.data)

    @field_validator("verify", mode="before")
    @classmethod
    def _yaml_off(cls, value: Any) -> Any:
        return "off" if value is False else value  # YAML 1.1 reads a bare `off` as false
    max_val_samples: int = Field(64, ge=1)
    norm_samples: int = Field(256, ge=1)
    noise: NoiseInjectionConfig = NoiseInjectionConfig()
    augment: AugmentConfig = AugmentConfig()

    @model_validator(mode="after")
    def _sizes(self) -> DataConfig:
        if self.patch_size > self.crop_size:
            raise ValueError(f"patch_size {self.patch_size} > crop_size {self.crop_size}")
        if self.augment.enabled and self.augment.p_dose > 0 and self.noise.enabled:
            raise ValueError("augment.p_dose scales the recorded noise; it needs noise injection off (noise.enabled: false)")
        return self


class ModelConfig(_Strict):
    """U-Net architecture. ``depth`` is the number of down-samplings."""

    in_channels: int = Field(1, ge=1)
    out_channels: int = Field(1, ge=1)
    base_channels: int = Field(64, ge=1)
    max_channels: int = Field(1024, ge=1)
    depth: int = Field(5, ge=1, le=8)
    norm: Literal["none", "batch", "instance", "group"] = "none"
    up_mode: Literal["transpose", "bilinear"] = "transpose"
    down_mode: Literal["maxpool", "stride"] = "maxpool"
    dropout: float = Field(0.0, ge=0, lt=1)
    negative_slope: float = Field(0.01, ge=0, lt=1)


class GANConfig(_Strict):
    """Conditional WGAN-GP critic (on input + output) and its schedule."""

    enabled: bool = False
    critic_channels: int = Field(64, ge=1)
    critic_depth: int = Field(4, ge=1, le=8)
    gp_lambda: float = Field(10.0, ge=0)
    critic_steps: int = Field(4, ge=1)
    l1_weight: float = Field(10.0, ge=0)
    lr: float = Field(1e-4, gt=0)
    betas: tuple[float, float] = (0.5, 0.9)


class OptimConfig(_Strict):
    """Generator optimiser, losses and schedule."""

    lr: float = Field(1e-4, gt=0)
    # "cosine": the generator's learning rate falls from lr to lr_min over the run's max_steps
    # (lr_min + (lr - lr_min) (1 + cos(pi step / max_steps)) / 2); the critic's stays constant
    lr_schedule: Literal["constant", "cosine"] = "constant"
    lr_min: float = Field(0.0, ge=0)
    # with "cosine": fall over the last lr_decay_steps steps only, lr before them (warmup-stable-decay,
    # Hu et al. 2024, MiniCPM; Haegele et al. 2024): a run at a constant rate can be extended with
    # --resume --max-steps and still end annealed. None: over the whole run.
    lr_decay_steps: int | None = Field(None, ge=1)
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = Field(0.0, ge=0)
    # exponential moving average of the generator's weights (batch-norm statistics alike), updated after
    # every step: avg = decay avg + (1 - decay) weights, from the weights of the first step on. Validation,
    # best.pt and inference use the average; the optimiser steps the weights (kept in the checkpoints so a
    # run resumes exactly). None: off. 0.999 averages over about the last 1000 steps.
    ema_decay: float | None = Field(None, gt=0, lt=1)
    # batch norm under the weight average: before the average is validated or kept, its batch-norm statistics are
    # recomputed for its own weights over this many training batches, made once as the training makes them (the
    # average of the stepped networks' statistics belongs to none of them: docs/results.md, v27). 0: keep the
    # averaged statistics.
    ema_bn_batches: int = Field(32, ge=0)
    loss: dict[Literal["l1", "l2", "ssim"], float] = {"l1": 1.0}
    # how the L1 / L2 terms count each image (ddsa_sim/training/losses.py): "pixel", every pixel of the
    # batch alike; "image", each image's error relative to its own target's energy (faint-vessel frames,
    # e.g. heads, count as much as strong ones)
    loss_reduction: Literal["pixel", "image"] = "pixel"
    # L1 / L2 weight of vessel pixels (target above vessel_threshold, -ln units) relative to background
    vessel_weight: float = Field(1.0, ge=1.0)
    vessel_threshold: float = Field(0.005, ge=0)
    max_steps: int = Field(1000, ge=1)
    val_every: int = Field(200, ge=1)
    log_every: int = Field(20, ge=1)
    ckpt_every: int = Field(200, ge=1)
    image_every: int = Field(200, ge=1)
    grad_clip: float | None = None
    # mixed precision, the autocast of the generator's forward pass: on CUDA (amp) in amp_dtype; on the CPU
    # (amp_cpu) in bfloat16 with channels-last weights, 2.1-2.3x the float32 steps/s on a CPU with AMX at the
    # same PSNR (docs/benchmarks.md, docs/results.md v28), 1.0x with AVX512-BF16 alone and 0.12-0.42x on CPUs
    # with neither (warned there: vessel_models.gan.precision), so off by default: CPU runs stay float32
    amp: bool = True
    amp_dtype: Literal["bfloat16", "float16"] = "bfloat16"
    amp_cpu: bool = False
    best_metric: Literal["psnr", "ssim", "l1"] = "psnr"

    @model_validator(mode="after")
    def _loss(self) -> OptimConfig:
        if not self.loss or all(w == 0 for w in self.loss.values()):
            raise ValueError("loss needs at least one non-zero weight among l1, l2, ssim")
        if self.lr_min > self.lr:
            raise ValueError(f"lr_min ({self.lr_min}) must not exceed lr ({self.lr})")
        if self.lr_decay_steps is not None and self.lr_schedule != "cosine":
            raise ValueError(f"lr_decay_steps ({self.lr_decay_steps}) needs lr_schedule: cosine, "
                             f"got {self.lr_schedule!r}")
        return self


class TrainConfig(_Strict):
    """A whole training run."""

    name: str = "ddsa"
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    num_threads: int | None = Field(None, ge=1)  # torch CPU threads (None: torch default)
    # generator weights and normalisation of a trained run's checkpoint (same architecture) to start
    # from, e.g. a U-Net-GAN from its trained U-Net; optimisers, critic and step start fresh. A relative path is
    # read from the current folder, like data.store
    init_from: str | None = None
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    gan: GANConfig = GANConfig()
    optim: OptimConfig = OptimConfig()

    def to_json(self) -> str:
        """Config as a JSON string (stored inside checkpoints)."""
        return self.model_dump_json()

    @classmethod
    def from_json(cls, text: str) -> TrainConfig:
        """Inverse of :meth:`to_json`."""
        return cls.model_validate(json.loads(text))


def _field_error(exc: ValidationError, source: str) -> InputError:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    msg = err["msg"].replace("\n", " ")
    return InputError(f"{source}: {loc + ': ' if loc else ''}{msg}")  # a whole-config check's message names its fields


def parse_config(data: dict[str, Any], source: str = "config") -> TrainConfig:
    """Validate a plain dict into a :class:`TrainConfig`.

    Raises
    ------
    ddsa_sim.InputError
        One line naming the first bad field.
    """
    try:
        return TrainConfig.model_validate(data or {})
    except ValidationError as exc:
        raise _field_error(exc, source) from None


def _merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``over`` laid on top: mappings merge key by key, anything else is replaced."""
    out = dict(base)
    for key, value in over.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _read_yaml(path: Path, chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A config file's mapping with its ``base`` chain resolved (each ``base`` relative to its own file)."""
    if not path.is_file():
        raise InputError(f"{chain[-1]}: base: config file not found: {path}" if chain else f"config file not found: {path}")
    if path.resolve() in chain:
        raise InputError(f"{chain[-1]}: base: {path} is already in the chain ({' -> '.join(map(str, chain))})")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        raise InputError(f"{path}:{line} not valid YAML ({getattr(exc, 'problem', None) or str(exc).splitlines()[0]})"
                         ) from None
    if data is None:  # not the defaults' 512-pixel crops of a paper-size network, by accident
        raise InputError(f"{path}: empty config; start from one of experiments/ (e.g. base: ddsa_cpu_small.yaml)")
    if not isinstance(data, dict):
        raise InputError(f"{path}: top level must be a mapping")
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise InputError(f"{path}: base: must be the path of another training config, got {base!r}")
    return _merged(_read_yaml(path.parent / base, (*chain, path.resolve())), data)


def load_config(path: str | Path) -> TrainConfig:
    """Read and validate a YAML training config.

    A config may start from another one: ``base: other.yaml`` (relative to the config's own folder, or
    absolute; ``data.store`` and ``init_from`` are read from the current folder instead) reads that file first,
    then lays this file's keys over it (mappings merge key by key; scalars and lists replace); the base may have a
    base of its own.

    Parameters
    ----------
    path
        YAML file.

    Returns
    -------
    TrainConfig
    """
    path = Path(path)
    return parse_config(_read_yaml(path), source=str(path))
