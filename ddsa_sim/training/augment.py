"""Batch augmentation on tensors and the training-batch pipeline.

Augmentation works on a stack ``(B, 2, H, W)`` = ``[base, target]`` where ``base = input - target`` is the
non-vessel part of the input. Geometric transforms (flips, affine, piecewise-smooth warp) and blur act on
the whole stack, so input and target receive the *identical* transform; ``multiply`` scales both
(a global attenuation change); ``contrast`` scales the target only (an iodine concentration change);
``anatomy gain`` scales ``base`` only (a thicker or thinner patient, same iodine), so
``input = base + target`` stays exact; ``superpose`` adds another sample's ``base`` (zero mean, times
``k``) to a sample's ``base``: anatomy in front of or behind the patient's, whose attenuation adds in
the ``-ln`` domain (Beer-Lambert), less its mean (a detector gain, as the offset below);
``vessel superpose`` adds another sample's ``target`` (times ``k``) to a sample's ``target``, so the input
gains the same vessels: two injected trees in one beam, whose iodine attenuation adds likewise. The ``-ln``
offset (:func:`random_ln_offset`) adds a constant to the network input only, after noise injection: a
detector gain or I0 calibration ``k`` turns ``-ln(I/I0)`` into ``-ln(I/I0) - ln k`` in the mask and the
contrast frame alike, so their difference (the target) keeps no offset, and a gain does not change
photon statistics. Every random draw comes from the given
``torch.Generator``; an augmentation with probability 0 draws nothing.

Pipeline of :func:`make_training_batch` (published: random crop 512 -> augment -> centre crop 384):
random crop ``crop_size`` -> lower dose (:func:`lower_dose`) -> augment -> noise injection on ``base`` ->
``-ln`` offset -> centre crop ``patch_size`` -> normalise.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from kornia.geometry.transform import get_affine_matrix2d, warp_affine

from ddsa_sim import InputError
from ddsa_sim.training.config import AugmentConfig, DataConfig
from ddsa_sim.training.noise_injection import blur_per_sample, inject_noise
from ddsa_sim.training.normalization import Normalization


def _rand(n: int, lo: float, hi: float, g: torch.Generator, dev: torch.device) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g, device=dev)


def _coin(n: int, p: float, g: torch.Generator, dev: torch.device) -> torch.Tensor:
    return torch.rand(n, generator=g, device=dev) < p


def _select(m: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.where(m.view(-1, 1, 1, 1), a, b)


def random_affine(x: torch.Tensor, cfg: AugmentConfig, g: torch.Generator) -> torch.Tensor:
    """Per-sample scale / rotation / shear about the image centre (reflection padding)."""
    b, _, h, w = x.shape
    dev = x.device
    scale = _rand(b, *cfg.scale_range, g, dev)
    angle = _rand(b, -cfg.rotation_deg, cfg.rotation_deg, g, dev)
    sh = math.radians(cfg.shear_deg)
    sx = _rand(b, -sh, sh, g, dev)
    sy = _rand(b, -sh, sh, g, dev)
    center = torch.tensor([(w - 1) / 2, (h - 1) / 2], device=dev).expand(b, 2)
    m = get_affine_matrix2d(torch.zeros(b, 2, device=dev), center, scale[:, None].expand(b, 2), angle, sx, sy)
    return warp_affine(x, m[:, :2, :].to(x.dtype), (h, w), padding_mode="reflection", align_corners=True)


def random_smooth_warp(x: torch.Tensor, cfg: AugmentConfig, g: torch.Generator) -> torch.Tensor:
    """Piecewise-smooth (elastic-like) warp: random control-grid displacements, bicubic upsampled."""
    b, _, h, w = x.shape
    dev = x.device
    n = cfg.elastic_grid
    disp = torch.randn(b, 2, n, n, generator=g, device=dev) * (2 * cfg.elastic_scale)  # normalised coords
    disp = F.interpolate(disp, size=(h, w), mode="bicubic", align_corners=True).permute(0, 2, 3, 1)
    ys = torch.linspace(-1, 1, h, device=dev)
    xs = torch.linspace(-1, 1, w, device=dev)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    grid = torch.stack([gx, gy], dim=-1)[None] + disp
    return F.grid_sample(x, grid.to(x.dtype), mode="bilinear", padding_mode="reflection", align_corners=True)


def augment_pair(x: torch.Tensor, cfg: AugmentConfig, g: torch.Generator) -> torch.Tensor:
    """Augment a ``(B, 2, H, W)`` stack ``[base, target]`` (see module docstring).

    Parameters
    ----------
    x
        Stack of base (input minus target) and target, -ln domain.
    cfg
        Probabilities and ranges.
    g
        Random source on ``x.device``.
    """
    if not cfg.enabled:
        return x
    b = x.shape[0]
    dev = x.device
    x = _select(_coin(b, cfg.p_hflip, g, dev), x.flip(-1), x)
    x = _select(_coin(b, cfg.p_vflip, g, dev), x.flip(-2), x)
    if cfg.p_affine > 0:
        m = _coin(b, cfg.p_affine, g, dev)
        x = _select(m, random_affine(x, cfg, g), x)
    if cfg.p_elastic > 0:
        m = _coin(b, cfg.p_elastic, g, dev)
        x = _select(m, random_smooth_warp(x, cfg, g), x)
    if cfg.p_blur > 0:
        m = _coin(b, cfg.p_blur, g, dev)
        sigma = _rand(b, *cfg.blur_sigma_range, g, dev)
        x = _select(m, blur_per_sample(x, sigma), x)
    if cfg.p_multiply > 0:
        m = _coin(b, cfg.p_multiply, g, dev)
        f = torch.where(m, _rand(b, *cfg.multiply_range, g, dev), torch.ones(b, device=dev))
        x = x * f.view(-1, 1, 1, 1)
    if cfg.p_contrast > 0:
        m = _coin(b, cfg.p_contrast, g, dev)
        c = torch.where(m, _rand(b, *cfg.contrast_range, g, dev), torch.ones(b, device=dev))
        x = torch.cat([x[:, :1], x[:, 1:] * c.view(-1, 1, 1, 1)], dim=1)
    if cfg.p_anatomy_gain > 0:
        m = _coin(b, cfg.p_anatomy_gain, g, dev)
        k = torch.where(m, _rand(b, *cfg.anatomy_gain_range, g, dev), torch.ones(b, device=dev))
        x = torch.cat([x[:, :1] * k.view(-1, 1, 1, 1), x[:, 1:]], dim=1)
    if cfg.p_superpose > 0:
        m = _coin(b, cfg.p_superpose, g, dev)
        k = torch.where(m, _rand(b, *cfg.superpose_range, g, dev), torch.zeros(b, device=dev))
        other = x[:, :1].roll(1, dims=0)  # the batch's previous sample: another anatomy and pose
        other = other - other.mean(dim=(-2, -1), keepdim=True)
        x = torch.cat([x[:, :1] + k.view(-1, 1, 1, 1) * other, x[:, 1:]], dim=1)
    if cfg.p_vessel_superpose > 0:
        m = _coin(b, cfg.p_vessel_superpose, g, dev)
        k = torch.where(m, _rand(b, *cfg.vessel_superpose_range, g, dev), torch.zeros(b, device=dev))
        other = x[:, 1:].roll(-1, dims=0)  # the batch's next sample: not the anatomy superposition's source
        x = torch.cat([x[:, :1], x[:, 1:] + k.view(-1, 1, 1, 1) * other], dim=1)
    return x


def lower_dose(base: torch.Tensor, noise: torch.Tensor, dose_ugy: torch.Tensor, cfg: AugmentConfig,
               g: torch.Generator) -> torch.Tensor:
    """The ``(B, 1, H, W)`` base of a frame recorded at a lower dose: ``base + (f^-1/2 - 1) noise``.

    ``noise`` is the frame's recorded noise, ``contrast - contrast_clean``. Quantum noise in the -ln domain
    has a standard deviation proportional to ``1 / sqrt(dose)``, with the detector's correlation (light
    spread, binning) whatever the dose, so the same realisation times ``f^-1/2`` is the noise at dose
    fraction ``f``. With probability ``p_dose``, ``f`` is drawn log-uniform from ``dose_fraction_range``
    raised to ``dose_floor_ugy / dose_ugy``, so that no frame goes below the floor (e.g. the lowest dose of
    the training exposures: the dose of a held-out set stays held out); a frame already below the floor is
    kept. ``dose_ugy``: ``(B,)`` detector air kerma per frame of each sample, uGy.
    """
    b, dev = base.shape[0], base.device
    lo, hi = cfg.dose_fraction_range
    dose = dose_ugy.to(dev, torch.float32)  # float32: not every accelerator has float64
    if cfg.dose_floor_ugy > 0 and bool(torch.isnan(dose).any()):
        raise InputError("augment.dose_floor_ugy needs each sample's dose: the store has no detector_air_kerma_ugy")
    floor = (cfg.dose_floor_ugy / dose).clamp(min=lo) if cfg.dose_floor_ugy > 0 else torch.full((b,), lo, device=dev)
    floor = floor.clamp(max=hi)
    u = torch.rand(b, generator=g, device=dev)
    f = torch.exp(floor.log() + u * (math.log(hi) - floor.log()))
    f = torch.where(_coin(b, cfg.p_dose, g, dev), f, torch.ones_like(f))
    return base + (f.rsqrt() - 1).view(-1, 1, 1, 1).to(base.dtype) * noise


def random_ln_offset(inp: torch.Tensor, cfg: AugmentConfig, g: torch.Generator) -> torch.Tensor:
    """Add one constant per sample, ``c ~ U(ln_offset_range)`` with probability ``p_ln_offset``, to the
    ``(B, 1, H, W)`` network input (-ln domain): a detector gain ``exp(-c)``. The target is not touched."""
    if not cfg.enabled or cfg.p_ln_offset == 0:
        return inp
    b = inp.shape[0]
    dev = inp.device
    m = _coin(b, cfg.p_ln_offset, g, dev)
    c = torch.where(m, _rand(b, *cfg.ln_offset_range, g, dev), torch.zeros(b, device=dev))
    return inp + c.view(-1, 1, 1, 1).to(inp.dtype)


def random_crop(x: torch.Tensor, size: int, g: torch.Generator) -> torch.Tensor:
    """Independent random ``size x size`` crop per batch element (clipped to the image size)."""
    b, _, h, w = x.shape
    ch, cw = min(size, h), min(size, w)
    oy = torch.randint(0, h - ch + 1, (b,), generator=g, device=x.device).tolist()
    ox = torch.randint(0, w - cw + 1, (b,), generator=g, device=x.device).tolist()
    return torch.stack([x[i, :, y : y + ch, xx : xx + cw] for i, (y, xx) in enumerate(zip(oy, ox))])


def center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """Centre ``size x size`` crop (clipped to the image size)."""
    h, w = x.shape[-2:]
    ch, cw = min(size, h), min(size, w)
    y, xx = (h - ch) // 2, (w - cw) // 2
    return x[..., y : y + ch, xx : xx + cw]


def make_training_batch(
    batch: dict[str, torch.Tensor],
    cfg: DataConfig,
    norm: Normalization,
    g: torch.Generator,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Collated dataset items -> normalised ``(input, target)`` training patches on ``device``.

    Without noise injection the recorded ``contrast`` is the input; with it, noise is injected on
    ``contrast_clean - dsa_target`` (the motion-consistent clean mask part).
    """
    target = batch["dsa_target"].to(device, non_blocking=True).float()
    src = batch["contrast_clean" if cfg.noise.enabled else "contrast"].to(device, non_blocking=True).float()
    channels = [src - target, target]
    dose = cfg.augment.enabled and cfg.augment.p_dose > 0
    if dose:  # the recorded noise travels with the crop
        if "dose_ugy" not in batch:
            raise InputError("augment.p_dose needs a stored dataset (its detector_air_kerma_ugy)")
        channels.append(src - batch["contrast_clean"].to(device, non_blocking=True).float())
    stack = random_crop(torch.cat(channels, dim=1), cfg.crop_size, g)
    if dose:
        stack = torch.cat([lower_dose(stack[:, :1], stack[:, 2:], batch["dose_ugy"], cfg.augment, g), stack[:, 1:2]], 1)
    stack = augment_pair(stack, cfg.augment, g)
    base, target = stack[:, :1], stack[:, 1:]
    if cfg.noise.enabled:
        inp, target = inject_noise(base, target, g, cfg.noise.photons_range, cfg.noise.blur_sigma_range)
    else:
        inp = base + target
    inp = random_ln_offset(inp, cfg.augment, g)
    inp = center_crop(inp, cfg.patch_size)
    target = center_crop(target, cfg.patch_size)
    return norm.norm_input(inp), norm.norm_target(target)
