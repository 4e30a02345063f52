"""Training loop for the DDSA U-Net and U-Net-GAN (single process or torchrun DDP).

DDP: when ``WORLD_SIZE > 1`` (set by ``torchrun``) the process group is initialised from the
environment (NCCL on CUDA, gloo on CPU). The generator is wrapped in ``DistributedDataParallel``; the
critic's gradients are averaged by an explicit all-reduce (its gradient penalty needs double backward).
Rank 0 alone validates, logs and writes checkpoints.

Weight average: with ``optim.ema_decay`` the run keeps an exponential moving average of the generator's
weights (:class:`torch.optim.swa_utils.AveragedModel`); it is what is validated, kept in ``best.pt`` and
returned, while the optimiser steps the weights as without it. Before the average is validated or written, its
batch-norm statistics are recomputed for its own weights (:func:`torch.optim.swa_utils.update_bn`) over
``optim.ema_bn_batches`` training batches made once at the start with their own random stream, so the run's data
order is untouched: the average of the stepped networks' statistics fits none of them, and early in a run from
scratch the average drew next to nothing with them (docs/results.md, v27).

The all-zero image: validation records ``energy_ratio``, the predictions' energy over the targets' (pooled
over the validation images); a run whose predictions hold less than :data:`ALL_ZERO_ENERGY` of it at
:data:`ALL_ZERO_VALIDATIONS` validations in a row is warned about once, since L1 + L2 runs that fall there
seldom leave it once trained (docs/results.md: v14, v20, v21).

Randomness: model init from ``seed``; the per-step batch generator is reseeded from
``(seed, rank, step)`` and the sampler is a seeded :class:`~ddsa_sim.training.data.InfiniteSampler`
that skips the draws already consumed, so a resumed run sees exactly the data an uninterrupted run would.

Ctrl-C (SIGINT): a step is never cut in half. A SIGINT during a step is held back until the step is done
(:class:`_Interrupts`; under DDP the ranks agree after each step whether one was asked to stop, so all stop after
the same one), then rank 0 writes ``last.pt`` of that step and :class:`TrainingInterrupted` is raised (on every
rank once ``last.pt`` is written). A single-process run stops at once on a SIGINT outside a step (reading data,
validating, writing a checkpoint); a validation it cut short is done first thing on ``--resume``. Under DDP a
SIGINT is held everywhere in the loop, since a rank that stopped on its own would leave the others waiting in a
collective forever: the ranks agree after each step and after each of rank 0's validations / checkpoints. So a run
interrupted and resumed equals an uninterrupted one.

Structure: :func:`run_training` sets up (device, data, :class:`_TrainState` with networks, optimisers
and resume state, data loader, rank 0's :class:`_Monitor`), then :func:`_train_loop` runs
:func:`_train_step` (supervised or GAN; the critic loop lives in :mod:`ddsa_sim.training.gan`) and,
on rank 0, :func:`_after_step` (logging, validation, checkpoints).
"""

from __future__ import annotations

import gc
import json
import math
import os
import shutil
import signal
import threading
import warnings
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn, update_bn
from torch.utils.data import DataLoader, Dataset, default_collate
from tqdm import tqdm

from ddsa_sim import InputError
from ddsa_sim.training.augment import make_training_batch
from ddsa_sim.training.checkpoint import (
    check_architecture,
    load_checkpoint,
    load_state,
    save_checkpoint,
)
from ddsa_sim.training.config import OptimConfig, TrainConfig
from ddsa_sim.training.data import InfiniteSampler, ZarrDDSADataset
from ddsa_sim.training.gan import build_critic, generator_loss, train_critic
from ddsa_sim.training.losses import CombinedLoss
from ddsa_sim.training.metrics import all_metrics, summarize
from ddsa_sim.training.normalization import Normalization, compute_normalization
from ddsa_sim.training.predict import network_dsa
from ddsa_sim.training.unet import UNet
from vessel_models.gan.precision import cpu_autocast_dtype

__all__ = ["ALL_ZERO_ENERGY", "ALL_ZERO_VALIDATIONS", "TrainResult", "TrainingInterrupted", "learning_rate",
           "run_training", "step_seed", "target_data_range", "validate", "warn_if_all_zero"]

#: Validation predictions with less than this share of the targets' energy (sum of squares) draw nothing:
#: the all-zero image (docs/results.md's collapsed runs: below 1e-4 on their validation images; trained ones 0.3-1)
ALL_ZERO_ENERGY = 0.01
#: Validations in a row at the all-zero image before the run is warned about (a run from scratch passes
#: through it in its first few hundred steps)
ALL_ZERO_VALIDATIONS = 3
#: the random stream of the weight average's batch-norm inputs, apart from the steps' (seed, rank, step) streams
BN_STREAM = 2**31 - 1


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
    #: dtype of the forward passes: "float32", or the autocast dtype of ``optim.amp`` ("bfloat16",
    #: "float16" on CUDA; "bfloat16" on the CPU, with ``optim.amp_cpu``)
    precision: str = "float32"


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) stopped a run after its completed step ``step``; ``saved``: the ``last.pt`` rank 0 wrote of
    that step (None: no step was completed since the run (re)started, nothing was written; other ranks: None)."""

    def __init__(self, step: int, saved: Path | None) -> None:
        super().__init__(f"training interrupted at step {step}")
        self.step = step
        self.saved = saved


class _Interrupts:
    """The SIGINT handler of a run (:meth:`installed`): raises ``KeyboardInterrupt`` at once, except inside
    :meth:`holding`, where it only records the signal, so that a step either completes or never starts."""

    def __init__(self) -> None:
        self.held = False
        self.pending = False

    def __call__(self, _signum: int, _frame: object) -> None:
        if self.held:
            self.pending = True
        else:
            raise KeyboardInterrupt

    @contextmanager
    def installed(self) -> Iterator[None]:
        """Handle SIGINT for the block (main thread only; a SIGINT ignored when the run started stays ignored)."""
        if threading.current_thread() is not threading.main_thread() or \
                signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
            yield
            return
        signal.signal(signal.SIGINT, self)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, signal.default_int_handler)

    @contextmanager
    def holding(self) -> Iterator[None]:
        """Hold SIGINT back for the block (also a second one, e.g. the one torchrun passes on to its workers)."""
        held, self.held = self.held, True
        try:
            yield
        finally:
            self.held = held

    def stop_asked(self, world: int, device: torch.device) -> bool:
        """Whether a SIGINT came during the step (under DDP: to any rank, so that all stop after the same step)."""
        if world == 1:
            return self.pending
        flag = torch.tensor([float(self.pending)], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())


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
        The summary holds each image metric's mean and ``_std``, ``l1`` (the loss's L1 in network units) and
        ``energy_ratio``: sum of squared predictions over sum of squared targets, pooled over the images
        (0: the all-zero image; ``nan`` for all-zero targets).
    """
    was_training = model.training
    model.eval()
    rows: list[dict[str, float]] = []
    l1s: list[float] = []
    energy_pred = energy_target = 0.0
    first = None
    n = len(dataset) if max_samples is None else min(len(dataset), max_samples)
    for i in range(n):
        item = dataset[i]
        x = item["contrast"][None].to(device)
        y = item["dsa_target"][0]
        pred = network_dsa(model, norm, x)[0, 0].cpu()
        rows.append(all_metrics(pred, y, data_range))
        l1s.append(float((norm.norm_target(pred) - norm.norm_target(y)).abs().mean()))
        energy_pred += float(pred.double().square().sum())
        energy_target += float(y.double().square().sum())
        if first is None:
            first = (item["contrast"][0], pred, y)
    model.train(was_training)
    out = summarize(rows)
    out = {k: v for k, v in out.items() if not k.endswith("_median")}
    out["l1"] = float(np.mean(l1s)) if l1s else math.nan
    out["energy_ratio"] = energy_pred / energy_target if energy_target > 0 else math.nan
    return out, first


def warn_if_all_zero(val_history: list[tuple[int, dict[str, float]]]) -> None:
    """Warn (once per fall) when the last :data:`ALL_ZERO_VALIDATIONS` validations of ``val_history`` (step,
    :func:`validate` summary) all predicted the all-zero image (``energy_ratio`` below :data:`ALL_ZERO_ENERGY`)."""
    recent = [m.get("energy_ratio", math.nan) for _, m in val_history[-ALL_ZERO_VALIDATIONS - 1:]]
    at_zero = [r < ALL_ZERO_ENERGY for r in recent]  # nan (no target energy) counts as not at zero
    if len(at_zero) < ALL_ZERO_VALIDATIONS or not all(at_zero[-ALL_ZERO_VALIDATIONS:]):
        return
    if len(at_zero) > ALL_ZERO_VALIDATIONS and at_zero[0]:
        return  # already warned about this fall
    first_step = val_history[-ALL_ZERO_VALIDATIONS][0]
    warnings.warn(f"step {val_history[-1][0]}: the network has predicted the all-zero image at every validation "
                  f"since step {first_step} (energy {recent[-1]:.2%} of the targets'): it draws no vessels; if it stays "
                  "there, train another seed or from a trained start (init_from)", stacklevel=2)


def target_data_range(dataset: Dataset, max_samples: int | None = None) -> float:
    """``max - min`` of ``dsa_target`` over (the first ``max_samples`` of) a dataset (of a store: read
    from that array alone)."""
    n = len(dataset) if max_samples is None else min(len(dataset), max_samples)
    target = dataset.dsa_target if isinstance(dataset, ZarrDDSADataset) else (lambda i: dataset[i]["dsa_target"])
    lo, hi = math.inf, -math.inf
    for i in range(n):
        t = target(i)
        lo, hi = min(lo, float(t.min())), max(hi, float(t.max()))
    return max(hi - lo, 1e-12)


def _score(metrics: dict[str, float], key: str) -> float:
    return -metrics["l1"] if key == "l1" else metrics[key]


def _due(step: int, every: int, total_steps: int) -> bool:
    """Whether a periodic action (log, validation, checkpoint) falls on ``step``; the last step always."""
    return step % every == 0 or step == total_steps


@dataclass
class _Networks:
    """Generator, critic (GAN only), their optimisers, the AMP grad scaler and the generator's weight
    average: what a resume restores.

    ``model`` is the network being stepped, wrapped in DDP when ``world > 1``; ``average`` the exponential
    moving average of its weights (``optim.ema_decay``), None without.
    """

    model: torch.nn.Module
    critic: torch.nn.Module | None
    opt: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer | None
    scaler: torch.amp.GradScaler
    average: AveragedModel | None

    @property
    def core(self) -> torch.nn.Module:
        """The bare U-Net being stepped (without the DDP wrapper)."""
        return self.model.module if isinstance(self.model, DDP) else self.model

    @property
    def generator(self) -> torch.nn.Module:
        """The U-Net to validate and keep: the weight average once it has averaged a step, else the stepped
        U-Net (before the first step: the one a run starts from)."""
        averaged = self.average is not None and int(self.average.n_averaged) > 0
        return self.average.module if averaged else self.core

    def drop_ddp(self) -> None:
        """Free the DDP wrapper now, while the process group lives. Its reducer holds the group: a group destroyed
        from the reducer's destructor joins gloo's worker threads with the GIL held, while a worker that frees the
        last reference to a Python tensor waits for the GIL (a deadlock seen under CPU load); destroyed by
        ``destroy_process_group`` the group releases the GIL first."""
        if isinstance(self.model, DDP):
            self.model = self.model.module
            gc.collect()  # DDP's hooks hold it in a reference cycle, which a later collection would free anywhere


@dataclass
class _TrainState:
    """A run in progress: its fixed set-up plus the counters that advance (``step``, ``best_score``)."""

    cfg: TrainConfig
    device: torch.device
    rank: int
    world: int
    nets: _Networks
    norm: Normalization
    criterion: CombinedLoss
    #: autocast dtype of the forward passes (:func:`_amp_dtype`), None: float32
    amp_dtype: torch.dtype | None
    step: int = 0
    best_score: float | None = None
    #: pixel spacing at the isocenter of the training images, mm (None: not known from the dataset)
    pixel_mm: float | None = None
    #: validate the network the run starts from before its first step (``init_from``, a branch), so that
    #: ``best.pt`` can never be worse than that network
    validate_start: bool = False
    #: rank 0: network inputs over which the weight average's batch-norm statistics are recomputed (empty: not
    #: needed, :func:`_bn_inputs`), and the step at which they last were
    bn_inputs: list[torch.Tensor] = field(default_factory=list)
    bn_step: int | None = None
    #: the SIGINT handler of the run (a step completes before it stops)
    interrupts: _Interrupts = field(default_factory=_Interrupts)
    #: the step whose validation was last done (best.pt decided)
    validated_step: int | None = None
    #: a validation due at ``step`` has not been done (interrupted): ``last.pt`` records it, a resume does it first
    validation_pending: bool = False

    def autocast(self) -> AbstractContextManager[Any]:
        """The forward passes' autocast context (a no-op in float32)."""
        return torch.autocast(self.device.type, dtype=self.amp_dtype) if self.amp_dtype is not None else nullcontext()

    def refresh_average(self) -> None:
        """Recompute the weight average's batch-norm statistics for its weights (once per step) before it is used."""
        average = self.nets.average
        if self.bn_inputs and average is not None and int(average.n_averaged) > 0 and self.bn_step != self.step:
            update_bn(self.bn_inputs, average.module)
            self.bn_step = self.step

    def save(self, path: Path) -> None:
        """Write a checkpoint of the current step to ``path`` (the weight average with its own statistics)."""
        self.refresh_average()
        n = self.nets
        save_checkpoint(
            path,
            config=self.cfg,
            norm=self.norm,
            model=n.generator,
            model_stepped=n.core if n.average is not None else None,
            step=self.step,
            best_score=self.best_score,
            critic=n.critic,
            optimizer=n.opt,
            critic_optimizer=n.opt_d,
            scaler=n.scaler if n.scaler.is_enabled() else None,
            pixel_mm=self.pixel_mm,
            world_size=self.world,
            validation_pending=self.validation_pending,
        )


@dataclass
class _Monitor:
    """Rank 0's side of a run: TensorBoard writer, validation data and the checkpoint files."""

    out_dir: Path
    writer: Any  # torch.utils.tensorboard.SummaryWriter (imported lazily)
    val_ds: Dataset | None
    val_range: float | None  # target data range of ``val_ds``; None: no validation

    @property
    def last_path(self) -> Path:
        """``out_dir/last.pt``."""
        return self.out_dir / "last.pt"


# ---------------------------------------------------------------------------------------------- set-up


def _datasets(
    cfg: TrainConfig, store: str | Path | None, train_ds: Dataset | None, val_ds: Dataset | None
) -> tuple[Dataset, Dataset | None]:
    """Training and validation datasets: the explicit ones, else the splits of the Zarr store."""
    store = store if store is not None else cfg.data.store
    if train_ds is None:
        if store is None:
            raise InputError("no training data: give --data STORE or data.store in the config")
        d = cfg.data
        train_ds = ZarrDDSADataset(store, d.train_split, in_memory=d.in_memory, verify=d.verify)
        if val_ds is None:
            val_ds = ZarrDDSADataset(
                store, d.val_split, in_memory=d.in_memory, max_samples=d.max_val_samples, verify=d.verify
            )
    if len(train_ds) == 0:
        raise InputError(f"split '{cfg.data.train_split}' has no complete samples")
    shape = getattr(train_ds, "image_shape", None)
    if shape is not None and cfg.data.crop_size > min(shape):
        warnings.warn(f"data.crop_size {cfg.data.crop_size} is larger than the training images ({shape[0]}x{shape[1]}): "
                      "the random crops are clipped to them (whole images along a shorter side), which the "
                      f"augmentation then turns and scales at their borders before the {cfg.data.patch_size}-pixel "
                      "centre crop", stacklevel=2)
    if val_ds is None or len(val_ds) == 0:
        warnings.warn(f"no validation samples (split '{cfg.data.val_split}' is empty): nothing is validated and "
                      "best.pt is a copy of last.pt, not a selected model", stacklevel=2)
    return train_ds, val_ds


def _amp_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    """Autocast dtype, or None when mixed precision is off: ``optim.amp`` and ``amp_dtype`` on CUDA,
    ``optim.amp_cpu`` on the CPU (bfloat16, the type CPU matrix units compute in)."""
    if device.type == "cpu":
        return cpu_autocast_dtype(cfg.optim.amp_cpu, "optim.amp_cpu")
    if not cfg.optim.amp:
        return None
    return torch.bfloat16 if cfg.optim.amp_dtype == "bfloat16" else torch.float16


def _build_networks(cfg: TrainConfig, device: torch.device, amp_dtype: torch.dtype | None) -> _Networks:
    """Freshly initialised networks (seeded by ``cfg.seed``: U-Net first, then critic) and optimisers, laid out
    for the autocast type ``amp_dtype`` (:func:`_amp_dtype`)."""
    torch.manual_seed(cfg.seed)
    model = UNet(cfg.model).to(device)
    if device.type == "cpu" and amp_dtype is not None:
        # oneDNN's bfloat16 convolutions run fastest on channels-last weights (about 25 % over NCHW here)
        model = model.to(memory_format=torch.channels_last)
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
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    # the exponential moving average of the weights and batch-norm statistics; its first update copies
    # the weights of the first step
    average = (
        AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.optim.ema_decay), use_buffers=True)
        if cfg.optim.ema_decay is not None
        else None
    )
    return _Networks(model, critic, opt, opt_d, scaler, average)


def _restore(
    path: Path, cfg: TrainConfig, device: torch.device, nets: _Networks, pixel_mm: float | None
) -> tuple[int, float | None, Normalization, bool]:
    """Load ``path`` (a ``last.pt`` of the same architecture, trained on images of ``pixel_mm``, the training
    store's pixel spacing, where both know it) into ``nets``: the stepped weights, and the weight average where
    both the run and the checkpoint have one (a run that starts averaging on resume starts it at the next step's
    weights).

    Returns
    -------
    step, best_score, normalization, validation_pending
        As stored in the checkpoint (``validation_pending``: an interrupt cut short the validation of ``step``).
    """
    ckpt = load_checkpoint(path, map_location=device)
    check_architecture(ckpt, cfg.model, str(path))
    trained_mm = ckpt.get("pixel_mm")
    if trained_mm is not None and pixel_mm is not None and not math.isclose(trained_mm, pixel_mm, rel_tol=1e-6):
        # a network's pixel scale is its training images' (docs/inference.md): one run learns one
        raise InputError(f"{path}: trained on images of {trained_mm:.4g} mm pixels, this store's are {pixel_mm:.4g} mm; "
                         "continue it on a store of its pixel size")
    stepped = ckpt.get("model_stepped")
    load_state(nets.model, stepped if stepped is not None else ckpt["model"], str(path))
    if nets.average is not None and stepped is not None:
        load_state(nets.average.module, ckpt["model"], str(path))
        nets.average.n_averaged.fill_(int(ckpt["step"]))
    if nets.critic is not None:
        if ckpt.get("critic") is None:
            raise InputError(f"{path}: has no critic but gan.enabled is true")
        load_state(nets.critic, ckpt["critic"], str(path))
        if ckpt.get("critic_optimizer"):
            nets.opt_d.load_state_dict(ckpt["critic_optimizer"])
    if ckpt.get("optimizer"):
        nets.opt.load_state_dict(ckpt["optimizer"])
    if ckpt.get("scaler"):
        nets.scaler.load_state_dict(ckpt["scaler"])
    return (int(ckpt["step"]), ckpt.get("best_score"), Normalization.from_dict(ckpt["normalization"]),
            bool(ckpt.get("validation_pending", False)))


def _check_same_start(step: int, last_path: Path, device: torch.device) -> None:
    """Under DDP: every rank starts at the same step, or the run is refused (a rank that did not see ``last.pt``,
    e.g. a run folder not shared between nodes, would train from scratch beside the others and they would wait on
    each other in collectives forever)."""
    bounds = torch.tensor([float(step), -float(step)], device=device)
    dist.all_reduce(bounds, op=dist.ReduceOp.MAX)
    if bounds[0] != -bounds[1]:
        raise InputError(f"the ranks start at different steps ({-bounds[1]:.0f} to {bounds[0]:.0f}): "
                         f"a resume needs {last_path} on every rank, the same file")


def _wrap_ddp(nets: _Networks, device: torch.device) -> None:
    """Start all ranks from rank 0's critic and wrap the generator in DDP."""
    for p in nets.critic.parameters() if nets.critic is not None else []:
        dist.broadcast(p.data, 0)
    nets.model = DDP(nets.model, device_ids=[device.index] if device.type == "cuda" else None)


def _setup_state(
    cfg: TrainConfig,
    device: torch.device,
    rank: int,
    world: int,
    train_ds: Dataset,
    resume_from: Path | None,
    branch_from: Path | None = None,
    progress: bool = True,
) -> _TrainState:
    """Networks, optimisers, normalisation and counters: fresh, resumed from ``resume_from`` (validating first where
    an interrupt cut its last validation short), branched from another run's ``branch_from`` (its state and step, a
    best score of its own), or a fresh run whose generator and normalisation come from ``cfg.init_from``
    (``progress``: the normalisation statistics' bar)."""
    amp_dtype = _amp_dtype(cfg, device)
    nets = _build_networks(cfg, device, amp_dtype)
    pixel_mm = train_ds.pixel_mm() if isinstance(train_ds, ZarrDDSADataset) else None
    pending = False
    if resume_from is not None:
        step, best_score, norm, pending = _restore(resume_from, cfg, device, nets, pixel_mm)
    elif branch_from is not None:
        step, _, norm, _ = _restore(branch_from, cfg, device, nets, pixel_mm)
        best_score = None
    elif cfg.init_from is not None:
        ckpt = load_checkpoint(cfg.init_from, map_location=device)
        check_architecture(ckpt, cfg.model, f"init_from {cfg.init_from}")
        load_state(nets.model, ckpt["model"], f"init_from {cfg.init_from}")
        step, best_score, norm = 0, None, Normalization.from_dict(ckpt["normalization"])
    else:
        step, best_score, norm = 0, None, compute_normalization(train_ds, cfg.data.norm_samples, cfg.seed,
                                                             progress)
    if world > 1:
        _wrap_ddp(nets, device)
    return _TrainState(
        cfg=cfg,
        device=device,
        rank=rank,
        world=world,
        nets=nets,
        norm=norm,
        criterion=CombinedLoss(
            cfg.optim.loss,
            ssim_data_range=norm.target_range_n,
            reduction=cfg.optim.loss_reduction,
            vessel_weight=cfg.optim.vessel_weight,
            vessel_threshold=float(norm.norm_target(torch.tensor(cfg.optim.vessel_threshold))),
        ),
        amp_dtype=amp_dtype,
        step=step,
        best_score=best_score,
        pixel_mm=pixel_mm,
        validate_start=pending or branch_from is not None or (resume_from is None and cfg.init_from is not None),
        validation_pending=pending,
    )


def _make_loader(state: _TrainState, train_ds: Dataset) -> DataLoader:
    """Endless loader of this rank's shard, skipping the samples of the steps already done."""
    cfg = state.cfg
    start = state.step * cfg.data.batch_size
    sampler = InfiniteSampler(len(train_ds), seed=cfg.seed, rank=state.rank, world=state.world, start=start)
    return DataLoader(
        train_ds,
        batch_size=cfg.data.batch_size,
        sampler=sampler,
        num_workers=cfg.data.num_workers,
        pin_memory=state.device.type == "cuda",
        persistent_workers=cfg.data.num_workers > 0,
    )


def _bn_inputs(state: _TrainState, train_ds: Dataset) -> list[torch.Tensor]:
    """``optim.ema_bn_batches`` normalised training inputs made as :func:`_train_step` makes them (augmentation
    included), from a random stream of their own; none where the run has no weight average or no batch norm."""
    cfg = state.cfg
    has_bn = any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in state.nets.core.modules())
    if state.nets.average is None or not has_bn or cfg.optim.ema_bn_batches == 0 or len(train_ds) == 0:
        return []
    rng = np.random.default_rng([cfg.seed, BN_STREAM])
    g = torch.Generator(device=state.device).manual_seed(int(rng.integers(2**62)))
    size = min(cfg.data.batch_size, len(train_ds))
    out = []
    for _ in range(cfg.optim.ema_bn_batches):
        batch = default_collate([train_ds[int(i)] for i in rng.choice(len(train_ds), size, replace=False)])
        out.append(make_training_batch(batch, cfg.data, state.norm, g, state.device)[0])
    return out


def _open_monitor(state: _TrainState, out_dir: Path, val_ds: Dataset | None) -> _Monitor:
    """Rank 0: write ``config.json`` / ``normalization.json`` and open the TensorBoard log."""
    from torch.utils.tensorboard import SummaryWriter

    cfg = state.cfg
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.json").write_text(json.dumps(json.loads(cfg.to_json()), indent=2))
    (out_dir / "normalization.json").write_text(json.dumps(state.norm.to_dict(), indent=2))
    writer = SummaryWriter(str(out_dir / "tb"), purge_step=state.step + 1 if state.step else None)
    val_range = None
    if val_ds is not None and len(val_ds) > 0:
        val_range = target_data_range(val_ds, cfg.data.max_val_samples)
    return _Monitor(out_dir, writer, val_ds, val_range)


# ----------------------------------------------------------------------------------------------- steps


def _supervised_loss(
    state: _TrainState, x: torch.Tensor, y: torch.Tensor
) -> tuple[torch.Tensor, dict[str, float]]:
    """Reconstruction loss of the U-Net on one batch (no extra logs)."""
    with state.autocast():
        pred = state.nets.model(x)
    return state.criterion(pred, y), {}


def _gan_loss(
    state: _TrainState, x: torch.Tensor, y: torch.Tensor, g: torch.Generator
) -> tuple[torch.Tensor, dict[str, float]]:
    """Update the critic on this batch, then return the generator's GAN loss and the logs of both."""
    nets, gan = state.nets, state.cfg.gan
    with state.autocast():
        fake = nets.model(x)
    logs = train_critic(nets.critic, nets.opt_d, x, y, fake, gan, generator=g, world=state.world)
    loss, parts = generator_loss(nets.critic, x, y, fake, state.criterion, gan.l1_weight)
    return loss, {**logs, **parts}


def learning_rate(optim: OptimConfig, step: int, total_steps: int) -> float:
    """The generator's learning rate for step ``step`` (0-based) of a run of ``total_steps``: ``optim.lr``,
    or with ``lr_schedule: cosine`` the closed form of cosine annealing from ``lr`` to ``lr_min``, over the
    whole run or, with ``lr_decay_steps``, over its last that many steps (``lr`` before them). A function of
    the step alone, so a resumed run continues the same curve (``--max-steps`` sets its end)."""
    if optim.lr_schedule == "constant":
        return optim.lr
    decay = min(optim.lr_decay_steps or total_steps, total_steps)
    t = min(max(step - (total_steps - decay), 0) / max(decay, 1), 1.0)
    return optim.lr_min + 0.5 * (optim.lr - optim.lr_min) * (1.0 + math.cos(math.pi * t))


def _generator_update(state: _TrainState, loss: torch.Tensor) -> None:
    """One (grad-scaled, optionally clipped) optimiser step of the generator on ``loss``."""
    nets, clip = state.nets, state.cfg.optim.grad_clip
    nets.opt.zero_grad(set_to_none=True)
    nets.scaler.scale(loss).backward()
    if clip:
        nets.scaler.unscale_(nets.opt)
        torch.nn.utils.clip_grad_norm_(nets.model.parameters(), clip)
    nets.scaler.step(nets.opt)
    nets.scaler.update()
    if nets.average is not None:
        nets.average.update_parameters(nets.core)


def _train_step(
    state: _TrainState, batches: Iterator[Any], g: torch.Generator, total_steps: int
) -> tuple[float, dict[str, float]]:
    """One generator step on the next batch, at the learning rate of :func:`learning_rate`; advances
    ``state.step``. A SIGINT while it changes the networks is held back until it is done (``state.interrupts``).

    Returns
    -------
    loss, logs
        The generator loss and the extra scalars to log (GAN parts).

    Raises
    ------
    KeyboardInterrupt
        After the step, where a SIGINT came during it (:meth:`_Interrupts.stop_asked`).
    """
    cfg = state.cfg
    g.manual_seed(step_seed(cfg.seed, state.rank, state.step))
    x, y = make_training_batch(next(batches), cfg.data, state.norm, g, state.device)
    # from the first forward pass (batch-norm statistics) to the step count: all or nothing
    with state.interrupts.holding():
        loss, logs = _gan_loss(state, x, y, g) if state.nets.critic is not None else _supervised_loss(state, x, y)
        for group in state.nets.opt.param_groups:
            group["lr"] = learning_rate(cfg.optim, state.step, total_steps)
        _generator_update(state, loss)
        state.step += 1
        stop = state.interrupts.stop_asked(state.world, state.device)
    if stop:
        raise KeyboardInterrupt
    lv = float(loss.detach())
    if not math.isfinite(lv):
        raise RuntimeError(f"non-finite loss at step {state.step}")
    return lv, logs


# ------------------------------------------------------------------------------ validation / checkpoints


def _validate_and_keep_best(state: _TrainState, mon: _Monitor, result: TrainResult, total_steps: int) -> None:
    """Rank 0: validate, log metrics (and the image panel), write ``best.pt`` on a new best score."""
    cfg, step, writer = state.cfg, state.step, mon.writer
    state.refresh_average()
    metrics, first = validate(
        state.nets.generator, mon.val_ds, state.norm, state.device, mon.val_range, cfg.data.max_val_samples
    )
    result.val_history.append((step, metrics))
    warn_if_all_zero(result.val_history)
    for k, v in metrics.items():
        writer.add_scalar(f"val/{k}", v, step)
    if first is not None and _due(step, cfg.optim.image_every, total_steps):
        writer.add_image("val/input|prediction|target", _panel(*first)[None], step)
    s = _score(metrics, cfg.optim.best_metric)
    with state.interrupts.holding():  # the best score and best.pt together
        state.validation_pending = False
        if state.best_score is None or s > state.best_score:
            state.best_score = s
            state.save(mon.out_dir / "best.pt")
        state.validated_step = step


def _after_step(
    state: _TrainState, mon: _Monitor, result: TrainResult, total_steps: int, logs: dict[str, float]
) -> None:
    """Rank 0, after each step: log the loss, validate and write ``last.pt`` when due."""
    optim, step = state.cfg.optim, state.step
    if _due(step, optim.log_every, total_steps):
        mon.writer.add_scalar("train/loss", result.losses[-1][1], step)
        mon.writer.add_scalar("train/lr", state.nets.opt.param_groups[0]["lr"], step)
        for k, v in logs.items():
            mon.writer.add_scalar(f"train/{k}", v, step)
    if mon.val_range is not None and _due(step, optim.val_every, total_steps):
        _validate_and_keep_best(state, mon, result, total_steps)
    if _due(step, optim.ckpt_every, total_steps):
        state.save(mon.last_path)


def _save_interrupted(state: _TrainState, mon: _Monitor | None, start_step: int, total_steps: int) -> Path | None:
    """Rank 0, on a SIGINT: write ``last.pt`` of the last completed step, with a validation due at it and not done
    left to the resume; returns its path (None: no step completed since the start, or not rank 0)."""
    if mon is None or state.step == start_step:
        return None
    state.validation_pending = (mon.val_range is not None and state.validated_step != state.step
                                and _due(state.step, state.cfg.optim.val_every, total_steps))
    state.save(mon.last_path)
    return mon.last_path


def _remove_unstarted(out_dir: Path, created: bool) -> None:
    """Rank 0, where a run from scratch failed (or was interrupted) before its first step was done: remove what it
    wrote into ``out_dir`` (its folder too where it made it), which would only stand in the way of the corrected
    command (a run folder that holds files is refused without ``--resume``, which needs a ``last.pt``)."""
    for name in ("config.json", "normalization.json", "branch.json", "best.pt"):
        (out_dir / name).unlink(missing_ok=True)
    shutil.rmtree(out_dir / "tb", ignore_errors=True)
    if created and out_dir.is_dir() and not any(out_dir.iterdir()):
        out_dir.rmdir()


def _finish(state: _TrainState, mon: _Monitor) -> None:
    """Rank 0, at the end: make sure ``last.pt`` and ``best.pt`` exist."""
    if not mon.last_path.exists():  # nothing trained (already at max_steps)
        state.save(mon.last_path)
    if not (mon.out_dir / "best.pt").exists():  # no validation split: best = last
        shutil.copyfile(mon.last_path, mon.out_dir / "best.pt")


def _train_loop(
    state: _TrainState, loader: DataLoader, mon: _Monitor | None, total_steps: int, progress: bool
) -> TrainResult:
    """Step until ``total_steps``; ``mon`` is None on every rank but 0."""
    start_step = state.step
    result = TrainResult(
        step=start_step,
        start_step=start_step,
        best_score=state.best_score,
        rank=state.rank,
        world_size=state.world,
        precision=str(state.amp_dtype or torch.float32).removeprefix("torch."),
    )
    g = torch.Generator(device=state.device)
    state.nets.model.train()
    bar = tqdm(
        total=total_steps,
        initial=start_step,
        desc="train",
        disable=not (progress and mon is not None),
        dynamic_ncols=True,
    )
    batches = iter(loader)
    optim = state.cfg.optim
    every = (optim.val_every, optim.ckpt_every)
    if state.validate_start:
        if mon is not None and mon.val_range is not None:
            pending = state.validation_pending
            _validate_and_keep_best(state, mon, result, total_steps)
            if pending:  # last.pt left this validation to the resume: it is done now
                state.save(mon.last_path)
        if state.world > 1:
            dist.barrier()
    interrupts = state.interrupts
    try:
        # under DDP no rank may stop on its own (the others would wait in a collective): SIGINT held throughout
        with interrupts.installed(), interrupts.holding() if state.world > 1 else nullcontext():
            try:
                while state.step < total_steps:
                    lv, logs = _train_step(state, batches, g, total_steps)
                    result.losses.append((state.step, lv))
                    bar.update(1)
                    if mon is not None:
                        bar.set_postfix(loss=f"{lv:.4g}")
                        _after_step(state, mon, result, total_steps, logs)
                    if state.world == 1:
                        if interrupts.pending:  # came while best.pt was written
                            raise KeyboardInterrupt
                    elif any(_due(state.step, n, total_steps) for n in every) and \
                            interrupts.stop_asked(state.world, state.device):
                        # the other ranks have waited for rank 0's validation / checkpoint (a collective), and
                        # learn whether a SIGINT came meanwhile
                        raise KeyboardInterrupt
            except KeyboardInterrupt:
                interrupts.held = True  # no further SIGINT (torchrun passes one on) cuts the save short
                saved = _save_interrupted(state, mon, start_step, total_steps)
                if state.world > 1:
                    dist.barrier()  # every rank's TrainingInterrupted means last.pt is written
                raise TrainingInterrupted(state.step, saved) from None
    finally:
        bar.close()
        if mon is not None:
            mon.writer.flush()
            mon.writer.close()
    if mon is not None:
        _finish(state, mon)
    result.step = state.step
    result.best_score = state.best_score
    result.model = state.nets.generator
    return result


def run_training(
    cfg: TrainConfig,
    out_dir: str | Path,
    store: str | Path | None = None,
    max_steps: int | None = None,
    resume: bool = False,
    branch_from: str | Path | None = None,
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
    branch_from
        Start from another run's checkpoint (its ``last.pt``) under ``cfg``'s recipe: its weights, weight
        average, optimiser state and step, so that with the same ``seed`` and store the run sees the batches
        the source run would have seen next (branches of one run are paired). ``best.pt`` is the branch's
        own, its start validated first; ``out_dir/branch.json`` records the source. Not with ``resume``
        (an interrupted branch resumes from its own ``last.pt``).
    train_dataset, val_dataset
        Explicit datasets (e.g. :class:`~ddsa_sim.training.data.OnTheFlyDataset`).
    progress
        Show a tqdm bar on rank 0.

    Raises
    ------
    TrainingInterrupted
        A SIGINT (Ctrl-C) stopped the run after a completed step, whose ``last.pt`` rank 0 wrote. Should a run from
        scratch fail or be interrupted before its first step is done, rank 0 removes what it wrote into ``out_dir``.
    """
    out_dir = Path(out_dir)
    world, rank, local_rank = _dist_info()
    initialised_here = False
    if world > 1 and not dist.is_initialized():
        use_cuda = cfg.device != "cpu" and torch.cuda.is_available()
        dist.init_process_group("nccl" if use_cuda else "gloo")
        initialised_here = True
    try:
        device = _select_device(cfg, local_rank)
        if cfg.num_threads is not None:
            torch.set_num_threads(cfg.num_threads)
        total_steps = int(max_steps if max_steps is not None else cfg.optim.max_steps)
        if total_steps < 1:
            raise InputError(f"max_steps must be >= 1, got {total_steps}")
        if branch_from is not None:
            if resume:
                raise InputError("resume and branch_from: give one (continue this run, or start a branch of another)")
            branch_from = Path(branch_from)
            if not branch_from.is_file():
                raise InputError(f"branch_from: no checkpoint {branch_from}")
        train_ds, val_ds = _datasets(cfg, store, train_dataset, val_dataset)
        last_path = out_dir / "last.pt"
        resume_from = last_path if resume and last_path.exists() else None
        state = _setup_state(cfg, device, rank, world, train_ds, resume_from, branch_from, progress and rank == 0)
        created, start_step = not out_dir.exists(), state.step
        try:
            if world > 1:
                _check_same_start(state.step, last_path, device)
            loader = _make_loader(state, train_ds)
            mon = _open_monitor(state, out_dir, val_ds) if rank == 0 else None
            if mon is not None:
                state.bn_inputs = _bn_inputs(state, train_ds)
            if mon is not None and branch_from is not None:
                (out_dir / "branch.json").write_text(json.dumps({"checkpoint": str(branch_from), "step": state.step}))
            return _train_loop(state, loader, mon, total_steps, progress)
        except BaseException:
            if rank == 0 and resume_from is None and state.step == start_step and not last_path.exists():
                _remove_unstarted(out_dir, created)
            raise
        finally:
            state.nets.drop_ddp()
    finally:
        if initialised_here and dist.is_initialized():
            dist.destroy_process_group()
