"""The ``ddsa-sim`` command line (typer): the top of the house, imported by nothing in ddsa_sim.

One module per command group registers its commands on :data:`app` (``register(app)``); shared
option parsers live in :mod:`ddsa_sim.cli.options`. Command modules import only typer at module
level and the simulator inside the command bodies, so ``ddsa-sim --help`` costs a fraction of a
second. A group whose optional dependency is not installed is replaced by a stub naming it
(``scene: needs pyvista``); any other import error is a bug and surfaces.

Bad input ends with one ``error:`` line and exit code 2; an operating-system error (disk full,
read-only filesystem, a path under a file...) or running out of memory with one ``error:`` line naming
the path and the remedy, and exit code 1.
"""

from __future__ import annotations

import errno
import importlib
import importlib.util
import sys

import typer

from ddsa_sim import InputError

__all__ = ["COMMAND_MODULES", "app", "main", "os_error_line"]

app = typer.Typer(help="ddsa-sim: physics-based X-ray / DSA simulation and DDSA training.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False,
                  rich_markup_mode=None)  # plain help: typer's rich panels show flags as "<bool>" options

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


#: errno -> what the user can do about it
_REMEDIES = {
    errno.ENOSPC: "free disk space or choose another output, then run again (an export: with --resume)",
    errno.EDQUOT: "disk quota exceeded: free space or choose another output, then run again",
    errno.EROFS: "the filesystem is read-only: choose another output",
    errno.EACCES: "no permission: choose another output or fix the permissions",
    errno.EPERM: "not permitted: choose another output or fix the permissions",
    errno.ENOTDIR: "a part of the path is a file, not a folder: choose another output",
    errno.EISDIR: "it is a folder: give a file",
    errno.ENOENT: "check the path (a folder on it is missing or cannot be made)",
    errno.EEXIST: "it exists already: choose another output",
}


def os_error_line(exc: OSError) -> str:
    """One line for an operating-system error: the path, what happened and what to do."""
    where = f"{exc.filename}: " if exc.filename else ""
    what = exc.strerror or str(exc) or exc.__class__.__name__
    remedy = _REMEDIES.get(exc.errno) if exc.errno is not None else None
    return f"{where}{what}" + (f"; {remedy}" if remedy and remedy != what.lower() else "")


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the app, turning bad input into one ``error:`` line (exit 2) and
    operating-system errors or out-of-memory into one ``error:`` line (exit 1)."""
    import logging
    import warnings

    from vessel_models import VesselInputError

    formatwarning = warnings.formatwarning
    warnings.formatwarning = lambda message, *_args, **_kw: f"warning: {message}\n"  # one line, no source
    try:
        app(args=argv, prog_name="ddsa-sim")
    except (InputError, VesselInputError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        print(f"error: {msg}", file=sys.stderr)
        sys.exit(2)
    except OSError as exc:
        print(f"error: {os_error_line(exc)}", file=sys.stderr)
        # zarr writes chunks from asyncio tasks: on a full disk the siblings of the failed write are
        # still pending when the process ends, and asyncio would log each at exit after our one line
        logging.getLogger("asyncio").disabled = True
        sys.exit(1)
    except MemoryError as exc:
        print(f"error: out of memory ({str(exc).splitlines()[0] if str(exc) else 'MemoryError'}); "
              "use a smaller CT, detector or batch", file=sys.stderr)
        sys.exit(1)
    finally:
        warnings.formatwarning = formatwarning
