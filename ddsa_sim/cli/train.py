"""``ddsa-sim train | evaluate | infer``: the DDSA networks (plain typer functions; see :func:`register`).

Bad input prints one line ``error: ...`` on stderr and exits with status 2 (no traceback).
"""

# no ``from __future__ import annotations``: typer reads the real annotation objects.
import functools
import json
import signal
import sys
import typing
from collections.abc import Callable
from pathlib import Path

import typer

from ddsa_sim import InputError
from ddsa_sim.cli.options import OVERWRITE, json_line

__all__ = ["evaluate", "infer", "register", "train"]


VERIFY = typer.Option(None, "--verify", help="sample checksums on read: refuse (stop at a corrupted sample), "
                     "skip (leave corrupted samples out, counted in a warning) or off (default: data.verify, refuse)")


def _guard(fn: Callable) -> Callable:
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except InputError as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise typer.Exit(2) from None

    return wrapper


def _note_changed_config(path: Path, new: dict) -> None:
    """Say on stderr which values of a resumed run's config (``path``, its ``config.json``) the new one changes: the
    run continues under the new values, as a change of recipe mid-run should be, but not unnoticed."""
    if not path.is_file():
        return

    def flat(d: dict, prefix: str = "") -> dict:
        items: dict = {}
        for key, value in d.items():
            items.update(flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
        return items

    try:
        old = flat(json.loads(path.read_text()))
    except (OSError, ValueError):  # a run folder's config.json cut short: nothing to compare with
        return
    now = flat(new)
    changed = [f"{k} {old.get(k)!r} -> {now.get(k)!r}" for k in sorted(old.keys() | now.keys()) if old.get(k) != now.get(k)]
    if changed:
        print(f"note: --resume under a config that differs from the run's ({path}) in {'; '.join(changed)}: the run "
              "continues under the new values", file=sys.stderr)


def _check_config_path(config: Path, field: str, value: str | None, what: str) -> None:
    """Refuse a path of the training config ``config`` (``field``: ``data.store``, ``init_from``) that does not exist,
    naming both. Such paths are read from the current folder (unlike ``base:``, read from the config's folder)."""
    if value is None or Path(value).exists():
        return
    where = ""
    if not Path(value).is_absolute():
        where = f" (a relative path in a training config is read from the current folder, {Path.cwd()}"
        beside = config.parent / value
        where += f"; {beside} exists: give that path)" if beside.exists() else ")"
    raise InputError(f"{config}: {field}: {value}: {what} not found{where}")


def _interrupted_line(out: Path, exc: KeyboardInterrupt) -> str:
    """What a Ctrl-C of ``train -o out`` left (:class:`~ddsa_sim.training.loop.TrainingInterrupted`: the step
    it stopped after; a plain ``KeyboardInterrupt``: it came before the first step) and how to continue."""
    last = out / "last.pt"
    if getattr(exc, "saved", None) is not None:
        kept = f"after step {exc.step} (saved in {last})"
    elif last.is_file():
        step = getattr(exc, "step", None)
        kept = f"before it completed a step ({last} holds {'its last' if step is None else f'step {step}'})"
    else:
        return f"{out}: training interrupted by SIGINT before its first step was done; nothing was kept"
    return f"{out}: training interrupted by SIGINT {kept}; run the same command with --resume to continue it"


@_guard
def train(
    config: Path = typer.Argument(..., help="training config YAML (see experiments/)"),
    data: Path | None = typer.Option(None, "--data", help="exported Zarr store (overrides data.store)"),
    max_steps: int | None = typer.Option(None, "--max-steps", help="override optim.max_steps"),
    device: str | None = typer.Option(None, "--device", help="auto, cpu or cuda (overrides device)"),
    out: Path = typer.Option(..., "-o", "--out", help="run directory (best.pt, last.pt, tb/)"),
    resume: bool = typer.Option(False, "--resume", help="continue from RUNDIR/last.pt"),
    branch_from: Path | None = typer.Option(
        None, "--branch-from", help="start from another run's checkpoint (weights, optimiser, step, data position) "
        "under this config's recipe"),
    overwrite: bool = OVERWRITE,
    verify: str | None = VERIFY,
) -> None:
    """Train a DDSA U-Net / U-Net-GAN (use torchrun --nproc_per_node N for DDP)."""
    import os

    from ddsa_sim.files import claim_output, clear_output
    from ddsa_sim.training.checkpoint import load_checkpoint
    from ddsa_sim.training.config import TrainConfig, load_config
    from ddsa_sim.training.data import VERIFY_MODES
    from ddsa_sim.training.loop import run_training

    if max_steps is not None and max_steps < 1:
        raise InputError(f"--max-steps: must be >= 1, got {max_steps}")
    if resume and overwrite:
        raise InputError("--resume and --overwrite: give one (continue the run, or start it again)")
    if resume and branch_from is not None:
        raise InputError("--resume and --branch-from: give one (continue this run, or start a branch of another)")
    if branch_from is not None and not branch_from.is_file():
        raise InputError(f"--branch-from: no checkpoint {branch_from}")
    if branch_from is not None and out.resolve() in branch_from.resolve().parents:
        raise InputError(f"--branch-from: {branch_from} lies in the run folder {out}; a branch needs a folder of "
                         "its own (continue a run in its folder with --resume)")
    if resume and not (out / "last.pt").is_file():
        raise InputError(f"--resume: no {out / 'last.pt'} to continue from; run without --resume to start")
    if verify is not None and verify not in VERIFY_MODES:
        raise InputError(f"--verify: must be one of {', '.join(VERIFY_MODES)}, not {verify!r}")
    devices = typing.get_args(TrainConfig.model_fields["device"].annotation)
    if device is not None and device not in devices:
        raise InputError(f"--device: must be one of {', '.join(devices)}, not {device!r}")
    cfg = load_config(config)
    if data is None:
        _check_config_path(config, "data.store", cfg.data.store, "dataset store")
    _check_config_path(config, "init_from", cfg.init_from, "checkpoint")
    if verify is not None:
        cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"verify": verify})})
    if device is not None:
        cfg = cfg.model_copy(update={"device": device})
    if os.environ.get("RANK", "0") == "0":  # DDP: rank 0 alone writes (and clears) the run folder
        claim_output(out, overwrite, keep=resume,
                     inputs=[config, data if data is not None else cfg.data.store, cfg.init_from])
        if overwrite:
            clear_output(out)
        if resume:
            _note_changed_config(out / "config.json", json.loads(cfg.to_json()))
            before = load_checkpoint(out / "last.pt").get("world_size")
            now = int(os.environ.get("WORLD_SIZE", "1"))
            if before is not None and before != now:
                print(f"note: --resume with {now} training process{'es' if now != 1 else ''}; the run was trained with "
                      f"{before}: each process draws its own batches of data.batch_size, so the run goes on with "
                      f"{now}/{before} of its batch and other data than an uninterrupted run", file=sys.stderr)
    try:
        res = run_training(cfg, out, store=data, max_steps=max_steps, resume=resume, branch_from=branch_from)
    except KeyboardInterrupt as exc:  # the loop's TrainingInterrupted, or one while the run was set up
        if os.environ.get("RANK", "0") == "0":
            print(f"error: {_interrupted_line(out, exc)}", file=sys.stderr)
        raise typer.Exit(128 + signal.SIGINT) from None
    if res.rank == 0:
        last = res.losses[-1][1] if res.losses else float("nan")
        best_step = int(load_checkpoint(Path(out) / "best.pt")["step"])
        start = branch_from if branch_from is not None else cfg.init_from if res.start_step == 0 else None
        if resume and res.step == res.start_step:
            print(f"note: the run is at step {res.step}, at or past its max_steps: nothing was trained (raise "
                  "--max-steps to continue it)", file=sys.stderr)
        if start is not None and best_step == res.start_step < res.step:
            # a fine-tuning (e.g. a U-Net-GAN) whose validation never beat its start: say where its own network is
            print(f"note: no validation check beat the network it started from ({start}), so best.pt is "
                  f"that network; the fine-tuned one is {Path(out) / 'last.pt'}", file=sys.stderr)
        print(
            json_line(
                {
                    "step": res.step,
                    "start_step": res.start_step,
                    "last_loss": last,
                    "best_score": res.best_score,
                    "best_step": best_step,
                    "precision": res.precision,
                    "best": str(Path(out) / "best.pt"),
                    "last": str(Path(out) / "last.pt"),
                }
            )
        )


@_guard
def evaluate(
    checkpoint: Path = typer.Argument(..., help="checkpoint (.pt)"),
    data: Path = typer.Option(..., "--data", help="exported Zarr store"),
    split: str = typer.Option("test", "--split"),
    out_png: Path | None = typer.Option(
        None, "--out-png", help="comparison grid picture, .png / .jpg / .tif / .pdf (default: next to the checkpoint, "
        "eval_<split>.png); checked before the evaluation"
    ),
    max_samples: int | None = typer.Option(
        None, "--max-samples", help="evaluate this many samples, evenly spaced over the split"
    ),
    verify: str = typer.Option("refuse", "--verify", help="sample checksums on read: refuse | skip | off"),
    tta: bool = typer.Option(False, "--tta", help="average the network over the image's flips and quarter turns"),
    native_grid: bool = typer.Option(
        False, "--native-grid", help="run the network on the store's pixel grid, not resampled to its training scale"
    ),
    stepped: bool = typer.Option(
        False, "--stepped", help="score the optimiser's weights of a run with a weight average, not the average"
    ),
) -> None:
    """Score the network against conventional DSA (contrast - mask), known-anatomy subtraction (the contrast frame's
    own noise alone) and the all-zero image: one JSON object with a metric block for each, the network's per-sample
    wins against each reference and the scores per source CT and dose (a table on stderr), and a comparison grid."""
    from ddsa_sim.training.evaluate import evaluate_checkpoint, format_table

    if max_samples is not None and max_samples < 1:
        raise InputError(f"--max-samples: must be >= 1, got {max_samples}")
    png = out_png if out_png is not None else Path(checkpoint).parent / f"eval_{split}.png"
    res = evaluate_checkpoint(checkpoint, data, split, png, max_samples=max_samples, verify=verify, tta=tta,
                              native_grid=native_grid, stepped=stepped)
    print(format_table(res), file=sys.stderr)
    print(json_line(res))


@_guard
def infer(
    checkpoint: Path = typer.Argument(..., help="checkpoint (.pt)"),
    input: Path = typer.Argument(
        ..., help="XA run (multi-frame DICOM, or a folder of one series' frames), PNG / TIFF file or folder"
    ),
    out: Path = typer.Option(
        ..., "-o", "--out", help="output folder (XA run), file (.png: 16-bit, one frame; .tif / .tiff: float32) or folder"
    ),
    input_domain: str = typer.Option("auto", "--input-domain", help="auto | log | intensity"),
    i0: float | None = typer.Option(None, "--i0", help="unattenuated intensity for -ln(I/I0)"),
    mask_frame: int = typer.Option(0, "--mask-frame", help="XA run: mask frame of the conventional DSA"),
    pixel_shift: bool = typer.Option(
        False, "--pixel-shift", help="XA run: motion-correct the conventional DSA by shifting the mask"
    ),
    frame_time_ms: float | None = typer.Option(
        None, "--frame-time-ms", help="XA run: frame interval in ms (replaces the run's frame times)"
    ),
    tta: bool = typer.Option(False, "--tta", help="average the network over the image's flips and quarter turns"),
    pixel_mm: float | None = typer.Option(
        None, "--pixel-mm", help="the input's pixel spacing at the isocenter, mm (an XA run's files give it)"
    ),
    native_grid: bool = typer.Option(
        False, "--native-grid", help="run the network on the input's pixel grid, not resampled to its training scale"
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs (an XA run's folder: delete "
                                   "what it holds first)."),
) -> None:
    """Extract DSA from contrast frames (docs/inference.md).

    An XA run gives a folder with the network's DSA and the conventional DSA, each as derived DICOM,
    PNG frames, GIF and MP4; a PNG / TIFF input gives a file in the format of the output's extension plus preview
    PNGs (replaced, like the output, only with --overwrite). The frames are resampled to the pixel spacing of the
    network's training images and its DSA back ("Pixel scale").
    """
    from ddsa_sim.training.infer import infer_path

    if input_domain not in ("auto", "log", "intensity"):
        raise InputError(f"--input-domain must be auto, log or intensity, not {input_domain!r}")
    for p in infer_path(checkpoint, input, out, input_domain, i0,  # type: ignore[arg-type]
                        mask_frame=mask_frame, pixel_shift=pixel_shift, frame_time_ms=frame_time_ms, tta=tta,
                        pixel_mm=pixel_mm, native_grid=native_grid, overwrite=overwrite):
        print(p)


def register(app: typer.Typer) -> None:
    """Add ``train``, ``evaluate`` and ``infer`` to the main ``ddsa-sim`` app."""
    app.command("train")(train)
    app.command("evaluate")(evaluate)
    app.command("infer")(infer)

