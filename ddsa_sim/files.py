"""File helpers shared by every part of ddsa_sim: atomic writes and the on-disk cache folder.

``atomic_output`` is ``vessel_models``' atomic writer (vessel_models cannot import ddsa_sim) with
:class:`ddsa_sim.InputError`, the project's one-line user error.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager
from pathlib import Path

from ddsa_sim import InputError
from vessel_models.io import atomic_output as vessel_atomic_output

__all__ = ["atomic_output", "cache_dir"]


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
