"""The ``ddsa-sim`` command line (typer): the top of the house, imported by nothing in ddsa_sim.

One module per command group registers its commands on :data:`app` (``register(app)``); shared
option parsers live in :mod:`ddsa_sim.cli.options`. Command modules import only typer at module
level and the simulator inside the command bodies, so ``ddsa-sim --help`` costs a fraction of a
second. A group whose optional dependency is not installed is replaced by a stub naming it
(``scene: needs pyvista``); any other import error is a bug and surfaces.

Bad input ends with one ``error:`` line and exit code 2.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

import typer

from ddsa_sim import InputError

__all__ = ["COMMAND_MODULES", "app", "main"]

app = typer.Typer(help="ddsa-sim: physics-based X-ray / DSA simulation and DDSA training.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)

#: Command modules in ``--help`` order: (module, optional dependency or None, the commands it adds).
COMMAND_MODULES: tuple[tuple[str, str | None, tuple[str, ...]], ...] = (
    ("ddsa_sim.cli.project", None, ("project", "sweep")),
    ("ddsa_sim.cli.export", "zarr", ("export", "inspect")),
    ("ddsa_sim.cli.train", "torch", ("train", "evaluate", "infer")),
    ("ddsa_sim.cli.dsa", None, ("dsa",)),
    ("ddsa_sim.cli.scene3d", "pyvista", ("scene",)),
    ("ddsa_sim.cli.reader_study", None, ("reader-study",)),
)


def _missing(dependency: str | None) -> bool:
    """Whether an optional dependency is absent (looked up without importing it)."""
    return dependency is not None and importlib.util.find_spec(dependency) is None


def _stub(name: str, dependency: str):
    """A command standing in for one whose dependency is missing: ``--help`` names it, running it fails."""

    def unavailable() -> None:
        raise InputError(f"{name}: needs {dependency} (pip install {dependency})")

    unavailable.__doc__ = f"Unavailable: needs {dependency} (pip install {dependency})."
    return unavailable


def _mount(target: typer.Typer) -> None:
    """Register every command group on ``target``, stubs for those whose optional dependency is missing."""
    for module, dependency, commands in COMMAND_MODULES:
        if not _missing(dependency):
            try:
                mod = importlib.import_module(module)
            except ImportError as exc:
                if dependency is None or exc.name != dependency:
                    raise
            else:
                mod.register(target)
                continue
        for name in commands:
            target.command(name, context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
                           add_help_option=False)(_stub(name, dependency))
    from vessel_models.cli import app as vessels_app  # vessel_models knows nothing of ddsa_sim

    target.add_typer(vessels_app, name="vessels", help="Vessel trees: generate, voxelize, stats.")


_mount(app)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the app, turning bad input into one ``error:`` line (exit 2)."""
    from vessel_models import VesselInputError

    known: tuple[type[BaseException], ...] = (InputError, VesselInputError, FileNotFoundError, IsADirectoryError,
                                              PermissionError)
    try:
        app(args=argv, prog_name="ddsa-sim")
    except known as exc:
        msg = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        print(f"error: {msg}", file=sys.stderr)
        sys.exit(2)
