"""``ddsa-sim export`` and ``ddsa-sim inspect``: write and check a dataset store (registered by :func:`register`)."""

from __future__ import annotations

import re
from pathlib import Path

import typer

from ddsa_sim import InputError

__all__ = ["export", "inspect", "register"]


def _fail(exc: InputError) -> None:
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(2)


def export(
    config: Path | None = typer.Argument(None, help="Dataset config (YAML)."),
    out: Path | None = typer.Option(None, "-o", "--out", help="Output Zarr store (a directory)."),
    count: int | None = typer.Option(None, "--count", help="Number of samples (overrides the config)."),
    seed: int | None = typer.Option(None, "--seed", help="Dataset seed (overrides the config)."),
    workers: int = typer.Option(1, "--workers", help="Local worker processes."),
    scheduler: str | None = typer.Option(None, "--scheduler",
                                            help="Dask scheduler address, or local:N for a LocalCluster."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted export into the same store."),
    preview: bool = typer.Option(True, "--preview/--no-preview", help="Write STORE/preview.png."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    example_config: bool = typer.Option(False, "--example-config", help="Print a documented example config."),
) -> None:
    """Export a synthetic DSA dataset into a Zarr store."""
    from ddsa_sim.export.config import example_config_yaml, load_config
    from ddsa_sim.export.runner import ExportInterrupted, run_export

    if example_config:
        typer.echo(example_config_yaml(), nl=False)
        return
    try:
        if config is None:
            raise InputError("CONFIG: missing (or use --example-config)")
        if out is None:
            raise InputError("-o/--out: missing output store path")
        if count is not None and count < 1:
            raise InputError(f"--count: must be >= 1, got {count}")
        if seed is not None and seed < 0:
            raise InputError(f"--seed: must be >= 0, got {seed}")
        cfg = load_config(config, count=count, seed=seed)
        try:
            result = run_export(cfg, out, workers=workers, scheduler=scheduler, resume=resume, progress=progress,
                                preview=preview)
        except InputError as exc:  # one that names a field of the config (the run's checks) names its file too
            field = re.split(r"[.\[:]", str(exc), maxsplit=1)[0]
            raise InputError(f"{config}: {exc}" if field in type(cfg).model_fields else str(exc)) from None
    except InputError as exc:
        _fail(exc)
        return
    except ExportInterrupted as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(128 + exc.signum) from None
    typer.echo(f"{result.store}: {result.n_samples} samples ({result.written} written, {result.skipped} already "
               f"complete)" + (f"; preview {result.preview}" if result.preview else ""))


def inspect(
    store: Path = typer.Argument(..., help="Dataset store written by `ddsa-sim export`."),
    verify: bool = typer.Option(True, "--verify/--no-verify", help="Verify every sample's checksum."),
    png: int | None = typer.Option(None, "--png", help="Only write sample INDEX as a picture (mask | contrast | "
                                   "contrast - mask | target) and its contrast frame as a float TIFF (-ln, the "
                                   "input of `ddsa-sim infer`), after checking its checksum."),
    png_out: Path | None = typer.Option(None, "--png-out", help="Picture path for --png (default sample_INDEX.png; "
                                  ".png, .jpg, .jpeg, .pdf or .svg)."),
) -> None:
    """Counts per split, summary statistics and checksum verification of a store (exit 1 if corrupted)."""
    from ddsa_sim.export.inspect import inspect_store, sample_png

    try:
        if png_out is not None and png is None:
            raise InputError("--png-out: names the picture of --png INDEX; give --png too")
        if png is not None:
            for written in sample_png(store, png, png_out or Path(f"sample_{png}.png")):
                typer.echo(str(written))
            return
        report = inspect_store(store, verify=verify)
    except InputError as exc:
        _fail(exc)
        return
    typer.echo(report.format())
    if not report.ok:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add the ``export`` and ``inspect`` commands to the main ``ddsa-sim`` app."""
    app.command("export")(export)
    app.command("inspect")(inspect)

