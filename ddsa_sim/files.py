"""File helpers shared by every part of ddsa_sim: atomic writes and the on-disk cache folder.

``atomic_output`` is ``vessel_models``' atomic writer (vessel_models cannot import ddsa_sim) with
:class:`ddsa_sim.InputError`, the project's one-line user error.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path

from ddsa_sim import InputError
from vessel_models.io import atomic_output as vessel_atomic_output

__all__ = ["atomic_output", "cache_dir", "claim_output", "clear_output", "make_folder"]


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
    path = Path(path)
    _refuse_file_in_the_way(path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _refuse_file_in_the_way(path: Path) -> None:
    """InputError when ``path`` or its nearest existing parent is a file, not a folder."""
    for folder in (path, *path.parents):
        if folder.exists():
            if not folder.is_dir():
                raise InputError(f"{folder}: is a file, not a folder; choose another output")
            return


def claim_output(path: str | os.PathLike, overwrite: bool = False, keep: bool = False,
                 inputs: Sequence[str | os.PathLike | None] = ()) -> Path:
    """Make sure a command may write into the folder ``path``; returns it (it may not exist yet). Deletes nothing:
    a command given ``overwrite`` calls :func:`clear_output` once its inputs are checked, before it writes.

    A missing or empty folder is fine. A folder holding files is refused, unless ``keep`` (the
    command continues what is there, e.g. ``--resume``) or ``overwrite`` (its contents will be deleted,
    so no stale file of an older run survives); ``overwrite`` is refused where the folder holds one of the
    command's ``inputs`` (paths; None and names that are not files, e.g. ``builtin:chest-ct``, are skipped).

    Raises
    ------
    InputError
        ``path`` is a file, holds files (without ``overwrite`` / ``keep``), holds an input (with
        ``overwrite``), or would delete the working directory.
    """
    path = Path(path)
    _refuse_file_in_the_way(path)
    if keep or not path.is_dir() or not any(path.iterdir()):
        return path
    if not overwrite:
        raise InputError(f"{path}: output folder exists and is not empty; choose another, or --overwrite to "
                         "delete its contents first")
    folder = path.resolve()
    if Path.cwd().resolve().is_relative_to(folder):
        raise InputError(f"{path}: --overwrite would delete the working directory; choose another output")
    for given in inputs:
        if given is not None and Path(given).exists() and Path(given).resolve().is_relative_to(folder):
            raise InputError(f"{path}: --overwrite would delete the input {given}, which lies in it; move it or "
                             "choose another output")
    return path


def clear_output(path: str | os.PathLike) -> None:
    """Delete what the folder ``path`` holds (nothing if it does not exist): the ``--overwrite`` of a folder
    :func:`claim_output` accepted, called once the command's inputs are checked."""
    path = Path(path)
    if not path.is_dir():
        return
    for child in path.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
