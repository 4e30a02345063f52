"""Training loop for the DDSA U-Net and U-Net-GAN (single process or torchrun DDP).

DDP: when ``WORLD_SIZE > 1`` (set by ``torchrun``) the process group is initialised from the
environment (NCCL on CUDA, gloo on CPU). The generator is wrapped in ``DistributedDataParallel``; the
critic's gradients are averaged by an explicit all-reduce (its gradient penalty needs double backward).
Rank 0 alone validates, logs and writes checkpoints.

Randomness: model init from ``seed``; the per-step batch generator is reseeded from
``(seed, rank, step)`` and the sampler is a seeded :class:`~ddsa_sim.training.data.InfiniteSampler`
that skips the draws already consumed, so a resumed run sees exactly the data an uninterrupted run would.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from ddsa_sim import InputError
from ddsa_sim.training.augment import make_training_batch
from ddsa_sim.training.checkpoint import (
    check_architecture,
    load_checkpoint,
    load_state,
    save_checkpoint,
)
from ddsa_sim.training.config import TrainConfig
from ddsa_sim.training.data import InfiniteSampler, ZarrDDSADataset
from ddsa_sim.training.gan import build_critic, critic_loss, generator_adv_loss
from ddsa_sim.training.losses import CombinedLoss
from ddsa_sim.training.metrics import all_metrics, summarize
from ddsa_sim.training.normalization import Normalization, compute_normalization
from ddsa_sim.training.unet import UNet


@dataclass
class TrainResult:
    """What :func:`run_training` returns (on every rank)."""

    step: int
    start_step: int
    best_score: float | None
    losses: list[tuple[int, float]] = field(default_factory=list)
    val_history: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    model: torch.nn.Module | None = None
    rank: int = 0
    world_size: int = 1


def step_seed(seed: int, rank: int, step: int) -> int:
    """Seed of the per-step batch generator."""
    return int(np.random.SeedSequence([seed, rank, step]).generate_state(1, dtype=np.uint64)[0] % (2**63))


def _dist_info() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    return world, rank, local


def _select_device(cfg: TrainConfig, local_rank: int) -> torch.device:
    if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise InputError("device: 'cuda' requested but no CUDA GPU is available")
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def _panel(inp: torch.Tensor, pred: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
    """``(1, H, 3W)`` display panel input | prediction | target (display scaling only)."""

    def scale(x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
        return ((x - lo) / max(hi - lo, 1e-12)).clamp(0, 1)

    lo, hi = float(tgt.min()), float(tgt.max())
    return torch.cat(
        [scale(inp, float(inp.min()), float(inp.max())), scale(pred, lo, hi), scale(tgt, lo, hi)], dim=-1
    )


@torch.no_grad()
def validate(
    model: torch.nn.Module,
    dataset: Dataset,
    norm: Normalization,
    device: torch.device,
    data_range: float,
    max_samples: int | None = None,
) -> tuple[dict[str, float], tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None]:
    """Metrics of the network on full recorded ``contrast`` frames of ``dataset``.

    Returns
    -------
    summary, first (input, prediction, target) triple for the image panel
    """
    was_training = model.training
    model.eval()
    rows: list[dict[str, float]] = []
    l1s: list[float] = []
    first = None
    n = len(dataset) if max_samples is None else min(len(dataset), max_samples)
    for i in range(n):
        item = dataset[i]
        x = item["contrast"][None].to(device)
        y = item["dsa_target"][0]
        pred = norm.denorm_target(model(norm.norm_input(x)).float())[0, 0].cpu()
        rows.append(all_metrics(pred, y, data_range))
        l1s.append(float((norm.norm_target(pred) - norm.norm_target(y)).abs().mean()))
        if first is None:
            first = (item["contrast"][0], pred, y)
    model.train(was_training)
    out = summarize(rows)
    out = {k: v for k, v in out.items() if not k.endswith("_median")}
    out["l1"] = float(np.mean(l1s)) if l1s else math.nan
    return out, first


def target_data_range(dataset: Dataset, max_samples: int | None = None) -> float:
    """``max - min`` of ``dsa_target`` over (the first ``max_samples`` of) a dataset."""
    n = len(dataset) if max_samples is None else min(len(dataset), max_samples)
    lo, hi = math.inf, -math.inf
    for i in range(n):
        t = dataset[i]["dsa_target"]
        lo, hi = min(lo, float(t.min())), max(hi, float(t.max()))
    return max(hi - lo, 1e-12)


def _score(metrics: dict[str, float], key: str) -> float:
    return -metrics["l1"] if key == "l1" else metrics[key]


def run_training(
    cfg: TrainConfig,
    out_dir: str | Path,
    store: str | Path | None = None,
    max_steps: int | None = None,
    resume: bool = False,
    train_dataset: Dataset | None = None,
    val_dataset: Dataset | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train a U-Net (or U-Net-GAN when ``cfg.gan.enabled``) and write ``best.pt`` / ``last.pt``.

    Parameters
    ----------
    cfg
        Validated config.
    out_dir
        Run directory (checkpoints, ``tb/`` TensorBoard logs, ``config.json``, ``normalization.json``).
    store
        Exported Zarr store; overrides ``cfg.data.store``. Ignored if ``train_dataset`` is given.
    max_steps
        Overrides ``cfg.optim.max_steps`` (total generator steps, counted across resumes).
    resume
        Continue from ``out_dir/last.pt`` if it exists (its architecture must match ``cfg``).
    train_dataset, val_dataset
        Explicit datasets (e.g. :class:`~ddsa_sim.training.data.OnTheFlyDataset`).
    progress
        Show a tqdm bar on rank 0.
    """
    out_dir = Path(out_dir)
    world, rank, local_rank = _dist_info()
    initialised_here = False
    if world > 1 and not dist.is_initialized():
        use_cuda = cfg.device != "cpu" and torch.cuda.is_available()
        dist.init_process_group("nccl" if use_cuda else "gloo")
        initialised_here = True
    try:
        return _train(
            cfg,
            out_dir,
            store,
            max_steps,
            resume,
            train_dataset,
            val_dataset,
            progress,
            world,
            rank,
            local_rank,
        )
    finally:
        if initialised_here and dist.is_initialized():
            dist.destroy_process_group()


def _train(
    cfg: TrainConfig,
    out_dir: Path,
    store: str | Path | None,
    max_steps: int | None,
    resume: bool,
    train_ds: Dataset | None,
    val_ds: Dataset | None,
    progress: bool,
    world: int,
    rank: int,
    local_rank: int,
) -> TrainResult:
    device = _select_device(cfg, local_rank)
    if cfg.num_threads is not None:
        torch.set_num_threads(cfg.num_threads)
    total_steps = int(max_steps if max_steps is not None else cfg.optim.max_steps)
    if total_steps < 1:
        raise InputError(f"max_steps must be >= 1, got {total_steps}")
    store = store if store is not None else cfg.data.store
    if train_ds is None:
        if store is None:
            raise InputError("no training data: give --data STORE or data.store in the config")
        train_ds = ZarrDDSADataset(store, cfg.data.train_split, in_memory=cfg.data.in_memory)
        if val_ds is None:
            val_ds = ZarrDDSADataset(
                store, cfg.data.val_split, in_memory=cfg.data.in_memory, max_samples=cfg.data.max_val_samples
            )
    if len(train_ds) == 0:
        raise InputError(f"split '{cfg.data.train_split}' has no complete samples")

    torch.manual_seed(cfg.seed)
    model: torch.nn.Module = UNet(cfg.model).to(device)
    critic = (
        build_critic(cfg.gan, cfg.model.in_channels, cfg.model.out_channels).to(device)
        if cfg.gan.enabled
        else None
    )
    opt = torch.optim.Adam(
        model.parameters(), lr=cfg.optim.lr, betas=cfg.optim.betas, weight_decay=cfg.optim.weight_decay
    )
    opt_d = (
        torch.optim.Adam(critic.parameters(), lr=cfg.gan.lr, betas=cfg.gan.betas)
        if critic is not None
        else None
    )
    use_amp = cfg.optim.amp and device.type == "cuda"
    amp_dtype = torch.bfloat16 if cfg.optim.amp_dtype == "bfloat16" else torch.float16
    scaler = torch.amp.GradScaler(device.type, enabled=use_amp and amp_dtype == torch.float16)

    start_step, best_score, norm = 0, None, None
    last_path = out_dir / "last.pt"
    if resume and last_path.exists():
        ckpt = load_checkpoint(last_path, map_location=device)
        check_architecture(ckpt, cfg.model, str(last_path))
        load_state(model, ckpt["model"], str(last_path))
        if critic is not None:
            if ckpt.get("critic") is None:
                raise InputError(f"{last_path}: has no critic but gan.enabled is true")
            load_state(critic, ckpt["critic"], str(last_path))
            if ckpt.get("critic_optimizer"):
                opt_d.load_state_dict(ckpt["critic_optimizer"])
        if ckpt.get("optimizer"):
            opt.load_state_dict(ckpt["optimizer"])
        if ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        start_step = int(ckpt["step"])
        best_score = ckpt.get("best_score")
        norm = Normalization.from_dict(ckpt["normalization"])
    if norm is None:
        norm = compute_normalization(train_ds, cfg.data.norm_samples, cfg.seed)

    if world > 1:
        for p in critic.parameters() if critic is not None else []:
            dist.broadcast(p.data, 0)
        model = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
    core = model.module if isinstance(model, DDP) else model

    criterion = CombinedLoss(cfg.optim.loss, ssim_data_range=norm.target_range_n)
    sampler = InfiniteSampler(
        len(train_ds), seed=cfg.seed, rank=rank, world=world, start=start_step * cfg.data.batch_size
    )
    loader = DataLoader(
        train_ds,
        batch_size=cfg.data.batch_size,
        sampler=sampler,
        num_workers=cfg.data.num_workers,
        pin_memory=device.type == "cuda",
        persistent_workers=cfg.data.num_workers > 0,
    )

    writer = None
    val_range = None
    if rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.json").write_text(json.dumps(json.loads(cfg.to_json()), indent=2))
        (out_dir / "normalization.json").write_text(json.dumps(norm.to_dict(), indent=2))
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out_dir / "tb"), purge_step=start_step + 1 if start_step else None)
        if val_ds is not None and len(val_ds) > 0:
            val_range = target_data_range(val_ds, cfg.data.max_val_samples)

    def ckpt_kwargs(step: int) -> dict[str, Any]:
        return dict(
            config=cfg,
            norm=norm,
            model=core,
            step=step,
            best_score=best_score,
            critic=critic,
            optimizer=opt,
            critic_optimizer=opt_d,
            scaler=scaler if scaler.is_enabled() else None,
        )

    result = TrainResult(
        step=start_step, start_step=start_step, best_score=best_score, rank=rank, world_size=world
    )
    g = torch.Generator(device=device)
    autocast = (lambda: torch.autocast("cuda", dtype=amp_dtype)) if use_amp else nullcontext
    model.train()
    bar = tqdm(
        total=total_steps,
        initial=start_step,
        desc="train",
        disable=not (progress and rank == 0),
        dynamic_ncols=True,
    )
    step = start_step
    it = iter(loader)
    try:
        while step < total_steps:
            g.manual_seed(step_seed(cfg.seed, rank, step))
            x, y = make_training_batch(next(it), cfg.data, norm, g, device)
            logs: dict[str, float] = {}
            if critic is not None:
                with autocast():
                    fake = model(x)
                for p in critic.parameters():
                    p.requires_grad_(True)
                for _ in range(cfg.gan.critic_steps):
                    ld, parts = critic_loss(critic, x, y, fake.detach().float(), cfg.gan.gp_lambda, g)
                    opt_d.zero_grad(set_to_none=True)
                    ld.backward()
                    if world > 1:
                        for p in critic.parameters():
                            if p.grad is not None:
                                dist.all_reduce(p.grad)
                                p.grad /= world
                    opt_d.step()
                logs.update({"critic_loss": float(ld.detach()), **parts})
                for p in critic.parameters():
                    p.requires_grad_(False)
                rec = criterion(fake, y)
                loss = cfg.gan.l1_weight * rec + generator_adv_loss(critic, x, fake.float())
                logs["recon"] = float(rec.detach())
            else:
                with autocast():
                    pred = model(x)
                loss = criterion(pred, y)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if cfg.optim.grad_clip:
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
            scaler.step(opt)
            scaler.update()
            step += 1
            lv = float(loss.detach())
            if not math.isfinite(lv):
                raise RuntimeError(f"non-finite loss at step {step}")
            result.losses.append((step, lv))
            bar.update(1)
            if rank == 0:
                bar.set_postfix(loss=f"{lv:.4g}")
                if step % cfg.optim.log_every == 0 or step == total_steps:
                    writer.add_scalar("train/loss", lv, step)
                    for k, v in logs.items():
                        writer.add_scalar(f"train/{k}", v, step)
                if val_range is not None and (step % cfg.optim.val_every == 0 or step == total_steps):
                    metrics, first = validate(core, val_ds, norm, device, val_range, cfg.data.max_val_samples)
                    result.val_history.append((step, metrics))
                    for k, v in metrics.items():
                        writer.add_scalar(f"val/{k}", v, step)
                    if first is not None and (step % cfg.optim.image_every == 0 or step == total_steps):
                        writer.add_image("val/input|prediction|target", _panel(*first)[None], step)
                    s = _score(metrics, cfg.optim.best_metric)
                    if best_score is None or s > best_score:
                        best_score = s
                        save_checkpoint(out_dir / "best.pt", **ckpt_kwargs(step))
                if step % cfg.optim.ckpt_every == 0 or step == total_steps:
                    save_checkpoint(last_path, **ckpt_kwargs(step))
            if world > 1 and (
                step % cfg.optim.val_every == 0 or step % cfg.optim.ckpt_every == 0 or step == total_steps
            ):
                dist.barrier()
    except KeyboardInterrupt:
        if rank == 0 and step > start_step:
            save_checkpoint(last_path, **ckpt_kwargs(step))
        raise
    finally:
        bar.close()
        if writer is not None:
            writer.flush()
            writer.close()
    if rank == 0:
        if not last_path.exists():  # nothing trained (already at max_steps)
            save_checkpoint(last_path, **ckpt_kwargs(step))
        if not (out_dir / "best.pt").exists():  # no validation split: best = last
            shutil.copyfile(last_path, out_dir / "best.pt")
    result.step = step
    result.best_score = best_score
    result.model = core
    return result
