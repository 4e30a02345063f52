"""Registry of seeded vessel-tree generators and string-parameter parsing (for CLIs/configs).

>>> tree = generate("lsystem", seed=3, iterations="4", tortuosity_deg="5")
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, Callable

from vessel_models.colonize import ColonizeParams, generate_colonize
from vessel_models.coronary import CoronaryParams, generate_coronary
from vessel_models.lsystem import LSystemParams, generate_lsystem
from vessel_models.tree import VesselInputError, VesselTree, check_param_names
from vessel_models.willis import WillisParams, generate_willis

__all__ = ["GENERATORS", "PARAMS", "generate", "parse_params", "coerce_params"]

GENERATORS: dict[str, Callable[..., VesselTree]] = {
    "lsystem": generate_lsystem,
    "cow": generate_willis,
    "coronary": generate_coronary,
    "colonize": generate_colonize,
}
PARAMS: dict[str, type] = {
    "lsystem": LSystemParams,
    "cow": WillisParams,
    "coronary": CoronaryParams,
    "colonize": ColonizeParams,
}


def _convert(model: str, key: str, value: Any, default: Any) -> Any:
    if not isinstance(value, str):
        return value
    text = value.strip()
    try:
        if isinstance(default, bool):
            low = text.lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if isinstance(default, int):
            return int(text)
        if isinstance(default, float):
            return float(text)
        if isinstance(default, tuple):
            parts = [x for x in text.strip("()[]").replace(" ", "").split(",") if x]
            return tuple(float(x) for x in parts)
    except ValueError:
        raise VesselInputError(
            f"{model} parameter {key}={value!r}: expected {type(default).__name__}"
        ) from None
    return text


def coerce_params(model: str, params: dict[str, Any]) -> dict[str, Any]:
    """Convert string values to the field types of ``model``'s parameter dataclass.

    Raises
    ------
    VesselInputError
        On an unknown model, an unknown key (the message lists the valid keys) or a value
        that does not parse.
    """
    if model not in PARAMS:
        raise VesselInputError(f"unknown vessel model {model!r}; choose one of {', '.join(GENERATORS)}")
    check_param_names(PARAMS[model], params, model)
    defaults = {f.name: f.default for f in dataclasses.fields(PARAMS[model])}
    return {k: _convert(model, k, v, defaults[k]) for k, v in params.items()}


def parse_params(items: typing.Iterable[str]) -> dict[str, str]:
    """Parse ``["k=v", ...]`` into ``{"k": "v"}`` (values stay strings)."""
    out: dict[str, str] = {}
    for item in items:
        if "=" not in item:
            raise VesselInputError(f"parameter {item!r} is not of the form key=value")
        k, v = item.split("=", 1)
        k = k.strip()
        if not k:
            raise VesselInputError(f"parameter {item!r} has an empty key")
        out[k] = v.strip()
    return out


def generate(model: str, seed: int, **params: Any) -> VesselTree:
    """Generate a tree with a registered model.

    Parameters
    ----------
    model : str
        One of ``"lsystem"``, ``"cow"``, ``"coronary"``, ``"colonize"``.
    seed : int
        Seed; the same seed and params give a byte-identical tree (JSON).
    **params
        Parameter overrides; strings such as ``"4"`` or ``"1,0,0"`` are converted to the
        field type.

    Returns
    -------
    VesselTree
    """
    try:
        seed = int(seed)
    except (TypeError, ValueError):
        raise VesselInputError(f"seed must be an integer, got {seed!r}") from None
    if seed < 0:
        raise VesselInputError(f"seed must be >= 0, got {seed}")
    kwargs = coerce_params(model, params)
    return GENERATORS[model](seed, **kwargs)
