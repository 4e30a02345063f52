"""Training loop of the vessel GANs (single process, or torchrun with one process per device).

WGAN-GP: per generator step ``n_critic`` critic steps on ``D(fake) - D(real) + lambda GP``, then the
generator on ``-D(G(z))``. StyleGAN: one critic step of the logistic loss with the R1 penalty every
``r1_every`` steps (lazy regularisation, weight ``gamma / 2 * r1_every``), then the non-saturating
generator loss. The critic sees ``2 p - 1`` (probabilities of the generator, labels of the data).
Mixed precision: float16 autocast with grad scalers on CUDA when ``amp`` is auto or on; bfloat16 autocast
with channels-last weights on the CPU with ``amp_cpu`` (no scaler: bfloat16 has float32's range; the
checkpoints keep float32 weights). With ``data.soft_sigma_vox``
or ``data.distance_clip_vox`` the real volumes are soft or distance targets
(:func:`vessel_models.gan.data.training_target`); with
``optim.ema_half_life`` an exponential moving average of the generator (:func:`update_ema`) is what is
sampled, evaluated and kept, its batch-norm statistics recomputed for its own weights before each
evaluation (:func:`recalibrate_batchnorm`).

Distributed: with ``WORLD_SIZE > 1`` (torchrun) every rank starts from rank 0's weights, draws its own
batches and averages gradients with all-reduce before each optimiser step, and floating buffers
(batch-norm statistics) after it (explicit averaging rather than DDP wrappers, because the penalties
differentiate the critic twice); rank 0 evaluates, logs and
writes checkpoints. Every ``eval_every`` steps, ``eval_samples`` generated volumes are compared with
held-out windows of the data, or of a separate held-out set (``val_volumes``)
(:func:`vessel_models.gan.quality.compare_sets`); the lowest ``w1_median``
is kept as ``best.pt``, the latest state as ``last.pt`` (``resume`` continues from it), and with
``keep_snapshots`` every evaluated network as ``snapshots/step_NNNNNN.pt``.

Interruptions: a first SIGINT (Ctrl-C) or SIGTERM lets the step in progress finish, then ``last.pt`` is saved
and :class:`TrainingInterrupted` raised; a second one inside the step stops at once and keeps the last checkpoint
written before. Every step seeds its own random draws from ``(seed, rank, step)`` (the batches, and torch's
latents, penalty mixes and noise), so a resumed run continues exactly as an uninterrupted one would.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from vessel_models.gan.checkpoint import build_networks, load_checkpoint, save_checkpoint
from vessel_models.gan.config import GanConfig
from vessel_models.gan.data import draw_batch, training_target
from vessel_models.gan.losses import (
    gradient_penalty,
    logistic_critic_loss,
    logistic_generator_loss,
    r1_penalty,
)
from vessel_models.gan.precision import cpu_autocast_dtype
from vessel_models.gan.quality import compare_sets, feature_matrix
from vessel_models.gan.sample import sample_labels
from vessel_models.io import atomic_output
from vessel_models.tree import VesselInputError

__all__ = ["TrainResult", "TrainingInterrupted", "ema_beta", "mip_panel", "recalibrate_batchnorm",
           "resume_checkpoint", "split_volumes", "train_gan", "update_ema"]


@dataclass
class TrainResult:
    """What a run did: steps done (total), wall time (s), best score, per-step losses and evaluations,
    the trained networks (this rank's copies; equal on every rank) and the autocast precision."""

    step: int
    wall_s: float
    best_score: float | None
    generator: nn.Module | None = None
    critic: nn.Module | None = None
    critic_losses: list[float] = field(default_factory=list)
    generator_losses: list[float] = field(default_factory=list)
    evaluations: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    precision: str = "float32"


class TrainingInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM stopped :func:`train_gan`: after ``step`` whole steps, with ``last.pt`` (``path``) holding
    step ``saved_step`` (``step`` itself, unless a second signal cut a step short; None: no checkpoint yet).

    A ``KeyboardInterrupt``, so that a caller who does not catch it stops as on Ctrl-C.
    """

    def __init__(self, signum: int, step: int, saved_step: int | None, path: Path) -> None:
        self.signum, self.step, self.saved_step, self.path = int(signum), int(step), saved_step, path
        super().__init__(f"{signal.Signals(self.signum).name} after step {step}; {path} holds step {saved_step}")


@contextmanager
def _signals_noted() -> Iterator[list[int]]:
    """While the block runs, the first SIGINT / SIGTERM is appended to the yielded list (the training loop stops
    at its next step boundary, where the state is consistent); a second raises ``KeyboardInterrupt`` at once.
    Only the main thread can handle signals: elsewhere nothing is caught. A signal ignored when the block starts
    (a background job's SIGINT, nohup) stays ignored."""
    noted: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield noted
        return

    def note(signum: int, _frame: object) -> None:
        noted.append(signum)
        if len(noted) > 1:
            raise KeyboardInterrupt

    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    old = {s: h for s, h in old.items() if h is not signal.SIG_IGN}
    for s in old:
        signal.signal(s, note)
    try:
        yield noted
    finally:
        for s, handler in old.items():
            signal.signal(s, signal.SIG_DFL if handler is None else handler)


def _agreed_signal(noted: list[int], run: "_Run") -> int:
    """The signal that stops the run before this step (0: none); under torchrun every rank stops at the same step
    (the largest signal number any rank noted)."""
    signum = noted[0] if noted else 0
    if run.world > 1:
        t = torch.tensor([signum], device=run.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        signum = int(t.item())
    return signum


def _step_seed(seed: int, rank: int, step: int) -> int:
    """torch's seed for one step of one rank: a resumed run draws what the uninterrupted run drew."""
    return int(np.random.SeedSequence([seed, rank, step, 1]).generate_state(1, dtype=np.uint64)[0] >> 1)


def resume_checkpoint(out_dir: str | os.PathLike, resume: bool) -> Path | None:
    """The checkpoint a run continues from: ``out_dir/last.pt`` with ``resume``, None without.

    Raises
    ------
    VesselInputError
        ``resume`` and no ``out_dir/last.pt`` (a mistyped run folder would otherwise start a fresh run).
    """
    last = Path(out_dir) / "last.pt"
    if not resume:
        return None
    if not last.is_file():
        raise VesselInputError(f"--resume: no {last} to continue from; run without --resume to start")
    return last


def split_volumes(volumes: list[np.ndarray], val_fraction: float, seed: int) -> tuple[list, list]:
    """(train, validation) volumes: a seeded ``val_fraction`` held out (when > 0, at least two --
    the quality measure compares distributions -- and at least one volume left to train on; with one
    volume both sets are that volume)."""
    order = np.random.default_rng(seed).permutation(len(volumes))
    n_val = int(round(val_fraction * len(volumes)))
    n_val = min(max(n_val, 2 if val_fraction > 0 else 0), len(volumes) - 1)
    if n_val == 0:
        return volumes, volumes
    return [volumes[i] for i in order[n_val:]], [volumes[i] for i in order[:n_val]]


def mip_panel(volumes: np.ndarray) -> np.ndarray:
    """``(D_or_H, ...)`` display panel: maximum intensity projections along the first axis, side by side."""
    return np.concatenate([np.asarray(v, dtype=np.float32).max(axis=0) for v in volumes], axis=1)


def _dist_info() -> tuple[int, int, int]:
    return (int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0")),
            int(os.environ.get("LOCAL_RANK", "0")))


def _device(cfg: GanConfig, local_rank: int) -> torch.device:
    if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise VesselInputError("device: 'cuda' requested but no CUDA GPU is available")
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def _amp_dtype(cfg: GanConfig, device: torch.device) -> torch.dtype | None:
    """Autocast dtype, or None when mixed precision is off: float16 on CUDA (``amp`` auto or on),
    bfloat16 on the CPU (``amp_cpu``)."""
    if device.type == "cpu":
        return cpu_autocast_dtype(cfg.amp_cpu, "amp_cpu")
    return torch.float16 if cfg.amp != "off" else None


def _average_gradients(module: nn.Module, world: int) -> None:
    if world > 1:
        for p in module.parameters():
            if p.grad is not None:
                dist.all_reduce(p.grad)
                p.grad /= world


def _average_buffers(module: nn.Module, world: int) -> None:
    """Average floating buffers (batch-norm running statistics) over ranks: each rank updated them
    from its own batches, and every rank must hold, and rank 0 must save, the statistics of all data."""
    if world > 1:
        for b in module.buffers():
            if b.is_floating_point():
                dist.all_reduce(b)
                b /= world


def _broadcast(module: nn.Module, world: int) -> None:
    if world > 1:
        for t in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(t.data, 0)


def ema_beta(half_life: float, step: int) -> float:
    """Decay of the generator EMA after generator step ``step`` (1-based): ``0.5 ** (1 / h)`` with the
    ramped half-life ``h = min(half_life, step / 10)``; 0 (a copy) while ``h <= 1`` or without EMA."""
    h = min(float(half_life), step / 10)
    return 0.5 ** (1 / h) if h > 1 else 0.0


@torch.no_grad()
def update_ema(ema: nn.Module, live: nn.Module, beta: float) -> None:
    """``ema <- beta ema + (1 - beta) live`` for the parameters; buffers (batch-norm statistics, the
    running ``w_avg``) copied from ``live``."""
    for e, p in zip(ema.parameters(), live.parameters()):
        e.lerp_(p.detach(), 1 - beta)
    for e, b in zip(ema.buffers(), live.buffers()):
        e.copy_(b)


@torch.no_grad()
def recalibrate_batchnorm(generator: nn.Module, n_batches: int, batch_size: int, seed: int) -> None:
    """Set every batch-norm layer's running statistics to the average over ``n_batches`` batches of
    ``batch_size`` seeded latents passed through ``generator`` itself; other layers stay in eval mode.

    An EMA generator's weights are an average, but the statistics :func:`update_ema` copies belong to
    the live weights: in eval mode the average then normalises with statistics of another network (at
    32^3 its samples had 2/3 of the live generator's vessel fraction). Without batch norm: nothing."""
    norms = [m for m in generator.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    was_training = generator.training
    generator.eval()
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches
        m.train()
    device = next(generator.parameters()).device
    gen = torch.Generator(device=device).manual_seed(int(seed))
    for _ in range(int(n_batches)):
        generator(torch.randn(batch_size, generator.latent_dim, generator=gen, device=device))
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    generator.train(was_training)


@dataclass
class _Run:
    cfg: GanConfig
    device: torch.device
    generator: nn.Module
    critic: nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    scalers: dict[str, Any]
    amp_dtype: torch.dtype | None
    world: int
    rank: int
    generator_ema: nn.Module | None = None

    @property
    def sampler(self) -> nn.Module:
        """The generator that samples, is evaluated and selected: the EMA when there is one."""
        return self.generator if self.generator_ema is None else self.generator_ema

    def autocast(self) -> torch.autocast:
        """The passes' autocast context (disabled in float32)."""
        return torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None)

    def fake(self, n: int) -> torch.Tensor:
        z = torch.randn(n, self.cfg.net.latent_dim, device=self.device)
        with self.autocast():
            return 2 * torch.sigmoid(self.generator(z)) - 1

    def step(self, loss: torch.Tensor, which: str) -> None:
        module, opt = (self.critic, self.opt_d) if which == "d" else (self.generator, self.opt_g)
        opt.zero_grad(set_to_none=True)
        scaler = self.scalers[which]
        scaler.scale(loss).backward()
        _average_gradients(module, self.world)
        scaler.step(opt)
        scaler.update()
        _average_buffers(self.generator, self.world)
        _average_buffers(self.critic, self.world)

    def critic_step(self, real: torch.Tensor, step: int, sub: int) -> float:
        cfg = self.cfg.optim
        fake = self.fake(real.shape[0]).detach()
        scale = self.scalers["d"].get_scale() if self.scalers["d"].is_enabled() else 1.0
        with self.autocast():
            d_real, d_fake = self.critic(real).float(), self.critic(fake).float()
            if self.cfg.net.kind == "wgan":
                loss = d_fake.mean() - d_real.mean()
                loss = loss + cfg.gp_lambda * gradient_penalty(self.critic, real, fake, scale=scale)
            else:
                loss = logistic_critic_loss(d_real, d_fake)
                if (step * cfg.n_critic + sub) % cfg.r1_every == 0:
                    loss = loss + 0.5 * cfg.r1_gamma * cfg.r1_every * r1_penalty(self.critic, real, scale=scale)
        self.step(loss, "d")
        return float(loss.detach())

    def generator_step(self, n: int) -> float:
        for p in self.critic.parameters():
            p.requires_grad_(False)
        with self.autocast():
            scores = self.critic(self.fake(n)).float()
            loss = -scores.mean() if self.cfg.net.kind == "wgan" else logistic_generator_loss(scores)
        self.step(loss, "g")
        for p in self.critic.parameters():
            p.requires_grad_(True)
        return float(loss.detach())


def _setup(cfg: GanConfig, device: torch.device, world: int, rank: int, resume_from: Path | None,
           ) -> tuple[_Run, int, float | None]:
    generator, critic = build_networks(cfg)
    generator, critic = generator.to(device), critic.to(device)
    amp_dtype = _amp_dtype(cfg, device)
    if device.type == "cpu" and amp_dtype is not None:
        # oneDNN's bfloat16 3D convolutions run fastest on channels-last weights (1.1-1.4x over NCDHW here)
        generator = generator.to(memory_format=torch.channels_last_3d)
        critic = critic.to(memory_format=torch.channels_last_3d)
    o = cfg.optim
    opt_g = torch.optim.Adam(generator.parameters(), lr=o.lr_g, betas=o.betas)
    opt_d = torch.optim.Adam(critic.parameters(), lr=o.lr_d, betas=o.betas)
    # float16 needs loss scaling against underflow, bfloat16 (float32's exponent) does not
    scalers = {k: torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16) for k in ("d", "g")}
    ema = copy.deepcopy(generator).eval().requires_grad_(False) if o.ema_half_life > 0 else None
    step, best = 0, None
    if resume_from is not None:
        ckpt = load_checkpoint(resume_from, device)
        if ckpt["config"]["net"] != cfg.to_dict()["net"] or ckpt["config"]["data"]["shape"] != list(cfg.data.shape):
            raise VesselInputError(f"{resume_from}: its network or data.shape differs from the config")
        generator.load_state_dict(ckpt["generator"])
        critic.load_state_dict(ckpt["critic"])
        if ema is not None:
            ema.load_state_dict(ckpt.get("generator_ema") or ckpt["generator"])
        opt_g.load_state_dict(ckpt["opt_g"])
        opt_d.load_state_dict(ckpt["opt_d"])
        for k, state in (ckpt["scalers"] or {}).items():
            scalers[k].load_state_dict(state)
        step, best = int(ckpt["step"]), ckpt["best_score"]
    _broadcast(generator, world)
    _broadcast(critic, world)
    if ema is not None:
        _broadcast(ema, world)
    return _Run(cfg, device, generator, critic, opt_g, opt_d, scalers, amp_dtype, world, rank, ema), step, best


def train_gan(cfg: GanConfig, volumes: list[np.ndarray], out_dir: str | os.PathLike, max_steps: int | None = None,
              resume: bool = False, progress: bool = True, val_volumes: list[np.ndarray] | None = None,
              ) -> TrainResult:
    """Train a vessel GAN on label volumes; writes ``last.pt``, ``best.pt`` and TensorBoard logs (``tb/``).

    Parameters
    ----------
    cfg : GanConfig
    volumes : list of numpy.ndarray
        Bool label volumes at ``cfg.data.spacing_mm`` (:func:`vessel_models.gan.data.load_label_folder`).
    out_dir : str or PathLike
        Run folder.
    max_steps : int, optional
        Total generator steps (counted across resumes); default ``cfg.optim.max_steps``.
    resume : bool
        Continue from ``out_dir/last.pt`` (refused when there is none).
    progress : bool
        tqdm bar on rank 0.
    val_volumes : list of numpy.ndarray, optional
        A separate held-out set that scores the evaluations (``best.pt``); then every one of ``volumes`` trains
        and ``data.val_fraction`` is not used (pass the same set again when resuming). In the CPU-small runs 128
        separate held-out volumes picked better checkpoints than the 32 a fraction of 0.2 holds out of 160
        (``docs/results.md``, "Which checkpoint to keep").
    """
    out = Path(out_dir)
    world, rank, local = _dist_info()
    initialised_here = world > 1 and not dist.is_initialized()
    if initialised_here:
        dist.init_process_group("nccl" if cfg.device != "cpu" and torch.cuda.is_available() else "gloo")
    try:
        return _train(cfg, volumes, val_volumes, out, max_steps, resume, progress, world, rank, local)
    finally:
        if initialised_here and dist.is_initialized():
            dist.destroy_process_group()


#: a run folder's note of where its best.pt is picked: the held-out volumes of --val-data, or a split of --data
HELD_OUT_RECORD = "held_out.json"


def _record_held_out(out: Path, source: str, step: int, best: float | None) -> None:
    """Write where the run's checkpoints are scored; a resumed run scored elsewhere is warned of (its best score
    and the new ones would not compare)."""
    record = out / HELD_OUT_RECORD
    if step and record.is_file():
        was = json.loads(record.read_text()).get("held_out")
        if was != source:
            warnings.warn(f"{out}: its best.pt (w1_median {best}) was picked on the held-out volumes of {was}, the "
                          f"resumed run scores on those of {source}: the scores do not compare (give the same "
                          "--val-data as before)", stacklevel=3)
    with atomic_output(record) as tmp:
        tmp.write_text(json.dumps({"held_out": source}))


def _train(cfg: GanConfig, volumes: list[np.ndarray], val_volumes: list[np.ndarray] | None, out: Path,
           max_steps: int | None, resume: bool, progress: bool, world: int, rank: int, local: int) -> TrainResult:
    from tqdm import tqdm

    if not volumes:
        raise VesselInputError("--data: no label volume to train on")
    if val_volumes is not None and len(val_volumes) < 2:  # the quality measure compares distributions
        raise VesselInputError(f"--val-data: {len(val_volumes)} held-out volume(s); at least 2 are needed")
    device = _device(cfg, local)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    total = int(max_steps if max_steps is not None else cfg.optim.max_steps)
    if total < 1:
        raise VesselInputError(f"max_steps must be >= 1, got {total}")
    last = out / "last.pt"
    resume_from = resume_checkpoint(out, resume)
    run, step, best = _setup(cfg, device, world, rank, resume_from)
    saved_step = step if resume_from is not None else None  # the step last.pt holds
    if val_volumes is None:
        train_vols, val_vols = split_volumes(volumes, cfg.data.val_fraction, cfg.seed)
    else:
        train_vols, val_vols = volumes, val_volumes
    d = cfg.data
    if d.mode == "crop" and len(val_vols) < 2:  # found at the first evaluation otherwise, after eval_every steps
        raise VesselInputError(f"--data: {len(volumes)} label volumes leave {len(val_vols)} held out; data.mode crop "
                               "scores on held-out volumes' crops and needs at least 2 (give 3 or more, or --val-data)")
    train_vols = [training_target(v, d.soft_sigma_vox, d.soft_margin, d.distance_clip_vox) for v in train_vols]
    ref_rng = np.random.default_rng([cfg.seed, 1])
    if d.mode == "crop":  # the centred crop of every held-out volume
        val_windows = np.concatenate([draw_batch([v], 1, d.shape, ref_rng, "crop", False) for v in val_vols])
    else:
        val_windows = draw_batch(val_vols, cfg.eval_samples, d.shape, ref_rng, "patch", False)
    val_windows = val_windows[:, 0] > 0.5
    ref_features = feature_matrix(val_windows, d.spacing_mm) if rank == 0 else None
    writer = None
    if rank == 0:
        from torch.utils.tensorboard import SummaryWriter

        out.mkdir(parents=True, exist_ok=True)
        _record_held_out(out, "--val-data" if val_volumes is not None else "data.val_fraction", step, best)
        writer = SummaryWriter(str(out / "tb"), purge_step=step + 1 if step else None)
        writer.add_image("real/mip", mip_panel(val_windows[:8])[None], step)
    result = TrainResult(step, 0.0, best, run.generator, run.critic,
                         precision=str(run.amp_dtype or torch.float32).removeprefix("torch."))
    start = time.monotonic()
    bar = tqdm(total=total, initial=step, disable=not progress or rank != 0,
               desc=f"{cfg.net.kind} training")

    def evaluate_and_save(final: bool) -> None:
        nonlocal best, saved_step
        if rank != 0:
            return
        if run.generator_ema is not None:
            recalibrate_batchnorm(run.generator_ema, 8, cfg.optim.batch_size, cfg.seed)
        scores = compare_sets(feature_matrix(sample_labels(run.sampler, cfg.eval_samples, cfg.seed),
                                             d.spacing_mm), ref_features)
        result.evaluations.append((step, scores))
        for k in ("w1_mean", "w1_median", "mmd2", "precision", "recall"):
            writer.add_scalar(f"quality/{k}", scores[k], step)
        probs = sample_labels(run.sampler, 8, cfg.seed + 1)
        writer.add_image("generated/mip", mip_panel(probs)[None], step)
        args = (cfg, run.generator, run.critic)
        if best is None or scores["w1_median"] < best:
            best = scores["w1_median"]
            save_checkpoint(out / "best.pt", *args, step, best, generator_ema=run.generator_ema)
        if cfg.keep_snapshots:
            save_checkpoint(out / "snapshots" / f"step_{step:06d}.pt", *args, step, best,
                            generator_ema=run.generator_ema)
        save_checkpoint(last, *args, step, best, run.opt_g, run.opt_d, run.scalers, run.generator_ema)
        saved_step = step
        bar.set_postfix(w1_median=f"{scores['w1_median']:.3f}", best=f"{best:.3f}", refresh=final)

    try:
        with _signals_noted() as noted:
            while step < total:
                if cfg.max_minutes is not None and time.monotonic() - start > 60 * cfg.max_minutes:
                    break
                signum = _agreed_signal(noted, run)
                if signum:  # between two steps: the weights, optimisers and counter agree
                    if rank == 0:
                        save_checkpoint(last, cfg, run.generator, run.critic, step, best, run.opt_g, run.opt_d,
                                        run.scalers, run.generator_ema)
                    raise TrainingInterrupted(signum, step, step, last)
                rng = np.random.default_rng([cfg.seed, rank, step])
                torch.manual_seed(_step_seed(cfg.seed, rank, step))
                losses = []
                for sub in range(cfg.optim.n_critic):
                    real = torch.from_numpy(draw_batch(train_vols, cfg.optim.batch_size, d.shape, rng, d.mode,
                                                       d.flips))
                    losses.append(run.critic_step(2 * real.to(device) - 1, step, sub))
                loss_g = run.generator_step(cfg.optim.batch_size)
                step += 1
                if run.generator_ema is not None:
                    update_ema(run.generator_ema, run.generator, ema_beta(cfg.optim.ema_half_life, step))
                bar.update(1)
                result.critic_losses.append(float(np.mean(losses)))
                result.generator_losses.append(loss_g)
                if writer is not None:
                    writer.add_scalar("loss/critic", result.critic_losses[-1], step)
                    writer.add_scalar("loss/generator", loss_g, step)
                if step % cfg.eval_every == 0:
                    evaluate_and_save(final=False)
            if not result.evaluations or result.evaluations[-1][0] != step:
                evaluate_and_save(final=True)
    except TrainingInterrupted:
        raise
    except KeyboardInterrupt:  # a second signal inside a step: that step is lost, last.pt is what it was
        raise TrainingInterrupted(noted[-1] if noted else signal.SIGINT, step, saved_step, last) from None
    finally:
        bar.close()
        if writer is not None:
            writer.close()
    result.step, result.wall_s, result.best_score = step, time.monotonic() - start, best
    return result
