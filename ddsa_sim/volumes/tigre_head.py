"""A second anatomy: the head phantom of TIGRE's demos, read from the ``pytigre`` source tarball at run time.

``pytigre-0.1.8.tar.gz`` (PyPI; licence BSD-3-Clause per its PKG-INFO, TIGRE toolbox, CERN / University
of Bath) holds ``tigre/demos/Test_data/MRheadbrain/head.mat``: ``img``, 256^3 float32 in 0..1, a
piecewise-constant toy with a skull: 0 air, 0.401 soft tissue (0.405-0.418 inside the skull: faint
brain structure), 0.48-0.94 bone (graded). It is
never copied into this repository: give the tarball's path as a CT source, or name it
``builtin:tigre-head`` with the tarball at ``$DDSA_SIM_PYTIGRE_TARBALL`` or in ``~/.cache/ddsa-sim/``.

World frame (LPS mm): 1 mm voxels (TIGRE's demo geometry: ``nVoxel = sVoxel = 256``), centred on the
origin; array axis 2 runs inferior -> superior (the neck is cut at index 0), axis 1 anterior ->
posterior (the face at low index), axis 0 is taken as right -> left (the phantom is symmetric enough
that its anatomy does not tell). Values -> HU by :data:`HU_NODES` (piecewise linear).
"""

from __future__ import annotations

import fnmatch
import io
import os
import tarfile
from pathlib import Path

import numpy as np

from ddsa_sim import InputError
from ddsa_sim.volumes.volume import Volume

__all__ = ["HU_NODES", "TIGRE_HEAD", "TIGRE_HEAD_MEMBER", "is_tarball", "read_tigre_head", "tigre_tarball"]

#: The builtin name of the phantom.
TIGRE_HEAD = "builtin:tigre-head"
#: Member of the pytigre source tarball holding the phantom.
TIGRE_HEAD_MEMBER = "*/tigre/demos/Test_data/MRheadbrain/head.mat"
#: (phantom value, HU) nodes of the piecewise-linear map: air -1000 HU; the soft-tissue band 0.40-0.42
#: (0.401 outside the skull, 0.405-0.418 faint brain structure) 20-60 HU (muscle, brain); the bone values
#: from 0.45 (250 HU, cancellous) to 0.95 (2000 HU, cortical).
HU_NODES: tuple[tuple[float, float], ...] = ((0.0, -1000.0), (0.40, 20.0), (0.42, 60.0), (0.45, 250.0),
                                             (0.95, 2000.0))

_HOW = ("download pytigre-0.1.8.tar.gz from https://pypi.org/project/pytigre/0.1.8/#files (its link on "
        "https://pypi.org/simple/pytigre/; pip download needs Cython and a CUDA toolkit to prepare its metadata) "
        "and set DDSA_SIM_PYTIGRE_TARBALL to it, or put it in ~/.cache/ddsa-sim/")


def is_tarball(path: Path) -> bool:
    """Whether ``path`` names a gzipped tarball (read as the pytigre phantom)."""
    return path.name.lower().endswith((".tar.gz", ".tgz"))


def tigre_tarball() -> Path:
    """The pytigre source tarball: ``$DDSA_SIM_PYTIGRE_TARBALL``, else the newest
    ``~/.cache/ddsa-sim/pytigre-*.tar.gz``.

    Raises
    ------
    InputError
        Neither exists (the message says how to get it).
    """
    env = os.environ.get("DDSA_SIM_PYTIGRE_TARBALL")
    if env:
        if not Path(env).is_file():
            raise InputError(f"{TIGRE_HEAD}: DDSA_SIM_PYTIGRE_TARBALL={env}: no such file; {_HOW}")
        return Path(env)
    found = sorted((Path.home() / ".cache" / "ddsa-sim").glob("pytigre-*.tar.gz"))
    if not found:
        raise InputError(f"{TIGRE_HEAD}: the pytigre source tarball is needed; {_HOW}")
    return found[-1]


def read_tigre_head(tarball: str | Path) -> Volume:
    """The head phantom of a pytigre source tarball as a CT (HU, float32; module docstring for the frame).

    Raises
    ------
    InputError
        Unreadable tarball, no phantom in it, or not a 3-D ``img``.
    """
    from scipy.io import loadmat

    tarball = Path(tarball)
    try:
        with tarfile.open(tarball, "r:gz") as tar:
            member = next((m for m in tar.getmembers() if fnmatch.fnmatch(m.name, TIGRE_HEAD_MEMBER)), None)
            if member is None:
                raise InputError(f"{tarball}: no {TIGRE_HEAD_MEMBER.lstrip('*/')} in it (not a pytigre source tarball)")
            raw = tar.extractfile(member).read()
    except (OSError, tarfile.TarError) as exc:
        raise InputError(f"{tarball}: cannot read the tarball ({exc.__class__.__name__}: {exc})") from None
    img = loadmat(io.BytesIO(raw)).get("img")
    if img is None or np.ndim(img) != 3:
        raise InputError(f"{tarball}: head.mat has no 3-D 'img' array")
    values, hu = zip(*HU_NODES)
    data = np.interp(np.asarray(img, dtype=np.float64), values, hu).astype(np.float32)
    affine = np.eye(4)
    affine[:3, 3] = -(np.array(data.shape) - 1) / 2.0
    return Volume(data, affine, name=str(tarball))
