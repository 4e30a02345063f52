"""Vessel sources from names and files, used by the scene builder (:mod:`ddsa_sim.scene.builder`).

* label maps: structure name tables, names -> label ids;
* the CT's own labelled vessels: virtual non-contrast CT (materials refined by the label map) plus the
  lumen as a fraction volume (docs/dsa.md §2);
* NIfTI vessel masks / fraction volumes;
* seeded procedural trees (``vessel_models.generators``), with parameter values coerced to the
  generator's field types.

Bad input raises :class:`ddsa_sim.InputError` with one line naming ``field`` (a CLI option such as
``--vessels`` or a config field such as ``vessels.sources[0].params``).
"""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from ddsa_sim import InputError
from ddsa_sim.scene.vessels import FractionVessels, crop_to_foreground
from ddsa_sim.volumes import Volume
from ddsa_sim.volumes.materials import labels_in, segment_with_labels

BUILTIN_CHEST_LABELS = "builtin:chest-ct-labels"


def structure_table(labels_source: str | None, csv_path: str | None = None,
                    field: str = "--structures") -> dict[str, int]:
    """Structure name -> label id: the builtin chest CT table, or a CSV with columns ``structure,id``.

    Parameters
    ----------
    labels_source : str or None
        The label map (``builtin:chest-ct-labels`` has a builtin table; other maps need ``csv_path``).
    csv_path : str, optional
        CSV naming the labels.
    field : str
        Name of the option / config field in error messages.

    Returns
    -------
    dict
        Empty when no table is known (then only numeric ids can be used).
    """
    if csv_path is None:
        if labels_source == BUILTIN_CHEST_LABELS:
            from ddsa_sim.volumes.builtin import chest_ct_structures

            return chest_ct_structures()
        return {}
    if csv_path.startswith("builtin:"):
        from ddsa_sim.volumes.builtin import resolve_builtin

        csv_path = str(resolve_builtin(csv_path))
    p = Path(csv_path)
    if not p.is_file():
        raise InputError(f"{field}: {p}: no such file")
    try:
        with open(p, newline="") as fh:
            return {row["structure"]: int(row["id"]) for row in csv.DictReader(fh)}
    except (KeyError, ValueError) as exc:
        raise InputError(f"{field}: {p}: expected CSV columns 'structure,id' ({exc})") from None


def structure_ids(names: list[str], structures: dict[str, int], source: str, field: str = "--vessels") -> list[int]:
    """Label ids of structure ``names`` (names of ``structures`` or numeric ids)."""
    ids = []
    for n in names:
        if n.isdigit():
            ids.append(int(n))
        elif n in structures:
            ids.append(structures[n])
        else:
            hint = ("give its structure table: --structures CSV, or a CT source's structures: in a config"
                    if not structures else f"e.g. {', '.join(sorted(structures)[:5])}")
            raise InputError(f"{field}: unknown structure '{n}' in {source} ({hint})")
    return ids


def ct_with_label_materials(ct: Volume, labels: np.ndarray, structures: dict[str, int]) -> Volume:
    """The CT with material masks refined by its label map (lung, bone, blood classes)."""
    return ct.with_data(ct.data, materials=segment_with_labels(ct.data, labels, structures))


def label_vessels(ct: Volume, labels: np.ndarray, structures: dict[str, int], ids: list[int], name: str,
                  field: str = "--vessels") -> tuple[Volume, FractionVessels]:
    """The CT's own labelled vessels as iodine lumen, and the virtual non-contrast CT.

    Parameters
    ----------
    ct : Volume
        Contrast-enhanced CT (HU).
    labels : ndarray
        Label map on the CT grid.
    structures : dict
        Structure name -> id of the label map (for the lung / bone / blood material classes).
    ids : list of int
        Label ids of the vessels.
    name : str
        Name of the vessel source.
    field : str
        Option / config field named in error messages.

    Returns
    -------
    vnc : Volume
        Virtual non-contrast CT (lumen at blood HU), materials refined by the label map.
    vessels : FractionVessels
        The cleared lumen (grown by one voxel into enhanced rim voxels), cropped to its box.
    """
    from ddsa_sim.volumes import virtual_non_contrast

    vessel = labels_in(labels, ids)
    if not vessel.any():
        raise InputError(f"{field}: structures {name} have no voxel in the label map")
    vnc, lumen = virtual_non_contrast(ct, vessel)
    vnc = ct_with_label_materials(vnc, labels, structures)
    frac, aff = crop_to_foreground(lumen.astype(np.float32), ct.affine)
    return vnc, FractionVessels(frac, aff, name=name)


def nifti_fraction(path: Path, field: str = "--vessels") -> FractionVessels:
    """A NIfTI vessel volume: values in [0, 1] are a lumen fraction, anything else a label map
    (every non-zero voxel is lumen)."""
    from ddsa_sim.volumes import read_nifti

    if not path.is_file():
        raise InputError(f"{field}: {path}: no such file")
    vol = read_nifti(path)
    data = np.asarray(vol.data, dtype=np.float32)
    if not np.all(np.isfinite(data)):
        raise InputError(f"{field}: {path}: has NaN or infinite voxels")
    if data.min() < 0 or data.max() > 1:
        data = (data != 0).astype(np.float32)  # a label map: every labelled voxel is lumen
    if not data.any():
        raise InputError(f"{field}: {path}: no vessel voxel (all zero)")
    return FractionVessels(data, vol.affine, name=str(path))


def generator_params(model: str, params: dict[str, Any], field: str = "params") -> dict[str, Any]:
    """Coerce drawn parameter values to the generator's field types (floats to int / bool fields).

    Raises
    ------
    InputError
        Unknown generator or parameter, or a non-integer value for an integer field.
    """
    from vessel_models.generators import PARAMS

    if model not in PARAMS:
        raise InputError(f"{field}: unknown vessel generator '{model}'; known: {', '.join(sorted(PARAMS))}")
    defaults = {f.name: f.default for f in dataclasses.fields(PARAMS[model])}
    sep = " " if field.startswith("-") else "."  # "--param iterations", "vessels.params.iterations"
    out: dict[str, Any] = {}
    for key, value in params.items():
        if key not in defaults:
            raise InputError(f"{field}{sep}{key}: unknown {model} parameter; valid: {', '.join(sorted(defaults))}")
        default = defaults[key]
        if isinstance(default, (bool, int)) and isinstance(value, float):
            if value != round(value):
                raise InputError(f"{field}{sep}{key}: expected an integer, got {value:g}")
            value = bool(value) if isinstance(default, bool) else round(value)
        out[key] = value
    return out


def generated_tree(model: str, seed: int, params: dict[str, Any] | None = None, field: str = "--vessels",
                   params_field: str | None = None):
    """A seeded procedural tree (``vessel_models.generators.generate``); bad parameters -> InputError naming
    ``params_field`` (default ``field + ".params"``)."""
    from vessel_models import generate
    from vessel_models.tree import VesselInputError

    named = (params_field or f"{field}.params") if params else field
    kwargs = generator_params(model, dict(params or {}), named)
    try:
        return generate(model, seed, **kwargs)
    except VesselInputError as exc:
        raise InputError(f"{named}: {str(exc).splitlines()[0]}") from None
