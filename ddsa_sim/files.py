"""File helpers shared by every part of ddsa_sim: atomic writes and the on-disk cache folder.

``atomic_output`` and ``claim_output`` are ``vessel_models``' atomic writer and output-folder check
(vessel_models cannot import ddsa_sim) with :class:`ddsa_sim.InputError`, the project's one-line user
error; ``clear_output`` is its :func:`vessel_models.io.clear_folder`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from ddsa_sim import InputError
from vessel_models.io import atomic_output as vessel_atomic_output
from vessel_models.io import claim_folder
from vessel_models.io import clear_folder as clear_output  # deletes no input: claim_output checked them
from vessel_models.tree import VesselInputError

__all__ = ["all_or_nothing", "atomic_output", "cache_dir", "claim_output", "clear_output", "make_folder",
           "save_figure"]


def atomic_output(path: str | os.PathLike) -> AbstractContextManager[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, else it is removed.

    The writer of :func:`vessel_models.io.atomic_output` (readers never see a half-written file, an
    interrupted write leaves any older ``path`` intact, the temporary path keeps the full suffix),
    with the project's one-line error.

    Raises
    ------
    InputError
        The folder of ``path`` does not exist.
    """
    folder = Path(path).parent if str(Path(path).parent) else Path(".")
    if not folder.is_dir():
        raise InputError(f"output folder does not exist: {folder}")
    return vessel_atomic_output(path)


@contextmanager
def all_or_nothing(folder: str | os.PathLike) -> Iterator[list[Path]]:
    """Create ``folder`` (if missing) and yield a list for the paths a run writes into it; should the run fail or
    be interrupted, those paths are removed, and the folder too if this run created it and it is left empty.

    A command whose outputs belong together (the views of one sweep) leaves all of them or none of its own: a
    half set looks finished to a reader and blocks the rerun. Append each path before writing it.
    """
    folder = Path(folder)
    created = not folder.exists()
    make_folder(folder)
    written: list[Path] = []
    try:
        yield written
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        if created and not any(folder.iterdir()):
            folder.rmdir()
        raise


def save_figure(fig, path: str | os.PathLike, dpi: int = 100) -> Path:
    """Write a matplotlib figure at ``dpi`` in the format of ``path``'s suffix (PNG without one), atomically: a reader
    never sees half a picture (the temporary name keeps the suffix)."""
    path = Path(path)
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=dpi)
    return path


def cache_dir(kind: str) -> Path | None:
    """Folder of one kind of on-disk cache (``"spectra"``, ``"attenuation"``), or None when disabled.

    ``$DDSA_SIM_CACHE_DIR/<kind>`` when the variable is set (``""``, ``off``, ``none`` or ``0``
    disable the cache), else ``~/.cache/ddsa-sim/<kind>``. The folder may not exist yet.
    """
    env = os.environ.get("DDSA_SIM_CACHE_DIR")
    if env is not None:
        if env.strip().lower() in ("", "off", "none", "0"):
            return None
        return Path(env) / kind
    return Path.home() / ".cache" / "ddsa-sim" / kind


def make_folder(path: str | os.PathLike) -> Path:
    """Create the folder ``path`` and its parents (if missing) for an output; returns it.

    Raises
    ------
    InputError
        ``path`` or one of its parents is a file.
    OSError
        The folder cannot be created (read-only filesystem, no permission).
    """
    path = claim_output(path, keep=True)  # a file in the way is refused; what the folder holds is kept
    path.mkdir(parents=True, exist_ok=True)
    return path


def claim_output(path: str | os.PathLike, overwrite: bool = False, keep: bool = False,
                 inputs: Sequence[str | os.PathLike | None] = ()) -> Path:
    """Make sure a command may write into the folder ``path``; returns it (it may not exist yet). Deletes nothing:
    a command given ``overwrite`` calls :func:`clear_output` once its inputs are checked, before it writes.

    :func:`vessel_models.io.claim_folder` (a missing or empty folder is fine; one holding files only with
    ``keep``, e.g. ``--resume``, or ``overwrite``, which is refused where the folder holds the working directory or
    one of the command's ``inputs``) with the project's one-line error.

    Raises
    ------
    InputError
        ``path`` is a file, holds files (without ``overwrite`` / ``keep``), holds an input (with
        ``overwrite``), or would delete the working directory.
    """
    try:
        return claim_folder(path, overwrite, keep, inputs)
    except VesselInputError as exc:
        raise InputError(str(exc)) from None
