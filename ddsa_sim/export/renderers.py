"""Sample renderers by name: what ``renderer:`` in a dataset config may say.

``"scene"`` is the physics (:func:`ddsa_sim.export.sample.render_scene_sample`). Any other renderer is
named ``"package.module:function"`` and imported when a sample is rendered, e.g. a test's fast fake
renderer; it must follow the contract of :func:`ddsa_sim.export.sample.render_sample`. Names are
resolved lazily, so validating a config imports no renderer (and no physics).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from typing import Any

from ddsa_sim import InputError

__all__ = ["BUILTIN_RENDERERS", "check_renderer_name", "resolve_renderer"]

#: builtin renderer name -> "module:function"
BUILTIN_RENDERERS: dict[str, str] = {"scene": "ddsa_sim.export.sample:render_scene_sample"}

_DOTTED = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def check_renderer_name(name: str) -> str:
    """``name`` when it is a builtin renderer or a ``module:function`` path; else ValueError."""
    if name in BUILTIN_RENDERERS or _DOTTED.match(name):
        return name
    raise ValueError(f"unknown renderer '{name}'; known: {', '.join(sorted(BUILTIN_RENDERERS))} "
                     f"or a 'package.module:function' path")


def resolve_renderer(name: str) -> Callable[..., dict[str, Any]]:
    """The renderer function of ``name``.

    Raises
    ------
    InputError
        Unknown name, or a ``module:function`` that cannot be imported.
    """
    try:
        target = BUILTIN_RENDERERS.get(name) or check_renderer_name(name)
    except ValueError:
        raise InputError(f"renderer: unknown '{name}'; known: {', '.join(sorted(BUILTIN_RENDERERS))} "
                         f"or a 'package.module:function' path") from None
    module, function = target.split(":")
    try:
        return getattr(importlib.import_module(module), function)
    except (ImportError, AttributeError) as exc:
        raise InputError(f"renderer: cannot load '{name}' ({exc.__class__.__name__}: {exc})") from None
